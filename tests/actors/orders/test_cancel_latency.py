"""Cancels reach the simulated venue after the modeled latency; fills before that still count."""

from __future__ import annotations

import pytest

from tests.actors.orders.harness import payloads
from tests.actors.orders.test_engine import approval, run
from tickertape.actors.orders import OrderEngine, OrderEngineConfig, SimulatedVenue, VenueOrder
from tickertape.actors.orders import fill_logic as fl
from tickertape.schemas import Envelope, Record, encode_payload, stamp
from tickertape.schemas.market import Trade
from tickertape.schemas.risk import ApprovedOrder

T0 = 1_704_067_200_000_000_000
MS = 1_000_000
LATENCY = fl.MarketFillConfig(
    latency=fl.LatencyModel(base_ns=10 * MS, jitter_ns=0), participation_rate=None
)
CONFIG = OrderEngineConfig(markets={"crypto": LATENCY})
BID = ApprovedOrder(
    market="crypto", symbol="ABC", side="buy", quantity=1.0, order_type="limit", limit_price=100.0
)
CANCEL = ApprovedOrder(
    market="crypto", symbol="ABC", side="buy", quantity=0.0, cancel_order_id="ord-risk-1"
)


def trade(ts: int, price: float, size: float, gseq: int) -> Record:
    payload = Trade(symbol="ABC", price=price, size=size, side="sell", trade_id=str(gseq))
    env = Envelope(
        id=f"marketdata:{gseq}", topic="md.trade.crypto.ABC", type="md.trade", v=1,
        market="crypto", ts_event=ts, ts_init=ts, source="marketdata", source_seq=gseq,
        payload=encode_payload(payload),
    )  # fmt: skip
    return stamp(env, gseq - 1, gseq, ts)


def lifecycle(trade_at_ns: int) -> list[tuple[str, int]]:
    """Bid at T0, cancel at T0 + 30 ms (lands at + 40 ms), one trade through the bid."""
    records = [
        approval("risk", 1, T0, BID, 1),
        trade(T0 + 20 * MS, 101.0, 5.0, 2),  # above the bid: no fill
        approval("risk", 2, T0 + 30 * MS, CANCEL, 3),
        trade(trade_at_ns, 99.5, 5.0, 4),
        trade(T0 + 60 * MS, 99.0, 5.0, 5),
    ]
    out = run(records, OrderEngine(CONFIG))
    return [(p.status, r.ts_event) for r, p in payloads(out, "order.")]


def test_a_trade_before_the_cancel_lands_still_fills() -> None:
    """Between sending a cancel and its landing the order works: a trade through it fills it."""
    assert lifecycle(T0 + 35 * MS) == [
        ("submitted", T0),
        ("accepted", T0 + 10 * MS),
        ("filled", T0 + 35 * MS),
    ]


def test_the_cancel_lands_after_the_latency() -> None:
    """Without a trade in flight, the order is canceled at send time + latency, then never fills."""
    assert lifecycle(T0 + 45 * MS) == [
        ("submitted", T0),
        ("accepted", T0 + 10 * MS),
        ("canceled", T0 + 40 * MS),
    ]


def test_data_at_the_landing_time_comes_after_the_cancel() -> None:
    """A trade stamped at the very landing time is after the cancel (timers fire first)."""
    assert lifecycle(T0 + 40 * MS)[-1] == ("canceled", T0 + 40 * MS)


def test_a_partial_fill_in_flight_is_kept_and_the_rest_canceled() -> None:
    """With a participation cap, the fill before landing is partial; the cancel ends the rest."""
    capped = fl.MarketFillConfig(latency=LATENCY.latency, participation_rate=0.1)
    venue = SimulatedVenue({"crypto": capped})
    order = VenueOrder(
        order_id="o1", client_order_id="c1", market="crypto", symbol="ABC", side="buy",
        order_type="market", quantity=2.0,
    )  # fmt: skip
    assert not venue.watches("crypto", "ABC")
    (arrive,) = venue.submit(order, T0).timers
    assert venue.watches("crypto", "ABC")  # in flight: data of ABC matters again
    assert venue.on_timer(arrive.name, arrive.at_ns).reports[0].kind == "accepted"
    sent = venue.cancel("o1", T0 + 20 * MS, "changed my mind")
    assert sent.reports == []
    (landing,) = sent.timers
    assert (landing.name, landing.at_ns) == ("cancel:o1", T0 + 30 * MS)
    assert venue.cancel("o1", T0 + 21 * MS, "again").timers == []  # one cancel in flight
    data = fl.MarketData.from_trade(T0 + 25 * MS, 10.0, 5.0)
    (fill,) = venue.on_market_data("crypto", "ABC", data, T0 + 25 * MS).reports
    assert (fill.kind, fill.filled_quantity) == ("fill", pytest.approx(0.5))
    (canceled,) = venue.on_timer(landing.name, landing.at_ns).reports
    assert canceled.kind == "canceled"
    assert canceled.filled_quantity == pytest.approx(0.5)
    assert canceled.reason == "changed my mind"
    assert venue.open_order_ids() == []
    assert venue.state.cancels == {}
    assert not venue.watches("crypto", "ABC")


def test_a_cancel_never_lands_before_its_order() -> None:
    """A cancel sent while the order is in flight lands at the order's arrival at the earliest."""
    slow = fl.new_order(
        order_id="o1", client_order_id="c1", market="crypto", symbol="ABC", side="buy",
        order_type="market", quantity=1.0, created_ns=T0,
        config=fl.MarketFillConfig(latency=fl.LatencyModel(base_ns=500 * MS, jitter_ns=0)),
    )  # fmt: skip
    assert fl.cancel_arrival_ns(slow, T0 + 1, LATENCY) == T0 + 500 * MS
    assert fl.cancel_arrival_ns(slow, T0 + 495 * MS, LATENCY) == T0 + 505 * MS


def test_cancel_jitter_is_deterministic_and_bounded() -> None:
    """The cancel's jitter is a hash of the seed and client id: same every run, within bounds."""
    jittery = fl.MarketFillConfig(latency=fl.LatencyModel(base_ns=10 * MS, jitter_ns=5 * MS))
    order = fl.new_order(
        order_id="o1", client_order_id="c1", market="crypto", symbol="ABC", side="buy",
        order_type="market", quantity=1.0, created_ns=T0, config=jittery,
    )  # fmt: skip
    now = T0 + 100 * MS
    landing = fl.cancel_arrival_ns(order, now, jittery)
    assert now + 10 * MS <= landing <= now + 15 * MS
    assert landing == fl.cancel_arrival_ns(order, now, jittery)
