"""The live adapter against `tape exchange-sim` in a real process: no gap, one gap, resync."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tickertape.actors.marketdata.binance_client import BinanceLiveAdapter
from tickertape.actors.marketdata.importers import ParsedEvent
from tickertape.schemas.market import Gap, Trade

DATA = Path(__file__).resolve().parents[3] / "data" / "binance-spot-ws-2024-08-08"
TAPE = Path(sys.executable).parent / "tape"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/api/v3/depth?symbol=BTCUSDT&limit=5"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                response.read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def simulator(capture: Path, port: int, speed: float) -> Iterator[subprocess.Popen[bytes]]:
    """Run `tape exchange-sim` as a separate process until the block ends."""
    process = subprocess.Popen(
        [
            str(TAPE),
            "exchange-sim",
            "--capture",
            str(capture),
            "--speed",
            str(speed),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(port)
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()


def _small_capture(tmp_path: Path, lines: int, drop: str | None = None) -> tuple[Path, int]:
    """The first ``lines`` lines of the BTCUSDT capture, minus one trade when ``drop``."""
    data = gzip.decompress((DATA / "btcusdt_20240808.gz").read_bytes()).split(b"\n")[:lines]
    dropped = -1
    if drop == "trade":
        trade_lines = [i for i, line in enumerate(data) if b"@trade" in line]
        victim = trade_lines[len(trade_lines) // 2]
        dropped = int(data[victim].split(b'"t":')[1].split(b",")[0])
        del data[victim]
    path = tmp_path / "btcusdt_capture.gz"
    path.write_bytes(gzip.compress(b"\n".join(data)))
    return path, dropped


async def _follow(
    port: int, total_trades: int, limit_s: float
) -> tuple[BinanceLiveAdapter, list[ParsedEvent]]:
    events: list[ParsedEvent] = []
    done = asyncio.Event()
    trades = 0

    async def sink(batch: list[ParsedEvent]) -> None:
        nonlocal trades
        events.extend(batch)
        trades += sum(isinstance(e.payload, Trade) for e in batch)
        if trades >= total_trades:
            done.set()

    adapter = BinanceLiveAdapter(
        f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}", ["BTCUSDT"], sink, max_backoff_s=0.5
    )
    task = asyncio.create_task(adapter.run(), name="adapter")
    try:
        await asyncio.wait_for(done.wait(), limit_s)
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    return adapter, events


def _trade_count(path: Path) -> int:
    return gzip.decompress(path.read_bytes()).count(b"@trade")


async def test_real_capture_streams_without_gap(tmp_path: Path) -> None:
    """Every trade of the capture arrives once through the simulator; no gap is reported."""
    capture, _ = _small_capture(tmp_path, 12_000)
    port = _free_port()
    with simulator(capture, port, speed=200):
        adapter, events = await _follow(port, _trade_count(capture), limit_s=60)
    trades = [e.payload.trade_id for e in events if isinstance(e.payload, Trade)]
    assert len(trades) == len(set(trades)) == _trade_count(capture)
    assert not [e for e in events if isinstance(e.payload, Gap)]
    assert adapter.feed.stats.resyncs == 1


async def test_removed_line_is_exactly_one_gap(tmp_path: Path) -> None:
    """With one trade line removed from the capture, exactly that gap is reported."""
    capture, dropped = _small_capture(tmp_path, 12_000, drop="trade")
    port = _free_port()
    with simulator(capture, port, speed=200):
        _, events = await _follow(port, _trade_count(capture), limit_s=60)
    gaps = [e.payload for e in events if isinstance(e.payload, Gap)]
    assert gaps == [
        Gap(
            symbol="BTCUSDT",
            kind="sequence",
            stream="trade",
            last_seen=dropped - 1,
            next_seen=dropped + 1,
            missing=1,
        )
    ]


async def test_simulator_killed_and_restarted_resynchronises(tmp_path: Path) -> None:
    """After SIGKILL and restart mid-stream the adapter reconnects, resyncs and loses nothing."""
    capture, _ = _small_capture(tmp_path, 12_000)
    total = _trade_count(capture)
    port = _free_port()
    events: list[ParsedEvent] = []
    half = asyncio.Event()
    done = asyncio.Event()
    count = 0

    async def sink(batch: list[ParsedEvent]) -> None:
        nonlocal count
        events.extend(batch)
        count += sum(isinstance(e.payload, Trade) for e in batch)
        if count >= total // 2:
            half.set()
        if count >= total:
            done.set()

    adapter = BinanceLiveAdapter(
        f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}", ["BTCUSDT"], sink, max_backoff_s=0.3
    )
    task = asyncio.create_task(adapter.run(), name="adapter")
    try:
        with simulator(capture, port, speed=20) as first:
            await asyncio.wait_for(half.wait(), 60)
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
        with simulator(capture, port, speed=200):
            await asyncio.wait_for(done.wait(), 60)
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    trades = [e.payload.trade_id for e in events if isinstance(e.payload, Trade)]
    assert len(trades) == len(set(trades)) == total
    assert adapter.connections == 2
    assert adapter.feed.stats.resyncs == 2
    assert not [e for e in events if isinstance(e.payload, Gap)]
    bids, asks, _ = adapter.feed.book("BTCUSDT")
    assert max(map(float, bids)) < min(map(float, asks))
