"""Silences found by timer, through the real runtime: a stream that stops for good within
market hours is reported at its deadline, one that stops at the close is not, one that
resumes is reported open once and whole once; snapshots, and in-process against
distributed replays, give the same log."""

from __future__ import annotations

import gzip
import shutil
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from tests.actors.marketdata.harness import make_event
from tickertape.actors.marketdata import MarketDataActor, MarketDataConfig
from tickertape.actors.marketdata.importers import parse_binance_ws, parse_ohlcv_csv
from tickertape.actors.marketdata.loader import import_files
from tickertape.actors.marketdata.sessions import MarketHours
from tickertape.actors.runtime.inprocess import InProcessHost
from tickertape.actors.runtime.resolution import resolve
from tickertape.actors.runtime.sink import MemorySink
from tickertape.cli.system_commands import hash_namespace
from tickertape.eventlog import EventLog, LogReader
from tickertape.replay import RunSettings, run_in_process
from tickertape.replay.distributed import run_distributed
from tickertape.schemas.envelope import Record
from tickertape.schemas.market import Bar, Gap, Quote, Trade
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.scheduler import StepPlanner

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "data"
BTC = [DATA / "binance-spot-ws-2024-08-08" / f"btcusdt_2024080{day}.gz" for day in (8, 9)]
CME = DATA / "cme-6eh4-1m-2024-01" / "6EH4.XCME_1min_bars_20240101_20240131.csv.gz"
SECOND = 1_000_000_000
SILENCE_FROM = 1_723_161_480 * SECOND  # 2024-08-08 23:58 UTC
SILENCE_NS = 180 * SECOND
TRADES = "md.trade.crypto.BTCUSDT"
QUOTES = "md.quote.crypto.BTCUSDT"
CRYPTO = MarketDataConfig(
    trade_patterns=[],
    silence_patterns=["md.trade.crypto.*", "md.quote.crypto.*"],
    max_silence_s={"crypto": 60},
)


def _ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * SECOND


@pytest.fixture(scope="module")
def btc() -> list[Record]:
    """The BTCUSDT capture's trades and quotes, three minutes cut out, as stored records."""
    parsed = [
        e
        for path in BTC
        for events in parse_binance_ws(path).streams.values()
        for e in events
        if isinstance(e.payload, Trade | Quote)
        and not SILENCE_FROM <= e.ts_event < SILENCE_FROM + SILENCE_NS
    ]
    parsed.sort(key=lambda e: e.ts_event)
    return [
        make_event(e.topic, e.payload, e.market, e.ts_event, i).record
        for i, e in enumerate(parsed, 1)
    ]


def _replay(
    config: MarketDataConfig,
    records: list[Record],
    end_ns: int | None,
    *,
    host: InProcessHost | None = None,
) -> tuple[MemorySink, int]:
    """Run the records through the actor (a fresh host unless given); return the sink
    and the number of steps."""
    if host is None:
        host = InProcessHost(MemorySink(), clock=SimulatedClock(records[0].ts_event))
        host.add(MarketDataActor(config))
        host.start()
    planner = StepPlanner(records, host.timers, start_ns=host.clock.now_ns(), end_ns=end_ns)
    steps = host.run(planner)
    assert isinstance(host.sink, MemorySink)
    return host.sink, steps


def _gaps(records: list[Record]) -> list[tuple[Record, Gap]]:
    return [(r, msgspec.json.decode(r.payload, type=Gap)) for r in records if r.type == "md.gap"]


def test_a_stream_that_stops_for_good_is_reported_at_its_deadline(btc: list[Record]) -> None:
    """Trades stop for good before the silence; the replay goes on for 10 minutes of clock:
    one open md.gap, at the deadline (last trade + 60 s + 1 ns), stored at that time."""
    trades = [r for r in btc if r.topic == TRADES and r.ts_event < SILENCE_FROM]
    last = trades[-1].ts_event
    sink, _ = _replay(CRYPTO, trades, last + 600 * SECOND)
    ((record, gap),) = _gaps(sink.records)
    assert record.topic == "md.gap.crypto.BTCUSDT"
    assert record.ts_event == record.ts_log == last + 60 * SECOND + 1
    assert record.causation_id is None
    assert (gap.kind, gap.stream, gap.symbol, gap.missing) == ("time", "trade", "BTCUSDT", 0)
    assert (gap.last_seen, gap.next_seen, gap.open) == (last, 0, True)
    assert bytes(record.payload).endswith(b',"open":true}')
    # A run that ends before the deadline reports nothing.
    sink, _ = _replay(CRYPTO, trades, last + 60 * SECOND)
    assert _gaps(sink.records) == []


