"""The order engine over a venue adapter it did not build, and its reconciliation on
start: adapters plug in without editing the engine, their state is opaque bytes in the
snapshot, an order the venue closed while the engine was down is published and never
sent again, and an approval is acted on once."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from tests.actors.orders.harness import MINUTE_NS, BarRow, bar_records, payloads
from tests.actors.orders.test_engine import BUY, CONFIG, T0, approval, state_record
from tickertape.actors.orders import (
    VENUES,
    OrderEngine,
    OrderEngineConfig,
    SimulatedVenue,
    VenueOrder,
    VenueOrderStatus,
    VenueResult,
)
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.orders.instruments import InstrumentTable
from tickertape.actors.runtime import InProcessHost, MemorySink
from tickertape.errors import ConfigError
from tickertape.schemas import Record
from tickertape.schemas.envelope import Market
from tickertape.schemas.orders import OrderEvent
from tickertape.schemas.risk import ApprovedOrder
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.scheduler import StepPlanner

FAST = fl.MarketFillConfig(latency=fl.LatencyModel(base_ns=1000, jitter_ns=0))


class Broker:
    """A venue that outlives the engine, as a broker does: a simulated book that the
    engine's snapshot does not hold (its state bytes are a cursor only)."""

    def __init__(self, book: SimulatedVenue | None = None, account: str = "") -> None:
        self.book = book if book is not None else SimulatedVenue({"crypto": FAST})
        self.account = account
        self.sent: list[str] = []
        self.restored: list[bytes] = []

    def submit(self, order: VenueOrder, now_ns: int) -> VenueResult:
        self.sent.append(order.client_order_id)
        return self.book.submit(order, now_ns)

    def status(self, client_order_id: str) -> VenueOrderStatus:
        return self.book.status(client_order_id)

    def cancel(self, order_id: str, now_ns: int, reason: str) -> VenueResult:
        return self.book.cancel(order_id, now_ns, reason)

    def on_market_data(
        self, market: Market, symbol: str, data: fl.MarketData, now_ns: int
    ) -> VenueResult:
        return self.book.on_market_data(market, symbol, data, now_ns)

    def on_timer(self, name: str, now_ns: int) -> VenueResult:
        return self.book.on_timer(name, now_ns)

    def watches(self, market: Market, symbol: str) -> bool:
        return self.book.watches(market, symbol)

    def open_order_ids(self) -> list[str]:
        return self.book.open_order_ids()

    def snapshot_state(self) -> bytes:
        return b"cursor:" + self.account.encode()

    def restore_state(self, data: bytes) -> None:
        self.restored.append(data)


def make_broker(config: OrderEngineConfig, instruments: InstrumentTable) -> Broker:
    """A venue factory, as ``venue = "package.module:factory"`` names one."""
    book = SimulatedVenue(dict(config.markets), instruments)
    return Broker(book, account=str(config.venue_options.get("account", "")))


def bars(*minutes: int, volume: float = 50.0) -> list[Record]:
    rows: list[BarRow] = [
        (T0 + m * MINUTE_NS, 100.0 + m, 101.0 + m, 99.0 + m, 100.0 + m, volume) for m in minutes
    ]
    return bar_records(rows, "crypto", "ABC")


def bar_data(minute: int, volume: float = 50.0) -> fl.MarketData:
    ts = T0 + minute * MINUTE_NS
    return fl.MarketData(
        ts_event=ts, start_ns=ts - MINUTE_NS, open=100.0 + minute, high=101.0 + minute,
        low=99.0 + minute, close=100.0 + minute, volume=volume,
    )  # fmt: skip


def replay(records: Sequence[Record], engine: OrderEngine, end_ns: int, sink: MemorySink) -> None:
    """Start ``engine`` alone on a fresh host at the first record's time and run it over
    ``records`` to ``end_ns``, into ``sink``."""
    records = sorted(records, key=lambda r: (r.ts_event, r.gseq))
    host = InProcessHost(sink, clock=SimulatedClock(records[0].ts_event))
    host.add(engine)
    host.start()
    host.run(StepPlanner(records, host.timers, start_ns=records[0].ts_event, end_ns=end_ns))


def run(records: Sequence[Record], engine: OrderEngine, end_ns: int) -> list[OrderEvent]:
    """:func:`replay`; return the order events it published (reconciliation's included)."""
    sink = MemorySink()
    replay(records, engine, end_ns, sink)
    return [p for _, p in payloads(sink.records, "order.") if isinstance(p, OrderEvent)]


def restart(engine: OrderEngine, venue: Broker) -> OrderEngine:
    """A new engine over ``venue``, restored from ``engine``'s snapshot as stored."""
    second = OrderEngine(CONFIG, venue=venue)
    second.restore(msgspec.msgpack.encode(engine.snapshot()))
    return second


# ------------------------------------------------------------- plugging in


