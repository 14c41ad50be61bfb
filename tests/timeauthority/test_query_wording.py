"""`tape clock query` says which side of the authority this machine's clock is on."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from tests.router.support import running_router
from tickertape.cli.main import cli
from tickertape.client import Client
from tickertape.timeauthority.clock import LiveClock
from tickertape.timeauthority.query import TimeSample
from tickertape.timeauthority.service import IDENTITY, LiveClockService


@pytest.mark.parametrize(("ahead_s", "side"), [(5, "behind"), (-5, "ahead of")])
async def test_the_sentence_and_the_json_agree_on_the_sign(
    tmp_path: Path, ahead_s: int, side: str
) -> None:
    """An authority 5 s ahead of this machine: this machine is 5 000 ms behind it, and
    ``offset_ns`` (authority − this machine) is +5 s; the other way round likewise."""
    async with running_router(tmp_path) as router, Client(router.url, IDENTITY) as ta:
        clock = LiveClock(lambda: time.time_ns() + ahead_s * 10**9)
        service = LiveClockService(ta, tick_s=3600.0, clock=clock)
        task = asyncio.create_task(service.run(), name="clock")
        try:
            ask = ["clock", "query", "--router", router.url, "--samples", "2"]
            text = await asyncio.to_thread(CliRunner().invoke, cli, ask)
            as_json = await asyncio.to_thread(CliRunner().invoke, cli, [*ask, "--json"])
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert text.exit_code == 0, text.output
    found = re.search(r"this machine is (\d+\.\d+) ms (behind|ahead of) it", text.output)
    assert found is not None, text.output
    assert found.group(2) == side
    assert abs(float(found.group(1)) - 5_000) < 500
    assert as_json.exit_code == 0, as_json.output
    sample = msgspec.json.decode(as_json.output, type=TimeSample)
    assert abs(sample.offset_ns - ahead_s * 10**9) < 500_000_000