def _cme_trades(until_ns: int) -> list[Record]:
    """The 6E minute closes as trades (one per bar, at its close), up to ``until_ns``."""
    (parsed,) = parse_ohlcv_csv(
        CME, market="us", symbol="6EH4", interval="1m", stamp="end"
    ).streams.values()
    closes = [
        (e.ts_event, e.payload.close)
        for e in parsed
        if isinstance(e.payload, Bar) and e.ts_event <= until_ns
    ]
    return [
        make_event(
            "md.trade.us.6EH4",
            Trade(symbol="6EH4", price=close, size=1.0, side="buy", trade_id=str(i)),
            "us",
            ts,
            i,
        ).record
        for i, (ts, close) in enumerate(closes, 1)
    ]


def test_a_stream_that_stops_at_the_close_is_no_gap_until_the_market_has_been_open_long_enough() -> (
    None
):
    """6E trades stop at Friday's 16:00 Chicago close: nothing over the weekend; the open gap
    comes 10 minutes of open market after Sunday's 17:00 reopening."""
    config = MarketDataConfig(
        trade_patterns=[],
        silence_patterns=["md.trade.us.*"],
        max_silence_s={"us": 600},
        calendars={"us": "us-futures"},
    )
    trades = _cme_trades(_ns("2024-01-05 22:00"))
    last = trades[-1].ts_event
    assert last == _ns("2024-01-05 22:00")  # the close (22:00 UTC in winter)
    deadline = _ns("2024-01-07 23:10") + 1  # reopening 23:00 UTC + 600 s + 1 ns
    assert MarketHours("us-futures").after_open_ns(last, 600 * SECOND + 1) == deadline
    sink, _ = _replay(config, trades, deadline - 1)
    assert _gaps(sink.records) == []  # the week's daily closes are no gap either
    sink, _ = _replay(config, trades, deadline)
    ((record, gap),) = _gaps(sink.records)
    assert record.ts_event == deadline
    assert (gap.last_seen, gap.next_seen) == (last, 0)
    assert gap.detail == "open: no event for 600.000 s of open market so far (bound 600 s)"


def test_a_stream_that_resumes_is_reported_open_once_and_whole_once(btc: list[Record]) -> None:
    """Trades and quotes silent for three minutes: per stream one open gap at its deadline and
    one whole gap when it resumes, linked by last_seen; nothing else."""
    sink, _ = _replay(CRYPTO, btc, None)
    gaps = _gaps(sink.records)
    assert len(gaps) == 4
    for topic, stream in ((TRADES, "trade"), (QUOTES, "quote")):
        before = max(r.ts_event for r in btc if r.topic == topic and r.ts_event < SILENCE_FROM)
        after = min(r.ts_event for r in btc if r.topic == topic and r.ts_event >= SILENCE_FROM)
        (opened, o), (closed, c) = [(r, g) for r, g in gaps if g.stream == stream]
        assert (o.last_seen, o.next_seen, opened.ts_event) == (before, 0, before + 60 * SECOND + 1)
        assert (c.last_seen, c.next_seen, closed.ts_event) == (before, after, after)
        assert closed.causation_id is not None  # the resuming event


