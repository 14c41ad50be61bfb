"""Import defects found in review: file identity, refused rows, raw/adjusted mixing, row checks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest
from click.testing import CliRunner

from tests.actors.marketdata.logfakes import RefusingLog
from tickertape.actors.marketdata.importers import (
    ParsedFile,
    parse_krx_daily,
    parse_ohlcv_csv,
    parse_quandl_wiki,
)
from tickertape.actors.marketdata.loader import MANIFEST_TOPIC, import_files
from tickertape.cli.marketdata_commands import import_command
from tickertape.errors import ImportDataError, LogError
from tickertape.eventlog import EventLog
from tickertape.schemas.envelope import Record
from tickertape.schemas.market import Bar

DATA = Path(__file__).resolve().parents[3] / "data"
KRX_RAW = DATA / "krx-005930-daily" / "v1_005930_raw_1985_2018.csv"
KRX_ADJ = DATA / "krx-005930-daily" / "v3_005930_adjusted_2018_2021_with_features.csv"
HEADER = "timestamp,open,high,low,close,volume\n"
QUANDL_HEADER = "ticker,date,open,high,low,close,volume,ex-dividend,split_ratio\n"


def _minute_bars(path: Path, minutes: Sequence[int]) -> Path:
    """A 1-minute bar CSV of 2024-01-02 with bars starting at ``minutes`` past midnight."""
    rows = [f"2024-01-02 {m // 60:02d}:{m % 60:02d}:00,1,2,0.5,1.5,10\n" for m in minutes]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(rows))
    return path


def _x(path: Path, symbol: str = "X") -> ParsedFile:
    return parse_ohlcv_csv(path, market="crypto", symbol=symbol, interval="1m")


def _krx(path: Path, days: Sequence[str], close: int = 100) -> Path:
    path.write_text("".join(f"{d},{close},{close},{close},{close},1\n" for d in days))
    return path


def _records(log: EventLog, topic: str) -> list[Record]:
    return list(log.read_topic(topic))


# ------------------------------------------------------- 1. identity is what a file holds


def test_two_files_with_one_name_in_two_folders_are_both_stored(tmp_path: Path) -> None:
    """aapl/daily.csv and msft/daily.csv are two sources: the second is not taken for the first."""
    log = EventLog.open(tmp_path / "store")
    try:
        for symbol in ("AAPL", "MSFT"):
            path = _minute_bars(tmp_path / symbol.lower() / "daily.csv", range(3))
            (report,) = import_files(log, [_x(path, symbol)])
            assert (report.manifest.events_stored, report.manifest.events_duplicate) == (3, 0)
        assert len(_records(log, "md.bar.1m.crypto.AAPL")) == 3
        assert len(_records(log, "md.bar.1m.crypto.MSFT")) == 3
        assert len(_records(log, MANIFEST_TOPIC)) == 2
    finally:
        log.close()


def test_one_file_with_other_options_is_another_stream(tmp_path: Path) -> None:
    """The same file imported again under another symbol is stored for that symbol."""
    path = _krx(tmp_path / "index.csv", ["2018-01-02", "2018-01-03"])
    log = EventLog.open(tmp_path / "store")
    try:
        import_files(log, [parse_krx_daily(path, symbol="A", adjusted=False)])
        (report,) = import_files(log, [parse_krx_daily(path, symbol="B", adjusted=False)])
        assert report.manifest.events_stored == 2
        assert len(_records(log, "md.bar.1d.kr.B")) == 2
        assert report.same_as is None
        assert len(_records(log, MANIFEST_TOPIC)) == 2
    finally:
        log.close()


def test_the_same_content_under_another_name_is_not_stored_twice(tmp_path: Path) -> None:
    """A copy is reported already imported, in a later call or in the same one."""
    original = _minute_bars(tmp_path / "kospi.csv", range(5))
    copy = tmp_path / "copy" / "kospi (1).csv"
    copy.parent.mkdir()
    copy.write_bytes(original.read_bytes())
    log = EventLog.open(tmp_path / "store")
    try:
        import_files(log, [_x(original)])
        (again,) = import_files(log, [_x(copy)])
        assert (again.same_as, again.manifest.events_stored) == ("kospi.csv", 0)
        assert again.manifest.events_duplicate == 5
        assert len(_records(log, "md.bar.1m.crypto.X")) == 5
        assert len(_records(log, MANIFEST_TOPIC)) == 1
    finally:
        log.close()
    log = EventLog.open(tmp_path / "store2")
    try:
        first, second = import_files(log, [_x(original), _x(copy)])
        assert (first.manifest.events_stored, second.manifest.events_stored) == (5, 0)
        assert second.same_as == "kospi.csv"
        assert len(_records(log, "md.bar.1m.crypto.X")) == 5
    finally:
        log.close()


def test_a_grown_file_stores_its_new_rows_and_a_manifest(tmp_path: Path) -> None:
    """Rows appended to an imported file are stored (and only they), with a second manifest."""
    path = _minute_bars(tmp_path / "x.csv", range(5))
    log = EventLog.open(tmp_path / "store")
    try:
        import_files(log, [_x(path)])
        _minute_bars(path, range(8))
        (report,) = import_files(log, [_x(path)])
        assert (report.manifest.events_stored, report.manifest.events_duplicate) == (3, 5)
        assert [r.source_seq for r in _records(log, "md.bar.1m.crypto.X")] == list(range(1, 9))
        assert len(_records(log, MANIFEST_TOPIC)) == 2
        (again,) = import_files(log, [_x(path)])
        assert (again.manifest.events_stored, again.same_as) == (0, "x.csv")
    finally:
        log.close()


def test_a_file_changed_other_than_at_its_end_is_refused(tmp_path: Path) -> None:
    """An edited row of an imported file is refused at its line, not counted as a duplicate."""
    path = _minute_bars(tmp_path / "x.csv", range(5))
    log = EventLog.open(tmp_path / "store")
    try:
        import_files(log, [_x(path)])
        lines = path.read_text().splitlines(keepends=True)
        lines[3] = lines[3].replace(",1.5,", ",1.25,")  # the third bar
        path.write_text("".join(lines) + "2024-01-02 00:05:00,1,2,0.5,1.5,10\n")
        with pytest.raises(ImportDataError, match=r"x\.csv:4: the log holds 5 events") as info:
            import_files(log, [_x(path)])
        assert info.value.line == 4
        assert len(_records(log, "md.bar.1m.crypto.X")) == 5
    finally:
        log.close()


# -------------------------------------------- 2. a refused row is never taken as stored


def test_rows_older_than_the_topic_refuse_the_import_every_time(tmp_path: Path) -> None:
    """The reviewer's regress.sh: b.csv is refused at its line on both runs and stores nothing."""
    a = _minute_bars(tmp_path / "a.csv", [10])  # ends 00:11
    b = _minute_bars(tmp_path / "b.csv", [5, 11, 12])  # ends 00:06, 00:12, 00:13
    log = EventLog.open(tmp_path / "store")
    try:
        import_files(log, [_x(a)])
        for _ in range(2):
            with pytest.raises(ImportDataError) as info:
                import_files(log, [_x(b)])
            assert (info.value.path, info.value.line) == (str(b), 2)
            assert "nothing was stored" in str(info.value)
        assert [r.ts_event for r in _records(log, "md.bar.1m.crypto.X")] == [
            1_704_154_260_000_000_000  # 00:11 only
        ]
    finally:
        log.close()


