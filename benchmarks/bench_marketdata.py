"""Market-data headline figures on the bundled real data; prints a table.

1. Import: the four Binance capture files, the CME 6E and FTX BTC-PERP 1-minute bars,
   parsed, merged and appended durably (fsync'd) to a fresh log with ``import_files``
   (the path of ``tape import``); events/s per phase and end to end (parse + import),
   by wall clock and by this process's CPU time (what it would reach alone on a
   core: the machine is usually shared). Also ``tape import binance-ws`` run as a
   process, start-up included.
2. Indicators: the full default set (SMA 10/20, EMA 10/20, RSI 14, MACD 12/26/9,
   TRANGE, ATR 14, DMI/ADX 14, Bollinger 20/2) on 45,031 FTX bars, µs of CPU per
   bar: calculators alone (``update_bar`` as the actor calls it, which returns each
   indicator's values dict); the
   actor including building every IndicatorValue payload (publishing a no-op with
   ``Context.publish``'s signature: the issue's measure, log excluded); for scale,
   the actor with the runtime's ActorContext, which also builds every envelope; and
   ten payloads built and published without any computation (the floor of one event
   per indicator value).
3. Live adapter: ``tape exchange-sim`` (a separate process) serving both symbols'
   captures at 50x the recorded pace; frames received, gaps, wall time.

Every figure is the median of ``--runs`` runs (3 by default).

Run: ``.venv/bin/python benchmarks/bench_marketdata.py [--skip-live] [--runs N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from tickertape.actors.base import Event
from tickertape.actors.indicators import IndicatorActor, IndicatorsConfig
from tickertape.actors.indicators.actor import SeriesConfig, _Series
from tickertape.actors.marketdata.binance_client import BinanceLiveAdapter
from tickertape.actors.marketdata.importers import (
    ParsedEvent,
    ParsedFile,
    parse_binance_ws,
    parse_ohlcv_csv,
    paused_gc,
)
from tickertape.actors.marketdata.loader import BATCH_SIZE, build_envelopes, import_files
from tickertape.actors.runtime.context import ActorContext
from tickertape.eventlog import EventLog, LogReader
from tickertape.schemas.envelope import Record
from tickertape.schemas.market import Gap
from tickertape.schemas.registry import encode_payload, schema_key
from tickertape.timeauthority.clock import ActorClock, SimulatedClock
from tickertape.timeauthority.timers import TimerQueue

DATA = Path(__file__).resolve().parents[1] / "data"
BINANCE = sorted((DATA / "binance-spot-ws-2024-08-08").glob("*.gz"))
CME = DATA / "cme-6eh4-1m-2024-01" / "6EH4.XCME_1min_bars_20240101_20240131.csv.gz"
FTX = DATA / "ftx-btc-perp-1m-2022-01" / "btc-perp-20211231-20220201_1m.csv.gz"


def _parse_all() -> list[ParsedFile]:
    parsed = [parse_binance_ws(p) for p in BINANCE]
    parsed.append(parse_ohlcv_csv(CME, market="us", symbol="6EH4", interval="1m", stamp="end"))
    parsed.append(parse_ohlcv_csv(FTX, market="crypto", symbol="BTC-PERP", interval="1m"))
    return parsed


def _import_once() -> dict[str, float]:
    """One import of the six files into a fresh log: seconds (wall and CPU) per phase."""
    w0, c0 = time.perf_counter(), time.process_time()
    parsed = _parse_all()
    w1, c1 = time.perf_counter(), time.process_time()
    with paused_gc():
        envelopes = sum(1 for _ in build_envelopes(parsed))
    w2, c2 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as data_dir:
        log = EventLog.open(data_dir)
        try:
            w3, c3 = time.perf_counter(), time.process_time()
            reports = import_files(log, parsed)
            w4, c4 = time.perf_counter(), time.process_time()
        finally:
            log.close()
    stored = sum(r.manifest.events_stored for r in reports)
    assert stored == envelopes, (stored, envelopes)
    return {
        "events": stored,
        "parse": w1 - w0,
        "parse_cpu": c1 - c0,
        "envelopes": w2 - w1,
        "envelopes_cpu": c2 - c1,
        "import": w4 - w3,
        "import_cpu": c4 - c3,
    }


def _cli_import_once() -> tuple[int, float]:
    """``tape import binance-ws`` of the four captures as a process: (events, wall s)."""
    tape = Path(sys.executable).parent / "tape"
    with tempfile.TemporaryDirectory() as data_dir:
        t0 = time.perf_counter()
        subprocess.run(
            [str(tape), "import", "binance-ws", *map(str, BINANCE), "--data-dir", data_dir],
            check=True,
            capture_output=True,
        )
        elapsed = time.perf_counter() - t0
        events = LogReader(data_dir, "main").head_gseq() - len(BINANCE)  # minus manifests
    return events, elapsed


def bench_import(runs: int) -> list[tuple[str, str, str]]:
    samples = [_import_once() for _ in range(runs)]
    n = samples[0]["events"]

    def rate(*phases: str) -> tuple[str, str]:
        wall = statistics.median(sum(s[p] for p in phases) for s in samples)
        cpu = statistics.median(sum(s[p + "_cpu"] for p in phases) for s in samples)
        return f"{n / wall:,.0f} events/s", f"CPU-bound {n / cpu:,.0f}/s"

    cli = [_cli_import_once() for _ in range(runs)]
    cli_events = cli[0][0]
    cli_wall = statistics.median(e for _, e in cli)
    parse = rate("parse")
    envelopes = rate("envelopes")
    imported = rate("import")
    end_to_end = rate("parse", "import")
    return [
        ("import: parse (6 files)", parse[0], f"{n:,} events; {parse[1]}"),
        ("import: envelopes + merge", envelopes[0], f"alone, for scale; {envelopes[1]}"),
        (
            "import: envelopes + durable append",
            imported[0],
            f"import_files: fsync'd batches of {BATCH_SIZE:,}; {imported[1]}",
        ),
        ("import: end to end", end_to_end[0], f"target >= 150,000; {end_to_end[1]}"),
        (
            "tape import binance-ws (process)",
            f"{cli_events / cli_wall:,.0f} events/s",
            f"{cli_events:,} events, {cli_wall:.2f} s incl. start-up",
        ),
    ]


class _NullContext:
    """A publish that does nothing, with the signature of ``Context.publish``.

    A catch-all ``**kwargs`` stub would cost about 0.17 µs more per call (it builds a
    dict of the keyword arguments), which the real context does not pay.
    """

    def __init__(self) -> None:
        self.published = 0

    def publish(
        self,
        topic: str,
        payload: Any,
        *,
        market: Any,
        ts_event: int | None = None,
        causation: Any = None,
        correlation_id: str | None = None,
    ) -> str:
        self.published += 1
        return ""


def _calculators_once(bars: list[tuple[float, float, float]]) -> float:
    """µs of CPU per bar for the full set's calculators alone, as the actor calls them
    (their values dicts included, no payload Struct, no publish)."""
    series = _Series("crypto", "BTC-PERP", 0, SeriesConfig())
    updates = [update_bar for update_bar, *_ in series.plan]
    t0 = time.process_time()
    for high, low, close in bars:
        for update_bar in updates:
            update_bar(high, low, close)
    return (time.process_time() - t0) / len(bars) * 1e6


def _payloads_once(stored: list[Event]) -> float:
    """µs of CPU per bar to build ten IndicatorValue payloads and publish them (no-op).

    No computation: one-value dicts of a constant. The floor of one event per
    indicator value, whatever the calculators cost.
    """
    series = _Series("crypto", "BTC-PERP", 0, SeriesConfig())
    outputs = [(topic, template) for *_, topic, template in series.plan]  # the actor's
    null = _NullContext()
    publish = null.publish
    replace = msgspec.structs.replace
    t0 = time.process_time()
    for event in stored:
        ts = event.ts_event
        for topic, template in outputs:
            publish(
                topic,
                replace(template, values={"value": 1.0}, bar_ts=ts),
                market="crypto",
                ts_event=ts,
                causation=event,
            )
    return (time.process_time() - t0) / len(stored) * 1e6


def _actor_null(config: IndicatorsConfig, stored: list[Event]) -> tuple[float, int]:
    """µs of CPU per bar for the actor with a no-op publish, and how many it published."""
    actor = IndicatorActor(config)
    null = _NullContext()
    t0 = time.process_time()
    for event in stored:
        actor.on_event(event, null)  # type: ignore[arg-type]
    return (time.process_time() - t0) / len(stored) * 1e6, null.published


def _actor_context(config: IndicatorsConfig, stored: list[Event]) -> float:
    """µs of CPU per bar for the actor with the runtime's ActorContext (envelopes built)."""
    actor = IndicatorActor(config)
    source = SimulatedClock()
    ctx = ActorContext("indicators", ActorClock("indicators", source, TimerQueue()))
    t0 = time.process_time()
    for event in stored:
        source.advance_to(event.ts_event)
        actor.on_event(event, ctx)
        ctx.outputs.clear()
    return (time.process_time() - t0) / len(stored) * 1e6


