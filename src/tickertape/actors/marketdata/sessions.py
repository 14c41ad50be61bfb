"""Trading calendars per market, from ``exchange_calendars``, for session times and gaps.

- ``kr``: KRX (``XKRX``), 09:00–15:30 Asia/Seoul today (15:00 before 2016-08-01).
- ``us`` equities: NYSE (``XNYS``), 09:30–16:00 America/New_York, early closes.
- ``us`` CME futures (6E...): ``CMES`` (Globex, 17:00–17:00 America/Chicago, Sunday
  to Friday). ``exchange_calendars`` does not model the daily 60-minute maintenance
  break, so on this calendar a missing bar in that hour counts as a gap.
- ``crypto``: open 24/7, no calendar.

A time gap while the market is closed is not a data gap; a gap while it is open is
(DESIGN §9). Calendars are loaded lazily (a few hundred ms each, plus about a second to import
the library the first time) and cached.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from tickertape.errors import ConfigError

CALENDAR_NAMES: dict[str, str] = {"kr": "XKRX", "us": "XNYS", "us-futures": "CMES"}
"""Calendar per key (a market, or ``us-futures`` for CME Globex products)."""

_CALENDAR_START = {"XKRX": "1985-01-01", "XNYS": "1990-01-01", "CMES": "2006-11-21"}

# Fallback hours for days the library has no session for (KRX Saturday sessions
# before 1999, dates before a calendar's range): (zone, open, close).
_FALLBACK_HOURS: dict[str, tuple[str, time, time]] = {
    "kr": ("Asia/Seoul", time(9, 0), time(15, 0)),
    "us": ("America/New_York", time(9, 30), time(16, 0)),
}

_MINUTE_NS = 60_000_000_000


@contextmanager
def _quiet() -> Iterator[None]:
    # exchange_calendars calls pandas APIs that pandas 3 deprecates; the warnings
    # are the library's business, not a user-facing problem.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


@lru_cache(maxsize=8)
def calendar(key: str) -> Any:
    """Return the ``exchange_calendars`` calendar of ``key`` (``kr``, ``us``, ``us-futures``).

    Raises:
        ConfigError: no calendar for that key (``crypto`` has none: it never closes).
    """
    try:
        name = CALENDAR_NAMES[key]
    except KeyError:
        raise ConfigError(
            f"no trading calendar for {key!r}; known: {sorted(CALENDAR_NAMES)}"
        ) from None
    # Imported here: exchange_calendars (and pandas) take most of a second to import,
    # and most commands (bar and capture imports, the log tools) never need a calendar.
    import exchange_calendars

    with _quiet():
        return exchange_calendars.get_calendar(name, start=_CALENDAR_START[name])


@lru_cache(maxsize=8)
def _session_table(key: str) -> dict[date, tuple[int, int]]:
    cal = calendar(key)
    with _quiet():
        opens = cal.opens
        closes = cal.closes
        return {
            label.date(): (int(o.value), int(c.value))
            for label, o, c in zip(opens.index, opens, closes, strict=True)
        }


@lru_cache(maxsize=65_536)
def daily_session_ns(market: str, day: date) -> tuple[int, int]:
    """Return ``(open_ns, close_ns)`` of ``market``'s session on ``day`` (exchange date).

    Uses the market's calendar when ``day`` is one of its sessions (early closes
    included), else the market's regular hours in its time zone (KRX Saturday
    sessions before 1999 are such days).

    Raises:
        ConfigError: ``market`` has no daily sessions (``crypto``).
    """
    if market not in _FALLBACK_HOURS:
        raise ConfigError(f"market {market!r} has no daily sessions")
    session = _session_table(market).get(day)
    if session is not None:
        return session
    zone_name, open_t, close_t = _FALLBACK_HOURS[market]
    zone = ZoneInfo(zone_name)
    opening = datetime.combine(day, open_t, tzinfo=zone)
    closing = datetime.combine(day, close_t, tzinfo=zone)
    return int(opening.timestamp()) * 1_000_000_000, int(closing.timestamp()) * 1_000_000_000


class MarketHours:
    """When a market is open, for time-gap detection.

    Args:
        key: ``crypto`` (always open), ``kr``, ``us`` or ``us-futures``.

    Raises:
        ConfigError: unknown key.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self._calendar = None if key == "crypto" else calendar(key)

    def open_minutes(self, start_ns: int, end_ns: int) -> int:
        """Return how many whole trading minutes lie in [``start_ns``, ``end_ns``).

        Minutes are counted by their start: a minute starting at or after
        ``start_ns`` and before ``end_ns`` during which the market is open.
        """
        if end_ns <= start_ns:
            return 0
        first = -(-start_ns // _MINUTE_NS)
        last = (end_ns - 1) // _MINUTE_NS
        if last < first:
            return 0
        if self._calendar is None:
            return last - first + 1
        import pandas as pd

        cal = self._calendar
        with _quiet():
            lo = max(pd.Timestamp(first * _MINUTE_NS, tz="UTC"), cal.first_minute)
            hi = min(pd.Timestamp(last * _MINUTE_NS, tz="UTC"), cal.last_minute)
            if hi < lo:
                return 0
            return len(cal.minutes_in_range(lo, hi))

    def sessions_between(self, after: date, before: date) -> int:
        """Return how many sessions lie strictly between two exchange dates (24/7: days)."""
        if before <= after + timedelta(days=1):
            return 0
        if self._calendar is None:
            return (before - after).days - 1
        cal = self._calendar
        with _quiet():
            lo = max((after + timedelta(days=1)).isoformat(), cal.first_session.date().isoformat())
            hi = min((before - timedelta(days=1)).isoformat(), cal.last_session.date().isoformat())
            if hi < lo:
                return 0
            return len(cal.sessions_in_range(lo, hi))