def test_an_event_the_log_refused_is_not_counted_as_stored_on_the_next_import(
    tmp_path: Path,
) -> None:
    """Later events of the batch were stored; importing again names the lost row, not success."""
    path = _minute_bars(tmp_path / "x.csv", range(3))
    parsed = _x(path)
    (source,) = parsed.streams
    log = EventLog.open(tmp_path / "store")
    try:
        with pytest.raises(LogError, match="TOPIC_DAMAGED"):
            import_files(RefusingLog(log, lambda e: e.id == f"{source}:2"), [parsed])
        assert [r.source_seq for r in _records(log, "md.bar.1m.crypto.X")] == [1, 3]
        with pytest.raises(ImportDataError, match="is not this row's") as info:
            import_files(log, [_x(path)])
        assert info.value.line == 3  # the second bar, the one the log refused
    finally:
        log.close()


# ---------------------------------------------- 3. raw and adjusted never mix silently


def test_krx_raw_and_adjusted_files_on_one_topic_are_refused(tmp_path: Path) -> None:
    """The reviewer's krx_mix.sh: both real files as raw in one call overlap and store nothing."""
    files = [
        parse_krx_daily(KRX_RAW, symbol="005930", adjusted=False),
        parse_krx_daily(KRX_ADJ, symbol="005930", adjusted=False),  # the flag forgotten
    ]
    log = EventLog.open(tmp_path / "store")
    try:
        with pytest.raises(ImportDataError, match="raw and adjusted prices") as info:
            import_files(log, files)
        assert info.value.path == str(KRX_ADJ)
        assert log.topics() == []
        import_files(log, files[:1])
        with pytest.raises(ImportDataError, match=r"md\.bar\.1d\.kr\.005930 already holds"):
            import_files(log, files[1:])  # in a second call
        assert len(_records(log, "md.bar.1d.kr.005930")) == 8826
        (report,) = import_files(log, [parse_krx_daily(KRX_ADJ, symbol="005930", adjusted=True)])
        assert report.manifest.events_stored == 986  # on md.bar.1d-adj.kr.005930
    finally:
        log.close()


