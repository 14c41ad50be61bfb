"""Importing parsed files into a real event log: merge order, idempotency, manifests."""

from __future__ import annotations

import gc
from pathlib import Path

import msgspec
import pytest

from tests.actors.marketdata.logfakes import RefusingLog
from tickertape.actors.marketdata.importers import (
    ParsedFile,
    parse_binance_ws,
    parse_ohlcv_csv,
    parse_quandl_wiki,
)
from tickertape.actors.marketdata.loader import MANIFEST_TOPIC, build_envelopes, import_files
from tickertape.errors import ImportDataError, LogError
from tickertape.eventlog import EventLog
from tickertape.schemas.registry import make_envelope
from tickertape.schemas.system import ImportManifest

DATA = Path(__file__).resolve().parents[3] / "data"
BINANCE = DATA / "binance-spot-ws-2024-08-08"
QUANDL = DATA / "us-equities-daily-2014" / "QUANDL_SAMPLE_TABLE.csv"


def _small_binance(tmp_path: Path, name: str, lines: int) -> Path:
    import gzip

    data = gzip.decompress((BINANCE / name).read_bytes()).split(b"\n")[:lines]
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"\n".join(data)))
    return path


def test_merge_orders_by_time_across_files_whatever_the_argument_order(tmp_path: Path) -> None:
    """Envelopes from several files come out in ts_event order, identically for any file order."""
    btc = parse_binance_ws(_small_binance(tmp_path, "btcusdt_20240808.gz", 2000))
    eth = parse_binance_ws(_small_binance(tmp_path, "ethusdt_20240808.gz", 2000))
    forward = list(build_envelopes([btc, eth]))
    backward = list(build_envelopes([eth, btc]))
    assert [e.id for e in forward] == [e.id for e in backward]
    stamps = [e.ts_event for e in forward]
    assert stamps == sorted(stamps)
    per_source: dict[str, int] = {}
    for e in forward:
        assert e.source_seq == per_source.get(e.source, 0) + 1
        per_source[e.source] = e.source_seq


def test_import_is_durable_and_idempotent(tmp_path: Path) -> None:
    """A second import of the same files stores nothing new; manifests count both runs."""
    files = [
        parse_quandl_wiki(QUANDL),
        parse_binance_ws(_small_binance(tmp_path, "btcusdt_20240809.gz", 3000)),
    ]
    data_dir = tmp_path / "store"
    log = EventLog.open(data_dir)
    try:
        first = import_files(log, files, batch_size=700)
        head = log.head_gseq
        second = import_files(log, files, batch_size=700)
        assert log.head_gseq == head
    finally:
        log.close()
    total = sum(len(events) for f in files for events in f.streams.values())
    assert sum(r.manifest.events_stored for r in first) == total
    assert sum(r.manifest.events_duplicate for r in second) == total
    assert all(r.manifest.events_stored == 0 for r in second)
    log = EventLog.open(data_dir)
    try:
        manifests = list(log.read_topic(MANIFEST_TOPIC))
        assert len(manifests) == 2
        decoded = msgspec.json.decode(manifests[0].payload, type=ImportManifest)
        assert decoded.format == "quandl-wiki"
        assert decoded.rows_read == 916
        assert decoded.events_stored == 925
        assert head == total + 2
    finally:
        log.close()


