"""`tape feed` as a real process: simulator → feed → router → log, killed and restarted."""

from __future__ import annotations

import gzip
import signal
from collections import defaultdict
from pathlib import Path

import msgspec
import orjson
import pytest

from tests.system.processes import CAPTURE, Tape, eventually, free_port, latest_trade_id, wait_http
from tickertape.eventlog import LogReader
from tickertape.schemas.envelope import Record
from tickertape.schemas.market import Bar, Gap, RawMessage, Trade
from tickertape.schemas.system import ClockDrift

pytestmark = pytest.mark.slow

_SECOND_NS = 1_000_000_000


def _capture(tmp_path: Path, lines: int, drop_at: float) -> tuple[Path, list[int], int]:
    """The first ``lines`` lines of the BTCUSDT capture minus the trade at ``drop_at``
    (a fraction of the trades); returns the file, the trade ids it holds and the
    dropped id."""
    data = gzip.decompress((CAPTURE / "btcusdt_20240808.gz").read_bytes()).split(b"\n")[:lines]
    trade_lines = [i for i, line in enumerate(data) if b"@trade" in line]
    victim = trade_lines[int(len(trade_lines) * drop_at)]
    dropped = int(orjson.loads(data[victim].partition(b" ")[2])["data"]["t"])
    del data[victim]
    ids = [
        int(orjson.loads(line.partition(b" ")[2])["data"]["t"])
        for line in data
        if b"@trade" in line
    ]
    path = tmp_path / "btcusdt_capture.gz"
    path.write_bytes(gzip.compress(b"\n".join(data)))
    return path, ids, dropped


def _records(data_dir: Path, pattern: str) -> list[Record]:
    reader = LogReader(data_dir, "main")
    return list(reader.read([pattern]))


def _feed_args(router_url: str, sim_port: int, data_dir: Path) -> list[str]:
    """``tape feed`` of BTCUSDT from the simulator at ``sim_port`` through ``router_url``."""
    return [
        "feed", "--router", router_url, "--url", f"ws://127.0.0.1:{sim_port}",
        "--symbol", "BTCUSDT", "--data-dir", str(data_dir),
    ]  # fmt: skip


def _count(data_dir: Path, topic: str) -> int:
    reader = LogReader(data_dir, "main")
    if topic not in reader.topics([topic]):
        return 0
    return sum(1 for _ in reader.read_topic(topic))


