"""Trading calendars per market, from ``exchange_calendars``, for session times and gaps.

- ``kr``: KRX (``XKRX``), 09:00–15:30 Asia/Seoul today (15:00 before 2016-08-01).
- ``us`` equities: NYSE (``XNYS``), 09:30–16:00 America/New_York, early closes.
- ``us-futures``, CME Globex (6E...): ``CMES`` sessions (holidays and early closes
  from the library) with CME's trading hours: 17:00 America/Chicago to 16:00 the
  next day, Sunday to Friday. The library ends every regular session at 17:00;
  trading stops at 16:00 for the daily maintenance hour (16:00–17:00 Chicago,
  Monday to Thursday) and for the weekend (Friday 16:00 to Sunday 17:00), so here a
  regular session closes at 16:00 (CME Group, "CME Globex Trading Hours"; the
  bundled 6E bars have no minute in that hour on any weekday).
- ``crypto``: open 24/7, no calendar.

A time gap while the market is closed is not a data gap; a gap while it is open is
(DESIGN §9). :class:`MarketHours` answers how much open time lies between two
instants; :class:`SilenceDetector` turns it into time gaps on event streams
(trades, quotes) that go quiet while the market is open, and :class:`SilenceWatch`
into the ``md.gap`` payloads of trade and quote topics, for both publishers of them:
the replayable market-data actor (timers on its clock) and the live feed process
(``tape feed``, the machine's clock). Calendars are loaded lazily (a few hundred ms
each, plus about a second to import the library the first time) and cached.
"""

from __future__ import annotations

import math
import warnings
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from tickertape.errors import ConfigError
from tickertape.schemas.envelope import MARKETS
from tickertape.schemas.market import Gap

CALENDAR_NAMES: dict[str, str] = {"kr": "XKRX", "us": "XNYS", "us-futures": "CMES"}
"""Calendar per key (a market, or ``us-futures`` for CME Globex products)."""

_CALENDAR_START = {"XKRX": "1985-01-01", "XNYS": "1990-01-01", "CMES": "2006-11-21"}

# Fallback hours for days the library has no session for (KRX Saturday sessions
# before 1999, dates before a calendar's range): (zone, open, close).
_FALLBACK_HOURS: dict[str, tuple[str, time, time]] = {
    "kr": ("Asia/Seoul", time(9, 0), time(15, 0)),
    "us": ("America/New_York", time(9, 30), time(16, 0)),
}

