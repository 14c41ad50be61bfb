"""Tests of the in-process host: waves, timers, snapshots, failures."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec
import pytest

from tests.actors.runtime.logs import captured_host_logs
from tests.actors.runtime.sample_actors import MeanActor, SignalActor, trade_envelopes
from tickertape.actors.base import Actor, Context, Event
from tickertape.actors.runtime import (
    ActorFailedError,
    InProcessHost,
    LookAheadError,
    MemorySink,
)
from tickertape.errors import ConfigError
from tickertape.schemas.envelope import Envelope, stamp
from tickertape.snapshots import SnapshotPolicy
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.scheduler import StepPlanner


def inputs(n: int) -> list:
    return [stamp(e, i, i + 1, e.ts_event) for i, e in enumerate(trade_envelopes(n))]


def run(n: int, *, order: tuple[str, ...] = ("mean", "signal"), **host_kw: object) -> InProcessHost:
    records = inputs(n)
    host = InProcessHost(MemorySink(), clock=SimulatedClock(records[0].ts_event), seed=3, **host_kw)  # type: ignore[arg-type]
    for which in order:
        host.add(MeanActor() if which == "mean" else SignalActor())
    host.start()
    host.run(StepPlanner(records, host.timers, start_ns=records[0].ts_event))
    host.stop()
    return host


def digest(host: InProcessHost) -> str:
    sink = host.sink
    assert isinstance(sink, MemorySink)
    return hashlib.sha256(b"".join(msgspec.json.encode(r) for r in sink.records)).hexdigest()


def test_waves_chain_actors_within_a_step() -> None:
    """An indicator output reaches the strategy in the same step, with ts_log = step time."""
    host = run(20)
    sink = host.sink
    assert isinstance(sink, MemorySink)
    topics = {r.topic.split(".")[0] for r in sink.records}
    assert topics == {"indicator", "strategy"}
    for r in sink.records:
        assert r.ts_log >= r.ts_event
    intents = [r for r in sink.records if r.topic.startswith("strategy") and r.causation_id]
    assert intents
    cause = next(r for r in sink.records if r.id == intents[0].causation_id)
    assert cause.ts_event == intents[0].ts_event == intents[0].ts_log


def test_timers_fire_with_modeled_latency() -> None:
    """The cancel intents come 50 ms after their intents, from the timer."""
    host = run(40)
    sink = host.sink
    assert isinstance(sink, MemorySink)
    by_id = {r.id: r for r in sink.records}
    cancels = [r for r in sink.records if b'"cancel"' in bytes(r.payload)]
    assert cancels
    for c in cancels:
        target = msgspec.json.decode(c.payload)["cancel_order_id"]
        assert c.ts_event == by_id[target].ts_event + 50_000_000


def test_same_input_same_bytes_whatever_the_registration_order() -> None:
    """Two runs, with actors registered in either order, store identical records."""
    assert digest(run(60)) == digest(run(60, order=("signal", "mean")))


def test_snapshot_resume_gives_the_same_log(tmp_path: Path) -> None:
    """Stop after half the steps, resume every actor from its snapshot: identical result."""
    records = inputs(60)
    full = run(60)

    root = tmp_path / "snaps"
    sink = MemorySink()
    policy = SnapshotPolicy(every_events=1, every_ns=None)

    host = InProcessHost(
        sink,
        clock=SimulatedClock(records[0].ts_event),
        seed=3,
        snapshot_policy=policy,
        snapshot_root=root,
    )
    host.add(MeanActor())
    host.add(SignalActor())
    host.start()
    planner = StepPlanner(records, host.timers, start_ns=records[0].ts_event)
    for _ in range(12):
        step = planner.next_step()
        assert step is not None
        host.run_step(step)
        consumed = max((r.gseq for r in step.events), default=0)
        host.maybe_snapshot({"source": consumed, "run": len(sink.records)})
    # the process "dies" here: a new host resumes from the snapshots
    host2 = InProcessHost(sink, seed=3, snapshot_policy=policy, snapshot_root=root)
    host2.add(MeanActor())
    host2.add(SignalActor())
    snaps = host2.load_snapshots()
    assert sorted(snaps) == ["indicators", "strategy.test"]
    position = min(s.positions["source"] for s in snaps.values())
    host2.clock.advance_to(max(s.clock_ns for s in snaps.values()))
    for name, snap in snaps.items():
        host2.restore(name, snap)
    rest = [r for r in records if r.gseq > position]
    host2.run(StepPlanner(rest, host2.timers, start_ns=host2.clock.now_ns()))
    host2.stop()
    assert digest(host2) == digest(full)
    assert sink.divergences == []


def test_divergent_regeneration_is_reported() -> None:
    """A regenerated output with the same id but another payload is a divergence."""
    sink = MemorySink()
    first = run(10)
    assert isinstance(first.sink, MemorySink)
    for r in first.sink.records:
        sink.records.append(r)
    sink2 = first.sink
    envs = [msgspec.structs.replace(r) for r in sink2.records[:1]]
    from tickertape.schemas.envelope import unstamp

    changed = msgspec.structs.replace(unstamp(envs[0]), payload=msgspec.Raw(b'{"x":1}'))
    sink2.append([changed], ts_log=0)
    assert len(sink2.divergences) == 1
    assert sink2.divergences[0].id == changed.id
    assert sink2.divergences[0].fields == ["payload"]


class Cheater(Actor):
    name = "cheater"
    subscriptions = ("md.>",)

    def on_event(self, event: Event, ctx: Context) -> None:
        ctx.publish("x.y", event.payload, market="crypto", ts_event=event.ts_event + 1)


class Crasher(Actor):
    name = "crasher"
    subscriptions = ("md.>",)

    def on_event(self, event: Event, ctx: Context) -> None:
        raise ZeroDivisionError("boom")


def test_look_ahead_in_a_handler_stops_the_host() -> None:
    """A handler publishing in the future raises LookAheadError out of run_step."""
    records = inputs(2)
    host = InProcessHost(MemorySink(), clock=SimulatedClock(0))
    host.add(Cheater())
    with pytest.raises(LookAheadError):
        host.run(StepPlanner(records, host.timers))


def test_a_crashing_handler_names_actor_and_event() -> None:
    """An exception in a handler becomes ActorFailedError with the actor and event id."""
    host = InProcessHost(MemorySink(), clock=SimulatedClock(0))
    host.add(Crasher())
    with pytest.raises(ActorFailedError) as info:
        host.run(StepPlanner(inputs(1), host.timers))
    assert (info.value.actor, info.value.event_id) == ("crasher", "marketdata:1")


def test_duplicate_names_are_refused() -> None:
    """Two actors with the same name are a configuration error."""
    host = InProcessHost(MemorySink())
    host.add(MeanActor())
    with pytest.raises(ConfigError):
        host.add(MeanActor())


class Recorder(Actor):
    """Keeps every payload it is handed (trades and alerts)."""

    name = "recorder"
    subscriptions = ("md.trade.crypto.*", "system.alert")

    def __init__(self) -> None:
        self.payloads: list[object] = []

    def on_event(self, event: Event, ctx: Context) -> None:
        self.payloads.append(event.payload)


def deliver(records: list) -> tuple[Recorder, list[dict]]:
    """Run a Recorder over ``records`` (all at one time) and capture the host's logs."""
    host = InProcessHost(MemorySink(), clock=SimulatedClock(0))
    recorder = Recorder()
    host.add(recorder)
    with captured_host_logs() as logs:
        host.run(StepPlanner(records, host.timers))
    return recorder, logs