def test_a_bar_of_a_day_the_topic_already_holds_is_refused(tmp_path: Path) -> None:
    """One overlapping day (same close time, so no regression) is refused as an overlap."""
    raw = _krx(tmp_path / "raw.csv", ["2018-01-02", "2018-01-03", "2018-01-04"], close=2_500_000)
    adj = _krx(tmp_path / "adj.csv", ["2018-01-04", "2018-01-05"], close=50_000)
    log = EventLog.open(tmp_path / "store")
    try:
        import_files(log, [parse_krx_daily(raw, symbol="K", adjusted=False)])
        with pytest.raises(
            ImportDataError, match=r"overlaps what md\.bar\.1d\.kr\.K already holds"
        ):
            import_files(log, [parse_krx_daily(adj, symbol="K", adjusted=False)])
        closes = [msgspec.json.decode(r.payload)["close"] for r in _records(log, "md.bar.1d.kr.K")]
        assert closes == [2_500_000] * 3
    finally:
        log.close()


def test_files_that_touch_but_do_not_overlap_are_imported_together(tmp_path: Path) -> None:
    """January's last bar ending when February's first starts is not an overlap."""
    jan = _minute_bars(tmp_path / "jan.csv", range(10))
    feb = _minute_bars(tmp_path / "feb.csv", range(10, 20))
    log = EventLog.open(tmp_path / "store")
    try:
        reports = import_files(log, [_x(feb), _x(jan)])
        assert [r.manifest.events_stored for r in reports] == [10, 10]
    finally:
        log.close()


def test_krx_daily_requires_raw_or_adjusted(tmp_path: Path) -> None:
    """A KRX file does not say whether it is adjusted: without --raw or --adjusted the
    command is a usage error and stores nothing (it was taken as raw silently)."""
    path = _krx(tmp_path / "k.csv", ["2018-01-02"])
    args = ["krx-daily", str(path), "--symbol", "K", "--data-dir", str(tmp_path / "d")]
    result = CliRunner().invoke(import_command, args)
    assert result.exit_code == 2, result.output
    assert "give --raw or --adjusted" in result.output
    assert not (tmp_path / "d" / "logs").exists()  # nothing opened, nothing stored
    explicit = CliRunner().invoke(import_command, [*args, "--raw"])
    assert explicit.exit_code == 0, explicit.output


