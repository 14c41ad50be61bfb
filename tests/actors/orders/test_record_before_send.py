"""Record before send (DESIGN §8): the order engine hands an order to the venue only
once its ``order.submitted`` record is in the log, in a replay and live through a real
router and event log; a crash in between sends it after the restart, once; an order
canceled before its record came back is never sent."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec

from tests.actors.orders.harness import payloads
from tests.actors.orders.test_engine import approval, state_record
from tests.actors.orders.test_venue_adapter import (
    BUY,
    CONFIG,
    T0,
    Broker,
    bar_data,
    bars,
    replay,
    run,
)
from tickertape.actors.orders import OrderEngine, VenueOrder, VenueResult
from tickertape.actors.orders.engine import OrderEngineState
from tickertape.actors.runtime import MemorySink
from tickertape.actors.runtime.remote import RemoteHost
from tickertape.client import Client
from tickertape.eventlog import LogReader
from tickertape.router.server import Router, RouterConfig
from tickertape.schemas import Record
from tickertape.schemas.orders import OrderEvent
from tickertape.schemas.registry import make_envelope
from tickertape.schemas.risk import RiskDecision
from tickertape.snapshots import SnapshotPolicy

MINUTE_NS = 60_000_000_000


class CheckingBroker(Broker):
    """A venue that notes, at each send, whether the order's ``submitted`` record is
    already stored (``recorded()`` says where to look)."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded_at_send: list[bool] = []
        self.stored: list[Record] = []

    def submitted_ids(self) -> set[str]:
        return {
            p.client_order_id
            for _, p in payloads(self.stored, "order.submitted.")
            if isinstance(p, OrderEvent)
        }

    def submit(self, order: VenueOrder, now_ns: int) -> VenueResult:
        self.recorded_at_send.append(order.client_order_id in self.submitted_ids())
        return super().submit(order, now_ns)


def test_in_a_replay_the_venue_gets_an_order_after_its_record_is_stored() -> None:
    """The order reaches the venue in the wave after the one that recorded it, at the
    same clock time: fills are those of a send at the approval's time."""
    broker = CheckingBroker()
    sink = MemorySink()
    broker.stored = sink.records
    records = [*bars(1, 2), approval("risk", 1, T0 + MINUTE_NS, BUY, 100)]
    replay(records, OrderEngine(CONFIG, venue=broker), T0 + 3 * MINUTE_NS, sink)
    assert broker.sent == ["tt-risk-1"]
    assert broker.recorded_at_send == [True]
    events = [(r.ts_event, p.status) for r, p in payloads(sink.records, "order.")]
    assert events == [
        (T0 + MINUTE_NS, "submitted"),
        (T0 + MINUTE_NS + 1000, "accepted"),  # the modeled latency from the approval's time
        (T0 + 2 * MINUTE_NS, "filled"),
    ]


def recorded_not_sent() -> tuple[OrderEngineState, Record]:
    """An engine's state between an order's record and its return (not sent yet), and
    that ``order.submitted`` record as stored."""
    first = OrderEngine(CONFIG, venue=Broker())
    sink = MemorySink()
    replay([*bars(1), approval("risk", 1, T0 + MINUTE_NS, BUY, 100)], first, T0 + MINUTE_NS, sink)
    (submitted,) = [r for r in sink.records if r.topic.startswith("order.submitted.")]
    state = first.state
    for record in state.orders.values():
        record.sent = False
    return state, submitted


def test_an_order_recorded_and_not_sent_before_a_crash_is_sent_once_after_it() -> None:
    """The engine stopped after recording an order and before its record came back (its
    snapshot says not sent): reconciliation on start leaves it alone, and the record,
    delivered after the restart, sends it: once."""
    state, submitted = recorded_not_sent()
    venue = Broker()  # never received it
    restarted = OrderEngine(CONFIG, venue=venue)
    restarted.restore(msgspec.msgpack.encode(state))
    after = run([submitted, *bars(2, 3)], restarted, T0 + 4 * MINUTE_NS)
    assert venue.sent == ["tt-risk-1"]
    assert [e.status for e in after] == ["accepted", "filled"]


