"""Trading hours on the real calendars and time gaps on quiet streams (6E bars, BTC trades)."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pandas as pd
import pytest

from tickertape.actors.marketdata.importers import parse_binance_ws, parse_ohlcv_csv
from tickertape.actors.marketdata.sessions import (
    MarketHours,
    SilenceDetector,
    StreamSilenceState,
    calendar,
)
from tickertape.errors import ConfigError
from tickertape.schemas.market import Trade

DATA = Path(__file__).resolve().parents[3] / "data"
CME = DATA / "cme-6eh4-1m-2024-01" / "6EH4.XCME_1min_bars_20240101_20240131.csv.gz"
BINANCE = DATA / "binance-spot-ws-2024-08-08"
MINUTE = 60_000_000_000


def _ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1_000_000_000


@pytest.fixture(scope="module")
def cme_closes() -> list[int]:
    (events,) = parse_ohlcv_csv(
        CME, market="us", symbol="6EH4", interval="1m", stamp="end"
    ).streams.values()
    return [e.ts_event for e in events]


def test_cme_globex_hours_have_the_maintenance_hour_and_the_weekend() -> None:
    """CME Globex: 17:00-16:00 Chicago; 16:00-17:00 and Friday 16:00-Sunday 17:00 are closed."""
    hours = MarketHours("us-futures")
    # January is CST (UTC-6): the maintenance hour is 22:00-23:00 UTC.
    assert hours.open_minutes(_ns("2024-01-02 22:00"), _ns("2024-01-02 23:00")) == 0
    assert hours.open_minutes(_ns("2024-01-02 21:50"), _ns("2024-01-02 23:10")) == 20
    assert hours.open_minutes(_ns("2024-01-05 21:00"), _ns("2024-01-07 23:30")) == 60 + 30
    # July is CDT (UTC-5): the same hour in Chicago is 21:00-22:00 UTC.
    assert hours.open_minutes(_ns("2024-07-09 21:00"), _ns("2024-07-09 22:30")) == 30
    # Martin Luther King Day 2024: the library's 12:00 Chicago early close is kept.
    assert hours.open_minutes(_ns("2024-01-15 17:00"), _ns("2024-01-15 23:30")) == 60 + 30
    assert not hours.is_open(_ns("2024-01-02 22:30"))
    assert hours.is_open(_ns("2024-01-02 21:59"))
    assert hours.is_open(_ns("2024-01-02 23:00"))
    assert hours.open_ns(_ns("2024-01-02 21:59:30"), _ns("2024-01-02 23:00:10")) == 40 * 10**9


def test_bundled_6e_bars_never_trade_while_the_hours_say_closed(cme_closes: list[int]) -> None:
    """Every 6E bar of January 2024 lies in open hours, except on MLK day (library early close)."""
    hours = MarketHours("us-futures")
    closed = {
        datetime.fromtimestamp(ts // 10**9, UTC).date().isoformat()
        for ts in cme_closes
        if not hours.is_open(ts - MINUTE)
    }
    assert closed == {"2024-01-15"}


@pytest.mark.parametrize("key", ["us", "kr"])
def test_open_minutes_equal_the_library_minutes(key: str) -> None:
    """Where no trading hours are overridden, open minutes equal exchange_calendars' own."""
    hours = MarketHours(key)
    cal = calendar(key)
    ranges = [
        ("2014-06-06 10:00", "2014-06-09 20:00"),
        ("2018-05-03 00:00", "2018-05-05 00:00"),
        ("1995-03-02 00:00", "1995-03-04 12:00"),  # KRX's old lunch break, NYSE
        ("2024-11-27 15:00", "2024-12-02 15:00"),  # Thanksgiving, early close
    ]
    for start, end in ranges:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = len(
                cal.minutes_in_range(
                    pd.Timestamp(start, tz="UTC"),
                    pd.Timestamp(end, tz="UTC") - pd.Timedelta("1min"),
                )
            )
        assert hours.open_minutes(_ns(start), _ns(end)) == expected, (start, end)


def test_quiet_6e_stream_has_no_gap_over_breaks_and_weekends(cme_closes: list[int]) -> None:
    """On CME hours a 10-minute silence threshold finds nothing in January; 24/7 hours find 22."""
    cme = SilenceDetector(MarketHours("us-futures"), 10 * MINUTE)
    assert [s for ts in cme_closes if (s := cme.on_event("6EH4", ts))] == []
    always = SilenceDetector(MarketHours("crypto"), 10 * MINUTE)
    found = [s for ts in cme_closes if (s := always.on_event("6EH4", ts))]
    assert len(found) == 18 + 4  # maintenance hours Monday-Thursday, and weekends


def test_a_hole_in_open_hours_is_exactly_one_silence(cme_closes: list[int]) -> None:
    """Bars removed for 30 minutes of a Wednesday afternoon: one silence, its open length exact."""
    hole = (_ns("2024-01-10 14:00"), _ns("2024-01-10 14:30"))
    kept = [ts for ts in cme_closes if not hole[0] <= ts <= hole[1]]
    detector = SilenceDetector(MarketHours("us-futures"), 10 * MINUTE)
    (silence,) = [s for ts in kept if (s := detector.on_event("6EH4", ts))]
    assert silence.last_seen == _ns("2024-01-10 13:59")
    assert silence.next_seen == _ns("2024-01-10 14:31")
    assert silence.open_ns == 32 * MINUTE


