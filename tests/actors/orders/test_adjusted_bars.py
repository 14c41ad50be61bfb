"""The simulated venue fills at raw prices only: a split-adjusted bar copy
(``md.bar.1d-adj``, ``adjusted = true``) is never market data for it (DESIGN §9)."""

from __future__ import annotations

import msgspec

from tests.actors.orders.harness import bar_records, payloads, run_chain
from tests.actors.risk.test_worst_case import Script
from tickertape.actors.orders import OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.strategy import StrategyActor, StrategyConfig
from tickertape.schemas import Record, decode_payload, encode_payload

DAY = 86_400_000_000_000
T0 = 1_704_067_200_000_000_000


def raw_and_adjusted() -> list[Record]:
    """Daily bars of XYZ around 100 (high 101), each followed by an adjusted copy x7."""
    rows = [(T0 + i * DAY, 100.0, 101.0, 99.0, 100.0, 1e6) for i in range(1, 5)]
    out: list[Record] = []
    for r in bar_records(rows, "us", "XYZ", "1d"):
        b = decode_payload(r.type, r.v, r.payload)
        adj = msgspec.structs.replace(b, open=b.open * 7, high=b.high * 7, low=b.low * 7,
                                      close=b.close * 7, adjusted=True)  # fmt: skip
        out += [r, msgspec.structs.replace(r, topic="md.bar.1d-adj.us.XYZ", id=r.id + "a",
                                           source_seq=r.source_seq + 100,
                                           payload=encode_payload(adj))]  # fmt: skip
    return [msgspec.structs.replace(r, gseq=i + 1) for i, r in enumerate(out)]


SELL_AT_500 = {"order_type": "limit", "limit_price": 500.0}


def test_an_adjusted_bar_fills_nothing() -> None:
    """A limit sell at 500 while raw prices never pass 101 stays open, though the
    adjusted copies trade at 693–707; the market buy fills at the raw open."""
    strategy = StrategyActor(
        StrategyConfig(strategy_id="s", subscriptions=["md.bar.1d.>"]),
        strategy=Script({1: [("buy", 1.0)], 2: [("sell", 1.0, SELL_AT_500)]}),
    )
    out = run_chain(raw_and_adjusted(), [strategy],
                    orders=OrderEngineConfig(markets={"us": fl.ZERO_COST}))  # fmt: skip
    fills = [(p.side, p.fill.price) for _, p in payloads(out, "order.") if p.fill]
    assert fills == [("buy", 100.0)]
