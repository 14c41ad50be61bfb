"""Router end to end: publisher → router → fsync → subscribers, each a separate process.

Prints a table of:

- durable throughput delivered to 1 and to 4 subscribers (~300-byte events, batches
  of 1 000, up to 8 batches in flight);
- publish-to-deliver latency p50/p99 at a steady rate (ts_init stamped by the
  publisher just before sending, read by the subscriber on receipt; same machine);
- router RSS growth while 16 subscribers receive a long stream.

Usage: ``python benchmarks/bench_router.py [--events 300000] [--memory-events 1000000]``
(the issue's memory figure is over 5 000 000 events: ``--memory-events 5000000``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
TAPE = str(Path(sys.executable).with_name("tape"))

PUBLISHER = r"""
import asyncio, json, sys, time
import msgspec
from tickertape.client import Client
from tickertape.schemas import Envelope, encode_payload
from tickertape.schemas.market import Trade

BASE = 1_700_000_000_000_000_000

def make(i, now):
    p = encode_payload(Trade(symbol="BTCUSDT", price=42000.5 + (i % 100) * 0.5, size=0.0125,
                             side="buy" if i % 2 else "sell", trade_id=f"T{i:012d}"))
    return Envelope(id=f"bench:{i}", topic="md.trade.crypto.BTCUSDT", type="md.trade", v=1,
                    market="crypto", ts_event=BASE + i * 1000, ts_init=now, source="bench",
                    source_seq=i, correlation_id=f"corr-{i:012d}", payload=p)

async def main(url, n, rate, batch):
    async with Client(url, "bench", outbox_events=8 * batch) as c:
        started = time.perf_counter()
        tasks = []
        for s in range(1, n + 1, batch):
            if rate:
                due = started + (s - 1) / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            now = time.time_ns()
            events = [make(i, now) for i in range(s, min(s + batch, n + 1))]
            tasks.append(asyncio.ensure_future(c.publish(events)))
            if len(tasks) >= 8:
                await tasks.pop(0)
        for t in tasks:
            await t
        print(json.dumps({"published_s": time.perf_counter() - started}), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])))
"""

SUBSCRIBER = r"""
import asyncio, json, sys, time
import msgspec
from tickertape.client import Client

async def main(url, n, name):
    lat = []
    async with Client(url, name) as c:
        sub = c.subscribe(["md.>"], "now", queue_frames=64)
        await sub.caught_up.wait()
        print("ready", flush=True)
        count = 0
        first = None
        async for r in sub:
            if first is None:
                first = time.perf_counter()
            count += 1
            if count % 50 == 0:
                lat.append(time.time_ns() - r.ts_init)
            if count >= n:
                break
        elapsed = time.perf_counter() - first
    lat.sort()
    print(json.dumps({"count": count, "elapsed": elapsed,
                      "p50": lat[len(lat) // 2] if lat else 0,
                      "p99": lat[int(len(lat) * 0.99)] if lat else 0}), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("router did not start")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _py(script: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONASYNCIODEBUG": ""},
    )


def run(n: int, subscribers: int, rate: float, batch: int = 1000) -> dict[str, float]:
    """One run: start a router, subscribers, one publisher; return the figures."""
    with tempfile.TemporaryDirectory() as data:
        port = _free_port()
        url = f"ws://127.0.0.1:{port}"
        router = subprocess.Popen(
            [TAPE, "--log-level", "warning", "router", "--port", str(port), "--data-dir", data,
             "--max-events-per-s", "10000000", "--health-interval", "5"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_port(port)
            subs = [_py(SUBSCRIBER, url, str(n), f"sub{i}") for i in range(subscribers)]
            for s in subs:
                assert s.stdout is not None
                s.stdout.readline()
            rss_before = _rss_mb(router.pid)
            started = time.perf_counter()
            pub = _py(PUBLISHER, url, str(n), str(rate), str(batch))
            peak = rss_before
            while any(s.poll() is None for s in subs):
                peak = max(peak, _rss_mb(router.pid))
                time.sleep(0.2)
            wall = time.perf_counter() - started
            pub.wait(60)
            results = []
            for s in subs:
                out, _ = s.communicate()
                results.append(json.loads(out.decode().splitlines()[-1]))
        finally:
            router.kill()
            router.wait()
    total = sum(r["count"] for r in results)
    return {
        "per_sub": min(r["count"] / r["elapsed"] for r in results),
        "total": total / max(r["elapsed"] for r in results),
        "wall_total": total / wall,
        "p50_ms": sorted(r["p50"] for r in results)[len(results) // 2] / 1e6,
        "p99_ms": max(r["p99"] for r in results) / 1e6,
        "rss_growth_mb": peak - rss_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--latency-events", type=int, default=50_000)
    parser.add_argument("--memory-events", type=int, default=1_000_000)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    table = Table(title="router, durable end to end (separate processes, ~300-byte events)")
    for col in (
        "scenario",
        "events/s per subscriber",
        "events/s total",
        "p50 ms",
        "p99 ms",
        "router RSS growth MB",
    ):
        table.add_column(col, justify="right" if col != "scenario" else "left")
    one = run(args.events, 1, 0)
    table.add_row(
        "1 subscriber, max rate",
        f"{one['per_sub']:,.0f}",
        f"{one['total']:,.0f}",
        "",
        "",
        f"{one['rss_growth_mb']:.1f}",
    )
    four = run(args.events, 4, 0)
    table.add_row(
        "4 subscribers, max rate",
        f"{four['per_sub']:,.0f}",
        f"{four['total']:,.0f}",
        "",
        "",
        f"{four['rss_growth_mb']:.1f}",
    )
    steady = run(args.latency_events, 1, 10_000, batch=100)
    table.add_row(
        "1 subscriber, 10 k events/s",
        f"{steady['per_sub']:,.0f}",
        "",
        f"{steady['p50_ms']:.2f}",
        f"{steady['p99_ms']:.2f}",
        "",
    )
    if not args.skip_memory:
        mem = run(args.memory_events, 16, 0)
        table.add_row(
            f"16 subscribers, {args.memory_events:,} events",
            f"{mem['per_sub']:,.0f}",
            f"{mem['total']:,.0f}",
            "",
            "",
            f"{mem['rss_growth_mb']:.1f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
