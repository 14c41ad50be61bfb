"""A minimal deterministic host for actor tests: a settable clock, timers, recorded outputs."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import msgspec
import structlog

from tickertape.actors.base import Actor, Event, Timer
from tickertape.errors import BiasError, ClockError
from tickertape.schemas.envelope import Market, Record
from tickertape.schemas.registry import encode_payload, schema_key


class FakeClock:
    """Simulated time with one-shot timers (the subset of the Clock protocol actors use)."""

    def __init__(self, now_ns: int = 0) -> None:
        self.now = now_ns
        self.timers: dict[str, int] = {}

    def now_ns(self) -> int:
        return self.now

    def set_timer(
        self, name: str, *, at_ns: int | None = None, interval_ns: int | None = None
    ) -> None:
        if at_ns is None or interval_ns is not None or at_ns < self.now:
            raise ClockError(f"bad timer {name}: at {at_ns}, now {self.now}")
        self.timers[name] = at_ns

    def cancel_timer(self, name: str) -> None:
        self.timers.pop(name, None)


class Published(msgspec.Struct, frozen=True):
    topic: str
    payload: Any
    market: str | None
    ts_event: int


class FakeContext:
    """Records publishes; refuses look-ahead like a real host."""

    def __init__(self, name: str) -> None:
        self.clock = FakeClock()
        self.random = random.Random(0)
        self.log = structlog.get_logger("test")
        self.actor_name = name
        self.published: list[Published] = []

    def publish(
        self,
        topic: str,
        payload: msgspec.Struct,
        *,
        market: Market | None,
        ts_event: int | None = None,
        causation: Event | None = None,
        correlation_id: str | None = None,
    ) -> str:
        ts = self.clock.now if ts_event is None else ts_event
        if ts > self.clock.now:
            raise BiasError(f"look-ahead: {topic} at {ts} > clock {self.clock.now}")
        self.published.append(Published(topic, payload, market, ts))
        return f"{self.actor_name}:{len(self.published)}"


def make_event(
    topic: str, payload: msgspec.Struct, market: Market | None, ts_event: int, gseq: int
) -> Event:
    """Wrap a payload as a stored event."""
    type_, v = schema_key(payload)
    record = Record(
        id=f"test:{gseq}",
        topic=topic,
        type=type_,
        v=v,
        market=market,
        ts_event=ts_event,
        ts_init=ts_event,
        source="test",
        source_seq=gseq,
        causation_id=None,
        correlation_id=None,
        payload=encode_payload(payload),
        offset=gseq - 1,
        gseq=gseq,
        ts_log=ts_event,
    )
    return Event(record=record, payload=payload)


def advance(actor: Actor, ctx: FakeContext, to_ns: int) -> None:
    """Fire every timer due by ``to_ns`` in (time, name) order, then set the clock to it."""
    while True:
        due = sorted((at, name) for name, at in ctx.clock.timers.items() if at <= to_ns)
        if not due:
            break
        at, name = due[0]
        del ctx.clock.timers[name]
        ctx.clock.now = max(ctx.clock.now, at)
        actor.on_timer(Timer(name, at), ctx)  # type: ignore[arg-type]
    ctx.clock.now = max(ctx.clock.now, to_ns)


def run(
    actor: Actor, ctx: FakeContext, events: Iterable[Event], until_ns: int | None = None
) -> None:
    """Deliver events in order, advancing the clock to each one's ts_event first."""
    for event in events:
        advance(actor, ctx, event.ts_event)
        actor.on_event(event, ctx)  # type: ignore[arg-type]
    if until_ns is not None:
        advance(actor, ctx, until_ns)


def restart(actor: Actor, ctx: FakeContext, fresh: Actor) -> FakeContext:
    """Restore ``fresh`` from ``actor``'s snapshot as a replay host resumes it: the state
    through msgpack, the clock and the timers carried over, no ``on_start``.

    Returns:
        The context to run ``fresh`` with.
    """
    state = actor.snapshot()
    assert state is not None
    fresh.restore(msgspec.msgpack.encode(state))
    resumed = FakeContext(ctx.actor_name)
    resumed.clock.now = ctx.clock.now
    resumed.clock.timers = dict(ctx.clock.timers)
    return resumed