def test_feed_killed_midstream_resumes_without_duplicates_or_false_gaps(tmp_path: Path) -> None:
    """SIGKILL mid-stream, restart after the venue moved on: every trade once (the
    missed ones backfilled), no duplicate event, the one real gap reported once, and
    every 1 s bar equal to the bar recomputed from the stored trades."""
    capture, ids, dropped = _capture(tmp_path, 16_000, drop_at=0.8)
    data_dir = tmp_path / "data"
    router_port, sim_port = free_port(), free_port()
    router_url = f"ws://127.0.0.1:{router_port}"
    router = Tape(
        "router",
        ["router", "--port", str(router_port), "--data-dir", str(data_dir)],
        tmp_path,
    )
    sim = Tape(
        "sim",
        ["exchange-sim", "--capture", str(capture), "--speed", "25", "--port", str(sim_port)],
        tmp_path,
    )
    feed_args = _feed_args(router_url, sim_port, data_dir)
    processes = [router, sim]
    topic = "md.trade.crypto.BTCUSDT"
    try:
        wait_http(f"http://127.0.0.1:{sim_port}/api/v3/depth?symbol=BTCUSDT&limit=5")
        feed = Tape("feed-1", feed_args, tmp_path)
        processes.append(feed)
        eventually(lambda: _count(data_dir, topic) >= 800, 60, "800 trades in the log")
        feed.signal(signal.SIGKILL)
        feed.process.wait()
        stored = _count(data_dir, topic)
        # The venue moves on while the feed is down: those trades must be backfilled.
        eventually(
            lambda: latest_trade_id(sim_port) > ids[0] + stored + 300, 30, "the venue to move on"
        )
        feed = Tape("feed-2", feed_args, tmp_path)
        processes.append(feed)
        eventually(lambda: _count(data_dir, topic) >= len(ids), 60, "every trade in the log")
        assert feed.stop() == 0, feed.output()
    finally:
        for process in reversed(processes):
            process.stop()

    trades = _records(data_dir, "md.trade.>")
    assert [int(msgspec.json.decode(r.payload, type=Trade).trade_id) for r in trades] == ids

    gaps = [msgspec.json.decode(r.payload, type=Gap) for r in _records(data_dir, "md.gap.>")]
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

    everything = _records(data_dir, ">")
    seqs = [r.source_seq for r in everything if r.source == "marketdata"]
    assert seqs == sorted(set(seqs)), "source_seq repeated or out of order"
    raw = [
        msgspec.json.decode(r.payload, type=RawMessage).message
        for r in everything
        if r.topic.startswith("raw.")
    ]
    assert len(raw) == len(set(raw)), "a raw message was stored twice"
    assert _records(data_dir, "raw.binance.btcusdt_historical_trades"), "nothing was backfilled"

    # Bars: recomputed from the stored trades, 1 s intervals, up to the last bar stored.
    bars = [msgspec.json.decode(r.payload, type=Bar) for r in _records(data_dir, "md.bar.1s.>")]
    assert len(bars) > 3
    expected: dict[int, list[Trade]] = defaultdict(list)
    for record in trades:
        expected[record.ts_event - record.ts_event % _SECOND_NS].append(
            msgspec.json.decode(record.payload, type=Trade)
        )
    for bar in bars:
        group = expected[bar.start_ns]
        assert (bar.open, bar.close) == (group[0].price, group[-1].price)
        assert bar.high == max(t.price for t in group)
        assert bar.low == min(t.price for t in group)
        assert bar.volume == pytest.approx(sum(t.size for t in group), rel=1e-12)
    assert [b.start_ns for b in bars] == sorted(k for k in expected if k <= bars[-1].start_ns)
    assert [e["late_trades"] for e in feed.log_events("stopped")] == [0]


def test_feed_reports_its_clock_to_the_time_authority(tmp_path: Path) -> None:
    """`tape feed` reports its clock like every live actor, so the time authority's drift
    check covers it: with a 1 µs bound (always exceeded by the report's transit) the
    authority stores a system.clock.drift alert naming marketdata."""
    capture, _, _ = _capture(tmp_path, 2_000, drop_at=0.5)
    data_dir = tmp_path / "data"
    router_port, sim_port = free_port(), free_port()
    router_url = f"ws://127.0.0.1:{router_port}"
    processes = [
        Tape(
            "router", ["router", "--port", str(router_port), "--data-dir", str(data_dir)], tmp_path
        ),
        Tape("sim", ["exchange-sim", "--capture", str(capture), "--port", str(sim_port)], tmp_path),
    ]
    try:
        wait_http(f"http://127.0.0.1:{sim_port}/api/v3/depth?symbol=BTCUSDT&limit=5")
        processes.append(
            Tape(
                "clock",
                ["clock", "--mode", "live", "--router", router_url, "--drift-bound-ms", "0.001"],
                tmp_path,
            )
        )
        processes.append(Tape("feed", _feed_args(router_url, sim_port, data_dir), tmp_path))

        def drift_actors() -> set[str]:
            if not _count(data_dir, "system.clock.drift"):
                return set()
            return {
                msgspec.json.decode(r.payload, type=ClockDrift).actor
                for r in _records(data_dir, "system.clock.drift")
            }

        eventually(lambda: "marketdata" in drift_actors(), 30, "a drift alert for marketdata")
    finally:
        stopped = {p.name: p.stop() for p in reversed(processes)}
    assert stopped == dict.fromkeys(stopped, 0), stopped