def test_adjusted_is_refused_for_formats_that_are_never_adjusted(tmp_path: Path) -> None:
    """quandl-wiki bars are unadjusted: --adjusted is a usage error, not ignored."""
    path = tmp_path / "q.csv"
    path.write_text(QUANDL_HEADER + "AAPL,2014-01-02,1,1,1,1,1,0,1\n")
    result = CliRunner().invoke(
        import_command, ["quandl-wiki", str(path), "--adjusted", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "only --raw applies" in result.output


# ------------------------------------------------------------------ 4-7. row checks


def test_quandl_refuses_a_repeated_or_earlier_date_per_ticker(tmp_path: Path) -> None:
    """Each ticker's dates must increase; another ticker's rows in between do not matter."""
    path = tmp_path / "q.csv"
    path.write_text(
        QUANDL_HEADER
        + "AAPL,2014-01-02,1,1,1,1,1,0,1\n"
        + "MSFT,2014-01-02,1,1,1,1,1,0,1\n"
        + "AAPL,2014-01-02,2,2,2,2,2,0,1\n"  # line 4: repeated
        + "MSFT,2014-01-03,1,1,1,1,1,0,1\n"
        + "AAPL,2013-12-31,1,1,1,1,1,0,1\n"  # line 6: earlier
        + "AAPL,2014-01-03,1,1,1,1,1,0,1\n"
    )
    parsed = parse_quandl_wiki(path)
    assert [(e.line, "is not after" in e.reason) for e in parsed.refused] == [
        (4, True),
        (6, True),
    ]
    assert sorted(len(events) for events in parsed.streams.values()) == [2, 2]
    with pytest.raises(ImportDataError) as info:
        parse_quandl_wiki(path, strict=True)
    assert info.value.line == 4


def test_the_repeated_local_hour_when_clocks_go_back_is_kept(tmp_path: Path) -> None:
    """Chicago 2023-11-05: three real hours of 1m bars in local time give 180 bars a minute apart."""
    zone = ZoneInfo("America/Chicago")
    t0 = datetime(2023, 11, 5, 5, 0, tzinfo=UTC)  # 00:00 CDT
    rows = [
        f"{(t0 + timedelta(minutes=i)).astimezone(zone):%Y-%m-%d %H:%M:%S},1,1,1,1,1\n"
        for i in range(180)
    ]
    path = tmp_path / "dst.csv"
    path.write_text(HEADER + "".join(rows))
    parsed = parse_ohlcv_csv(
        path, market="us", symbol="6E", interval="1m", tz="America/Chicago", stamp="end"
    )
    assert not parsed.refused
    (events,) = parsed.streams.values()
    ends = [e.ts_event for e in events]
    first_end = int(t0.timestamp()) * 1_000_000_000
    assert ends == [first_end + i * 60_000_000_000 for i in range(180)]


def _with_bad_byte(path: Path, text: str, line: int) -> Path:
    """Write ``text`` with a Latin-1 no-break space (not UTF-8) put on 1-based ``line``."""
    lines = text.encode().split(b"\n")
    lines[line - 1] = lines[line - 1].replace(b",", b"\xa0,", 1)
    path.write_bytes(b"\n".join(lines))
    return path


def test_a_line_that_is_not_utf8_is_refused_alone(tmp_path: Path) -> None:
    """One bad byte refuses its row, with line and column; the other rows are imported."""
    rows = "".join(f"2024-01-02 00:{m:02d}:00,1,2,0.5,1.5,10\n" for m in range(4))
    ohlcv = _with_bad_byte(tmp_path / "x.csv", HEADER + rows, 3)
    parsed = _x(ohlcv)
    assert [(e.line, e.reason) for e in parsed.refused] == [
        (3, "not UTF-8: byte 0xa0 at column 20")
    ]
    assert len(next(iter(parsed.streams.values()))) == 3
    with pytest.raises(ImportDataError) as info:
        parse_ohlcv_csv(ohlcv, market="crypto", symbol="X", interval="1m", strict=True)
    assert info.value.line == 3

    krx_text = "".join(f"2018-01-{d:02d},1,1,1,1,1\n" for d in (2, 3, 4, 5))
    krx = parse_krx_daily(
        _with_bad_byte(tmp_path / "k.csv", krx_text, 2), symbol="K", adjusted=False
    )
    assert [e.line for e in krx.refused] == [2]
    assert len(next(iter(krx.streams.values()))) == 3

    quandl_text = QUANDL_HEADER + "AAPL,2014-01-02,1,1,1,1,1,0,1\nAAPL,2014-01-03,1,1,1,1,1,0,1\n"
    quandl = parse_quandl_wiki(_with_bad_byte(tmp_path / "q.csv", quandl_text, 2))
    assert [e.line for e in quandl.refused] == [2]
    assert len(next(iter(quandl.streams.values()))) == 1


def test_the_real_krx_file_with_one_bad_byte_loses_one_row(tmp_path: Path) -> None:
    """The reviewer's nonutf8.py: line 5001 of the Samsung raw file is refused, 8825 rows kept."""
    lines = KRX_RAW.read_bytes().split(b"\n")
    lines[5000] = lines[5000].replace(b'"', b'\xa0"', 1)
    path = tmp_path / "krx.csv"
    path.write_bytes(b"\n".join(lines))
    parsed = parse_krx_daily(path, symbol="005930", adjusted=False)
    assert [(e.line, e.reason) for e in parsed.refused] == [
        (5001, "not UTF-8: byte 0xa0 at column 12")
    ]
    assert len(next(iter(parsed.streams.values()))) == 8825


def test_short_rows_say_how_many_columns_they_lack(tmp_path: Path) -> None:
    """A row with too few columns is refused with 'expected N columns, got M'."""
    ohlcv = tmp_path / "short.csv"
    ohlcv.write_text(HEADER + "2024-01-02 00:10:00,1,1,1,1,1\n2024-01-02 00:11:00,1,2\n")
    assert [str(e) for e in _x(ohlcv).refused] == [
        f"{ohlcv}:3: malformed bar: expected 6 columns, got 3"
    ]
    quandl = tmp_path / "shortq.csv"
    quandl.write_text(QUANDL_HEADER + "AAPL,2014-01-02,1,1\n")
    assert [str(e) for e in parse_quandl_wiki(quandl).refused] == [
        f"{quandl}:2: malformed row: expected 9 columns, got 4"
    ]
    krx = tmp_path / "shortk.csv"
    krx.write_text('"1985-01-04","2,569,000","2,569,000","2,569,000","2,569,000","1,000"\n')
    krx.write_text(krx.read_text() + '"1985-01-05","2,569,000"\n')
    assert [str(e) for e in parse_krx_daily(krx, symbol="K", adjusted=False).refused] == [
        f"{krx}:2: malformed row: expected 6 columns, got 2"
    ]


def test_bars_keep_their_rows_line_numbers(tmp_path: Path) -> None:
    """Every parsed bar carries the line it was read from (used to name rows in refusals)."""
    path = _minute_bars(tmp_path / "x.csv", range(3))
    (events,) = _x(path).streams.values()
    assert [e.line for e in events] == [2, 3, 4]
    assert all(isinstance(e.payload, Bar) for e in events)
