"""Every long-running process of the Procfile stops cleanly on SIGTERM and SIGINT.

Real `tape` processes: each is started against a real router (and the exchange
simulator for the feed), given time to be fully up, then signalled. A clean stop is
exit status 0, a `stopping` log line naming the signal, an `exited` line, and no
traceback.
"""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.support import connected
from tests.system.processes import CAPTURE, Tape, eventually, free_port, wait_http

pytestmark = pytest.mark.slow

SIGNALS = [signal.SIGTERM, signal.SIGINT]


def _logs(process: Tape) -> list[dict[str, Any]]:
    out = []
    for line in process.output().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _logged(process: Tape, event: str) -> Callable[[], bool]:
    return lambda: any(e.get("event") == event for e in _logs(process))


def _assert_stops_cleanly(process: Tape, sig: signal.Signals, command: str) -> None:
    """Signal ``process``; it exits 0 with a stopping line, an exited line, no traceback."""
    process.signal(sig)
    rc = process.process.wait(30)
    output = process.output()
    assert rc == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    logs = _logs(process)
    stopping = [e for e in logs if e.get("event") == "stopping"]
    assert [(e["command"], e["signal"]) for e in stopping] == [(command, sig.name)], output[-3000:]
    assert [e["command"] for e in logs if e.get("event") == "exited"] == [command]


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One router process for the module: its URL and data directory."""
    tmp = tmp_path_factory.mktemp("router")
    port = free_port()
    process = Tape("router", ["router", "--port", str(port), "--data-dir", str(tmp)], tmp)
    try:
        eventually(lambda: "router listening" in process.output(), 30, "the router")
        yield f"ws://127.0.0.1:{port}", tmp
    finally:
        process.stop()


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_router_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    """`tape router` exits 0 on the signal, after saying so."""
    port = free_port()
    process = Tape("router", ["router", "--port", str(port), "--data-dir", str(tmp_path)], tmp_path)
    try:
        eventually(lambda: "router listening" in process.output(), 30, "the router")
        _assert_stops_cleanly(process, sig, "router")
    finally:
        process.kill()


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_live_clock_stops_cleanly(
    router: tuple[str, Path], tmp_path: Path, sig: signal.Signals
) -> None:
    """`tape clock --mode live` exits 0 on the signal (it used to die with -15 on SIGTERM)."""
    url, _ = router
    process = Tape("clock", ["clock", "--mode", "live", "--router", url], tmp_path)
    try:
        eventually(connected(url, "timeauthority"), 30, "the clock to connect")
        _assert_stops_cleanly(process, sig, "clock")
        assert _logged(process, "clock_started")()
    finally:
        process.kill()


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_live_actor_stops_cleanly_with_a_final_snapshot(
    router: tuple[str, Path], tmp_path: Path, sig: signal.Signals
) -> None:
    """`tape actor risk` exits 0 on the signal and leaves its stop snapshot behind."""
    url, _ = router
    data_dir = tmp_path / "actor"
    process = Tape(
        "risk", ["actor", "risk", "--router", url, "--data-dir", str(data_dir)], tmp_path
    )
    try:
        eventually(_logged(process, "caught_up"), 30, "the actor to catch up")
        _assert_stops_cleanly(process, sig, "actor risk")
    finally:
        process.kill()
    assert _logged(process, "stopped")()
    assert list((data_dir / "snapshots" / "main" / "risk").iterdir()), "no snapshot on stop"


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_replay_clock_and_replay_actor_stop_cleanly(
    router: tuple[str, Path], tmp_path: Path, sig: signal.Signals
) -> None:
    """`tape clock --mode replay` waiting for its actors, and `tape actor --replay`
    waiting for its time authority, each exit 0 on the signal (they died with -15)."""
    url, _ = router
    run = f"stop-{sig.name.lower()}"
    clock = Tape(
        "clock",
        ["clock", "--mode", "replay", "--router", url, "--from", "2024-01-01",
         "--run-id", run, "--actors", "pnl", "--data-dir", str(tmp_path)],
        tmp_path,
    )  # fmt: skip
    actor = Tape(
        "pnl",
        ["actor", "pnl", "--router", url, "--replay", f"{run}-alone",
         "--data-dir", str(tmp_path / "actor")],
        tmp_path,
    )  # fmt: skip
    try:
        eventually(connected(url, "replay"), 30, "the clock to connect")
        eventually(connected(url, "pnl"), 30, "the actor to connect")
        _assert_stops_cleanly(clock, sig, "clock")
        assert _logged(clock, "replay_stopped")()
        _assert_stops_cleanly(actor, sig, "actor pnl")
    finally:
        clock.kill()
        actor.kill()


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_actor_still_connecting_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    """An actor whose router is not up yet (still connecting) also exits 0 on the signal."""
    url = f"ws://127.0.0.1:{free_port()}"
    process = Tape("pnl", ["actor", "pnl", "--router", url, "--data-dir", str(tmp_path)], tmp_path)
    try:
        # The client logs each failed attempt at debug level only: wait for the CLI's
        # start (its imports) instead, then give it a moment inside the event loop.
        eventually(lambda: process.alive() and process.catches(), 30, "the process")
        _assert_stops_cleanly(process, sig, "actor pnl")
    finally:
        process.kill()


def _small_capture(tmp_path: Path, lines: int = 4_000) -> Path:
    data = gzip.decompress((CAPTURE / "btcusdt_20240808.gz").read_bytes()).split(b"\n")[:lines]
    path = tmp_path / "btcusdt_capture.gz"
    path.write_bytes(gzip.compress(b"\n".join(data)))
    return path


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_exchange_simulator_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    """`tape exchange-sim` exits 0 on the signal, with a client connected and frames flowing."""
    port = free_port()
    process = Tape(
        "sim",
        ["exchange-sim", "--capture", str(_small_capture(tmp_path)), "--port", str(port)],
        tmp_path,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v3/depth?symbol=BTCUSDT&limit=5")
        _assert_stops_cleanly(process, sig, "exchange-sim")
    finally:
        process.kill()
    assert _logged(process, "exchange_sim_stopped")()


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_feed_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    """`tape feed` exits 0 on the signal while trades flow, after its own stop line."""
    port, sim_port = free_port(), free_port()
    url = f"ws://127.0.0.1:{port}"
    router = Tape("router", ["router", "--port", str(port), "--data-dir", str(tmp_path)], tmp_path)
    sim = Tape(
        "sim",
        [
            "exchange-sim",
            "--capture",
            str(_small_capture(tmp_path)),
            "--port",
            str(sim_port),
            "--speed",
            "5",
        ],
        tmp_path,
    )
    feed: Tape | None = None
    try:
        eventually(lambda: "router listening" in router.output(), 30, "the router")
        wait_http(f"http://127.0.0.1:{sim_port}/api/v3/depth?symbol=BTCUSDT&limit=5")
        feed = Tape(
            "feed",
            [
                "feed",
                "--router",
                url,
                "--url",
                f"ws://127.0.0.1:{sim_port}",
                "--symbol",
                "BTCUSDT",
                "--data-dir",
                str(tmp_path / "feed"),
            ],
            tmp_path,
        )
        eventually(_logged(feed, "connected"), 30, "the feed to connect to the venue")
        _assert_stops_cleanly(feed, sig, "feed")
        assert [e for e in _logs(feed) if e.get("event") == "stopped"], feed.output()[-2000:]
    finally:
        if feed is not None:
            feed.kill()
        sim.stop()
        router.stop()


STUBBORN = """
import asyncio, sys
from tickertape import logconfig
from tickertape.cli.process import run_until_stopped

