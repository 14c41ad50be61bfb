"""Router end to end: publisher → router → fsync → subscribers, each a separate process.

Prints a table of medians over ``--runs`` runs of:

- durable throughput delivered to 1 and to 4 subscribers (~300-byte events, batches
  of 1 000, up to 8 batches in flight);
- publish-to-deliver latency p50/p99 at a steady 10 k events/s (``ts_init`` stamped
  by the publisher, read by the subscriber on receipt; same machine, same clock), in
  two shapes: each event created at its own time (event i at i/10 000 s, stamped
  then) and sent as it comes, the events created while the publisher slept going out
  together without waiting for earlier acknowledgements, as a feed publishes; and
  bursts of 100 events every 10 ms, all stamped when the burst is made, where each
  event also waits for the 99 others at every stage; a line under the table gives
  how long an event of the first shape waited in the publisher before it was sent
  (its event loop's timers wake about 1 ms apart), which its latency includes;
- the CPU time each process spent per delivered event (router, publisher, one
  subscriber), in µs (the clients' from when they started publishing or receiving,
  so without their imports and connecting): on a shared machine this is steadier
  than the rates, and 2 cores / the sum bounds the rate;
- router RSS growth while ``--subscribers`` subscribers receive ``--events`` events
  (the memory row; ``--events 5000000 --subscribers 16`` is the issue's figure).

The publisher builds its envelopes from a pre-encoded payload template (a fresh
``trade_id`` and price per event) so that the figures measure the router, not the
benchmark's event factory; subscribers consume with ``RemoteSubscription.batches()``
(``--per-event`` iterates event by event instead).

Usage::

    python benchmarks/bench_router.py                      # throughput + latency + 1 M memory
    python benchmarks/bench_router.py --events 5000000 --subscribers 16 --only memory
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
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
import asyncio, json, resource, sys, time
from tickertape.client import Client
from tickertape.schemas import Envelope
import msgspec

BASE = 1_700_000_000_000_000_000
PAYLOAD = b'{"symbol":"BTCUSDT","price":%.1f,"size":0.0125,"side":"%s","trade_id":"T%012d"}'
FIRST = Envelope(id="bench:1", topic="md.trade.crypto.BTCUSDT", type="md.trade", v=1,
                 market="crypto", ts_event=BASE, ts_init=0, source="bench", source_seq=1)

def make(i, now):
    return msgspec.structs.replace(
        FIRST, id=f"bench:{i}", ts_event=BASE + i * 1000, ts_init=now, source_seq=i,
        correlation_id=f"corr-{i:012d}",
        payload=msgspec.Raw(PAYLOAD % (42000.5 + (i % 100) * 0.5, b"buy" if i % 2 else b"sell", i)))

async def as_they_come(c, n, rate):
    # Event i is created at started + (i - 1) / rate and stamped with that time; each
    # wake-up sends the events created since the last one as one batch, without
    # waiting for the previous batches' acknowledgements (up to 64 in flight). The
    # event loop's timers wake it about 1 ms apart: how long each 50th event waited
    # in the publisher before it was sent is returned with the elapsed time.
    started = time.perf_counter()
    wall = time.time_ns() - int(started * 1e9)
    tasks = []
    waited = []
    sent = 0
    while sent < n:
        now = time.perf_counter()
        due = min(n, int((now - started) * rate) + 1)
        if due > sent:
            events = [make(i, wall + int((started + (i - 1) / rate) * 1e9))
                      for i in range(sent + 1, due + 1)]
            waited += [now - started - (i - 1) / rate
                       for i in range(sent + 1, due + 1) if i % 50 == 0]
            sent = due
            tasks.append(asyncio.ensure_future(c.publish(events)))
            if len(tasks) >= 64:
                await tasks.pop(0)
        await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
    for t in tasks:
        await t
    waited.sort()
    return time.perf_counter() - started, waited[len(waited) // 2] if waited else 0.0

def cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime

async def main(url, n, rate, batch):
    async with Client(url, "bench", outbox_events=max(8 * batch, 100_000)) as c:
        cpu0 = cpu_s()  # after the imports and the connection: CPU spent publishing
        if batch == 0:
            elapsed, waited = await as_they_come(c, n, rate)
            print(json.dumps({"published_s": elapsed, "cpu_s": cpu_s() - cpu0,
                              "waited_p50_s": waited}), flush=True)
            return
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
        elapsed = time.perf_counter() - started
        print(json.dumps({"published_s": elapsed, "cpu_s": cpu_s() - cpu0}), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])))
"""