def test_a_bad_payload_after_good_ones_is_skipped_and_logged() -> None:
    """Once a type's decoder is cached, an invalid payload, an unknown type and a newer v
    of it are still skipped and logged (unknown once per (type, v)), never delivered."""
    good = [stamp(e, i, i + 1, 1) for i, e in enumerate(trade_envelopes(3))]
    good = [msgspec.structs.replace(r, ts_event=1) for r in good]
    invalid = msgspec.structs.replace(good[0], id="x:1", payload=msgspec.Raw(b'{"symbol": 5}'))
    unknown = msgspec.structs.replace(good[0], id="x:2", type="md.future_thing")
    newer = msgspec.structs.replace(good[0], id="x:3", v=99)
    recorder, logs = deliver([good[0], invalid, unknown, good[1], newer, unknown, invalid, good[2]])
    assert [p.trade_id for p in recorder.payloads] == ["0", "1", "2"]  # type: ignore[attr-defined]
    skipped = [(e["event"], e.get("id")) for e in logs if e["event"].endswith("_skipped")]
    assert skipped == [
        ("invalid_payload_skipped", "x:1"),
        ("unknown_type_skipped", "x:2"),
        ("unknown_type_skipped", "x:3"),
        ("invalid_payload_skipped", "x:1"),
    ]


def test_old_and_new_versions_of_a_type_interleaved_decode_alike() -> None:
    """v1 records (upcast) and v2 records (decoded directly) of system.alert, alternating,
    each reach the actor as the v2 Struct with their own content."""
    v1 = msgspec.Raw(b'{"level": "warn", "message": "old"}')
    v2 = msgspec.Raw(b'{"severity": "critical", "code": "DRIFT", "message": "new"}')
    records = []
    for i, (v, raw) in enumerate([(2, v2), (1, v1), (2, v2), (1, v1)]):
        env = Envelope(
            id=f"ops:{i + 1}", topic="system.alert", type="system.alert", v=v, market=None,
            ts_event=1, ts_init=1, source="ops", source_seq=i + 1, payload=raw,
        )  # fmt: skip
        records.append(stamp(env, i, i + 1, 1))
    recorder, _ = deliver(records)
    got = [(type(p).__name__, p.severity, p.code, p.message) for p in recorder.payloads]  # type: ignore[attr-defined]
    assert got == [
        ("Alert", "critical", "DRIFT", "new"),
        ("Alert", "warning", "UNSPECIFIED", "old"),
        ("Alert", "critical", "DRIFT", "new"),
        ("Alert", "warning", "UNSPECIFIED", "old"),
    ]
