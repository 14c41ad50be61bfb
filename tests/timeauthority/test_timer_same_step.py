"""Timers touched in the step they fall due, and timers set for "now" in the last step.

docs/replay.md, "Time": setting an existing name replaces a timer, cancelling cancels
it, and a timer due at the current time fires after the current step, in a step of its
own at the same time. So a timer that a handler earlier in the same step cancels or
replaces does not fire from its old arming (the replacement fires at its own time; an
interval timer's own re-arm is not a replacement), and a timer set for "now" in the
last input step fires even without an end bound.

The actors here also run distributed (tests/replay/test_timer_same_step_distributed.py).
"""

from __future__ import annotations

import msgspec
import pytest

from tests.actors.runtime.sample_actors import trade_envelopes
from tests.timeauthority.test_scheduler import rec
from tickertape.actors.base import Actor, Context, Event, Timer
from tickertape.actors.runtime import InProcessHost, MemorySink
from tickertape.schemas.envelope import stamp
from tickertape.schemas.indicator import IndicatorValue
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.scheduler import StepPlanner
from tickertape.timeauthority.timers import TimerQueue

START = 1_704_067_200 * 10**9
MS = 1_000_000


class SameStepTimers(Actor):
    """Arms ``a-fill`` and ``b-timeout`` for START + 5 ms and a 5 ms ``c-beat`` (which
    cancels itself once due at 15 ms or later); ``a-fill``'s handler then does what
    :meth:`on_fill` says, to timers due in the same step. Every trade sets ``ack`` for
    "now". Each firing is recorded in ``fired`` as (name, ms after START) and published
    on ``echo.<name>`` (no actor reads it: a distributed run of these goes in batches).
    """

    name = "plain"
    subscriptions = ("md.trade.crypto.*",)

    def __init__(self, config: None = None) -> None:
        self.fired: list[tuple[str, int]] = []

    def on_start(self, ctx: Context) -> None:
        ctx.clock.set_timer("a-fill", at_ns=START + 5 * MS)
        ctx.clock.set_timer("b-timeout", at_ns=START + 5 * MS)
        ctx.clock.set_timer("c-beat", interval_ns=5 * MS)

    def on_event(self, event: Event, ctx: Context) -> None:
        ctx.clock.set_timer("ack", at_ns=ctx.clock.now_ns())

    def on_timer(self, timer: Timer, ctx: Context) -> None:
        self.fired.append((timer.name, (timer.due_ns - START) // MS))
        ctx.publish(
            f"echo.{self.name}",
            IndicatorValue(
                symbol=timer.name,
                name="timer",
                interval="tick",
                params={},
                values={},
                bar_ts=timer.due_ns,
            ),
            market="crypto",
        )
        if timer.name == "a-fill":
            self.on_fill(ctx)
        elif timer.name == "c-beat" and timer.due_ns >= START + 15 * MS:
            ctx.clock.cancel_timer("c-beat")

    def on_fill(self, ctx: Context) -> None:
        """Nothing: both timers due at 5 ms fire, and the beat goes on."""


class CancelTimers(SameStepTimers):
    """The fill cancels the timeout due in the same step."""

    name = "cancel"

    def on_fill(self, ctx: Context) -> None:
        ctx.clock.cancel_timer("b-timeout")


class ReplaceTimers(SameStepTimers):
    """The fill pushes the timeout due in the same step back by 20 ms."""

    name = "replace"

    def on_fill(self, ctx: Context) -> None:
        ctx.clock.set_timer("b-timeout", at_ns=ctx.clock.now_ns() + 20 * MS)


class RebeatTimers(SameStepTimers):
    """The fill replaces the 5 ms beat due in the same step by a 7 ms one."""

    name = "rebeat"

    def on_fill(self, ctx: Context) -> None:
        ctx.clock.set_timer("c-beat", interval_ns=7 * MS)


ACTORS = (SameStepTimers, CancelTimers, ReplaceTimers, RebeatTimers)

# 8 trades on two symbols: inputs at 0, 10, 20 and 30 ms, each followed by its "ack".
FIRED = {
    "plain": [
        ("ack", 0),
        ("a-fill", 5),
        ("b-timeout", 5),
        ("c-beat", 5),
        ("c-beat", 10),
        ("ack", 10),
        ("c-beat", 15),
        ("ack", 20),
        ("ack", 30),
    ],
    "cancel": [
        ("ack", 0),
        ("a-fill", 5),
        ("c-beat", 5),
        ("c-beat", 10),
        ("ack", 10),
        ("c-beat", 15),
        ("ack", 20),
        ("ack", 30),
    ],
    "replace": [
        ("ack", 0),
        ("a-fill", 5),
        ("c-beat", 5),
        ("c-beat", 10),
        ("ack", 10),
        ("c-beat", 15),
        ("ack", 20),
        ("b-timeout", 25),
        ("ack", 30),
    ],
    "rebeat": [
        ("ack", 0),
        ("a-fill", 5),
        ("b-timeout", 5),
        ("ack", 10),
        ("c-beat", 12),
        ("c-beat", 19),
        ("ack", 20),
        ("ack", 30),
    ],
}
"""What each actor's timers fire, (name, ms after START), over :data:`TRADES` trades."""

TRADES = 8


def run_host(actor: SameStepTimers) -> list[msgspec.Raw]:
    """Run ``actor`` alone over :data:`TRADES` trades with no end bound; return the
    payloads it stored."""
    records = [stamp(e, i, i + 1, e.ts_event) for i, e in enumerate(trade_envelopes(TRADES))]
    sink = MemorySink()
    host = InProcessHost(sink, clock=SimulatedClock(START))
    host.add(actor)
    host.start()
    host.run(StepPlanner(records, host.timers, start_ns=START))
    host.stop()
    return [r.payload for r in sink.records]


@pytest.mark.parametrize("cls", ACTORS, ids=lambda c: c.name)
def test_a_timer_cancelled_or_replaced_earlier_in_its_step_does_not_fire(
    cls: type[SameStepTimers],
) -> None:
    """A cancelled timer does not fire; a replaced one fires once, at its new time; an
    interval timer's own re-arm is not a replacement (the beat goes on)."""
    actor = cls()
    stored = run_host(actor)
    assert actor.fired == FIRED[cls.name]
    assert len(stored) == len(actor.fired)


def test_the_queue_withdraws_a_popped_timer_cancelled_or_set_again() -> None:
    """Timers popped for a step are withdrawn by cancel or set (not by their re-arm),
    until the next pop."""
    q = TimerQueue()
    for name in ("a", "b", "c"):
        q.set("x", name, now_ns=0, at_ns=5)
    q.set("x", "beat", now_ns=0, interval_ns=5)
    q.set("y", "a", now_ns=0, at_ns=5)
    popped = q.pop_due(5)
    assert [(t.owner, t.name) for t in popped] == [
        ("x", "a"),
        ("y", "a"),
        ("x", "b"),
        ("x", "beat"),
        ("x", "c"),
    ]
    assert not any(q.withdrawn(t) for t in popped)  # the beat's re-arm withdraws nothing
    q.cancel("x", "b")
    q.set("x", "c", now_ns=5, at_ns=9)
    assert [(t.owner, t.name) for t in popped if q.withdrawn(t)] == [("x", "b"), ("x", "c")]
    assert [(t.name, t.due_ns) for t in q.pop_due(10)] == [("c", 9), ("beat", 10)]
    assert not any(q.withdrawn(t) for t in popped)


def test_a_timer_for_now_in_the_last_input_step_gets_its_step_without_an_end() -> None:
    """Without end_ns the run ends with the inputs, yet a timer set for "now" in the last
    input step has a step of its own at that time; a later one does not."""
    timers = TimerQueue()
    planner = StepPlanner([rec(1, 10)], timers)
    step = planner.next_step()
    assert step is not None
    assert (step.time_ns, [r.gseq for r in step.events]) == (10, [1])
    timers.set("a", "now", now_ns=10, at_ns=10)
    timers.set("a", "later", now_ns=10, at_ns=11)
    step = planner.next_step()
    assert step is not None
    assert (step.time_ns, [t.name for t in step.timers], step.events) == (10, ["now"], [])
    assert planner.next_step() is None
    assert timers.next_due() == 11
