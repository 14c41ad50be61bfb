"""Replay and runtime figures (issue 4), printed as a table.

1. in-process dispatch overhead per event per actor (pass-through actors);
2. actor catch-up from the log (read + decode + deliver, trivial handler);
3. distributed replay steps/s over loopback with six actor processes;
4. restart of a live actor with a snapshot and 1 M events of history after it,
   through a router: time until ``caught_up``.

Run: ``.venv/bin/python benchmarks/bench_replay.py [--quick]``. Figures vary ±10–50 %
run to run on a small VM (PERF_NOTES.md): compare ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from rich.console import Console
from rich.table import Table

from tickertape.actors.base import Actor, Context, Event
from tickertape.schemas.envelope import Envelope, Record, stamp
from tickertape.schemas.market import Trade
from tickertape.schemas.registry import encode_payload

MS = 1_000_000
REPO = Path(__file__).resolve().parents[1]
START = 1_704_067_200 * 10**9


class PassConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Identity of a pass-through actor."""

    name: str = "pass"


class PassThrough(Actor):
    """Handles every market-data event and does nothing."""

    CONFIG_CLASS = PassConfig
    name = "pass"
    subscriptions = ("md.>",)

    def __init__(self, config: PassConfig | None = None) -> None:
        self.name = (config or PassConfig()).name  # type: ignore[misc]
        self.seen = 0

    def on_event(self, event: Event, ctx: Context) -> None:
        self.seen += 1


