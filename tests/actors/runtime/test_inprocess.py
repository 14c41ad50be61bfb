"""Tests of the in-process host: waves, timers, snapshots, failures."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec
import pytest

from tests.actors.runtime.sample_actors import MeanActor, SignalActor, trade_envelopes
from tickertape.actors.base import Actor, Context, Event
from tickertape.actors.runtime import (
    ActorFailedError,
    InProcessHost,
    LookAheadError,
    MemorySink,
)
from tickertape.errors import ConfigError
from tickertape.schemas.envelope import stamp
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