def test_trades_silenced_for_three_minutes_give_one_gap() -> None:
    """Real BTCUSDT trades (24/7) with three minutes cut out: one silence, nothing else."""
    trades = [
        e.ts_event
        for name in ("btcusdt_20240808.gz", "btcusdt_20240809.gz")
        for events in parse_binance_ws(BINANCE / name).streams.values()
        for e in events
        if isinstance(e.payload, Trade)
    ]
    cut_from = _ns("2024-08-08 23:58")
    kept = [ts for ts in trades if not cut_from <= ts < cut_from + 3 * MINUTE]
    detector = SilenceDetector(MarketHours("crypto"), MINUTE)
    silences = [s for ts in kept if (s := detector.on_event("md.trade.crypto.BTCUSDT", ts))]
    assert len(silences) == 1
    (silence,) = silences
    assert silence.last_seen == max(ts for ts in trades if ts < cut_from)
    assert silence.next_seen == min(ts for ts in trades if ts >= cut_from + 3 * MINUTE)
    assert silence.open_ns == silence.next_seen - silence.last_seen


def test_deadline_skips_closed_time_and_state_round_trips() -> None:
    """A silence starting Friday 21:55 UTC becomes a gap 5 open minutes after Sunday's open."""
    detector = SilenceDetector(MarketHours("us-futures"), 10 * MINUTE)
    assert detector.deadline("6EH4") is None
    detector.on_event("6EH4", _ns("2024-01-05 21:55"))
    assert detector.deadline("6EH4") == _ns("2024-01-07 23:05") + 1
    assert detector.on_event("6EH4", _ns("2024-01-05 21:50")) is None  # late: ignored
    restored = SilenceDetector(MarketHours("us-futures"), 10 * MINUTE)
    restored.restore(
        msgspec.msgpack.decode(msgspec.msgpack.encode(detector.state()), type=StreamSilenceState)
    )
    gap = restored.on_event("6EH4", _ns("2024-01-07 23:10"))
    assert gap is not None
    assert gap.open_ns == 15 * MINUTE
    assert detector.on_event("6EH4", _ns("2024-01-07 23:05")) is None  # exactly 10: no gap
    with pytest.raises(ConfigError):
        SilenceDetector(MarketHours("crypto"), 0)


def _round_trip(detector: SilenceDetector) -> SilenceDetector:
    restored = SilenceDetector(detector.hours, detector.max_silence_ns)
    restored.restore(
        msgspec.msgpack.decode(msgspec.msgpack.encode(detector.state()), type=StreamSilenceState)
    )
    assert restored.state() == detector.state()
    return restored


def test_open_silence_is_returned_once_at_the_deadline_then_closed_by_the_next_event() -> None:
    """CME hours, 10-minute bound, last event Friday 21:55 UTC: nothing before Sunday 23:05
    UTC + 1 ns, then the open silence once; the next event closes it, even a snapshot later."""
    detector = SilenceDetector(MarketHours("us-futures"), 10 * MINUTE)
    assert detector.open_silence("6EH4", _ns("2024-01-08 00:00")) is None  # no event yet
    last = _ns("2024-01-05 21:55")
    detector.on_event("6EH4", last)
    deadline = _ns("2024-01-07 23:05") + 1
    assert detector.open_silence("6EH4", deadline - 1) is None
    opened = detector.open_silence("6EH4", deadline)
    assert opened is not None
    assert (opened.last_seen, opened.next_seen, opened.open_ns) == (last, 0, 10 * MINUTE + 1)
    assert detector.open_silence("6EH4", deadline + MINUTE) is None  # once
    assert detector.deadline("6EH4") is None
    restored = _round_trip(detector)
    assert restored.state().reported_open == ["6EH4"]
    closed = restored.on_event("6EH4", _ns("2024-01-07 23:20"))
    assert closed is not None
    assert (closed.last_seen, closed.next_seen, closed.reported_open) == (
        last,
        _ns("2024-01-07 23:20"),
        True,
    )
    assert closed.open_ns == 25 * MINUTE  # 5 on Friday, 20 on Sunday
    assert restored.deadline("6EH4") == _ns("2024-01-07 23:30") + 1  # counting again


def test_deadline_counts_from_the_clock_an_event_was_handled_at() -> None:
    """Live: the deadline runs from ``now_ns`` at handling (an event tied with the last one
    moves it too, an older one does not); the state keeps that clock only where it differs;
    restart() moves every stream's clock forward to the restart."""
    detector = SilenceDetector(MarketHours("crypto"), MINUTE)
    detector.on_event("t", 1_000, now_ns=5_000)
    assert detector.deadline("t") == 5_000 + MINUTE + 1
    detector.on_event("t", 1_000, now_ns=9_000)  # the same time as the last: handled later
    assert detector.deadline("t") == 9_000 + MINUTE + 1
    detector.on_event("t", 500, now_ns=20_000)  # older: changes nothing
    assert detector.deadline("t") == 9_000 + MINUTE + 1
    detector.on_event("r", 7_000)  # a replay's clock: the event's time
    assert detector.state().seen_ns == {"t": 9_000}
    restored = _round_trip(detector)
    assert restored.deadline("r") == 7_000 + MINUTE + 1
    restored.restart(8_000)
    assert restored.deadline("r") == 8_000 + MINUTE + 1
    assert restored.deadline("t") == 9_000 + MINUTE + 1  # already later
    # A late live event dated within the bound still closes a silence reported open.
    assert restored.open_silence("t", 9_000 + MINUTE + 1) is not None
    closed = restored.on_event("t", 1_000 + MINUTE - 1, now_ns=9_000 + 2 * MINUTE)
    assert closed is not None
    assert (closed.open_ns, closed.reported_open) == (MINUTE - 1, True)
