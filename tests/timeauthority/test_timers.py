"""Tests of the timer queue."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickertape.errors import ClockError
from tickertape.timeauthority.timers import TimerQueue


def test_timers_pop_in_canonical_order() -> None:
    """Timers due together fire ordered by (due, name, owner)."""
    q = TimerQueue()
    q.set("b", "x", now_ns=0, at_ns=10)
    q.set("a", "x", now_ns=0, at_ns=10)
    q.set("a", "w", now_ns=0, at_ns=10)
    q.set("a", "a", now_ns=0, at_ns=5)
    fired = q.pop_due(10)
    assert [(t.due_ns, t.name, t.owner) for t in fired] == [
        (5, "a", "a"),
        (10, "w", "a"),
        (10, "x", "a"),
        (10, "x", "b"),
    ]
    assert q.next_due() is None


def test_replacing_a_timer_drops_the_old_one() -> None:
    """Setting a timer with an existing name replaces it."""
    q = TimerQueue()
    q.set("a", "t", now_ns=0, at_ns=10)
    q.set("a", "t", now_ns=0, at_ns=30)
    assert q.next_due() == 30
    assert len(q) == 1


def test_cancel_is_silent_for_unknown_timers() -> None:
    """Cancelling removes the timer; cancelling an unknown one is not an error."""
    q = TimerQueue()
    q.set("a", "t", now_ns=0, at_ns=10)
    q.cancel("a", "t")
    q.cancel("a", "nope")
    assert q.pop_due(100) == []


def test_interval_timer_rearms_without_drift() -> None:
    """An interval timer fires every period from when it was set."""
    q = TimerQueue()
    q.set("a", "hb", now_ns=100, interval_ns=10)
    dues = [t.due_ns for _ in range(3) for t in q.pop_due(q.next_due() or 0)]
    assert dues == [110, 120, 130]


@pytest.mark.parametrize(
    ("at_ns", "interval_ns"), [(None, None), (5, 5), (4, None), (None, 0), (None, -1)]
)
def test_bad_timers_are_refused(at_ns: int | None, interval_ns: int | None) -> None:
    """Both/neither argument, a past time or a non-positive interval raise ClockError."""
    with pytest.raises(ClockError):
        TimerQueue().set("a", "t", now_ns=5, at_ns=at_ns, interval_ns=interval_ns)


@given(st.lists(st.tuples(st.integers(0, 50), st.sampled_from("abc"), st.sampled_from("xy"))))
def test_pop_due_is_sorted_and_complete(timers: list[tuple[int, str, str]]) -> None:
    """Whatever the insertion order, pop_due returns the live timers sorted."""
    q = TimerQueue()
    expected: dict[tuple[str, str], int] = {}
    for due, name, owner in timers:
        q.set(owner, name, now_ns=0, at_ns=due)
        expected[(owner, name)] = due
    fired = q.pop_due(50)
    assert [(t.due_ns, t.name, t.owner) for t in fired] == sorted(
        (due, name, owner) for (owner, name), due in expected.items()
    )
