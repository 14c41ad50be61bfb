"""Event log figures: durable and deferred append, acknowledgement latency, replay reads, sealing.

Prints a table (median of --repeat runs). Run: ``python benchmarks/bench_eventlog.py``.
Events are ~300-byte market-data envelopes (md.trade) as in PERF_NOTES. The two
"batches of 10" rows compare a replay's small waves appended durably (one fsync per
wave) with ``durable=False`` and one ``sync()`` at the end. The machine is shared:
compare rows of one run, and quote medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tickertape.eventlog import AsyncEventLog, EventLog, LogReader
from tickertape.eventlog.sealing import compact
from tickertape.schemas import Envelope, encode_payload
from tickertape.schemas.market import Trade

T0 = 1_723_161_600_000_000_000  # 2024-08-09T00:00:00Z


def make_envelope(i: int, topics: int = 1, source: str = "bench") -> Envelope:
    """The ``i``-th md.trade envelope (i ≥ 1) of a round-robin over ``topics`` topics, 1 ms apart."""
    sym = f"SYM{i % topics}"
    trade = Trade(
        symbol=sym,
        price=61_000.0 + (i % 500) * 0.01,
        size=0.001 * (i % 97 + 1),
        side="buy" if i % 3 else "sell",
        trade_id=str(3_000_000_000 + i),
    )
    ts = T0 + i * 1_000_000
    return Envelope(
        id=f"{source}:{i}",
        topic=f"md.trade.crypto.{sym}",
        type="md.trade",
        v=1,
        market="crypto",
        ts_event=ts,
        ts_init=ts + 250_000,
        source=source,
        source_seq=i,
        payload=encode_payload(trade),
    )


def make_envelopes(n: int, topics: int = 1, source: str = "bench") -> list[Envelope]:
    """n md.trade envelopes spread round-robin over ``topics`` topics, 1 ms apart."""
    return [make_envelope(i, topics, source) for i in range(1, n + 1)]


def bench_append(n: int, batch: int, *, durable: bool = True) -> float:
    """Events/s appending ``n`` events in batches; with ``durable=False`` the final
    sync() (everything made durable at the end) is inside the timing."""
    envs = make_envelopes(n)
    with tempfile.TemporaryDirectory() as d:
        log = EventLog.open(d)
        t = time.perf_counter()
        for i in range(0, n, batch):
            log.append(envs[i : i + batch], durable=durable)
        log.sync()
        dt = time.perf_counter() - t
        log.close()
    return n / dt


async def _latency(rate: int, seconds: float) -> tuple[float, float, float]:
    """p50, p99 and max acknowledgement latency (ms) of single-event appends offered at
    ``rate`` per second, each from its own task.

    Like a producer, the harness makes each envelope when it offers it and keeps only
    the appends in flight: holding every envelope and every finished task (30 000 of
    each at 10 k/s for 3 s) made the interpreter's full garbage collections take
    10–60 ms, which showed up as the p99 of the log.
    """
    n = int(rate * seconds)
    with tempfile.TemporaryDirectory() as d:
        log = await AsyncEventLog.open(d)
        latencies: list[float] = []
        loop = asyncio.get_running_loop()
        start = loop.time()
        in_flight: set[asyncio.Task[None]] = set()

        async def one(env: Envelope) -> None:
            t = time.perf_counter()
            await log.append([env])
            latencies.append(time.perf_counter() - t)

        for i in range(n):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(make_envelope(i + 1)), name=f"append-{i}")
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        while in_flight:
            await asyncio.gather(*in_flight)
        await log.close()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return q[49] * 1e3, q[98] * 1e3, latencies[-1] * 1e3


def bench_reads(n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        log = EventLog.open(d)
        envs1 = make_envelopes(n, 1, "one")
        for i in range(0, n, 10_000):
            log.append(envs1[i : i + 10_000])
        log.close()
        reader = LogReader(d)
        topic = reader.topics()[0]
        t = time.perf_counter()
        count = sum(1 for _ in reader.read_topic(topic))
        out["read one topic (open day)"] = count / (time.perf_counter() - t)
        sizes_open = sum(p.stat().st_size for p in Path(d).rglob("*.jsonl"))
        log = EventLog.open(d)
        compact(log, include_open=True)
        log.close()
        sizes_sealed = sum(p.stat().st_size for p in Path(d).rglob("*.zst"))
        reader = LogReader(d)
        t = time.perf_counter()
        count = sum(1 for _ in reader.read_topic(topic))
        out["read one topic (sealed day)"] = count / (time.perf_counter() - t)
        out["sealing ratio"] = sizes_open / sizes_sealed
    with tempfile.TemporaryDirectory() as d:
        log = EventLog.open(d)
        envs = make_envelopes(n, 10, "ten")
        for i in range(0, n, 10_000):
            log.append(envs[i : i + 10_000])
        log.close()
        reader = LogReader(d)
        t = time.perf_counter()
        count = sum(1 for _ in reader.read())
        out["merged read of 10 topics by gseq"] = count / (time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=3.0)
    args = parser.parse_args()

    rows: list[tuple[str, str, str]] = []
    for batch in (1_000, 10_000):
        v = statistics.median(bench_append(args.events, batch) for _ in range(args.repeat))
        rows.append((f"durable append, batches of {batch:,}", f"{v:,.0f} events/s", "≥ 400,000"))
    # Small waves of a replay: one fsync per batch, or deferred (durable=False) to one
    # sync at the end.
    small = max(10, args.events // 10)
    v = statistics.median(bench_append(small, 10) for _ in range(args.repeat))
    rows.append(("durable append, batches of 10", f"{v:,.0f} events/s", ""))
    v = statistics.median(bench_append(args.events, 10, durable=False) for _ in range(args.repeat))
    rows.append(("durable=False append, batches of 10, one sync", f"{v:,.0f} events/s", ""))
    lat = [asyncio.run(_latency(10_000, args.latency_seconds)) for _ in range(args.repeat)]
    rows.append(
        ("ack latency p50 @ 10k/s one by one", f"{statistics.median(x[0] for x in lat):.3f} ms", "")
    )
    rows.append(
        (
            "ack latency p99 @ 10k/s one by one",
            f"{statistics.median(x[1] for x in lat):.3f} ms",
            "≤ 2 ms",
        )
    )
    reads = [bench_reads(args.events) for _ in range(args.repeat)]
    targets = {
        "read one topic (open day)": "≥ 1,000,000",
        "read one topic (sealed day)": "≥ 70% of open",
        "merged read of 10 topics by gseq": "≥ 700,000",
        "sealing ratio": "≥ 5×",
    }
    for key, target in targets.items():
        v = statistics.median(r[key] for r in reads)
        unit = "×" if key == "sealing ratio" else " events/s"
        rows.append((key, f"{v:,.1f}{unit}" if unit == "×" else f"{v:,.0f}{unit}", target))
    table = Table(title=f"event log, {args.events:,} events of ~300 B, median of {args.repeat}")
    table.add_column("measure")
    table.add_column("median", justify="right")
    table.add_column("target", justify="right")
    for r in rows:
        table.add_row(*r)
    Console().print(table)


if __name__ == "__main__":
    main()
