"""The step/wave scheduler of DESIGN §7, pure: records and timers in, steps out.

Time advances in *steps*. A step at time ``T`` holds:

1. every timer due at or before ``T``, in the canonical order ``(due_ns, name, owner)``;
2. then every input record whose ``ts_event`` is ``T``, in gseq order.

``T`` is the ``ts_event`` of the next input record, or the due time of the earliest
timer when that comes first (a step with timers only). Inputs must come in
``(ts_event, gseq)`` order (``LogReader.read_in_time_order``): gseq order is not time
order across topics (data imported later can be older), and an input dated before
the clock is refused with :class:`InputBehindClockError` rather than handled late.

Within a step, outputs are delivered in *waves* (:func:`wave_order`): wave 0 is the
step's input; every output of wave *n* forms wave *n+1*, ordered by
``(ts_event, source, source_seq)``; the step ends when a wave is empty. The host runs
the waves; this module only plans steps and orders waves, so the same rule serves the
in-process host and the distributed time authority.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from operator import attrgetter
from typing import Any, Protocol, TypeVar

import msgspec

from tickertape.errors import BiasError
from tickertape.schemas.envelope import Envelope, Record
from tickertape.timeauthority.timers import ScheduledTimer

E = TypeVar("E", Envelope, Record)


class InputBehindClockError(BiasError):
    """An input record is dated before the replay's clock (inputs out of time order).

    Attributes:
        id: the record's id.
        topic: its topic.
        gseq: its gseq.
        ts_event: its time, ns.
        clock_ns: the clock, ns.
    """

    def __init__(self, id: str, topic: str, gseq: int, ts_event: int, clock_ns: int) -> None:
        self.id = id
        self.topic = topic
        self.gseq = gseq
        self.ts_event = ts_event
        self.clock_ns = clock_ns
        super().__init__(
            f"input {id!r} on {topic!r} (gseq {gseq}) has ts_event {ts_event}, before the "
            f"replay clock {clock_ns}: inputs must come in (ts_event, gseq) order"
        )


class TimerSource(Protocol):
    """Where the planner learns about timers: a :class:`TimerQueue`, or the time
    authority's view of remote actors' timers (which they fire themselves)."""

    def next_due(self) -> int | None:
        """The earliest due time, or None."""
        ...

    def pop_due(self, until_ns: int) -> list[ScheduledTimer]:
        """Remove and return the timers due at or before ``until_ns``, canonical order."""
        ...


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """One step of simulated time.

    Attributes:
        index: 0-based step number within the run.
        time_ns: the step's time; the clock reads this during the step.
        timers: timers due in this step, canonical order (one that a handler earlier
            in the step cancels or replaces does not fire: ``TimerQueue.withdrawn``).
        events: input records of this step, gseq order.
    """

    index: int
    time_ns: int
    timers: list[ScheduledTimer]
    events: list[Record]


wave_key: Callable[[Any], tuple[int, str, int]] = attrgetter("ts_event", "source", "source_seq")
"""The canonical wave order's sort key, ``(ts_event, source, source_seq)`` of an
:class:`Envelope` or :class:`Record` (for sorting a wave in place: ``wave.sort(key=wave_key)``)."""


def wave_order(outputs: Iterable[E]) -> list[E]:
    """Return a wave's events in the canonical order ``(ts_event, source, source_seq)``."""
    return sorted(outputs, key=wave_key)


class StepPlanner:
    """Plans the next step from an input stream and a timer queue.

    The planner consults the timer queue each time it plans a step, so timers set
    during a step are honoured by the next one.

    Args:
        inputs: input records in (ts_event, gseq) order (``LogReader.read_in_time_order``).
        timers: the host's timer queue (or any :class:`TimerSource`).
        start_ns: the clock's initial time; nothing is planned before it.
        end_ns: no step is planned after this time (inclusive bound). With None, the
            run ends with the inputs: timers due after the last input never fire
            (otherwise an interval timer would keep a replay running for ever); one
            due at the last input's time (set for "now") still gets its step.
    """

    def __init__(
        self,
        inputs: Iterable[Record],
        timers: TimerSource,
        *,
        start_ns: int = 0,
        end_ns: int | None = None,
    ) -> None:
        self._inputs: Iterator[Record] = iter(inputs)
        self._timers = timers
        self._now = start_ns
        self._end = end_ns
        self._peeked: Record | None = None
        self._exhausted = False
        self._index = 0

    @property
    def now_ns(self) -> int:
        """Time of the last planned step (or ``start_ns``)."""
        return self._now

    def next_step(self) -> Step | None:
        """Return the next step, or None when inputs and timers (up to ``end_ns``) are done.

        Raises:
            InputBehindClockError: an input is dated before the clock.
        """
        record = self._peeked if self._peeked is not None else self._peek()
        now = self._now
        if record is not None and record.ts_event < now:
            raise InputBehindClockError(record.id, record.topic, record.gseq, record.ts_event, now)
        t_timer = self._timers.next_due()
        if t_timer is not None and t_timer < now:
            t_timer = now
        if record is None:
            # Without an end, the run ends with the inputs: timers due after the last
            # one never fire, but one due at the clock (set for "now") still does.
            if t_timer is None or (self._end is None and t_timer > now):
                return None
            t = t_timer
        else:
            t = record.ts_event
            if t_timer is not None and t_timer < t:
                t = t_timer
        if self._end is not None and t > self._end:
            return None
        events: list[Record] = []
        if record is not None and record.ts_event == t:
            # The step's inputs: this record and the ones after it stamped ``t``.
            events.append(record)
            self._peeked = None
            for record in self._inputs:
                if record.ts_event != t:
                    if record.ts_event < t:
                        raise InputBehindClockError(
                            record.id, record.topic, record.gseq, record.ts_event, t
                        )
                    self._peeked = record
                    break
                events.append(record)
            else:
                self._exhausted = True
        timers = self._timers.pop_due(t) if t_timer is not None and t_timer <= t else []
        self._now = t
        step = Step(index=self._index, time_ns=t, timers=timers, events=events)
        self._index += 1
        return step

    def _peek(self) -> Record | None:
        if self._peeked is None and not self._exhausted:
            try:
                self._peeked = next(self._inputs)
            except StopIteration:
                self._exhausted = True
        return self._peeked
