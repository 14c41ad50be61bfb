"""Helpers shared by the router and client tests: envelopes, routers in-process and as processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from tickertape.router.protocol import Limits
from tickertape.router.server import Router, RouterConfig
from tickertape.schemas import Envelope, encode_payload
from tickertape.schemas.market import Trade

BASE_NS = 1_700_000_000_000_000_000


def trade(source: str, seq: int, symbol: str = "BTC", *, topic: str | None = None) -> Envelope:
    """A valid md.trade envelope from ``source`` with ``source_seq`` = ``seq``."""
    payload = encode_payload(
        Trade(symbol=symbol, price=100.0 + seq % 7, size=1.0, side="buy", trade_id=str(seq))
    )
    return Envelope(
        id=f"{source}:{seq}",
        topic=topic or f"md.trade.crypto.{symbol}",
        type="md.trade",
        v=1,
        market="crypto",
        ts_event=BASE_NS + seq * 1_000,
        ts_init=BASE_NS + seq * 1_000,
        source=source,
        source_seq=seq,
        payload=payload,
    )


DAY0_NS = 1_704_067_200_000_000_000
"""2024-01-01T00:00:00Z in ns."""


def dated_trade(seq: int, per_day: int) -> Envelope:
    """:func:`trade` ``seq`` (from 1) of source ``md`` on BTC, stamped so that
    ``per_day`` of them fall on each day from 2024-01-01 on."""
    ts = DAY0_NS + (seq - 1) * (86_400_000_000_000 // per_day)
    return msgspec.structs.replace(trade("md", seq), ts_event=ts, ts_init=ts)


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], within: float = 10.0, interval: float = 0.02
) -> None:
    """Wait until ``check()`` is true, or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_router(data_dir: Path, **config: Any) -> AsyncIterator[Router]:
    """A router in this process on a free port (embedded log under ``data_dir``)."""
    limits = config.pop("limits", Limits())
    router = Router(
        RouterConfig(port=0, data_dir=str(data_dir), limits=limits, health_interval_s=0.2, **config)
    )
    await router.start()
    try:
        yield router
    finally:
        await router.close()


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Block until something accepts TCP connections on loopback ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listening on port {port} after {timeout} s")


def tape(*args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``tape ARGS`` as a separate process (stderr to ``log`` when given)."""
    command = [str(Path(sys.executable).with_name("tape")), "--log-level", "warning", *args]
    env = {**os.environ, "PYTHONASYNCIODEBUG": ""}
    if log is None:
        return subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
    with open(log, "ab") as err:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)


def eventlog(port: int, data_dir: Path, log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``tape eventlog`` on loopback ``port`` over ``data_dir`` (stderr to ``log``)
    and wait until it listens."""
    proc = tape("eventlog", "--port", str(port), "--data-dir", str(data_dir), log=log)
    wait_port(port)
    return proc


def python(script: str, *args: str) -> subprocess.Popen[bytes]:
    """Run a Python script (as text) in a separate process; stdout is piped."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONASYNCIODEBUG": ""},
    )


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``proc`` (when still running) and reap it."""
    if proc.poll() is None:
        proc.send_signal(sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
