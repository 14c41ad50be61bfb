"""Clock reports (`report_clock`) reach the live time authority's drift check, over a
real (embedded) router."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.router.support import eventually, running_router
from tickertape.client import Client
from tickertape.eventlog import LogReader
from tickertape.schemas.envelope import Envelope
from tickertape.schemas.registry import decode_payload
from tickertape.schemas.system import ClockDrift, ClockTick
from tickertape.timeauthority.clock import LiveClock
from tickertape.timeauthority.drift import DriftMonitor
from tickertape.timeauthority.report import report_clock
from tickertape.timeauthority.service import IDENTITY, LiveClockService


async def test_reports_are_ephemeral_clock_ticks_of_the_identity(tmp_path: Path) -> None:
    """Each report is a live ClockTick on system.clock.actor.<identity> from that
    identity, with increasing source_seq, and none is stored in the log."""
    async with (
        running_router(tmp_path) as router,
        Client(router.url, IDENTITY) as listener,
        Client(router.url, "feedx") as feed,
    ):
        reports = listener.subscribe(["system.clock.actor.>"], "now", include_ephemeral=True)
        await reports.caught_up.wait()
        task = asyncio.create_task(
            report_clock(feed, lambda: 1_700_000_000_000_000_000, interval_s=0.05),
            name="reports",
        )
        got: list[Envelope] = []
        async with asyncio.timeout(10):
            async for item in reports:
                assert isinstance(item, Envelope)
                got.append(item)
                if len(got) == 3:
                    break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await reports.close()
    assert {(e.topic, e.source, e.type) for e in got} == {
        ("system.clock.actor.feedx", "feedx", "system.clock")
    }
    assert [e.source_seq for e in got] == [1, 2, 3]
    ticks = [decode_payload(e.type, e.v, e.payload) for e in got]
    assert ticks == [ClockTick(mode="live", now_ns=1_700_000_000_000_000_000)] * 3
    assert not LogReader(tmp_path, "main").topics(["system.clock.actor.>"])


@pytest.mark.slow
async def test_a_process_whose_clock_is_ahead_gets_a_drift_alert(tmp_path: Path) -> None:
    """A process reporting a clock 5 s ahead through report_clock makes the time
    authority store a system.clock.drift alert naming it."""
    async with (
        running_router(tmp_path) as router,
        Client(router.url, IDENTITY) as authority,
        Client(router.url, "feedx") as feed,
    ):
        service = LiveClockService(authority, monitor=DriftMonitor(), tick_s=0.05)
        serving = asyncio.create_task(service.run(), name="clock")
        ahead = asyncio.create_task(
            report_clock(feed, lambda: LiveClock().now_ns() + 5 * 10**9, interval_s=0.05),
            name="reports",
        )
        await eventually(lambda: service.alerts > 0, within=10)
        for task in (ahead, serving):
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    drift = list(LogReader(tmp_path, "main").read(["system.clock.drift"]))
    assert len(drift) == 1
    alert = decode_payload(drift[0].type, drift[0].v, drift[0].payload)
    assert isinstance(alert, ClockDrift)
    assert alert.actor == "feedx"
    assert alert.drift_ns > 4 * 10**9


async def test_interval_must_be_positive(tmp_path: Path) -> None:
    """A zero interval is refused with the value."""
    async with running_router(tmp_path) as router, Client(router.url, "feedx") as feed:
        with pytest.raises(ValueError, match="interval_s must be > 0, got 0"):
            await report_clock(feed, LiveClock().now_ns, interval_s=0)