SUBSCRIBER = r"""
import asyncio, json, resource, sys, time
from tickertape.client import Client

async def main(url, n, name, per_event):
    lat = []
    async with Client(url, name) as c:
        sub = c.subscribe(["md.>"], "now", queue_frames=64)
        await sub.caught_up.wait()
        print("ready", flush=True)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = ru.ru_utime + ru.ru_stime  # after the imports and the subscription
        count = 0
        first = None
        if per_event:
            async for r in sub:
                if first is None:
                    first = time.perf_counter()
                count += 1
                if count % 50 == 0:
                    lat.append(time.time_ns() - r.ts_init)
                if count >= n:
                    break
        else:
            async for batch in sub.batches():
                now = time.time_ns()
                if first is None:
                    first = time.perf_counter()
                for r in batch[::50]:
                    lat.append(now - r.ts_init)
                count += len(batch)
                if count >= n:
                    break
        elapsed = time.perf_counter() - first
    lat.sort()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"count": count, "elapsed": elapsed, "cpu_s": ru.ru_utime + ru.ru_stime - cpu0,
                      "p50": lat[len(lat) // 2] if lat else 0,
                      "p99": lat[int(len(lat) * 0.99)] if lat else 0}), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"))
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


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _py(script: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONASYNCIODEBUG": ""},
    )


def run(
    n: int, subscribers: int, rate: float, batch: int = 1000, *, per_event: bool = False
) -> dict[str, float]:
    """One run: start a router, subscribers, one publisher; return the figures.

    Returns:
        ``per_sub`` (slowest subscriber's events/s), ``total`` (events/s summed),
        ``p50_ms``/``p99_ms`` (latency), ``waited_ms`` (as-they-come publisher: p50 of
        the time an event waited in the publisher before it was sent, part of the
        latency), ``router_us``/``pub_us``/``sub_us`` (CPU µs per event published;
        the clients' from when they started publishing or receiving), ``rss_growth_mb`` (peak router RSS minus its RSS when
        publishing started), ``rss_end_growth_mb`` (at the end) and
        ``rss_steady_growth_mb`` (from when the first 10 % of the events were logged
        to the end: the event log's bounded caches fill during that first part).
    """
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
            mode = "1" if per_event else "0"
            subs = [_py(SUBSCRIBER, url, str(n), f"sub{i}", mode) for i in range(subscribers)]
            for s in subs:
                assert s.stdout is not None
                s.stdout.readline()
            rss_before = _rss_mb(router.pid)
            cpu_before = _cpu_s(router.pid)
            pub = _py(PUBLISHER, url, str(n), str(rate), str(batch))
            samples: list[tuple[int, float]] = []  # (log bytes written, RSS MB)
            while any(s.poll() is None for s in subs):
                samples.append((_log_bytes(data), _rss_mb(router.pid)))
                time.sleep(0.2)
            rss_end = _rss_mb(router.pid)
            samples.append((_log_bytes(data), rss_end))
            router_cpu = _cpu_s(router.pid) - cpu_before
            out, _ = pub.communicate(timeout=60)
            published = json.loads(out.decode().splitlines()[-1])
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
        "p50_ms": sorted(r["p50"] for r in results)[len(results) // 2] / 1e6,
        "p99_ms": max(r["p99"] for r in results) / 1e6,
        "waited_ms": published.get("waited_p50_s", 0.0) * 1e3,
        "router_us": router_cpu / n * 1e6,
        "pub_us": published["cpu_s"] / n * 1e6,
        "sub_us": statistics.median(r["cpu_s"] for r in results) / n * 1e6,
        "rss_growth_mb": max(rss for _, rss in samples) - rss_before,
        "rss_end_growth_mb": rss_end - rss_before,
        "rss_steady_growth_mb": rss_end - _rss_at(samples, 0.1),
    }


def _log_bytes(data: str) -> int:
    """Bytes in the log's files (grows with the events appended: a progress measure)."""
    total = 0
    for root, _dirs, files in os.walk(data):
        for name in files:
            if name.endswith(".jsonl"):
                with contextlib.suppress(FileNotFoundError):
                    total += os.stat(os.path.join(root, name)).st_size
    return total


def _rss_at(samples: list[tuple[int, float]], fraction: float) -> float:
    """The RSS when the log first held ``fraction`` of its final size."""
    final = samples[-1][0]
    return next(rss for size, rss in samples if size >= fraction * final)


def _fsync_ms(samples: int = 200) -> tuple[float, float]:
    """p50 and p99 in ms of write(30 KB) + fsync on the disk the runs use (10 ms apart):
    the floor under the publish-to-deliver latency, since every batch waits for one."""
    times = []
    with tempfile.TemporaryDirectory() as data:
        fd = os.open(os.path.join(data, "probe"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for _ in range(samples):
                os.write(fd, b"x" * 30_000)
                started = time.perf_counter()
                os.fsync(fd)
                times.append((time.perf_counter() - started) * 1e3)
                time.sleep(0.01)
        finally:
            os.close(fd)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per row (medians shown)")
    parser.add_argument("--throughput-events", type=int, default=300_000)
    parser.add_argument("--latency-events", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=1_000_000, help="memory row: events")
    parser.add_argument("--subscribers", type=int, default=16, help="memory row: subscribers")
    parser.add_argument(
        "--only", choices=["throughput", "latency", "memory"], action="append", default=None
    )
    parser.add_argument("--per-event", action="store_true", help="subscribers iterate per event")
    args = parser.parse_args()
    only = set(args.only or ["throughput", "latency", "memory"])

    table = Table(
        title=f"router, durable end to end (separate processes, ~300-byte events; "
        f"medians of {args.runs}; shared 2-core machine)"
    )
    columns = (
        "scenario", "events/s per subscriber", "events/s total", "p50 ms", "p99 ms",
        "CPU µs/event router", "publisher", "subscriber",
        "router RSS growth MB: peak / end / after the first 10 %",
    )  # fmt: skip
    for col in columns:
        table.add_column(col, justify="right" if col != "scenario" else "left")

    def row(name: str, runs: list[dict[str, float]], latency: bool, memory: bool) -> None:
        m = _median(runs)
        table.add_row(
            name,
            f"{m['per_sub']:,.0f}",
            f"{m['total']:,.0f}",
            f"{m['p50_ms']:.2f}" if latency else "",
            f"{m['p99_ms']:.2f}" if latency else "",
            f"{m['router_us']:.1f}",
            f"{m['pub_us']:.1f}",
            f"{m['sub_us']:.1f}",
            f"{m['rss_growth_mb']:.1f} / {m['rss_end_growth_mb']:.1f} / "
            f"{m['rss_steady_growth_mb']:.1f}"
            if memory
            else "",
        )

    n = args.throughput_events
    pe = args.per_event
    if "throughput" in only:
        row("1 subscriber, max rate", [run(n, 1, 0, per_event=pe) for _ in range(args.runs)],
            False, False)  # fmt: skip
        row("4 subscribers, max rate", [run(n, 4, 0, per_event=pe) for _ in range(args.runs)],
            False, False)  # fmt: skip
    if "latency" in only:
        fsync_p50, fsync_p99 = _fsync_ms()
        steady = [
            run(args.latency_events, 1, 10_000, batch=0, per_event=pe) for _ in range(args.runs)
        ]
        row("1 subscriber, 10 k events/s, each sent as it comes", steady, True, False)
        waited_ms = _median(steady)["waited_ms"]
        bursts = [
            run(args.latency_events, 1, 10_000, batch=100, per_event=pe) for _ in range(args.runs)
        ]
        row("1 subscriber, 10 k events/s, bursts of 100", bursts, True, False)
    if "memory" in only:
        mem = [
            run(args.events, args.subscribers, 0, per_event=pe)
            for _ in range(1 if args.events >= 2_000_000 else args.runs)
        ]
        row(f"{args.subscribers} subscribers, {args.events:,} events", mem, False, True)
    console = Console(width=200)
    console.print(table)
    if "latency" in only:
        console.print(
            f"fsync of this disk meanwhile (write 30 KB + fsync, 10 ms apart): "
            f"p50 {fsync_p50:.2f} ms, p99 {fsync_p99:.2f} ms; every batch waits for one."
        )
        console.print(
            f"each sent as it comes: an event waited p50 {waited_ms:.2f} ms in the publisher "
            f"before it was sent (its event loop's timers wake it about 1 ms apart); the "
            f"latency includes that wait."
        )


if __name__ == "__main__":
    main()