PER_INDICATOR = IndicatorsConfig()
PER_BAR = IndicatorsConfig(series=[SeriesConfig(publish="per_bar")])


def _indicators_once(events: list[ParsedEvent], stored: list[Event]) -> tuple[float, ...]:
    """µs per bar: calculators alone; the actor per indicator (null context, real
    context); the actor per bar (likewise); ten payloads without computation; and the
    numbers of events published per indicator and per bar."""
    bars = [(e.payload.high, e.payload.low, e.payload.close) for e in events]  # type: ignore[attr-defined]
    calc_us = _calculators_once(bars)
    actor_us, published = _actor_null(PER_INDICATOR, stored)
    context_us = _actor_context(PER_INDICATOR, stored)
    bar_us, bar_published = _actor_null(PER_BAR, stored)
    bar_context_us = _actor_context(PER_BAR, stored)
    payloads_us = _payloads_once(stored)
    return (
        calc_us,
        actor_us,
        context_us,
        bar_us,
        bar_context_us,
        payloads_us,
        published,
        bar_published,
    )


def bench_indicators(runs: int) -> list[tuple[str, str, str]]:
    (events,) = parse_ohlcv_csv(
        FTX, market="crypto", symbol="BTC-PERP", interval="1m"
    ).streams.values()
    stored = [_event(e, i) for i, e in enumerate(events, start=1)]
    samples = [_indicators_once(events, stored) for _ in range(runs)]
    calc_us, actor_us, context_us, bar_us, bar_context_us, payloads_us = (
        statistics.median(s[i] for s in samples) for i in range(6)
    )
    published, bar_published = samples[0][6:]
    return [
        (
            "indicators: calculators, full set",
            f"{calc_us:.2f} µs/bar",
            f"{len(events):,} bars, 10 indicators, values dicts, no payloads; CPU time",
        ),
        (
            "indicators: actor incl. payloads",
            f"{actor_us:.2f} µs/bar",
            f"target <= 5; {published:,} IndicatorValue built, publish a no-op",
        ),
        (
            "indicators: actor, runtime context",
            f"{context_us:.2f} µs/bar",
            "for scale: ActorContext builds every envelope (log excluded)",
        ),
        (
            "indicators: actor, publish per_bar",
            f"{bar_us:.2f} µs/bar",
            f"target <= 5; {bar_published:,} IndicatorBar built, publish a no-op",
        ),
        (
            "indicators: per_bar, runtime context",
            f"{bar_context_us:.2f} µs/bar",
            "one envelope per bar instead of ten (log excluded)",
        ),
        (
            "indicators: ten payloads, no math",
            f"{payloads_us:.2f} µs/bar",
            "the floor of one event per value: IndicatorValue + values dict + publish",
        ),
    ]


