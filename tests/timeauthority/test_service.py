"""Tests of the live clock service over a real (embedded) router."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tickertape.client import Client
from tickertape.eventlog import LogReader
from tickertape.router.server import Router, RouterConfig
from tickertape.schemas.envelope import Envelope
from tickertape.schemas.registry import decode_payload, encode_payload
from tickertape.schemas.system import ClockTick
from tickertape.timeauthority.clock import LiveClock
from tickertape.timeauthority.drift import DriftMonitor
from tickertape.timeauthority.service import IDENTITY, LiveClockService


@pytest.mark.slow
async def test_drifting_actor_gets_a_durable_drift_alert(tmp_path: Path) -> None:
    """An actor reporting a clock 5 s ahead makes the authority store system.clock.drift."""
    router = Router(RouterConfig(port=0, data_dir=str(tmp_path), health_interval_s=3600.0))
    await router.start()
    try:
        async with (
            Client(router.url, IDENTITY) as ta_client,
            Client(router.url, "risk") as actor_client,
        ):
            ticks = actor_client.subscribe(["system.clock"], "now", include_ephemeral=True)
            await ticks.caught_up.wait()
            service = LiveClockService(ta_client, monitor=DriftMonitor(), tick_s=0.05)
            task = asyncio.create_task(service.run(), name="clock")
            async with asyncio.timeout(10):
                tick = await anext(ticks)
            assert isinstance(tick, Envelope)
            assert decode_payload(tick.type, tick.v, tick.payload).mode == "live"
            ahead = LiveClock().now_ns() + 5 * 10**9
            report = Envelope(
                id="risk:1",
                topic="system.clock.actor.risk",
                type="system.clock",
                v=1,
                market=None,
                ts_event=ahead,
                ts_init=ahead,
                source="risk",
                source_seq=1,
                payload=encode_payload(ClockTick(mode="live", now_ns=ahead)),
            )
            async with asyncio.timeout(10):
                while service.alerts == 0:
                    await actor_client.publish([report], ephemeral=True)
                    await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        await router.close()
    drift = list(LogReader(tmp_path, "main").read(["system.clock.drift"]))
    assert len(drift) == 1
    alert = decode_payload(drift[0].type, drift[0].v, drift[0].payload)
    assert alert.actor == "risk"
    assert alert.drift_ns > 4 * 10**9
