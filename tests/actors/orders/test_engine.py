"""Tests of the order engine actor: approvals only from risk, ids, halts, snapshots."""

from __future__ import annotations

import msgspec

from tests.actors.orders.harness import MINUTE_NS, bar_records, payloads
from tickertape.actors.orders import OrderEngine, OrderEngineConfig, order_ids
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.runtime import InProcessHost, MemorySink
from tickertape.schemas import Envelope, Record, encode_payload, stamp
from tickertape.schemas.risk import ApprovedOrder, RiskCommand, RiskDecision, RiskState
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.scheduler import StepPlanner

T0 = 1_704_067_200_000_000_000
CONFIG = OrderEngineConfig(
    markets={"crypto": fl.MarketFillConfig(latency=fl.LatencyModel(base_ns=1000, jitter_ns=0))}
)


def approval(source: str, seq: int, ts: int, order: ApprovedOrder, gseq: int) -> Record:
    decision = RiskDecision(
        strategy_id="s", intent_id=f"s-{seq}", approved=True, reason_code="OK", order=order
    )
    env = Envelope(
        id=f"{source}:{seq}", topic="risk.approved.s", type="risk.decision", v=1,
        market=order.market, ts_event=ts, ts_init=ts, source=source, source_seq=seq,
        payload=encode_payload(decision),
    )  # fmt: skip
    return stamp(env, seq - 1, gseq, ts)


def state_record(ts: int, gseq: int, scope: str = "global", key: str | None = None) -> Record:
    env = Envelope(
        id="risk:99", topic="risk.state", type="risk.state", v=1, market=None, ts_event=ts,
        ts_init=ts, source="risk", source_seq=99,
        payload=encode_payload(RiskState(scope=scope, key=key, state="HALTED", reason="manual")),  # type: ignore[arg-type]
    )  # fmt: skip
    return stamp(env, 0, gseq, ts)


def run(records: list[Record], engine: OrderEngine | None = None) -> list[Record]:
    records = sorted(records, key=lambda r: (r.ts_event, r.gseq))
    sink = MemorySink()
    host = InProcessHost(sink, clock=SimulatedClock(records[0].ts_event))
    host.add(engine or OrderEngine(CONFIG))
    host.start()
    host.run(StepPlanner(records, host.timers, start_ns=records[0].ts_event))
    return sink.records


BUY = ApprovedOrder(market="crypto", symbol="ABC", side="buy", quantity=1.0)
BARS = [(T0 + i * MINUTE_NS, 100.0 + i, 101.0 + i, 99.0 + i, 100.0 + i, 50.0) for i in range(1, 5)]


def test_approvals_not_from_risk_are_ignored() -> None:
    """An approval published by a strategy identity produces no order at all."""
    forged = approval("strategy.s", 1, T0 + MINUTE_NS + 1, BUY, 100)
    out = run([*bar_records(BARS, "crypto", "ABC"), forged])
    assert not [r for r in out if r.topic.startswith("order.")]


def test_ids_derive_from_the_approval_and_submission_is_recorded_first() -> None:
    """order and client ids come from the approval id; submitted precedes accepted and fills."""
    out = run([*bar_records(BARS, "crypto", "ABC"), approval("risk", 7, T0 + MINUTE_NS, BUY, 100)])
    events = payloads(out, "order.")
    assert order_ids("risk:7") == ("ord-risk-7", "tt-risk-7")
    assert [p.status for _, p in events] == ["submitted", "accepted", "filled"]
    assert {p.order_id for _, p in events} == {"ord-risk-7"}
    assert events[0][0].ts_event == T0 + MINUTE_NS
    assert events[1][0].ts_event == T0 + MINUTE_NS + 1000
    assert events[2][1].fill.reference_price == 102.0  # open of the bar after the approval


def test_halt_cancels_open_orders() -> None:
    """A HALTED risk state cancels the open orders in its scope."""
    limit = ApprovedOrder(
        market="crypto", symbol="ABC", side="buy", quantity=1.0, order_type="limit", limit_price=1.0
    )
    out = run(
        [
            *bar_records(BARS, "crypto", "ABC"),
            approval("risk", 1, T0 + MINUTE_NS, limit, 100),
            state_record(T0 + 3 * MINUTE_NS, 101, "market", "crypto"),
        ]
    )
    statuses = [p.status for _, p in payloads(out, "order.")]
    assert statuses == ["submitted", "accepted", "canceled"]
    assert payloads(out, "order.canceled")[0][1].reason == "halted: manual"


def test_snapshot_restore_continues_identically() -> None:
    """An engine restored from a snapshot mid-order produces the same remaining events."""
    gtc = ApprovedOrder(
        market="crypto", symbol="ABC", side="buy", quantity=30.0, order_type="market"
    )
    config = OrderEngineConfig(
        markets={
            "crypto": fl.MarketFillConfig(
                latency=fl.LatencyModel(base_ns=1000, jitter_ns=0), participation_rate=0.2
            )
        }
    )
    records = [*bar_records(BARS, "crypto", "ABC"), approval("risk", 1, T0 + MINUTE_NS, gtc, 100)]
    full = run(records, OrderEngine(config))
    first = OrderEngine(config)
    partial = run([r for r in records if r.ts_event <= T0 + 2 * MINUTE_NS], first)
    state = msgspec.msgpack.encode(first.snapshot())
    second = OrderEngine(config)
    second.restore(state)
    rest = run([r for r in records if r.ts_event > T0 + 2 * MINUTE_NS], second)
    strip = [(p.status, p.filled_quantity) for _, p in payloads(full, "order.")]
    joined = [(p.status, p.filled_quantity) for _, p in payloads(partial + rest, "order.")]
    assert joined == strip
    assert [f for _, f in strip] == [0.0, 0.0, 10.0, 20.0, 30.0]
    assert strip[-1] == ("filled", 30.0)


def test_commands_are_parsed_as_risk_commands() -> None:
    """The halt command payload round-trips (used by tape halt)."""
    cmd = RiskCommand(command="halt", scope="market", key="kr", reason="x")
    assert msgspec.json.decode(msgspec.json.encode(cmd), type=RiskCommand) == cmd