# Where trading stops before the library's session close: key -> (zone, the library's
# regular close, the real one). Early closes (holiday hours) are left as they are.
_TRADING_CLOSE: dict[str, tuple[str, time, time]] = {
    "us-futures": ("America/Chicago", time(17, 0), time(16, 0)),
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


@dataclass(frozen=True, slots=True)
class _Intervals:
    """When a market trades: sorted, disjoint [open, close) intervals in ns."""

    opens: list[int]
    closes: list[int]


@lru_cache(maxsize=8)
def _trading_intervals(key: str) -> _Intervals:
    cal = calendar(key)
    with _quiet():
        # Timestamps' ns values (NaT, where a session has no break, is the minimum int64).
        sessions = list(
            zip(
                [t.value for t in cal.opens],
                [t.value for t in cal.closes],
                [t.value for t in cal.break_starts],
                [t.value for t in cal.break_ends],
                strict=True,
            )
        )
    early = _TRADING_CLOSE.get(key)
    zone = ZoneInfo(early[0]) if early else None
    opens: list[int] = []
    closes: list[int] = []
    for open_ns, close_ns, break_start, break_end in sessions:
        if early is not None and zone is not None:
            local = datetime.fromtimestamp(close_ns // 1_000_000_000, zone)
            if local.time() == early[1]:
                real = datetime.combine(local.date(), early[2], tzinfo=zone)
                close_ns = int(real.timestamp()) * 1_000_000_000
        # A break (a lunch hour) splits a session in two.
        if open_ns < break_start < break_end < close_ns:
            opens += [open_ns, break_end]
            closes += [break_start, close_ns]
        else:
            opens.append(open_ns)
            closes.append(close_ns)
    return _Intervals(opens, closes)


class MarketHours:
    """When a market is open, for time-gap detection.

    Sessions, holidays and early closes come from the market's ``exchange_calendars``
    calendar (CME Globex with its real 16:00 Chicago close, see the module); before
    and after the calendar's range the market counts as closed.

    Args:
        key: ``crypto`` (always open), ``kr``, ``us`` or ``us-futures``.

    Raises:
        ConfigError: unknown key.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self._intervals = None if key == "crypto" else _trading_intervals(key)
        self._calendar = None if key == "crypto" else calendar(key)

    def open_ns(self, start_ns: int, end_ns: int) -> int:
        """Return how many ns of [``start_ns``, ``end_ns``) the market is open (0 if empty)."""
        if end_ns <= start_ns:
            return 0
        intervals = self._intervals
        if intervals is None:
            return end_ns - start_ns
        opens, closes = intervals.opens, intervals.closes
        total = 0
        i = bisect_right(closes, start_ns)  # the first interval ending after start
        while i < len(opens) and opens[i] < end_ns:
            total += min(closes[i], end_ns) - max(opens[i], start_ns)
            i += 1
        return total

    def is_open(self, ts_ns: int) -> bool:
        """True when the market is open at ``ts_ns``."""
        intervals = self._intervals
        if intervals is None:
            return True
        i = bisect_right(intervals.closes, ts_ns)
        return i < len(intervals.opens) and intervals.opens[i] <= ts_ns

    def after_open_ns(self, start_ns: int, duration_ns: int) -> int | None:
        """Return the instant when ``duration_ns`` of open market has passed since ``start_ns``.

        None when the calendar ends first. For timers: when a silence that began at
        ``start_ns`` becomes a gap.
        """
        intervals = self._intervals
        if intervals is None:
            return start_ns + duration_ns
        opens, closes = intervals.opens, intervals.closes
        left = duration_ns
        i = bisect_right(closes, start_ns)
        while i < len(opens):
            begin = max(opens[i], start_ns)
            if closes[i] - begin >= left:
                return begin + left
            left -= closes[i] - begin
            i += 1
        return None

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
        # Sessions start and end on whole minutes: open time over whole minutes is a
        # whole number of minutes.
        return self.open_ns(first * _MINUTE_NS, (last + 1) * _MINUTE_NS) // _MINUTE_NS

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


class StreamSilenceState(msgspec.Struct, frozen=True):
    """State of a :class:`SilenceDetector` (streams sorted: deterministic bytes).

    Attributes:
        last_ns: the ``ts_event`` of each stream's last event (ns).
        seen_ns: the clock when that event was handled (ns), for the streams where it
            differs from ``last_ns`` (live: the machine's clock; in replays the clock is
            the event's time and this is empty). Missing: the clock was ``last_ns``.
        reported_open: streams whose current silence :meth:`SilenceDetector.open_silence`
            has already returned (reported before the stream resumed).
    """

    last_ns: dict[str, int]
    seen_ns: dict[str, int] = msgspec.field(default_factory=dict)
    reported_open: list[str] = msgspec.field(default_factory=list)


class Silence(msgspec.Struct, frozen=True):
    """A time gap on one stream: too long without an event while the market was open.

    Attributes:
        stream: the stream's key (its topic, say).
        last_seen: ``ts_event`` of the last event before the silence (ns).
        next_seen: ``ts_event`` of the event that ended it (ns); 0 while it goes on
            (a silence found by :meth:`SilenceDetector.open_silence`).
        open_ns: how long the market was open in between (ns); for a silence that
            goes on, from ``last_seen`` to the clock time it was found at.
        reported_open: True when the event ending it comes after the silence was
            reported as going on (:meth:`SilenceDetector.open_silence`).
    """

    stream: str
    last_seen: int
    next_seen: int
    open_ns: int
    reported_open: bool = False


class SilenceDetector:
    """Time gaps on event streams without bars (trades, quotes): silences while open.

    A stream whose consecutive events are more than ``max_silence_ns`` of *open
    market* apart has a time gap; nights, weekends, holidays and CME's maintenance
    hour do not count toward the silence. Pure: it takes event and clock times and
    returns what it found; the caller publishes ``md.gap`` (``kind="time"``).

    A silence is found two ways. When the event ending it arrives, :meth:`on_event`
    returns it whole. Before that, a caller that arms a timer at :meth:`deadline`
    learns from :meth:`open_silence` that the stream is silent past the bound: that
    silence is returned once, without its end, and the event that ends it later is
    then always returned by :meth:`on_event` (``reported_open=True``), even if the
    event turns out to be dated within the bound (a live event delivered late), so
    every silence reported open is closed.

    The deadline counts from the *clock* at which the stream's last event was
    handled (``now_ns`` of :meth:`on_event`): in replays that is the event's
    ``ts_event``; live it is a little later (delivery latency), and an actor catching
    up on old events handles them long after their ``ts_event``: counting from the
    event time would call every stream of the history silent.

    Args:
        hours: the market's trading hours.
        max_silence_ns: the longest open-market silence that is not a gap (> 0).

    Raises:
        ConfigError: ``max_silence_ns`` ≤ 0.
    """

    def __init__(self, hours: MarketHours, max_silence_ns: int) -> None:
        if max_silence_ns <= 0:
            raise ConfigError(f"a silence threshold must be > 0 ns, got {max_silence_ns}")
        self.hours = hours
        self.max_silence_ns = max_silence_ns
        self._last: dict[str, int] = {}
        self._seen: dict[str, int] = {}
        self._open: set[str] = set()

    def on_event(self, stream: str, ts_ns: int, *, now_ns: int | None = None) -> Silence | None:
        """Record an event of ``stream`` at ``ts_ns``; return the silence it ends, if any.

        Args:
            stream: the stream's key.
            ts_ns: the event's ``ts_event`` (ns).
            now_ns: the clock when the event is handled (ns, ≥ ``ts_ns``); None for
                ``ts_ns`` (a replay's clock).

        Returns:
            The silence ended by this event: more than ``max_silence_ns`` of open
            market since the stream's previous event, or any silence already
            returned by :meth:`open_silence` (``reported_open=True``). None
            otherwise, and for an event not newer than the stream's last one: it
            neither ends nor starts a silence (an older one is a replayed or late
            event and changes nothing; one dated as the last counts as handled at
            ``now_ns``).
        """
        last = self._last.get(stream)
        if last is not None and ts_ns <= last:
            if ts_ns == last and now_ns is not None:
                self._seen[stream] = now_ns  # handled now, as the event it ties with
            return None
        self._last[stream] = ts_ns
        self._seen[stream] = ts_ns if now_ns is None else now_ns
        if last is None:
            return None
        if self._open and stream in self._open:
            self._open.discard(stream)
            return Silence(stream, last, ts_ns, self.hours.open_ns(last, ts_ns), True)
        # Cheap test first: wall time bounds open time.
        if ts_ns - last <= self.max_silence_ns:
            return None
        open_ns = self.hours.open_ns(last, ts_ns)
        if open_ns <= self.max_silence_ns:
            return None
        return Silence(stream, last, ts_ns, open_ns)

    def deadline(self, stream: str) -> int | None:
        """Return the clock time (ns) at which the stream's current silence becomes a gap.

        That is when more than ``max_silence_ns`` of open market has passed since its
        last event was handled. None when the stream has no event yet, when its
        silence was already returned by :meth:`open_silence`, or when the calendar
        ends first.
        """
        seen = self._seen.get(stream)
        if seen is None or stream in self._open:
            return None
        return self.hours.after_open_ns(seen, self.max_silence_ns + 1)

    def open_silence(self, stream: str, now_ns: int) -> Silence | None:
        """Return the stream's silence if it is past its :meth:`deadline` at ``now_ns``.

        For a timer at the deadline. The silence (``next_seen=0``, ``open_ns`` from
        its last event to ``now_ns``) is returned once; the stream's next event then
        ends it (:meth:`on_event`). None when the deadline is later, unknown, or the
        silence was already returned.
        """
        due = self.deadline(stream)
        if due is None or due > now_ns:
            return None
        self._open.add(stream)
        last = self._last[stream]
        return Silence(stream, last, 0, self.hours.open_ns(last, now_ns))

    def restart(self, now_ns: int) -> None:
        """Count every stream's silence from ``now_ns`` at the earliest (the clock at a
        live restart: the events since the snapshot are still to be read, and the
        downtime is not the streams' silence)."""
        for stream, seen in self._seen.items():
            if seen < now_ns:
                self._seen[stream] = now_ns

    def state(self) -> StreamSilenceState:
        """Return the state (streams sorted: deterministic bytes)."""
        last = self._last
        return StreamSilenceState(
            dict(sorted(last.items())),
            dict(sorted((s, t) for s, t in self._seen.items() if t != last[s])),
            sorted(self._open),
        )

    def mark_open(self, stream: str, last_seen: int) -> bool:
        """Record that the stream's current silence was already reported open.

        For a process reading back what it published before a restart: the open gap
        it finds in the log must not be reported again, and the stream's next event
        must close it (:meth:`on_event` then returns it with ``reported_open=True``).

        Returns:
            True when ``last_seen`` is the stream's last event time (the silence is
            the current one); False otherwise, and nothing changes.
        """
        if self._last.get(stream) != last_seen:
            return False
        self._open.add(stream)
        return True

    def restore(self, state: StreamSilenceState) -> None:
        """Continue exactly from ``state``, over the streams of ``state.last_ns``
        (entries of ``seen_ns`` and ``reported_open`` for other streams are ignored)."""
        self._last = dict(state.last_ns)
        self._seen = {s: state.seen_ns.get(s, t) for s, t in state.last_ns.items()}
        self._open = set(state.reported_open) & set(self._last)


def topic_market_symbol(topic: str) -> tuple[str, str]:
    """Return (market, symbol): the last two tokens of an ``md.*`` topic
    (``md.trade.crypto.BTCUSDT`` → ``("crypto", "BTCUSDT")``)."""
    parts = topic.rsplit(".", 2)
    return parts[-2], parts[-1]


def silence_bounds_ns(
    max_silence_s: Mapping[str, float], markets: Collection[str] = MARKETS
) -> dict[str, int]:
    """Return the silence bounds in ns per ``market`` or ``market.symbol`` key.

    Args:
        max_silence_s: seconds of open market per key (``max_silence_s`` of the
            actor's and the live feed's configurations).
        markets: the markets a key may name.

    Raises:
        ConfigError: a key whose market is not one of ``markets``, or a bound that
            is not a positive finite number of seconds; the message names the key.
    """
    bounds: dict[str, int] = {}
    for key, seconds in max_silence_s.items():
        market = key.split(".", 1)[0]
        if market not in markets:
            raise ConfigError(
                f"max_silence_s[{key!r}]: {market!r} is not a market (known: {list(markets)})"
            )
        if not (math.isfinite(seconds) and seconds > 0):
            raise ConfigError(f"max_silence_s[{key!r}] must be > 0 seconds, got {seconds!r}")
        bounds[key] = round(seconds * 1e9)
    return bounds


class SilenceWatch:
    """Silences of trade and quote topics, as ``md.gap`` payloads (``kind="time"``).

    The one implementation behind both publishers of market data: the market-data
    actor (:class:`~tickertape.actors.marketdata.actor.MarketDataActor`, a timer per
    topic on its clock, replays and live) and the live feed process
    (:class:`~tickertape.actors.marketdata.binance_client.LiveMarketDataHost`, the
    machine's clock). Each watched topic (``md.trade.{market}.{symbol}`` or
    ``md.quote...``) is one stream of a :class:`SilenceDetector`, one detector per
    (calendar, bound). Pure: the caller says when an event was handled and when to
    look for open silences, and publishes the payloads on ``md.gap.{market}.{symbol}``
    (see :func:`gap_topic`).

    A silence gives at most two payloads, with the same ``last_seen`` (the
    ``ts_event`` of the topic's last event before it), ``missing=0`` and ``stream`` =
    the topic's second token (``trade``, ``quote``):

    - the *open* gap (:meth:`open_gap`, once the topic is past its :meth:`deadline`):
      ``next_seen=0``, ``open=True``, ``detail`` ``"open: no event for 60.000 s of
      open market so far (bound 60 s)"``;
    - the *whole* gap (:meth:`on_event`, from the event that ends it): ``next_seen``
      = that event's ``ts_event``, ``open`` unset, ``detail`` ``"180.218 s of open
      market without an event (bound 60 s)"``, ending ``"; within the bound by event
      time, reported open before it arrived"`` when a late event ends a silence
      reported open.

    Args:
        bounds_ns: the longest silence that is not a gap, ns of open market, per
            ``market`` or ``market.symbol`` (the latter wins); see
            :func:`silence_bounds_ns`.
        hours_for: the trading hours of (market, symbol).

    Raises:
        ConfigError: from :meth:`detector`: a topic without a bound (or, from
            ``hours_for``, without a calendar).
    """

    def __init__(
        self, bounds_ns: Mapping[str, int], hours_for: Callable[[str, str], MarketHours]
    ) -> None:
        self.bounds_ns = dict(bounds_ns)
        self._hours_for = hours_for
        self._detectors: dict[tuple[str, int], SilenceDetector] = {}
        self._topic_detector: dict[str, SilenceDetector] = {}

    def bound_ns(self, topic: str) -> int | None:
        """Return the topic's bound (ns of open market), None when it has none."""
        market, symbol = topic_market_symbol(topic)
        bound = self.bounds_ns.get(f"{market}.{symbol}")
        return self.bounds_ns.get(market) if bound is None else bound

    def _detector(self, topic: str) -> SilenceDetector:
        """Return the detector watching ``topic`` (created at its first use).

        Raises:
            ConfigError: no bound for the topic's market or symbol; no calendar
                (from ``hours_for``).
        """
        detector = self._topic_detector.get(topic)
        if detector is not None:
            return detector
        bound_ns = self.bound_ns(topic)
        market, symbol = topic_market_symbol(topic)
        if bound_ns is None:
            raise ConfigError(
                f"max_silence_s has no bound for {market}.{symbol} (watched topic {topic})"
            )
        hours = self._hours_for(market, symbol)
        key = (hours.key, bound_ns)
        detector = self._detectors.get(key)
        if detector is None:
            detector = self._detectors[key] = SilenceDetector(hours, bound_ns)
        self._topic_detector[topic] = detector
        return detector

    def topics(self) -> list[str]:
        """Return the topics watched so far (those with a detector), sorted."""
        return sorted(self._topic_detector)

    def watches(self, topic: str) -> bool:
        """True when ``topic`` has a detector (it had an event, or a restored state)."""
        return topic in self._topic_detector

    def on_event(self, topic: str, stream: str, ts_ns: int, now_ns: int) -> Gap | None:
        """Record an event of ``topic``; return the whole gap it ends, if any.

        Args:
            topic: the event's topic.
            stream: the gap's ``stream`` (``trade`` or ``quote``).
            ts_ns: the event's ``ts_event`` (ns).
            now_ns: the clock when it is handled (ns): in replays ``ts_ns``.

        Raises:
            ConfigError: as :meth:`detector`.
        """
        detector = self._detector(topic)
        silence = detector.on_event(topic, ts_ns, now_ns=now_ns)
        if silence is None:
            return None
        bound_ns = detector.max_silence_ns
        detail = (
            f"{silence.open_ns / 1e9:.3f} s of open market without an event "
            f"(bound {bound_ns / 1e9:g} s)"
        )
        if silence.open_ns <= bound_ns:  # only after an open report: a late live event
            detail += "; within the bound by event time, reported open before it arrived"
        return Gap(
            symbol=topic_market_symbol(topic)[1],
            kind="time",
            stream=stream,
            last_seen=silence.last_seen,
            next_seen=silence.next_seen,
            missing=0,
            detail=detail,
        )

    def deadline(self, topic: str) -> int | None:
        """Return the clock time (ns) at which the topic's silence becomes a gap, as
        :meth:`SilenceDetector.deadline`; None also for a topic not watched."""
        detector = self._topic_detector.get(topic)
        return None if detector is None else detector.deadline(topic)

    def next_deadline(self) -> int | None:
        """Return the earliest :meth:`deadline` of every watched topic (None: none)."""
        due = [d for topic in self._topic_detector if (d := self.deadline(topic)) is not None]
        return min(due) if due else None

    def open_gap(self, topic: str, now_ns: int) -> Gap | None:
        """Return the topic's open gap if it is past its deadline at ``now_ns``, once
        per silence (:meth:`SilenceDetector.open_silence`); None otherwise."""
        detector = self._topic_detector.get(topic)
        if detector is None:
            return None
        silence = detector.open_silence(topic, now_ns)
        if silence is None:
            return None
        return Gap(
            symbol=topic_market_symbol(topic)[1],
            kind="time",
            stream=topic.split(".", 2)[1],
            last_seen=silence.last_seen,
            next_seen=0,
            missing=0,
            detail=(
                f"open: no event for {silence.open_ns / 1e9:.3f} s of open market so far "
                f"(bound {detector.max_silence_ns / 1e9:g} s)"
            ),
            open=True,
        )

    def mark_open(self, topic: str, last_seen: int) -> bool:
        """Record an open gap published before (read back from the log after a
        restart), as :meth:`SilenceDetector.mark_open`; False for a topic not watched."""
        detector = self._topic_detector.get(topic)
        return detector is not None and detector.mark_open(topic, last_seen)

    def restart(self, now_ns: int) -> None:
        """Count every topic's silence from ``now_ns`` at the earliest (a live restart:
        the downtime is not the topics' silence), as :meth:`SilenceDetector.restart`."""
        for detector in self._detectors.values():
            detector.restart(now_ns)

    def state(self) -> StreamSilenceState:
        """Return the state of every watched topic (topics sorted: deterministic bytes)."""
        last: dict[str, int] = {}
        seen: dict[str, int] = {}
        reported: list[str] = []
        for detector in self._detectors.values():
            state = detector.state()
            last.update(state.last_ns)
            seen.update(state.seen_ns)
            reported += state.reported_open
        return StreamSilenceState(
            dict(sorted(last.items())), dict(sorted(seen.items())), sorted(reported)
        )

    def restore(self, state: StreamSilenceState) -> None:
        """Continue from ``state``: each topic of ``state.last_ns`` goes to the detector
        its bound and calendar map to now. The caller leaves out of ``last_ns`` the
        topics it no longer watches; their ``seen_ns`` and ``reported_open`` entries
        are then ignored.

        Raises:
            ConfigError: as :meth:`detector`.
        """
        self._detectors.clear()
        self._topic_detector.clear()
        streams: dict[SilenceDetector, dict[str, int]] = {}
        for topic, last_ns in state.last_ns.items():
            streams.setdefault(self._detector(topic), {})[topic] = last_ns
        for detector, last in streams.items():
            detector.restore(StreamSilenceState(last, state.seen_ns, state.reported_open))


def gap_topic(topic: str) -> str:
    """Return the ``md.gap.{market}.{symbol}`` topic of an ``md.*`` topic."""
    market, symbol = topic_market_symbol(topic)
    return f"md.gap.{market}.{symbol}"


class GapTimes:
    """The ``ts_event`` of the ``md.gap`` events a producer publishes, never going back
    on a topic.

    The log refuses a topic's time going back (DESIGN §5). Live, an open gap is
    stamped with the clock when it is found, and a later gap of the same topic with
    an event's time (a whole gap, a sequence gap), which can be older (delivery
    latency, a venue clock behind the machine's): such a gap takes the previous
    gap's time instead. In replays event and clock times never cross and no time
    changes.

    Args:
        last_ts: the last time per topic (a snapshot's), ns.
    """

    def __init__(self, last_ts: Mapping[str, int] | None = None) -> None:
        self._last = dict(last_ts or {})

    def stamp(self, topic: str, ts_event: int) -> int:
        """Return the time to publish a gap of ``topic`` at: ``ts_event``, or the
        topic's previous gap time when that is later; it becomes the topic's last."""
        last = self._last.get(topic)
        if last is not None and ts_event < last:
            ts_event = last
        self._last[topic] = ts_event
        return ts_event

    def observe(self, topic: str, ts_event: int) -> None:
        """Advance with a gap already published (read back from the log)."""
        last = self._last.get(topic)
        if last is None or ts_event > last:
            self._last[topic] = ts_event

    def state(self) -> dict[str, int]:
        """Return the last time per topic (sorted)."""
        return dict(sorted(self._last.items()))
