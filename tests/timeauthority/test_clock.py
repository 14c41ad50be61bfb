"""Tests of the live, simulated and actor clocks."""

from __future__ import annotations

import pytest

from tickertape.errors import ClockError
from tickertape.timeauthority.clock import ActorClock, LiveClock, SimulatedClock
from tickertape.timeauthority.timers import TimerQueue


def test_live_clock_never_goes_backwards() -> None:
    """When the wall clock steps back, the live clock holds its last value."""
    readings = iter([100, 200, 150, 180, 250])
    clock = LiveClock(lambda: next(readings))
    assert [clock.now_ns() for _ in range(5)] == [100, 200, 200, 200, 250]
    assert clock.regressions == 2


def test_live_clock_reads_the_machine_clock() -> None:
    """The default live clock is close to time.time_ns and monotonic."""
    clock = LiveClock()
    a, b = clock.now_ns(), clock.now_ns()
    assert 1_600_000_000 * 10**9 < a <= b


def test_simulated_clock_refuses_to_go_back() -> None:
    """advance_to an earlier time raises ClockError; the same time is allowed."""
    clock = SimulatedClock(10)
    clock.advance_to(10)
    clock.advance_to(20)
    with pytest.raises(ClockError):
        clock.advance_to(19)
    assert clock.now_ns() == 20


def test_actor_clock_sets_timers_relative_to_its_time() -> None:
    """An actor's interval timer starts from the shared clock's time."""
    sim = SimulatedClock(1_000)
    timers = TimerQueue()
    clock = ActorClock("a", sim, timers)
    clock.set_timer("hb", interval_ns=10)
    clock.set_timer("once", at_ns=1_005)
    clock.cancel_timer("once")
    assert timers.timers_of("a")[0].due_ns == 1_010
    assert len(timers) == 1
    with pytest.raises(ClockError):
        clock.set_timer("late", at_ns=999)