def test_the_engine_trades_through_a_venue_it_is_given() -> None:
    """OrderEngine(config, venue=...) sends through that venue, and its snapshot holds
    the venue's state as the bytes the venue gave, handed back on restore."""
    broker = Broker(account="acct-1")
    engine = OrderEngine(CONFIG, venue=broker)
    events = run([*bars(1, 2, 3), approval("risk", 1, T0 + MINUTE_NS, BUY, 100)], engine, T0 + 4 * MINUTE_NS)  # fmt: skip
    assert [e.status for e in events] == ["submitted", "accepted", "filled"]
    assert broker.sent == ["tt-risk-1"]
    state = engine.snapshot()
    assert state.venue == b"cursor:acct-1"  # type: ignore[attr-defined]
    other = Broker()
    OrderEngine(CONFIG, venue=other).restore(msgspec.msgpack.encode(state))
    assert other.restored == [b"cursor:acct-1"]


def test_a_configured_import_path_builds_the_venue() -> None:
    """``venue = "package.module:factory"`` builds the adapter from the engine's
    configuration (its ``venue_options`` and markets) without editing the engine."""
    config = OrderEngineConfig(
        venue="tests.actors.orders.test_venue_adapter:make_broker",
        venue_options={"account": "paper-7"},
        markets={"crypto": FAST},
    )
    engine = OrderEngine(config)
    assert isinstance(engine.venue, Broker)
    assert engine.venue.account == "paper-7"
    assert engine.venue.book.configs["crypto"] == FAST


def test_a_name_added_to_venues_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """A program registers a factory under a name in VENUES; ``venue = name`` builds it."""
    monkeypatch.setitem(VENUES, "paper-broker", make_broker)
    assert isinstance(OrderEngine(OrderEngineConfig(venue="paper-broker")).venue, Broker)


@pytest.mark.parametrize(
    "venue",
    [
        "mybroker",
        "tests.actors.orders.no_such_module:make_broker",
        "tests.actors.orders.test_venue_adapter:no_such_factory",
        "tests.actors.orders.test_venue_adapter:T0",
    ],
)
def test_venues_that_do_not_resolve_are_config_errors(venue: str) -> None:
    """An unknown name, an unimportable module, a missing or non-callable attribute
    raise ConfigError."""
    with pytest.raises(ConfigError):
        OrderEngine(OrderEngineConfig(venue=venue))


def test_the_simulated_venue_travels_in_the_snapshot_as_bytes() -> None:
    """With the shipped simulated venue, the snapshot's venue field is the venue's own
    bytes, and a restored engine continues the same book."""
    engine = OrderEngine(CONFIG)
    limit = ApprovedOrder(
        market="crypto", symbol="ABC", side="buy", quantity=1.0, order_type="limit", limit_price=1.0
    )
    run([*bars(1, 2), approval("risk", 1, T0 + MINUTE_NS, limit, 100)], engine, T0 + 3 * MINUTE_NS)
    state = engine.snapshot()
    second = OrderEngine(CONFIG)
    second.restore(msgspec.msgpack.encode(state))
    assert second.venue.open_order_ids() == ["ord-risk-1"]
    assert second.venue.snapshot_state() == engine.venue.snapshot_state()


# ---------------------------------------------------------- reconciliation


def test_an_order_filled_while_the_engine_was_down_is_published_not_resent() -> None:
    """The venue filled an order while the engine was down: on start the engine
    publishes the fill it missed, and sends nothing."""
    broker = Broker()
    first = OrderEngine(CONFIG, venue=broker)
    before = run([*bars(1), approval("risk", 1, T0 + MINUTE_NS, BUY, 100)], first, T0 + MINUTE_NS + 10_000)  # fmt: skip
    assert [e.status for e in before] == ["submitted", "accepted"]
    (missed,) = broker.book.on_market_data("crypto", "ABC", bar_data(2), T0 + 2 * MINUTE_NS).reports
    second = restart(first, broker)
    after = run(bars(3, 4), second, T0 + 5 * MINUTE_NS)
    assert [(e.status, e.filled_quantity) for e in after] == [("filled", 1.0)]
    fill = after[0].fill
    assert fill is not None
    assert missed.fill is not None
    assert (fill.fill_id, fill.price, fill.ts_fill) == ("ord-risk-1-f1", missed.fill.price, missed.fill.ts_fill)  # fmt: skip
    assert broker.sent == ["tt-risk-1"]
    assert second.state.orders == {}


