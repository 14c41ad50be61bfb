"""Time queries answered by the live time authority, over a real router."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from tests.router.support import running_router
from tickertape.client import Client
from tickertape.timeauthority.query import TimeQueryError, TimeSample, query_time
from tickertape.timeauthority.service import IDENTITY, LiveClockService


async def test_the_authority_answers_with_its_clock(tmp_path: Path) -> None:
    """The reply carries the authority's clock; the offset is within the round trip."""
    async with (
        running_router(tmp_path) as router,
        Client(router.url, IDENTITY) as ta,
        Client(router.url, "risk") as asker,
    ):
        service = LiveClockService(ta, tick_s=3600.0)
        task = asyncio.create_task(service.run(), name="clock")
        try:
            before = time.time_ns()
            async with asyncio.timeout(10):
                sample = await query_time(asker, samples=3)
            after = time.time_ns()
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert before <= sample.authority_ns <= after
    assert 0 < sample.rtt_ns <= after - before
    # Same machine, same clock: the estimate is off by at most half the round trip.
    assert abs(sample.offset_ns) <= sample.rtt_ns // 2 + 1
    assert service.queries == 3


async def test_no_authority_is_a_clear_error(tmp_path: Path) -> None:
    async with running_router(tmp_path) as router, Client(router.url, "risk") as asker:
        with pytest.raises(TimeQueryError, match="no time authority answered"):
            await query_time(asker, samples=1, timeout_s=0.3)


@pytest.mark.slow
def test_tape_clock_query_against_a_tape_clock_process(tmp_path: Path) -> None:
    """`tape clock query` gets its answer from a real `tape clock --mode live` process."""
    from tests.router.support import free_port, kill, tape, wait_port

    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    router = tape("router", "--port", str(port), "--data-dir", str(tmp_path))
    clock = None
    try:
        wait_port(port)
        clock = tape("clock", "--mode", "live", "--router", url)
        deadline = time.monotonic() + 20
        while True:
            out = subprocess.run(
                [
                    str(Path(sys.executable).with_name("tape")),
                    "clock",
                    "query",
                    "--router",
                    url,
                    "--json",
                ],
                capture_output=True,
                check=False,
                timeout=30,
            )
            if out.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert out.returncode == 0, out.stderr.decode()
        sample = msgspec.json.decode(out.stdout, type=TimeSample)
        assert abs(sample.offset_ns) <= sample.rtt_ns // 2 + 1
    finally:
        if clock is not None:
            kill(clock)
        kill(router)
