"""Tests of the pure step/wave scheduler (DESIGN §7)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickertape.schemas.envelope import Record
from tickertape.timeauthority.scheduler import InputBehindClockError, StepPlanner, wave_order
from tickertape.timeauthority.timers import TimerQueue


def rec(gseq: int, ts: int, topic: str = "md.trade.crypto.X", source: str = "md") -> Record:
    return Record(
        id=f"{source}:{gseq}",
        topic=topic,
        type="md.trade",
        v=1,
        market="crypto",
        ts_event=ts,
        ts_init=ts,
        source=source,
        source_seq=gseq,
        causation_id=None,
        correlation_id=None,
        payload=msgspec.Raw(b"{}"),
        offset=gseq - 1,
        gseq=gseq,
        ts_log=ts,
    )


def test_a_step_is_all_inputs_sharing_the_next_ts_event() -> None:
    """Inputs with equal ts_event form one step; the next time starts the next step."""
    planner = StepPlanner([rec(1, 10), rec(2, 10), rec(3, 20)], TimerQueue())
    s0, s1 = planner.next_step(), planner.next_step()
    assert s0 is not None
    assert s1 is not None
    assert (s0.time_ns, [r.gseq for r in s0.events]) == (10, [1, 2])
    assert (s1.time_ns, [r.gseq for r in s1.events]) == (20, [3])
    assert planner.next_step() is None


def test_timers_before_the_next_input_get_their_own_step() -> None:
    """A timer due before the next input is a step of its own; one due at it joins it."""
    timers = TimerQueue()
    timers.set("a", "early", now_ns=0, at_ns=5)
    timers.set("a", "same", now_ns=0, at_ns=10)
    planner = StepPlanner([rec(1, 10)], timers)
    s0, s1 = planner.next_step(), planner.next_step()
    assert s0 is not None
    assert s1 is not None
    assert (s0.time_ns, [t.name for t in s0.timers], s0.events) == (5, ["early"], [])
    assert (s1.time_ns, [t.name for t in s1.timers], [r.gseq for r in s1.events]) == (
        10,
        ["same"],
        [1],
    )


@pytest.mark.parametrize(
    "records",
    [
        [rec(1, 10), rec(2, 7, topic="md.trade.crypto.Y")],
        [rec(1, 10), rec(2, 12), rec(3, 11, topic="md.trade.crypto.Y")],
    ],
)
def test_input_behind_the_clock_is_a_bias_error(records: list[Record]) -> None:
    """An input dated before the clock (out of time order) is refused, never handled late."""
    planner = StepPlanner(records, TimerQueue())

    def run_all() -> None:
        while planner.next_step() is not None:
            pass

    with pytest.raises(InputBehindClockError) as info:
        run_all()
    assert info.value.gseq == records[-1].gseq


def test_end_bound_stops_timers() -> None:
    """No step is planned after end_ns, even for armed timers."""
    timers = TimerQueue()
    timers.set("a", "hb", now_ns=0, interval_ns=10)
    planner = StepPlanner([], timers, end_ns=35)
    times = []
    while (step := planner.next_step()) is not None:
        times.append(step.time_ns)
    assert times == [10, 20, 30]


def test_wave_order_is_ts_event_source_source_seq() -> None:
    """Wave outputs are sorted by (ts_event, source, source_seq)."""
    wave = [
        rec(3, 5, source="b"),
        rec(2, 5, source="a"),
        rec(1, 4, source="z"),
        rec(1, 5, source="a"),
    ]
    assert [(r.ts_event, r.source, r.source_seq) for r in wave_order(wave)] == [
        (4, "z", 1),
        (5, "a", 1),
        (5, "a", 2),
        (5, "b", 3),
    ]


@given(st.lists(st.integers(0, 100), max_size=40))
def test_steps_never_go_back_and_lose_nothing(times: list[int]) -> None:
    """Step times never decrease; every input is delivered once, in the step of its time."""
    records = sorted(
        (rec(i + 1, t) for i, t in enumerate(times)), key=lambda r: (r.ts_event, r.gseq)
    )
    planner = StepPlanner(records, TimerQueue())
    seen: list[int] = []
    last = -1
    while (step := planner.next_step()) is not None:
        assert step.time_ns >= last
        last = step.time_ns
        assert all(r.ts_event == step.time_ns for r in step.events)
        seen.extend(r.gseq for r in step.events)
    assert seen == [r.gseq for r in records]


def test_timers_due_later_stay_armed_through_input_steps() -> None:
    """Steps of inputs before a timer's time carry no timers and leave it armed; it fires
    in its own step, and a timer set meanwhile is honoured by the next plan."""
    timers = TimerQueue()
    timers.set("a", "later", now_ns=0, at_ns=15)
    planner = StepPlanner([rec(1, 10), rec(2, 20)], timers)
    s0 = planner.next_step()
    assert s0 is not None
    assert (s0.time_ns, s0.timers, [r.gseq for r in s0.events]) == (10, [], [1])
    assert timers.next_due() == 15
    timers.set("b", "meanwhile", now_ns=10, at_ns=12)
    plan = []
    while (step := planner.next_step()) is not None:
        plan.append((step.time_ns, [t.name for t in step.timers], [r.gseq for r in step.events]))
    assert plan == [(12, ["meanwhile"], []), (15, ["later"], []), (20, [], [2])]