def test_a_partial_fill_made_while_down_is_published_and_the_order_keeps_working() -> None:
    """Fills the venue made while the engine was down are published in order, with the
    next fill ids; the order is left working and its next fill follows."""
    config = msgspec.structs.replace(FAST, participation_rate=0.2)
    broker = Broker(SimulatedVenue({"crypto": config}))
    gtc = ApprovedOrder(market="crypto", symbol="ABC", side="buy", quantity=30.0)
    first = OrderEngine(CONFIG, venue=broker)
    before = run([*bars(1, 2), approval("risk", 1, T0 + MINUTE_NS, gtc, 100)], first, T0 + 2 * MINUTE_NS + 1)  # fmt: skip
    assert [(e.status, e.filled_quantity) for e in before] == [
        ("submitted", 0.0), ("accepted", 0.0), ("partially_filled", 10.0),
    ]  # fmt: skip
    broker.book.on_market_data("crypto", "ABC", bar_data(3), T0 + 3 * MINUTE_NS)
    after = run(bars(4, 5), restart(first, broker), T0 + 6 * MINUTE_NS)
    assert [(e.status, e.filled_quantity) for e in after] == [
        ("partially_filled", 20.0), ("filled", 30.0),
    ]  # fmt: skip
    assert [e.fill.fill_id for e in after if e.fill] == ["ord-risk-1-f2", "ord-risk-1-f3"]
    assert broker.sent == ["tt-risk-1"]


def test_a_cancel_that_landed_while_down_is_published() -> None:
    """A cancel sent before the engine stopped lands at the venue while it is down: on
    start the engine publishes ``canceled`` with the cancel's reason."""
    broker = Broker()
    limit = ApprovedOrder(
        market="crypto", symbol="ABC", side="buy", quantity=1.0, order_type="limit", limit_price=1.0
    )
    halt_ns = T0 + 2 * MINUTE_NS
    first = OrderEngine(CONFIG, venue=broker)
    records = [*bars(1, 2), approval("risk", 1, T0 + MINUTE_NS, limit, 100), state_record(halt_ns, 101, "global")]  # fmt: skip
    before = run(records, first, halt_ns + 1)
    assert [e.status for e in before] == ["submitted", "accepted"]  # the cancel is in flight
    (canceled,) = broker.book.on_timer("cancel:ord-risk-1", halt_ns + 1000).reports
    assert canceled.kind == "canceled"
    after = run(bars(3), restart(first, broker), T0 + 4 * MINUTE_NS)
    assert [(e.status, e.reason) for e in after] == [("canceled", "halted: manual")]
    assert broker.sent == ["tt-risk-1"]


def test_an_order_the_venue_never_received_is_sent_on_start() -> None:
    """An order recorded as submitted that the venue does not know (the send was lost)
    is sent on start, with the same client order id, and trades."""
    first = OrderEngine(CONFIG, venue=Broker())
    before = run([*bars(1), approval("risk", 1, T0 + MINUTE_NS, BUY, 100)], first, T0 + MINUTE_NS + 1)  # fmt: skip
    assert [e.status for e in before] == ["submitted"]
    lost = Broker()  # a venue that never received it
    after = run(bars(2, 3), restart(first, lost), T0 + 4 * MINUTE_NS)
    assert [e.status for e in after] == ["accepted", "filled"]
    assert lost.sent == ["tt-risk-1"]


def test_an_open_order_known_to_the_venue_is_left_working() -> None:
    """An order the venue holds open, with nothing missed, is neither sent nor
    republished on start; it fills on later data."""
    broker = Broker()
    first = OrderEngine(CONFIG, venue=broker)
    run([*bars(1), approval("risk", 1, T0 + MINUTE_NS, BUY, 100)], first, T0 + MINUTE_NS + 10_000)
    after = run(bars(2, 3), restart(first, broker), T0 + 4 * MINUTE_NS)
    assert [e.status for e in after] == ["filled"]
    assert broker.sent == ["tt-risk-1"]


# -------------------------------------------------------------- approvals


def test_a_redelivered_approval_of_a_closed_order_is_ignored() -> None:
    """An approval delivered again after its order filled makes no new order, in the
    same engine and in one restored from its snapshot; a new approval still trades."""
    engine = OrderEngine(CONFIG)
    first = run([*bars(1, 2), approval("risk", 1, T0 + MINUTE_NS, BUY, 100)], engine, T0 + 3 * MINUTE_NS)  # fmt: skip
    assert [e.status for e in first] == ["submitted", "accepted", "filled"]
    again = [*bars(3, 4), approval("risk", 1, T0 + 3 * MINUTE_NS, BUY, 200)]
    assert run(again, engine, T0 + 5 * MINUTE_NS) == []
    restored = OrderEngine(CONFIG)
    restored.restore(msgspec.msgpack.encode(engine.snapshot()))
    assert run(again, restored, T0 + 5 * MINUTE_NS) == []
    fresh = [*bars(3, 4), approval("risk", 2, T0 + 3 * MINUTE_NS, BUY, 201)]
    assert [e.order_id for e in run(fresh, restored, T0 + 5 * MINUTE_NS)] == ["ord-risk-2"] * 3
