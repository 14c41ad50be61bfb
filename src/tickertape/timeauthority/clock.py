"""Clocks (DESIGN §7): a live clock that never goes backwards, a simulated clock.

Two time sources share one small interface, :class:`TimeSource` (``now_ns()``):

- :class:`LiveClock` reads the machine's clock and guards it: when the system clock
  steps back (NTP, a VM pause) it keeps returning the last value until the wall clock
  catches up, so time is monotonic.
- :class:`SimulatedClock` is moved forward by the time authority (the step scheduler)
  and refuses to move back.

An actor never sees either directly: a host gives it an :class:`ActorClock`, the
:class:`tickertape.actors.base.Clock` of one owner over a shared time source and a
shared :class:`~tickertape.timeauthority.timers.TimerQueue`.

This module is the only place, besides the services of the time authority, that reads
the wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from tickertape.errors import ClockError
from tickertape.timeauthority.timers import TimerQueue


class TimeSource(Protocol):
    """Where a clock's time comes from (ns since the Unix epoch, UTC)."""

    def now_ns(self) -> int:
        """Current time in ns; never smaller than an earlier answer."""
        ...


class LiveClock:
    """The machine's clock, guarded to never go backwards.

    Args:
        wall_ns: the wall-clock function (``time.time_ns``); injectable for tests.

    Attributes:
        regressions: how many times the wall clock was seen stepping back.
    """

    def __init__(self, wall_ns: Callable[[], int] = time.time_ns) -> None:
        self._wall_ns = wall_ns
        self._last = 0
        self.regressions = 0

    def now_ns(self) -> int:
        """Return ``max(wall clock, last answer)`` in ns."""
        now = self._wall_ns()
        if now < self._last:
            self.regressions += 1
            return self._last
        self._last = now
        return now


class SimulatedClock:
    """A clock moved by the time authority (backtest and replay).

    Args:
        start_ns: the initial time, ns.
    """

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns

    def now_ns(self) -> int:
        """Return the simulated time in ns."""
        return self._now

    def advance_to(self, t_ns: int) -> None:
        """Move the clock to ``t_ns``.

        Raises:
            ClockError: ``t_ns`` is earlier than the current time.
        """
        if t_ns < self._now:
            raise ClockError(f"simulated clock cannot go back from {self._now} to {t_ns}")
        self._now = t_ns


class ActorClock:
    """The :class:`tickertape.actors.base.Clock` of one actor.

    Args:
        owner: the actor's source identity (the timers' owner).
        source: the shared time source.
        timers: the host's shared timer queue.
    """

    __slots__ = ("_owner", "_source", "_timers")

    def __init__(self, owner: str, source: TimeSource, timers: TimerQueue) -> None:
        self._owner = owner
        self._source = source
        self._timers = timers

    def now_ns(self) -> int:
        """Current time in ns since the Unix epoch (UTC)."""
        return self._source.now_ns()

    def set_timer(
        self, name: str, *, at_ns: int | None = None, interval_ns: int | None = None
    ) -> None:
        """Fire ``on_timer`` once at ``at_ns``, or every ``interval_ns`` from now.

        A timer due at the current time fires after the current step, in a step of
        its own at the same time.

        Raises:
            ClockError: both or neither of ``at_ns``/``interval_ns`` given, ``at_ns`` in
                the past, or ``interval_ns`` ≤ 0.
        """
        self._timers.set(
            self._owner, name, now_ns=self._source.now_ns(), at_ns=at_ns, interval_ns=interval_ns
        )

    def cancel_timer(self, name: str) -> None:
        """Cancel the named timer; no error when it does not exist."""
        self._timers.cancel(self._owner, name)