def test_an_order_sent_after_the_last_snapshot_is_reconciled_not_lost() -> None:
    """The snapshot was taken between the order's record and its send (it says not
    sent); the order reached the venue and filled while the engine was down. On start
    the venue is asked about it: the fill is published, nothing is sent again, and the
    record delivered after the restart sends nothing (the order stayed open for ever,
    its fill never published)."""
    state, submitted = recorded_not_sent()
    venue = Broker()
    venue.book.submit(state.orders["ord-risk-1"].order, T0 + MINUTE_NS)
    venue.book.on_timer("arrive:ord-risk-1", T0 + MINUTE_NS + 1000)
    venue.book.on_market_data("crypto", "ABC", bar_data(2), T0 + 2 * MINUTE_NS)
    assert venue.status("tt-risk-1").state == "filled"
    restarted = OrderEngine(CONFIG, venue=venue)
    restarted.restore(msgspec.msgpack.encode(state))
    after = run([submitted, *bars(3)], restarted, T0 + 4 * MINUTE_NS)
    assert [e.status for e in after] == ["accepted", "filled"]
    assert venue.sent == []  # the engine itself sent nothing
    assert restarted.state.orders == {}


def test_an_order_halted_before_its_record_came_back_is_never_sent() -> None:
    """A halt handled after the approval and before the order's record came back cancels
    it in the engine: ``canceled`` with the halt's reason, and the venue never sees it."""
    broker = Broker()
    limit = msgspec.structs.replace(BUY, order_type="limit", limit_price=1.0)
    records = [
        *bars(1, 2),
        approval("risk", 1, T0 + MINUTE_NS, limit, 100),
        state_record(T0 + MINUTE_NS, 101, "global"),  # same step, after the approval
    ]
    events = run(records, OrderEngine(CONFIG, venue=broker), T0 + 3 * MINUTE_NS)
    assert [(e.status, e.reason) for e in events] == [
        ("submitted", ""),
        ("canceled", "halted: manual"),
    ]
    assert broker.sent == []


async def test_live_the_venue_gets_an_order_only_once_its_record_is_durable(
    tmp_path: Path,
) -> None:
    """Live through a real router and event log: when the venue receives the order, its
    ``submitted`` record is already fsync'd (read from the files by another reader,
    which sees only what the log published after its fsync)."""
    broker = CheckingBroker()
    reader = LogReader(tmp_path, "main")

    class DurableCheck(CheckingBroker):
        def submitted_ids(self) -> set[str]:
            broker.stored = list(reader.read(["order.submitted.>"]))
            return broker.submitted_ids()

    venue = DurableCheck()
    router = Router(RouterConfig(port=0, data_dir=str(tmp_path), health_interval_s=3600.0))
    await router.start()
    try:
        async with Client(router.url, "orders") as client:
            policy = SnapshotPolicy(every_events=None, every_ns=None, on_stop=False)
            host = RemoteHost(
                client, OrderEngine(CONFIG, venue=venue), "orders", tmp_path, policy=policy
            )
            task = asyncio.create_task(host.run(), name="orders")
            try:
                async with Client(router.url, "risk") as risk:
                    decision = RiskDecision(
                        strategy_id="s", intent_id="s-1", approved=True, reason_code="OK",
                        order=BUY,
                    )  # fmt: skip
                    await risk.publish([
                        make_envelope(
                            decision, topic="risk.approved.s", source="risk", source_seq=1,
                            ts_event=time.time_ns(), market="crypto",
                        )
                    ])  # fmt: skip
                async with asyncio.timeout(20):
                    while not venue.sent:  # noqa: ASYNC110 (polling a test)
                        await asyncio.sleep(0.02)
            finally:
                host.stop()
                await task
    finally:
        await router.close()
    assert venue.sent == ["tt-risk-1"]
    assert venue.recorded_at_send == [True]
