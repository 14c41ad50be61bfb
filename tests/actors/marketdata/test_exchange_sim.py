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
from typing import Any

import orjson
import pytest
import websockets
from websockets.asyncio.client import connect

from tests.system.processes import Tape, wait_http
from tickertape.actors.marketdata.binance_client import BinanceLiveAdapter
from tickertape.actors.marketdata.exchange_sim import REBASE_ENV
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


# ------------------------------------------------------- rebased times and resuming


def _sim(
    tmp_path: Path, name: str, *args: str, env: dict[str, str] | None = None
) -> tuple[Tape, int]:
    """`tape exchange-sim --port 0 ARGS` as a real process, ready to serve; and the port
    it bound (from its ``exchange_sim_listening`` log line: no pick-then-bind race with
    parallel tests)."""
    process = Tape(name, ["exchange-sim", "--port", "0", *args], tmp_path, env=env)
    deadline = time.monotonic() + 30
    while not (listening := process.log_events("exchange_sim_listening")):
        if not process.alive() or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(process.output()[-2000:])
        time.sleep(0.05)
    port = int(listening[0]["port"])
    assert port > 0
    wait_http(f"http://127.0.0.1:{port}/api/v3/depth?symbol=BTCUSDT&limit=5")
    return process, port


async def _trades(port: int, count: int, limit_s: float = 30) -> list[dict[str, Any]]:
    """The first ``count`` trade frames' data a new client of the simulator receives."""
    out: list[dict[str, Any]] = []
    async with connect(f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade") as ws:
        async with asyncio.timeout(limit_s):
            while len(out) < count:
                out.append(orjson.loads(await ws.recv())["data"])
    return out


def _history(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v3/historicalTrades?symbol=BTCUSDT&{query}"
    with urllib.request.urlopen(url, timeout=5) as response:
        trades: list[dict[str, Any]] = orjson.loads(response.read())
    return trades


@pytest.mark.parametrize(
    ("args", "env", "rebased"),
    [
        ((), {}, False),
        (("--rebase-times",), {}, True),
        ((), {REBASE_ENV: "1"}, True),
        (("--no-rebase-times",), {REBASE_ENV: "1"}, False),
    ],
    ids=["default", "flag", "environment", "flag-over-environment"],
)
async def test_rebase_times_flag_and_environment(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], rebased: bool
) -> None:
    """--rebase-times stamps trades with now; TAPE_SIM_REBASE_TIMES=1 is its default,
    which --no-rebase-times overrides; without either the recorded times are kept."""
    capture, _ = _small_capture(tmp_path, 3_000)
    process, port = _sim(tmp_path, "sim", "--capture", str(capture), *args, env=env)
    try:
        first = (await _trades(port, 1))[0]
    finally:
        assert process.stop() == 0
    now_ms = time.time_ns() // 1_000_000
    recorded_ms = 1_723_075_200_000  # 2024-08-08T00:00:00Z
    if rebased:
        assert abs(first["T"] - now_ms) < 30_000
    else:
        assert recorded_ms <= first["T"] < recorded_ms + 2 * 86_400_000
    assert [e["rebase_times"] for e in process.log_events("exchange_sim_listening")] == [rebased]


def test_rebase_times_is_documented_in_help() -> None:
    """`tape exchange-sim --help` lists the flag pair and its environment variable."""
    proc = subprocess.run([str(TAPE), "exchange-sim", "--help"], capture_output=True, check=True)
    text = " ".join(proc.stdout.decode().split())
    assert "--rebase-times / --no-rebase-times" in text
    assert REBASE_ENV in text
    assert "--state-file" in text


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
async def test_restarted_simulator_continues_after_the_last_trade_it_served(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """Stopped and started again with the same --state-file, the simulator goes on
    where it was: the trades it played are still served by historicalTrades with the
    times they were sent with, and the first trade a client then receives is the one
    after the last it played (no repeat, no replay from the capture's start)."""
    capture, _ = _small_capture(tmp_path, 12_000)
    state = tmp_path / "live" / "exchange-sim.json"
    args = (
        "--capture",
        str(capture),
        "--speed",
        "20",
        "--rebase-times",
        "--state-file",
        str(state),
    )
    first_run, port = _sim(tmp_path, "sim-1", *args)
    try:
        before = await _trades(port, 300)
    finally:
        first_run.signal(stop)
        try:
            rc = first_run.process.wait(30)
        finally:
            first_run.kill()
    assert rc == 0, first_run.output()[-2000:]
    saved = orjson.loads(state.read_bytes())
    assert saved["played"] > 0
    assert [r["rebased"] for r in saved["runs"]] == [True]

    second_run, port = _sim(tmp_path, "sim-2", *args)
    try:
        # Before any client: the history holds everything the first run played.
        last_played = _history(port, "limit=1")[0]
        assert last_played["id"] >= before[-1]["t"]
        replayed = _history(port, f"fromId={before[0]['t']}&limit=100")
        assert [(t["id"], t["time"]) for t in replayed[:100]] == [
            (d["t"], d["T"]) for d in before[:100]
        ]
        started = time.monotonic()
        after = await _trades(port, 5)
        waited = time.monotonic() - started
    finally:
        assert second_run.stop() == 0
    assert after[0]["t"] == last_played["id"] + 1
    assert [d["t"] for d in after] == list(range(after[0]["t"], after[0]["t"] + 5))
    assert after[0]["T"] >= before[-1]["T"]
    # The capture plays hundreds of trades a second at speed 20: a restarted simulator
    # that streams at all sends five within a second. 20 s, because a CI machine loaded
    # by the other tests' processes once took 10 s.
    assert waited < 20, f"{waited:.1f} s of silence after the restart"
    assert [e["first_frame"] for e in second_run.log_events("exchange_sim_listening")] == [
        saved["played"]
    ]
    resumed = orjson.loads(state.read_bytes())
    assert resumed["played"] > saved["played"]
    assert [r["first_frame"] for r in resumed["runs"]] == [0, saved["played"]]


async def test_killed_simulator_resumes_from_its_last_saved_position(tmp_path: Path) -> None:
    """After SIGKILL the state is at most a second of playback old: the restarted
    simulator repeats at most those frames, never the capture from its start."""
    capture, _ = _small_capture(tmp_path, 12_000)
    state = tmp_path / "exchange-sim.json"
    args = ("--capture", str(capture), "--speed", "10", "--state-file", str(state))
    first_run, port = _sim(tmp_path, "sim-1", *args)
    before: list[dict[str, Any]] = []
    # A few seconds of playback: a state saved (every second) well after the start.
    enough = asyncio.Event()

    async def watch() -> None:
        # Every trade played until the kill (the connection then drops).
        with suppress(websockets.ConnectionClosed, OSError):
            async with connect(f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade") as ws:
                async for message in ws:
                    before.append(orjson.loads(message)["data"])
                    if len(before) >= 150 and state.exists():
                        enough.set()

    watching = asyncio.create_task(watch())
    try:
        await asyncio.wait_for(enough.wait(), 60)
    finally:
        first_run.kill()
        await asyncio.wait_for(watching, 30)
    second_run, port = _sim(tmp_path, "sim-2", *args)
    try:
        after = await _trades(port, 1, limit_s=60)
    finally:
        assert second_run.stop() == 0
    assert before[0]["t"] < after[0]["t"] <= before[-1]["t"] + 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not a valid exchange-simulator state"),
        (
            b'{"version":1,"captures":[{"name":"other.gz","size":1}],"played":5,"runs":[]}',
            "written for the captures other.gz (1 bytes)",
        ),
    ],
    ids=["corrupt", "other-captures"],
)
def test_a_state_file_it_cannot_use_is_a_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    """A corrupt state file, or one written for other captures, stops the simulator at
    once (exit 1) with the file and what to do, instead of replaying silently."""
    capture, _ = _small_capture(tmp_path, 100)
    state = tmp_path / "exchange-sim.json"
    state.write_bytes(content)
    proc = subprocess.run(
        [str(TAPE), "exchange-sim", "--capture", str(capture), "--port", str(_free_port()),
         "--state-file", str(state)],
        capture_output=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    stderr = " ".join(proc.stderr.decode().split())
    assert str(state) in stderr
    assert message in stderr
    assert "Traceback" not in stderr