def _bars(path: Path, symbol: str, minutes: range) -> ParsedFile:
    """1-minute bars of ``symbol`` starting at the given minutes of 2024-01-02."""
    rows = [f"2024-01-02 {m // 60:02d}:{m % 60:02d},1,2,0.5,1.5,10" for m in minutes]
    path.write_text("time,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return parse_ohlcv_csv(path, market="crypto", symbol=symbol, interval="1m")


def test_an_import_refused_for_its_times_stores_nothing(tmp_path: Path) -> None:
    """Rows older than their topic holds refuse the whole import before any batch is appended."""
    log = EventLog.open(tmp_path / "store")
    try:
        # Topic Y already holds 00:50; the import's Y bars closing 00:40-00:44 are refused,
        # and so are the X bars merged before them (40 of them, four batches of 10).
        import_files(log, [_bars(tmp_path / "y0.csv", "Y", range(49, 50))])
        x = _bars(tmp_path / "x.csv", "X", range(100))
        y = _bars(tmp_path / "y.csv", "Y", range(39, 44))
        with pytest.raises(ImportDataError, match=r"y\.csv:2: md\.bar\.1m\.crypto\.Y already"):
            import_files(log, [x, y], batch_size=10)
        assert gc.isenabled()
        assert "md.bar.1m.crypto.X" not in log.next_offsets()
        assert log.next_offsets()["md.bar.1m.crypto.Y"] == 1
    finally:
        log.close()


def test_nothing_after_a_batch_the_log_refuses_is_appended(tmp_path: Path) -> None:
    """A batch the log itself refuses stops the import: earlier batches stay, later never go."""

    log = EventLog.open(tmp_path / "store")
    try:
        x = _bars(tmp_path / "x.csv", "X", range(100))
        y = _bars(tmp_path / "y.csv", "Y", range(39, 44))
        with pytest.raises(LogError, match=r"y\.csv: .* \[TOPIC_DAMAGED\]"):
            import_files(RefusingLog(log, lambda e: e.topic.endswith(".Y")), [x, y], batch_size=10)
        assert gc.isenabled()
        # Merged by close time: 40 X bars up to 00:40, then Y and X alternate from the
        # 41st event, in the fifth batch of 10 (5 X bars): the last batch appended.
        assert log.next_offsets()["md.bar.1m.crypto.X"] == 45
    finally:
        log.close()


def test_a_source_out_of_time_order_is_refused(tmp_path: Path) -> None:
    """Events of one source that are not in ts_event order would break source_seq order."""
    parsed = _bars(tmp_path / "x.csv", "X", range(3))
    (source, events) = next(iter(parsed.streams.items()))
    shuffled = msgspec.structs.replace(parsed, streams={source: events[::-1]})
    with pytest.raises(ImportDataError, match="not in ts_event order"):
        list(build_envelopes([shuffled]))


def test_envelopes_are_what_make_envelope_builds(tmp_path: Path) -> None:
    """The merge loop's envelopes equal make_envelope's for every payload type imported."""
    files = [
        parse_quandl_wiki(QUANDL),  # bars and corporate actions
        parse_binance_ws(
            _small_binance(tmp_path, "btcusdt_20240808.gz", 3000)
        ),  # raw, trade, quote
    ]
    by_id = {
        f"{source}:{seq}": event
        for parsed in files
        for source, events in parsed.streams.items()
        for seq, event in enumerate(events, 1)
    }
    envelopes = list(build_envelopes(files))
    assert len(envelopes) == len(by_id)
    assert {e.type for e in envelopes} == {
        "md.bar",
        "md.corporate_action",
        "raw.message",
        "md.trade",
        "md.quote",
    }
    for envelope in envelopes:
        event = by_id[envelope.id]
        expected = make_envelope(
            event.payload,
            topic=event.topic,
            source=envelope.source,
            source_seq=envelope.source_seq,
            ts_event=event.ts_event,
            market=event.market,
        )
        assert msgspec.json.encode(envelope) == msgspec.json.encode(expected)


def test_a_partly_imported_file_resumes_after_what_the_log_holds(tmp_path: Path) -> None:
    """The log holding a file's first 50 bars: importing all 120 stores the other 70 only."""
    log = EventLog.open(tmp_path / "store")
    try:
        (first,) = import_files(log, [_bars(tmp_path / "x.csv", "X", range(50))])
        (second,) = import_files(log, [_bars(tmp_path / "x.csv", "X", range(120))])
        stored = list(log.read_topic("md.bar.1m.crypto.X"))
    finally:
        log.close()
    assert (first.manifest.events_stored, first.manifest.events_duplicate) == (50, 0)
    assert (second.manifest.events_stored, second.manifest.events_duplicate) == (70, 50)
    assert [r.source_seq for r in stored] == list(range(1, 121))
    assert len({r.ts_event for r in stored}) == 120
