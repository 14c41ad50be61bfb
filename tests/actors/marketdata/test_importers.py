"""Parsers of the bundled real files: counts, normalization, refusals, ordering."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickertape.actors.marketdata.importers import (
    _csv_rows,
    interval_ns,
    parse_binance_ws,
    parse_krx_daily,
    parse_ohlcv_csv,
    parse_quandl_wiki,
    source_name,
)
from tickertape.errors import ConfigError, ImportDataError
from tickertape.schemas.market import Bar, CorporateAction, Quote, Trade
from tickertape.topics import validate_topic

DATA = Path(__file__).resolve().parents[3] / "data"
BTC_0808 = DATA / "binance-spot-ws-2024-08-08" / "btcusdt_20240808.gz"
CME = DATA / "cme-6eh4-1m-2024-01" / "6EH4.XCME_1min_bars_20240101_20240131.csv.gz"
QUANDL = DATA / "us-equities-daily-2014" / "QUANDL_SAMPLE_TABLE.csv"
KRX_RAW = DATA / "krx-005930-daily" / "v1_005930_raw_1985_2018.csv"
KRX_ADJ = DATA / "krx-005930-daily" / "v3_005930_adjusted_2018_2021_with_features.csv"
KOSPI = DATA / "krx-005930-daily" / "v1_kospi_index.csv"


def _events(parsed):  # type: ignore[no-untyped-def]
    (events,) = parsed.streams.values()
    return events


def test_binance_capture_counts_match_the_dataset_readme() -> None:
    """The BTCUSDT 2024-08-08 capture yields 9,757 trades, 28,040 quotes and every raw line."""
    parsed = parse_binance_ws(BTC_0808)
    events = _events(parsed)
    topics = [e.topic for e in events]
    assert parsed.rows_read == 41_249
    assert not parsed.refused
    assert topics.count("md.trade.crypto.BTCUSDT") == 9_757
    assert topics.count("md.quote.crypto.BTCUSDT") == 28_040
    assert sum(t.startswith("raw.binance.") for t in topics) == 41_249
    assert all(validate_topic(t) is None for t in set(topics))


def test_binance_events_are_time_ordered_per_topic_and_normalized() -> None:
    """ts_event never decreases per topic; trades carry venue ids, side and trade time."""
    events = _events(parse_binance_ws(BTC_0808))
    last: dict[str, int] = {}
    for e in events:
        assert e.ts_event >= last.get(e.topic, 0)
        last[e.topic] = e.ts_event
    trades = [e for e in events if isinstance(e.payload, Trade)]
    ids = [int(t.payload.trade_id) for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # consecutive: no gap
    first = trades[0]
    assert first.payload.trade_id == "3735683259"
    assert first.payload.side == "sell"  # m=true: the buyer was the maker
    assert first.ts_event == 1723161255342 * 1_000_000
    quotes = [e.payload for e in events if isinstance(e.payload, Quote)]
    assert all(q.bid < q.ask for q in quotes)


def test_binance_malformed_lines_are_refused_with_line_numbers(tmp_path: Path) -> None:
    """Garbage lines are refused with file and line; the rest is kept (or raises when strict)."""
    lines = gzip.decompress(BTC_0808.read_bytes()).split(b"\n")[:50]
    lines.insert(10, b"not a number {}")
    lines.insert(20, b'1723161254087896568 {"stream":"btcusdt@trade","data":{"p":"1"}}')
    path = tmp_path / "btcusdt_bad.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines)))
    parsed = parse_binance_ws(path)
    assert [e.line for e in parsed.refused] == [11, 21]
    assert all(e.path == str(path) for e in parsed.refused)
    with pytest.raises(ImportDataError) as info:
        parse_binance_ws(path, strict=True)
    assert info.value.line == 11


def test_cme_bars_use_end_stamp_as_close_time() -> None:
    """6E rows stamped at the bar end give start_ns one minute earlier and ts_event at the stamp."""
    parsed = parse_ohlcv_csv(CME, market="us", symbol="6EH4", interval="1m", stamp="end")
    events = _events(parsed)
    assert len(events) == 29_996
    assert not parsed.refused
    first = events[0]
    assert first.topic == "md.bar.1m.us.6EH4"
    assert first.ts_event == 1_704_150_060_000_000_000  # 2024-01-01 23:01 UTC
    assert isinstance(first.payload, Bar)
    assert first.payload.start_ns == first.ts_event - interval_ns("1m")
    assert first.payload.adjusted is False


def test_ohlcv_bad_rows_and_options(tmp_path: Path) -> None:
    """Inconsistent OHLC and out-of-order rows are refused; bad options raise ConfigError."""
    path = tmp_path / "bars.csv"
    path.write_text(
        "time,open,high,low,close,volume\n"
        "2024-01-02 10:00,1,2,0.5,1.5,10\n"
        "2024-01-02 10:01,1,0.9,0.5,1.5,10\n"
        "2024-01-02 10:00,1,2,0.5,1.5,10\n"
        "2024-01-02 10:02,1,2,0.5,1.5,10\n"
    )
    parsed = parse_ohlcv_csv(path, market="crypto", symbol="X", interval="1m", tz="Asia/Seoul")
    assert [e.line for e in parsed.refused] == [3, 4]
    assert len(_events(parsed)) == 2
    assert _events(parsed)[0].payload.start_ns == 1_704_157_200_000_000_000  # 10:00 KST
    with pytest.raises(ConfigError):
        parse_ohlcv_csv(path, market="crypto", symbol="X", interval="7x")
    with pytest.raises(ConfigError):
        parse_ohlcv_csv(path, market="crypto", symbol="X", interval="1m", tz="Mars/Olympus")
    with pytest.raises(ConfigError):
        parse_ohlcv_csv(path, market="crypto", symbol="X", interval="1m", time_column="ts")


def test_quandl_emits_aapl_split_and_dividends() -> None:
    """AAPL 2014: the 7:1 split on 06-09 and four dividends, before that day's bar."""
    parsed = parse_quandl_wiki(QUANDL)
    aapl = parsed.streams[source_name("quandl-wiki", QUANDL, "AAPL")]
    actions = [e.payload for e in aapl if isinstance(e.payload, CorporateAction)]
    assert [(a.action, a.ex_date, a.ratio or a.amount) for a in actions] == [
        ("dividend", "2014-02-06", 3.05),
        ("dividend", "2014-05-08", 3.29),
        ("split", "2014-06-09", 7.0),
        ("dividend", "2014-08-07", 0.47),
        ("dividend", "2014-11-06", 0.47),
    ]
    split_at = next(i for i, e in enumerate(aapl) if getattr(e.payload, "action", "") == "split")
    bar = aapl[split_at + 1].payload
    assert isinstance(bar, Bar)
    assert bar.close == pytest.approx(93.70)
    # NYSE session of 2014-06-09: 09:30-16:00 New York (13:30-20:00 UTC).
    assert bar.start_ns == 1_402_320_600_000_000_000
    assert aapl[split_at + 1].ts_event == 1_402_344_000_000_000_000