def _event(e: ParsedEvent, gseq: int) -> Event:
    type_, v = schema_key(e.payload)
    record = Record(
        id=f"b:{gseq}",
        topic=e.topic,
        type=type_,
        v=v,
        market=e.market,
        ts_event=e.ts_event,
        ts_init=e.ts_event,
        source="b",
        source_seq=gseq,
        causation_id=None,
        correlation_id=None,
        payload=encode_payload(e.payload),
        offset=gseq - 1,
        gseq=gseq,
        ts_log=e.ts_event,
    )
    return Event(record=record, payload=e.payload)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_simulator(speed: float) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    tape = Path(sys.executable).parent / "tape"
    args = [str(tape), "exchange-sim", "--speed", str(speed), "--port", str(port)]
    for path in BINANCE:
        args += ["--capture", str(path)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    url = f"http://127.0.0.1:{port}/api/v3/depth?symbol=BTCUSDT&limit=5"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return process, port
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def _follow(port: int, frames: int) -> tuple[BinanceLiveAdapter, int, float]:
    gaps = 0
    done = asyncio.Event()
    adapter: BinanceLiveAdapter

    async def sink(batch: list[ParsedEvent]) -> None:
        nonlocal gaps
        gaps += sum(isinstance(e.payload, Gap) for e in batch)
        if adapter.feed.stats.messages >= frames:
            done.set()

    adapter = BinanceLiveAdapter(
        f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}", ["BTCUSDT", "ETHUSDT"], sink
    )
    task = asyncio.create_task(adapter.run(), name="bench-adapter")
    t0 = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 300)
    elapsed = time.perf_counter() - t0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return adapter, gaps, elapsed


def bench_live(speed: float) -> list[tuple[str, str, str]]:
    frames = sum(gzip.decompress(path.read_bytes()).count(b'{"stream"') for path in BINANCE)
    process, port = _start_simulator(speed)
    try:
        adapter, gaps, elapsed = asyncio.run(_follow(port, frames))
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait()
    stats = adapter.feed.stats
    return [
        (
            f"live adapter at {speed:g}x",
            f"{stats.messages:,}/{frames:,} frames",
            f"{gaps} gaps, {stats.resyncs} resyncs, {elapsed:.1f} s wall "
            f"({stats.messages / elapsed:,.0f} frames/s)",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--speed", type=float, default=50.0)
    parser.add_argument("--runs", type=int, default=3, help="Runs per figure (medians).")
    options = parser.parse_args()
    rows = bench_import(options.runs) + bench_indicators(options.runs)
    if not options.skip_live:
        rows += bench_live(options.speed)
    table = Table(title="tickertape market data (bundled real data)")
    table.add_column("measure")
    table.add_column("result", justify="right")
    table.add_column("notes")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
