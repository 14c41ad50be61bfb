"""Named timers of many owners, in canonical firing order (DESIGN §7).

A :class:`TimerQueue` holds the timers every actor of a host has set through its
clock. Timers are keyed by (owner, name): setting a timer with an existing name
replaces it. They fire in the canonical order ``(due_ns, name, owner)``; an interval
timer is re-armed at ``due_ns + interval_ns`` when it fires, so its phase never drifts.

The queue is a heap with lazy deletion: replacing or cancelling a timer leaves its old
heap entry behind, marked stale by a generation number, and :meth:`TimerQueue.pop_due`
skips it. Every operation is O(log n).

:meth:`TimerQueue.pop_due` takes a step's timers out before any of them fires, so a
handler of the step can still cancel or replace (set again) one due later in the same
step: the queue then reports it :meth:`~TimerQueue.withdrawn`, and the host skips it
(the replacement fires at its own time). An interval timer's own re-arm is not a
replacement.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

import msgspec

from tickertape.errors import ClockError


class ScheduledTimer(msgspec.Struct, frozen=True, kw_only=True, order=True):
    """One armed timer.

    Attributes:
        due_ns: when it fires, ns since the Unix epoch.
        name: the timer's name (unique per owner).
        owner: the actor (source identity) that set it.
        interval_ns: period for a repeating timer, or None for a one-shot timer.
    """

    due_ns: int
    name: str
    owner: str
    interval_ns: int | None = None


class TimerQueue:
    """Timers of every owner, popped in the canonical order ``(due_ns, name, owner)``."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, str, str, int]] = []
        self._live: dict[tuple[str, str], tuple[int, ScheduledTimer]] = {}
        self._generation = 0
        # (owner, name) of the timers the last pop_due returned, and of those among them
        # cancelled or replaced since (they must not fire).
        self._popped: set[tuple[str, str]] = set()
        self._withdrawn: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        return len(self._live)

    def set(
        self,
        owner: str,
        name: str,
        *,
        now_ns: int,
        at_ns: int | None = None,
        interval_ns: int | None = None,
    ) -> ScheduledTimer:
        """Arm (or replace) ``owner``'s timer ``name``.

        Args:
            owner: the actor's source identity.
            name: the timer's name; an existing timer of that name is replaced.
            now_ns: the owner's current time, ns.
            at_ns: fire once at this time (≥ ``now_ns``).
            interval_ns: fire every ``interval_ns`` (> 0), first at ``now_ns + interval_ns``.

        Returns:
            The armed timer.

        Raises:
            ClockError: both or neither of ``at_ns``/``interval_ns`` given, ``at_ns``
                earlier than ``now_ns``, or ``interval_ns`` ≤ 0.
        """
        if (at_ns is None) == (interval_ns is None):
            raise ClockError(f"timer {name!r} of {owner!r}: give exactly one of at_ns, interval_ns")
        if interval_ns is not None:
            if interval_ns <= 0:
                raise ClockError(
                    f"timer {name!r} of {owner!r}: interval_ns must be > 0, got {interval_ns}"
                )
            timer = ScheduledTimer(
                due_ns=now_ns + interval_ns, name=name, owner=owner, interval_ns=interval_ns
            )
        else:
            assert at_ns is not None
            if at_ns < now_ns:
                raise ClockError(
                    f"timer {name!r} of {owner!r}: at_ns {at_ns} is in the past (now {now_ns})"
                )
            timer = ScheduledTimer(due_ns=at_ns, name=name, owner=owner)
        self._arm(timer)
        self._withdraw(owner, name)
        return timer

    def restore(self, timers: Iterable[ScheduledTimer]) -> None:
        """Arm timers taken from a snapshot (replacing same-named ones)."""
        for timer in timers:
            self._arm(timer)

    def cancel(self, owner: str, name: str) -> None:
        """Cancel ``owner``'s timer ``name``; no error when there is none."""
        self._live.pop((owner, name), None)
        self._withdraw(owner, name)

    def next_due(self) -> int | None:
        """Return the earliest due time, or None when no timer is armed."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, until_ns: int) -> list[ScheduledTimer]:
        """Remove and return every timer due at or before ``until_ns``, in canonical order.

        Interval timers are re-armed for their next period (which is after
        ``until_ns`` unless the period is shorter than the gap; each firing is
        returned once per call, the next one comes from the next call).

        Until the next call, a returned timer that :meth:`cancel` or :meth:`set` (of
        its name) touches is :meth:`withdrawn`: the host must not fire it.
        """
        fired: list[ScheduledTimer] = []
        rearm: list[ScheduledTimer] = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > until_ns:
                break
            _, name, owner, _ = heapq.heappop(self._heap)
            _, timer = self._live.pop((owner, name))
            fired.append(timer)
            if timer.interval_ns is not None:
                rearm.append(
                    ScheduledTimer(
                        due_ns=timer.due_ns + timer.interval_ns,
                        name=name,
                        owner=owner,
                        interval_ns=timer.interval_ns,
                    )
                )
        for timer in rearm:
            self._arm(timer)
        if fired or self._popped:  # (nothing popped, nothing withdrawn: no new sets)
            self._popped = {(t.owner, t.name) for t in fired}
            self._withdrawn = set()
        return fired

    def withdrawn(self, timer: ScheduledTimer) -> bool:
        """True when ``timer``, returned by the last :meth:`pop_due`, has been cancelled
        or replaced since (by a handler that ran earlier in the same step): it must not
        fire. An interval timer's re-arm by :meth:`pop_due` does not withdraw it."""
        return (timer.owner, timer.name) in self._withdrawn

    def timers_of(self, owner: str) -> list[ScheduledTimer]:
        """Return ``owner``'s armed timers, sorted (for snapshots)."""
        return sorted(t for (o, _), (_, t) in self._live.items() if o == owner)

    def _arm(self, timer: ScheduledTimer) -> None:
        self._generation += 1
        self._live[(timer.owner, timer.name)] = (self._generation, timer)
        heapq.heappush(self._heap, (timer.due_ns, timer.name, timer.owner, self._generation))

    def _withdraw(self, owner: str, name: str) -> None:
        if (owner, name) in self._popped:
            self._withdrawn.add((owner, name))

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap:
            _, name, owner, generation = heap[0]
            live = self._live.get((owner, name))
            if live is not None and live[0] == generation:
                return
            heapq.heappop(heap)
