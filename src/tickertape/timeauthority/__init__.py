"""The time authority: clocks, timers, the step/wave scheduler (DESIGN §7), the service."""

from tickertape.timeauthority.clock import ActorClock, LiveClock, SimulatedClock, TimeSource
from tickertape.timeauthority.scheduler import Step, StepPlanner, wave_order
from tickertape.timeauthority.timers import ScheduledTimer, TimerQueue

__all__ = [
    "ActorClock",
    "LiveClock",
    "ScheduledTimer",
    "SimulatedClock",
    "Step",
    "StepPlanner",
    "TimeSource",
    "TimerQueue",
    "wave_order",
]