logconfig.configure("info", json=True)

async def main(stop):
    print("ready", flush=True)
    await stop.wait()
    print("ignoring the stop", flush=True)
    await asyncio.Event().wait()  # a wind-down that never ends

run_until_stopped(main, command="stubborn")
print("returned", flush=True)
"""


def test_a_second_signal_stops_a_process_whose_wind_down_hangs(tmp_path: Path) -> None:
    """First SIGTERM: `stopping`, the work is asked to wind down; second: `stopping_now`,
    the work is cancelled, and the process still exits 0 without a traceback."""
    log = tmp_path / "stubborn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", STUBBORN], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        eventually(lambda: "ready" in log.read_text(), 30, "the process")
        process.send_signal(signal.SIGTERM)
        eventually(lambda: "ignoring the stop" in log.read_text(), 30, "the first stop")
        process.send_signal(signal.SIGINT)
        rc = process.wait(30)
    finally:
        process.kill()
        process.wait()
    output = log.read_text()
    assert rc == 0, output
    assert "Traceback" not in output
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [(e["event"], e.get("signal")) for e in events] == [
        ("stopping", "SIGTERM"),
        ("stopping_now", "SIGINT"),
        ("exited", "SIGTERM"),
    ]
    assert output.rstrip().endswith("returned")