def test_krx_raw_and_adjusted_files_are_explicit_and_differ_by_fifty() -> None:
    """Samsung raw ÷ adjusted close is exactly 50 on the 32 overlapping days; flags are explicit."""
    raw = {
        e.payload.start_ns: e
        for e in _events(parse_krx_daily(KRX_RAW, symbol="005930", adjusted=False))
    }
    adj = {
        e.payload.start_ns: e
        for e in _events(parse_krx_daily(KRX_ADJ, symbol="005930", adjusted=True))
    }
    common = sorted(raw.keys() & adj.keys())
    assert len(common) == 32
    for key in common:
        assert raw[key].payload.close / adj[key].payload.close == 50.0
        assert raw[key].topic == "md.bar.1d.kr.005930"
        assert not raw[key].payload.adjusted
        assert adj[key].topic == "md.bar.1d-adj.kr.005930"
        assert adj[key].payload.adjusted


def test_krx_tab_separated_index_with_trailing_blank_line() -> None:
    """The KOSPI file (tabs, no header, thousands separators) parses every row."""
    parsed = parse_krx_daily(KOSPI, symbol="KOSPI", adjusted=False)
    events = _events(parsed)
    assert not parsed.refused
    assert len(events) == parsed.rows_read == 600
    assert events[0].payload.close == 2053.0