@pytest.mark.parametrize(
    ("into_silence_s", "timers"),
    [(30, {f"silence|{TRADES}", f"silence|{QUOTES}"}), (90, set())],  # 90 s: both open
)
def test_host_snapshot_inside_a_silence_resumes_to_the_same_log(
    btc: list[Record], into_silence_s: int, timers: set[str]
) -> None:
    """The host snapshots the actor (state and timers) 30 s or 90 s into the silence (before
    or after the deadlines), a new host restores it: same records, same number of steps."""
    whole, whole_steps = _replay(CRYPTO, btc, None)
    cut_ns = SILENCE_FROM + into_silence_s * SECOND
    host = InProcessHost(MemorySink(), clock=SimulatedClock(btc[0].ts_event))
    host.add(MarketDataActor(CRYPTO))
    host.start()
    sink, first_steps = _replay(
        CRYPTO, [r for r in btc if r.ts_event < SILENCE_FROM], cut_ns, host=host
    )
    snapshot = host.take_snapshot("marketdata", {"main": 0})
    assert {t.name for t in snapshot.timers} == timers
    resumed = InProcessHost(sink, clock=SimulatedClock(snapshot.clock_ns))
    resumed.add(MarketDataActor(CRYPTO))
    resumed.restore("marketdata", snapshot)
    resumed.start(call_on_start=False)
    _, second_steps = _replay(CRYPTO, [r for r in btc if r.ts_event > cut_ns], None, host=resumed)
    encode = msgspec.json.encode
    assert [encode(r) for r in sink.records] == [encode(r) for r in whole.records]
    assert first_steps + second_steps == whole_steps


def _window_capture(path: Path) -> None:
    """Four minutes of the BTCUSDT capture (by receive time), three of them cut out, the
    trades stopping for good 20 s after they resume; one book ticker in ten kept."""
    start, end = SILENCE_FROM - 20 * SECOND, SILENCE_FROM + SILENCE_NS + 50 * SECOND
    trades_end = SILENCE_FROM + SILENCE_NS + 20 * SECOND
    kept: list[bytes] = []
    tickers = 0
    for capture in BTC:
        for line in gzip.decompress(capture.read_bytes()).splitlines():
            recv = int(line.split(b" ", 1)[0])
            if not start <= recv < end or SILENCE_FROM <= recv < SILENCE_FROM + SILENCE_NS:
                continue
            if b'"btcusdt@trade"' in line and recv >= trades_end:
                continue
            if b'"btcusdt@bookTicker"' in line:
                tickers += 1
                if tickers % 10:
                    continue
            kept.append(line)
    path.write_bytes(gzip.compress(b"\n".join(kept) + b"\n"))


@pytest.mark.slow
async def test_distributed_replay_writes_the_in_process_gaps(tmp_path: Path) -> None:
    """Trades and quotes silent, resuming, then silent for good until the run's end: the
    actor in its own process through the router writes the in-process run's bytes."""
    capture = tmp_path / "btcusdt_window.gz"
    _window_capture(capture)
    data = tmp_path / "data"
    log = EventLog.open(data)
    try:
        import_files(log, [parse_binance_ws(capture)])
    finally:
        log.close()
    config = tmp_path / "marketdata.toml"
    config.write_text(
        'trade_patterns = []\nsilence_patterns = ["md.trade.crypto.*", "md.quote.crypto.*"]\n'
        "[max_silence_s]\ncrypto = 60\n",
        encoding="utf-8",
    )
    item = f"marketdata@{config}"
    settings = RunSettings(
        run_id="silence",
        start_ns=SILENCE_FROM - 30 * SECOND,
        end_ns=SILENCE_FROM + SILENCE_NS + 200 * SECOND,
        topics=[TRADES, QUOTES],
    )
    ref = tmp_path / "ref"
    shutil.copytree(data, ref)
    run_in_process(ref, settings, [resolve(item)])
    expected = hash_namespace(ref, "runs/silence")
    assert expected
    gaps = _gaps(list(LogReader(ref, "runs/silence").read(["md.gap.>"])))
    kinds = [(g.stream, "open" if g.next_seen == 0 else "whole") for _, g in gaps]
    assert kinds == [
        *[("quote", "open"), ("trade", "open")],  # the silence, at the deadlines
        *[("trade", "whole"), ("quote", "whole")],  # resumed
        *[("trade", "open"), ("quote", "open")],  # silent for good until the run's end
    ]
    await run_distributed(data, settings, [resolve(item)], [item], cwd=REPO)
    assert hash_namespace(data, "runs/silence") == expected
