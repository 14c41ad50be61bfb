"""Silence timers live: the market-data actor hosted by the live remote host, through a
real (embedded) router and event log, on the machine's clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from tickertape.actors.marketdata import MarketDataActor, MarketDataConfig
from tickertape.actors.runtime.remote import RemoteHost
from tickertape.client import Client
from tickertape.eventlog import EventLog, LogReader
from tickertape.router.server import Router, RouterConfig
from tickertape.schemas.market import Gap, Trade
from tickertape.schemas.registry import make_envelope
from tickertape.snapshots import SnapshotPolicy

SECOND = 1_000_000_000
BOUND_S = 0.5
N = 300
CONFIG = MarketDataConfig(
    trade_patterns=[], silence_patterns=["md.trade.crypto.*"], max_silence_s={"crypto": BOUND_S}
)


async def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:  # noqa: ASYNC109
    """Wait until ``check()`` holds (polling), or fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 (test helper)
            await asyncio.sleep(0.02)


def _history(data_dir: Path) -> list[int]:
    """N BTCUSDT trades of an hour ago, 10 ms apart, with a 2-second hole after the 100th,
    stored as an importer would; returns their times."""
    start = time.time_ns() - 3_600 * SECOND
    times = [start + i * 10_000_000 + (2 * SECOND if i >= 100 else 0) for i in range(N)]
    envelopes = [
        make_envelope(
            Trade(symbol="BTCUSDT", price=60_000.0, size=0.1, side="buy", trade_id=str(i + 1)),
            topic="md.trade.crypto.BTCUSDT",
            source="import.test",
            source_seq=i + 1,
            ts_event=ts,
            market="crypto",
        )
        for i, ts in enumerate(times)
    ]
    log = EventLog.open(data_dir, "main")
    try:
        assert all(r.error is None for r in log.append(envelopes, ts_log=1))
    finally:
        log.close()
    return times


def _gaps(data_dir: Path) -> list[tuple[int, Gap]]:
    records = LogReader(data_dir, "main").read(["md.gap.>"])
    return [(r.ts_event, msgspec.json.decode(r.payload, type=Gap)) for r in records]


async def _run_until(router: Router, data_dir: Path, check: Callable[[], bool]) -> RemoteHost:
    async with Client(router.url, "marketdata") as client:
        policy = SnapshotPolicy(every_events=None, every_ns=None)
        host = RemoteHost(client, MarketDataActor(CONFIG), "marketdata", data_dir, policy=policy)
        task = asyncio.create_task(host.run(), name="marketdata")
        try:
            await eventually(lambda: (host.position >= N and check()) or task.done())
        finally:
            host.stop()
            await task
        return host


@pytest.mark.slow
async def test_live_catch_up_then_a_feed_that_stays_silent(tmp_path: Path) -> None:
    """Catching up on an hour-old history runs on event time, as a replay of it would:
    the 2-second hole in it is reported open 0.5 s after its last trade's time, then
    whole when trading resumes. Once caught up, the trades that never resumed (silent
    for an hour by then) are reported open at once, on the machine's clock, once; a
    restart from the stop's snapshot reports nothing more."""
    times = _history(tmp_path)
    router = Router(RouterConfig(port=0, data_dir=str(tmp_path), health_interval_s=3600.0))
    await router.start()
    try:
        started = time.time_ns()
        first = await _run_until(router, tmp_path, lambda: len(_gaps(tmp_path)) >= 3)
        assert first.divergences == []
        (early_at, early), (hole_at, hole), (open_at, opened) = _gaps(tmp_path)
        assert (early.last_seen, early.next_seen) == (times[99], 0)
        assert early_at == times[99] + round(BOUND_S * SECOND) + 1  # its deadline, event time
        assert (hole.last_seen, hole.next_seen) == (times[99], times[100])
        assert hole_at == times[100]
        assert (opened.last_seen, opened.next_seen) == (times[-1], 0)
        assert opened.detail.startswith("open: no event for ")
        assert open_at >= started  # reported live, on the machine's clock
        restarted = time.time_ns()
        again = await _run_until(
            router, tmp_path, lambda: time.time_ns() > restarted + 3 * round(BOUND_S * SECOND)
        )
        assert again.divergences == []
        assert len(_gaps(tmp_path)) == 3
    finally:
        await router.close()
