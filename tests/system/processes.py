"""Real `tape` processes for system tests: start, signal, wait, read their output."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TAPE = Path(sys.executable).parent / "tape"
CAPTURE = REPO / "data" / "binance-spot-ws-2024-08-08"


def run_tape(*args: str, cwd: Path | None = REPO) -> str:
    """Run one ``tape`` command to completion (the repository on ``PYTHONPATH`` for the
    example strategies, asyncio debug off); return its stdout. Fails on a non-zero exit,
    showing its stderr."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PYTHONASYNCIODEBUG", None)
    done = subprocess.run(
        [str(TAPE), "--log-level", "warning", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(
    predicate: Callable[[], Any], timeout: float, what: str, *, interval: float = 0.1
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Tape:
    """One `tape ...` process, its output in ``<log_dir>/<name>.log``."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log_dir: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), full_env.get("PYTHONPATH", "")) if p
        )
        full_env.pop("PYTHONASYNCIODEBUG", None)  # debug mode slows real processes 2-3×
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [*prefix, str(TAPE), "--log-json", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
            )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` if the process still runs."""
        if self.alive():
            os.kill(self.process.pid, sig)

    def catches(self) -> bool:
        """True once the process has a SIGTERM handler (``SigCgt`` in /proc): a command
        installs its stop handlers when its event loop starts, so a signal sent before
        that kills it instead of stopping it."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except FileNotFoundError:
            return False
        caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
        return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; return the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.process.wait()

    def kill(self) -> None:
        """SIGKILL and reap."""
        self.signal(signal.SIGKILL)
        self.process.wait()

    def output(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines whose ``event`` is ``event``."""
        out = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if item.get("event") == event:
                    out.append(item)
        return out


def wait_http(url: str, timeout: float = 20.0) -> None:
    """Wait until ``url`` answers."""

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                response.read()
        except OSError:
            return False
        return True

    eventually(ready, timeout, url)


def latest_trade_id(sim_port: int, symbol: str = "BTCUSDT") -> int:
    """The id of the last trade the exchange simulator has played (0 before any)."""
    url = f"http://127.0.0.1:{sim_port}/api/v3/historicalTrades?symbol={symbol}&limit=1"
    with urllib.request.urlopen(url, timeout=2) as response:
        trades = json.loads(response.read())
    return int(trades[-1]["id"]) if trades else 0