def test_ohlcv_time_zones_offsets_and_non_finite_values(tmp_path: Path) -> None:
    """Naive stamps take the zone's offset of that date (DST included); aware ones keep theirs."""
    path = tmp_path / "bars.csv"
    path.write_text(
        "time,open,high,low,close,volume\n"
        "2024-01-02 10:00,1,2,0.5,1.5,10\n"  # CST, UTC-6
        "2024-03-11 10:00,1,2,0.5,1.5,10\n"  # CDT, UTC-5 (the day after the change)
        "2024-03-12T10:00:00+09:00,1,2,0.5,1.5,10\n"  # aware: its own offset
        "2024-03-13 10:00,1,nan,0.5,1.5,10\n"
        '2024-03-14 10:00,"1,000",2000,500,1500,10\n'  # thousands separator
    )
    parsed = parse_ohlcv_csv(
        path, market="us", symbol="X", interval="1m", tz="America/Chicago", stamp="start"
    )
    starts = [e.payload.start_ns for e in _events(parsed)]
    assert starts == [
        1_704_211_200_000_000_000,  # 2024-01-02 16:00 UTC
        1_710_169_200_000_000_000,  # 2024-03-11 15:00 UTC
        1_710_205_200_000_000_000,  # 2024-03-12 01:00 UTC
        1_710_428_400_000_000_000,  # 2024-03-14 15:00 UTC
    ]
    assert _events(parsed)[-1].payload.open == 1000.0
    (refused,) = parsed.refused
    assert refused.line == 5
    assert "not a finite number: 'nan'" in str(refused)


def test_binance_gzip_members_plain_text_and_truncation(tmp_path: Path) -> None:
    """Two gzip members, or plain text, parse like the original; a cut stream is refused."""
    data = gzip.decompress(BTC_0808.read_bytes())
    half = data.index(b"\n", len(data) // 2) + 1
    whole = parse_binance_ws(BTC_0808)
    two = tmp_path / "btcusdt_two.gz"
    two.write_bytes(gzip.compress(data[:half]) + gzip.compress(data[half:]))
    plain = tmp_path / "btcusdt_plain.txt"
    plain.write_bytes(data)
    for path in (two, plain):
        parsed = parse_binance_ws(path)
        assert parsed.rows_read == whole.rows_read
        assert list(parsed.streams.values()) == list(whole.streams.values())
    cut = tmp_path / "btcusdt_cut.gz"
    cut.write_bytes(BTC_0808.read_bytes()[:200_000])
    with pytest.raises(ImportDataError, match="corrupt gzip data"):
        parse_binance_ws(cut)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(
            st.text(
                alphabet=st.characters(
                    blacklist_characters='"\0\ufeff', blacklist_categories=("Cs",)
                ),
                max_size=6,
            ),
            max_size=7,
        ),
        max_size=8,
    )
)
def test_csv_rows_without_quotes_are_csv_readers_rows(rows: list[list[str]]) -> None:
    """Text without quotes or NUL is split exactly as csv.reader reads it, blank lines too."""
    text = "\n".join(",".join(row) for row in rows)
    assert list(_csv_rows(text)) == list(csv.reader(text.splitlines()))


def test_ohlcv_quoted_fields_are_read_as_csv(tmp_path: Path) -> None:
    """A bar file with quoted thousands separators is parsed field by field as CSV."""
    path = tmp_path / "bars.csv"
    path.write_text(
        'time,open,high,low,close,volume\n2024-01-02 10:00,"1,000",2000,500,1500,"12,345"\n'
    )
    (event,) = _events(parse_ohlcv_csv(path, market="kr", symbol="X", interval="1m"))
    assert (event.payload.open, event.payload.volume) == (1000.0, 12345.0)