def trades(n: int, *, per_step: int = 1) -> list[Envelope]:
    """``n`` md.trade envelopes, ``per_step`` sharing each ts_event, 1 ms apart."""
    payload = encode_payload(Trade(symbol="BTCUSDT", price=1.0, size=1.0, side="buy", trade_id="1"))
    return [
        Envelope(
            id=f"marketdata:{i + 1}",
            topic="md.trade.crypto.BTCUSDT",
            type="md.trade",
            v=1,
            market="crypto",
            ts_event=START + (i // per_step) * MS,
            ts_init=START,
            source="marketdata",
            source_seq=i + 1,
            payload=payload,
        )
        for i in range(n)
    ]


def bench_dispatch(n: int, actors: int) -> float:
    """µs per event per actor added by the in-process host."""
    from tickertape.actors.runtime import InProcessHost, MemorySink
    from tickertape.timeauthority import SimulatedClock, StepPlanner

    records: list[Record] = [stamp(e, i, i + 1, e.ts_event) for i, e in enumerate(trades(n))]

    def run(k: int) -> float:
        host = InProcessHost(MemorySink(), clock=SimulatedClock(START))
        for i in range(k):
            host.add(PassThrough(PassConfig(name=f"p{i}")))
        host.start()
        t0 = time.perf_counter()
        host.run(StepPlanner(records, host.timers, start_ns=START))
        return time.perf_counter() - t0

    base = min(run(0) for _ in range(3))
    full = min(run(actors) for _ in range(3))
    return (full - base) / (n * actors) * 1e6


def bench_catch_up(data_dir: Path, n: int) -> float:
    """Events/s: read a topic from the log, decode, deliver to one trivial actor."""
    from tickertape.actors.runtime.remote import HostedActor
    from tickertape.eventlog import LogReader
    from tickertape.timeauthority import SimulatedClock

    clock = SimulatedClock(START + n * MS)
    hosted = HostedActor(PassThrough(), "pass", clock)
    reader = LogReader(data_dir, "main")
    t0 = time.perf_counter()
    batch: list[Record] = []
    for record in reader.read(["md.>"]):
        batch.append(record)
        if len(batch) == 1000:
            hosted.deliver(batch)
            batch = []
    hosted.deliver(batch)
    elapsed = time.perf_counter() - t0
    assert hosted.ctx.events_handled == n, hosted.ctx.events_handled
    return n / elapsed


async def bench_distributed(data_dir: Path, steps: int, *, batch_steps: int = 512) -> float:
    """Steps/s of a distributed replay with six pass-through actor processes.

    The pass-through actors cannot feed one another, so the time authority sends
    them steps in batches of up to ``batch_steps``; 1 runs every step on its own (the
    rate of actors that do feed one another: one round trip per step and wave).
    """
    from tickertape.actors.runtime.resolution import resolve
    from tickertape.replay import RunSettings
    from tickertape.replay.distributed import run_distributed

    items = []
    for i in range(6):
        cfg = data_dir / f"p{i}.toml"
        cfg.write_text(f'name = "p{i}"\n')
        items.append(f"benchmarks.bench_replay:PassThrough@{cfg}")
    specs = [resolve(i) for i in items]
    settings = RunSettings(run_id=f"bench{batch_steps}", start_ns=START, end_ns=START + steps * MS)
    marks: dict[int, float] = {}

    def on_step(_supervisor: object, index: int, _time_ns: int) -> None:
        marks[index] = time.perf_counter()

    result = await run_distributed(
        data_dir,
        settings,
        specs,
        items,
        cwd=REPO,
        on_step=on_step,  # type: ignore[arg-type]
        batch_steps=batch_steps,
    )
    assert result.steps == steps, result.steps
    started = marks.pop(-1)  # the start step: actors joined and started
    return steps / (max(marks.values()) - started)


async def bench_restart(data_dir: Path, n: int) -> float:
    """Seconds from start to the last event handled, for a live actor restored from a
    snapshot at position 0, through a router running in its own process."""
    import socket

    from tickertape.actors.runtime.remote import RemoteHost
    from tickertape.client import Client
    from tickertape.replay.supervision import tape_command
    from tickertape.snapshots import SnapshotPolicy

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    router = await asyncio.create_subprocess_exec(
        *tape_command(),
        "--log-level",
        "warning",
        "router",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--health-interval",
        "3600",
    )
    client = Client(f"ws://127.0.0.1:{port}", "pass")
    try:
        await client.start()
        policy = SnapshotPolicy(every_events=None, every_ns=None, on_stop=False)
        process = RemoteHost(client, PassThrough(), "pass", data_dir, policy=policy)
        process.store.save(process.hosted.take_snapshot({"main": 0}))
        t0 = time.perf_counter()
        task = asyncio.create_task(process.run(), name="bench-actor")
        while process.position < n and not task.done():  # noqa: ASYNC110 (a benchmark polls)
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - t0
        process.stop()
        await task
        return elapsed
    finally:
        await client.close()
        router.terminate()
        await router.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke run)")
    args = parser.parse_args()
    n_dispatch = 20_000 if args.quick else 200_000
    n_log = 100_000 if args.quick else 1_000_000
    n_steps = 300 if args.quick else 3_000

    from tickertape.eventlog import EventLog

    table = Table(title="replay and runtime")
    table.add_column("figure")
    table.add_column("measured", justify="right")
    table.add_column("target", justify="right")
    table.add_row(
        "in-process dispatch per event per actor (6 pass-through actors)",
        f"{bench_dispatch(n_dispatch, 6):.2f} µs",
        "≤ 2 µs",
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        log = EventLog.open(data, "main")
        envs = trades(n_log)
        for i in range(0, n_log, 10_000):
            log.append(envs[i : i + 10_000], ts_log=START)
        log.close()
        table.add_row(
            f"actor catch-up from the log ({n_log:,} events, read + decode + deliver)",
            f"{bench_catch_up(data, n_log):,.0f} ev/s",
            "≥ 500 k ev/s",
        )
        seconds = asyncio.run(bench_restart(data, n_log))
        table.add_row(
            f"restart with a snapshot, {n_log:,} events after it, via a router process",
            f"{seconds:.2f} s",
            "≤ 3 s (1 M)",
        )
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        log = EventLog.open(data, "main")
        log.append(trades(n_steps), ts_log=START)
        log.close()
        rate = asyncio.run(bench_distributed(data, n_steps))
        table.add_row(
            f"distributed replay, six actor processes, loopback ({n_steps:,} steps)",
            f"{rate:,.0f} steps/s",
            "≥ 2 k steps/s",
        )
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
