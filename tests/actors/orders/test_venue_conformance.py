"""The Venue protocol's contract, one suite every venue adapter passes: a client order id
is traded once (a resend is a no-op, closed orders included), ``status`` answers what
the venue did with it, and the adapter's state survives ``snapshot_state`` /
``restore_state``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.orders.venue import SimulatedVenue, Venue, VenueOrder, VenueResult

T0 = 1_704_067_200_000_000_000
MINUTE_NS = 60_000_000_000
FAST = fl.MarketFillConfig(latency=fl.LatencyModel(base_ns=1000, jitter_ns=0))

VENUES: dict[str, Callable[[], Venue]] = {
    "simulated": lambda: SimulatedVenue({"crypto": FAST}),
}


@pytest.fixture(params=sorted(VENUES))
def make_venue(request: pytest.FixtureRequest) -> Callable[[], Venue]:
    """A factory of fresh venues of each adapter under test."""
    return VENUES[request.param]


def order(n: int = 1, **changes: object) -> VenueOrder:
    fields: dict[str, object] = {
        "order_id": f"ord-risk-{n}", "client_order_id": f"tt-risk-{n}", "market": "crypto",
        "symbol": "ABC", "side": "buy", "order_type": "market", "quantity": 1.0,
    }  # fmt: skip
    fields.update(changes)
    return VenueOrder(**fields)  # type: ignore[arg-type]


def arrive(venue: Venue, result: VenueResult) -> VenueResult:
    """Fire the timers ``result`` asked for (the order's arrival)."""
    reports, timers = [], []
    for timer in result.timers:
        fired = venue.on_timer(timer.name, timer.at_ns)
        reports += fired.reports
        timers += fired.timers
    return VenueResult(reports=reports, timers=timers)


def bar(minute: int) -> fl.MarketData:
    ts = T0 + minute * MINUTE_NS
    return fl.MarketData(
        ts_event=ts, start_ns=ts - MINUTE_NS, open=100.0, high=101.0, low=99.0, close=100.0,
        volume=1000.0,
    )  # fmt: skip


def fill(venue: Venue, minute: int) -> VenueResult:
    return venue.on_market_data("crypto", "ABC", bar(minute), T0 + minute * MINUTE_NS)


def test_an_unseen_client_id_is_unknown(make_venue: Callable[[], Venue]) -> None:
    """status of a client id never sent is ``unknown`` with no reports."""
    status = make_venue().status("tt-risk-1")
    assert (status.state, status.reports) == ("unknown", [])


def test_an_open_order_is_open_and_a_resend_is_a_no_op(make_venue: Callable[[], Venue]) -> None:
    """A sent order is ``open``; sending its client id again returns nothing and trades
    nothing more."""
    venue = make_venue()
    accepted = arrive(venue, venue.submit(order(), T0))
    assert [r.kind for r in accepted.reports] == ["accepted"]
    assert venue.status("tt-risk-1").state == "open"
    assert venue.submit(order(), T0 + 10) == VenueResult()
    assert [r.kind for r in venue.status("tt-risk-1").reports] == ["accepted"]
    assert [(r.kind, r.filled_quantity) for r in fill(venue, 1).reports] == [("fill", 1.0)]


def test_a_filled_order_is_never_traded_again(make_venue: Callable[[], Venue]) -> None:
    """After a fill closes the order, a resend of its client id is refused (no timers,
    no reports) and later data fills nothing; status says ``filled`` with the reports."""
    venue = make_venue()
    accepted = arrive(venue, venue.submit(order(), T0))
    filled = fill(venue, 1)
    assert venue.open_order_ids() == []
    assert venue.submit(order(), T0 + 2 * MINUTE_NS) == VenueResult()
    assert fill(venue, 3).reports == []
    status = venue.status("tt-risk-1")
    assert status.state == "filled"
    assert status.reports == [*accepted.reports, *filled.reports]


def test_a_canceled_order_is_canceled_and_not_resent(make_venue: Callable[[], Venue]) -> None:
    """A canceled order's status is ``canceled`` (reason kept); a resend is refused."""
    venue = make_venue()
    arrive(venue, venue.submit(order(order_type="limit", limit_price=1.0), T0))
    landed = arrive(venue, venue.cancel("ord-risk-1", T0 + 10, "by strategy"))
    assert [r.kind for r in landed.reports] == ["canceled"]
    status = venue.status("tt-risk-1")
    assert status.state == "canceled"
    assert [(r.kind, r.reason) for r in status.reports] == [
        ("accepted", ""),
        ("canceled", "by strategy"),
    ]
    assert venue.submit(order(order_type="limit", limit_price=1.0), T0 + 20) == VenueResult()
    assert venue.open_order_ids() == []


def test_a_rejected_order_is_rejected_and_not_resent(make_venue: Callable[[], Venue]) -> None:
    """An order rejected on submit is remembered as ``rejected``; a resend is refused."""
    venue = make_venue()
    (rejected,) = venue.submit(order(quantity=0.0), T0).reports
    assert rejected.kind == "rejected"
    assert venue.status("tt-risk-1").state == "rejected"
    assert venue.status("tt-risk-1").reports == [rejected]
    assert venue.submit(order(quantity=0.0), T0 + 1) == VenueResult()


def test_the_state_survives_snapshot_state_and_restore_state(
    make_venue: Callable[[], Venue],
) -> None:
    """A venue restored from ``snapshot_state`` answers ``status`` as before, refuses the
    same resends, keeps working its open orders, and snapshots to the same bytes."""
    venue = make_venue()
    arrive(venue, venue.submit(order(1), T0))
    fill(venue, 1)
    arrive(venue, venue.submit(order(2), T0 + MINUTE_NS + 10))
    data = venue.snapshot_state()
    assert isinstance(data, bytes)
    restored = make_venue()
    restored.restore_state(data)
    assert restored.snapshot_state() == data
    for client_order_id in ("tt-risk-1", "tt-risk-2", "tt-risk-3"):
        assert restored.status(client_order_id) == venue.status(client_order_id)
    assert restored.open_order_ids() == ["ord-risk-2"]
    assert restored.submit(order(1), T0 + 2 * MINUTE_NS) == VenueResult()
    assert [r.order_id for r in fill(restored, 3).reports] == ["ord-risk-2"]
    fresh = make_venue()
    fresh.restore_state(restored.snapshot_state())
    fresh.restore_state(b"")
    assert fresh.status("tt-risk-1").state == "unknown"
