"""Tests of the replay time authority's pure parts (control commands, wave addressing)."""

from __future__ import annotations

from pathlib import Path

from tests.timeauthority.test_scheduler import rec
from tickertape.replay import RunSettings
from tickertape.replay.distributed import RemoteTimers, ReplayCoordinator
from tickertape.timeauthority.control import ClockControl
from tickertape.timeauthority.pacing import Pacer


def coordinator(tmp_path: Path) -> ReplayCoordinator:
    c = ReplayCoordinator(
        None,  # type: ignore[arg-type]  # the pure parts never touch the client
        tmp_path,
        RunSettings(run_id="r1"),
        ["indicators", "strategy.x"],
        config_digest="0",
        pacer=Pacer(None),
    )
    c._patterns = {"indicators": ("md.bar.>",), "strategy.x": ("indicator.>", "md.bar.1m.us.*")}
    return c


def test_pause_resume_and_speed(tmp_path: Path) -> None:
    """ctl pause holds steps, resume releases them, speed changes the pacer; other runs ignored."""
    c = coordinator(tmp_path)
    c.control(ClockControl(command="pause"))
    assert not c.resumed.is_set()
    c.control(ClockControl(command="resume", run_id="other"))
    assert not c.resumed.is_set()
    c.control(ClockControl(command="resume", run_id="r1"))
    assert c.resumed.is_set()
    c.control(ClockControl(command="speed", speed=4.0))
    assert c.pacer is not None
    assert c.pacer.speed == 4.0


def test_seek_ahead_fast_forwards_and_seek_back_is_refused(tmp_path: Path) -> None:
    """A seek ahead of the clock unpaces steps up to its target; behind it, nothing changes."""
    c = coordinator(tmp_path)
    c.now_ns = 1_000
    c.control(ClockControl(command="pause"))
    c.control(ClockControl(command="seek", time_ns=500))
    assert c.seek_to is None
    assert not c.resumed.is_set()
    c.control(ClockControl(command="seek", time_ns=5_000))
    assert c.seek_to == 5_000
    assert c.resumed.is_set()  # a seek also resumes a paused run


def test_waves_are_addressed_to_subscribers(tmp_path: Path) -> None:
    """A wave goes to the actors whose patterns match one of its topics."""
    c = coordinator(tmp_path)
    records = [
        rec(1, 10, topic="md.bar.1m.us.6EH4"),
        rec(2, 10, topic="md.trade.us.6EH4"),
        rec(3, 10, topic="md.bar.1d.us.6EH4"),
    ]
    assert c._targets({r.topic for r in records}) == ["indicators", "strategy.x"]
    assert c._targets({"md.bar.1d.us.6EH4"}) == ["indicators"]
    assert c._targets({"indicator.sma.v1.us.6EH4"}) == ["strategy.x"]
    assert c._targets({"pnl.update.portfolio"}) == []


def test_remote_timers_view() -> None:
    """The planner's timer view is the earliest reported timer; actors fire their own."""
    timers = RemoteTimers()
    timers.next = {"a": 30, "b": None, "c": 20}
    assert timers.next_due() == 20
    assert timers.pop_due(100) == []
