"""The live feed host's silences across a crash that split an event from its gap: the
log as the dead process left it (real files, an embedded router), then the host
restarted on it with no venue to reach."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from tests.router.support import eventually
from tests.system.processes import free_port
from tickertape.actors.marketdata.actor import LiveFeedConfig
from tickertape.actors.marketdata.binance_client import LiveMarketDataHost
from tickertape.client import Client
from tickertape.eventlog import EventLog, LogReader
from tickertape.router.server import Router, RouterConfig
from tickertape.schemas.envelope import Record
from tickertape.schemas.market import Gap, Trade
from tickertape.schemas.registry import make_envelope

pytestmark = pytest.mark.slow

SECOND = 1_000_000_000
BOUND_S = 1.0
TRADES = "md.trade.crypto.BTCUSDT"
GAPS = "md.gap.crypto.BTCUSDT"


def _trade(trade_id: int, ts_event: int, ts_init: int, seq: int) -> object:
    trade = Trade(symbol="BTCUSDT", price=60_000.0, size=0.1, side="buy", trade_id=str(trade_id))
    return make_envelope(
        trade,
        topic=TRADES,
        source="marketdata",
        source_seq=seq,
        ts_event=ts_event,
        ts_init=ts_init,
        market="crypto",
    )


def _gap_records(data_dir: Path) -> list[tuple[Record, Gap]]:
    reader = LogReader(data_dir, "main")
    if not reader.topics([GAPS]):
        return []
    return [(r, msgspec.json.decode(r.payload, type=Gap)) for r in reader.read([GAPS])]


async def _run_host(
    router: Router,
    data_dir: Path,
    until: Callable[[], bool],
    max_silence_s: dict[str, float] | None = None,
) -> LiveMarketDataHost:
    """The feed host (BTCUSDT, no bars, 1 s silences unless told, a venue port nobody
    listens on) until ``until()`` holds, then a clean stop; fails if it stopped before."""
    config = LiveFeedConfig(
        ws_url=f"ws://127.0.0.1:{free_port()}",
        symbols=["BTCUSDT"],
        bar_intervals=[],
        max_silence_s={"crypto": BOUND_S} if max_silence_s is None else max_silence_s,
    )
    async with Client(router.url, "marketdata") as client:
        host = LiveMarketDataHost(client, config, data_dir, snapshot_every_s=3600.0)
        task = asyncio.create_task(host.run(), name="feed")
        try:
            await eventually(lambda: until() or task.done(), within=30.0)
            assert not task.done(), "the host stopped by itself"
        finally:
            host.stop()
            await task
        return host


async def test_a_whole_gap_lost_with_its_process_is_published_on_restart(tmp_path: Path) -> None:
    """The log holds a trade, its silence's open gap and the trade that ended it, but not
    the whole gap (the process died between the two, no snapshot): the restarted host
    publishes that whole gap first (next source_seq), then, the venue unreachable, the
    trades' open gap a bound after the restart (not after the old trade), and a second
    restart repeats neither."""
    handled = time.time_ns() - 60 * SECOND  # the dead process's clock, a minute ago
    t0 = handled - 1_000_000
    opened_at = handled + round(BOUND_S * SECOND) + 1
    t1 = handled + 10 * SECOND
    opened = Gap(
        symbol="BTCUSDT",
        kind="time",
        stream="trade",
        last_seen=t0,
        next_seen=0,
        missing=0,
        detail="open: no event for 1.001 s of open market so far (bound 1 s)",
        open=True,
    )
    log = EventLog.open(tmp_path, "main")
    try:
        results = log.append(
            [
                _trade(1, t0, handled, 1),
                make_envelope(
                    opened,
                    topic=GAPS,
                    source="marketdata",
                    source_seq=2,
                    ts_event=opened_at,
                    ts_init=opened_at,
                    market="crypto",
                ),
                _trade(2, t1, t1 + 1_000_000, 3),
            ],
            ts_log=1,
        )
        assert all(r.error is None for r in results)
    finally:
        log.close()

    router = Router(RouterConfig(port=0, data_dir=str(tmp_path), health_interval_s=3600.0))
    await router.start()
    try:
        restarted = time.time_ns()
        # Until the trades' silence after the restart is reported (it comes last).
        await _run_host(
            router,
            tmp_path,
            lambda: any(g.open and g.last_seen == t1 for _, g in _gap_records(tmp_path)),
        )
        gaps = _gap_records(tmp_path)
        assert [r.source_seq for r, _ in gaps] == [2, 4, 5]
        (_, first), (whole_record, whole), (again_record, again) = gaps
        assert first == opened
        assert (whole.stream, whole.last_seen, whole.next_seen, whole.open) == (
            "trade",
            t0,
            t1,
            msgspec.UNSET,
        )
        assert whole.detail == "10.001 s of open market without an event (bound 1 s)"
        assert whole_record.ts_event == t1
        # The trades stay silent (no venue): open again from the last one, counted from
        # the restart, not from when that trade was handled a minute ago.
        assert (again.stream, again.last_seen, again.next_seen, again.open) == (
            "trade",
            t1,
            0,
            True,
        )
        assert again_record.ts_event > restarted + round(BOUND_S * SECOND)

        # Restarted again (from the clean stop's snapshot): nothing new, even after
        # the bound has passed.
        second = time.time_ns()
        await _run_host(
            router, tmp_path, lambda: time.time_ns() > second + 3 * round(BOUND_S * SECOND)
        )
        assert [r.source_seq for r, _ in _gap_records(tmp_path)] == [2, 4, 5]
    finally:
        await router.close()


async def test_without_bounds_nothing_is_watched_and_the_host_runs_on(tmp_path: Path) -> None:
    """``max_silence_s={}`` turns detection off: a trade read back and more than the
    bound of clock later, no gap, and the host still runs until asked to stop."""
    log = EventLog.open(tmp_path, "main")
    try:
        now = time.time_ns()
        assert log.append([_trade(1, now - SECOND, now - SECOND, 1)], ts_log=1)[0].error is None
    finally:
        log.close()
    router = Router(RouterConfig(port=0, data_dir=str(tmp_path), health_interval_s=3600.0))
    await router.start()
    try:
        started = time.time_ns()
        host = await _run_host(
            router,
            tmp_path,
            lambda: time.time_ns() > started + 2 * round(BOUND_S * SECOND),
            max_silence_s={},
        )
        assert host.silences is None
        assert host.recovered == 1
        assert _gap_records(tmp_path) == []
    finally:
        await router.close()
