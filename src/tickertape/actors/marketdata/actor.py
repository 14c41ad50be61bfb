"""The market-data actor: trades into bars, gap detection, forward-adjusted bars.

Consumes (configurable patterns):

- ``md.trade.{market}.{symbol}``: aggregated into ``md.bar.{interval}.{market}.{symbol}``
  for each configured interval (``1s`` and ``1m`` by default). A bar is published only
  when its interval is over on the actor's clock (a timer at its end, or a trade of a
  later interval), with ``ts_event`` = its close time. Trade ids that are integers are
  checked for continuity: a jump publishes ``md.gap`` (``kind="sequence"``,
  ``stream="trade"``, ``missing`` = ids skipped).
- bar topics to watch (imported bars): a bar starting after the previous bar's end
  while the market was open (per its trading calendar) publishes ``md.gap``
  (``kind="time"``, ``stream="bar.{interval}"``, ``missing`` = open intervals missed).
  Closed-market time (nights, weekends, holidays) is not a gap.
- raw daily bars to adjust, with ``md.corporate_action``: forward-adjusted copies on
  ``md.bar.{interval}-adj.{market}.{symbol}`` (see
  :mod:`tickertape.actors.marketdata.adjustment`).
- trade and quote topics to watch for silences: a topic without an event for more than
  the configured bound of *open market* (per the trading calendar) publishes
  ``md.gap`` (``kind="time"``, ``stream="trade"`` or ``"quote"``, ``missing=0``)
  (:class:`~tickertape.actors.marketdata.sessions.SilenceWatch`, shared with the live
  feed): an *open* gap (``open=True``, ``next_seen=0``) from a timer at the deadline,
  while the topic is still silent, then, when its next event arrives, the whole gap
  (``next_seen`` = that event's time, the open-market length in ``detail``). Each is
  published once per silence; a silence ended before its deadline's timer has fired
  (a live event that arrives late) has only the second.

The actor reads time only from ``ctx.clock``; its state snapshots and restores
exactly (:class:`MarketDataState`).

Live (``tape feed``), trades come from a venue adapter rather than the log, and bars
are built next to it on the venue clock by :class:`LiveBars` (configured by
:class:`LiveFeedConfig`; the process is
:class:`tickertape.actors.marketdata.binance_client.LiveMarketDataHost`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import cast

import msgspec

from tickertape.actors.base import Actor, Context, Event, Timer
from tickertape.actors.marketdata.adjustment import (
    ForwardAdjuster,
    ForwardAdjusterState,
    adjusted_topic,
)
from tickertape.actors.marketdata.bars import BarBuilder, BarBuilderState
from tickertape.actors.marketdata.binance_feed import FeedState
from tickertape.actors.marketdata.importers import ParsedEvent, interval_ns
from tickertape.actors.marketdata.sessions import (
    GapTimes,
    MarketHours,
    SilenceWatch,
    StreamSilenceState,
    silence_bounds_ns,
    topic_market_symbol,
)
from tickertape.errors import ClockError, ConfigError
from tickertape.schemas.envelope import MARKETS, Market
from tickertape.schemas.market import Bar, CorporateAction, Gap, Quote, Trade
from tickertape.topics import matches_any, validate_pattern

_MINUTE_NS = 60_000_000_000


class MarketDataConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of :class:`MarketDataActor` (``[marketdata]`` in TOML).

    Attributes:
        trade_patterns: trade topics to aggregate and check for id gaps.
        bar_intervals: intervals built from trades (each a whole number of seconds).
        watch_bar_patterns: bar topics checked for time gaps against the calendar.
        adjust_patterns: raw bar topics to republish forward-adjusted; corporate
            actions of the same market and symbol are consumed with them.
        calendars: trading-hours key per ``market`` or ``market.symbol`` (the latter
            wins): ``crypto`` (24/7), ``us`` (NYSE), ``us-futures`` (CME Globex),
            ``kr`` (KRX).
        silence_patterns: trade and quote topics watched for silences (time gaps on
            streams without bars).
        max_silence_s: the longest silence, in seconds of open market, that is not a
            gap, per ``market`` or ``market.symbol`` (the latter wins), > 0. Every
            watched topic needs one.
    """

    trade_patterns: list[str] = msgspec.field(default_factory=lambda: ["md.trade.>"])
    bar_intervals: list[str] = msgspec.field(default_factory=lambda: ["1s", "1m"])
    watch_bar_patterns: list[str] = msgspec.field(default_factory=list)
    adjust_patterns: list[str] = msgspec.field(default_factory=list)
    calendars: dict[str, str] = msgspec.field(
        default_factory=lambda: {"crypto": "crypto", "us": "us", "kr": "kr"}
    )
    silence_patterns: list[str] = msgspec.field(default_factory=list)
    max_silence_s: dict[str, float] = msgspec.field(default_factory=dict)


class MarketDataState(msgspec.Struct, frozen=True):
    """Snapshot of :class:`MarketDataActor` (keys sorted: deterministic bytes).

    Fields added after the first format have defaults, so older snapshots restore:

    - ``silence_last_ns``: the ``ts_event`` of the last event of each watched topic.
      Without it, no stream is watched yet.
    - ``silence_seen_ns``: the clock when that event was handled, where it differs
      from ``silence_last_ns`` (live only).
    - ``silence_open``: watched topics whose silence was published as open and has
      not ended yet.
    - ``silence_armed``: watched topics with a silence timer among the snapshot's
      timers. None in snapshots written before those timers existed: every watched
      topic then gets its timer at the actor's next handler call (or, if its deadline
      has passed, its open gap right then).
    - ``gap_last_ts``: the ``ts_event`` of the last ``md.gap`` published per topic
      (gaps are never stamped before it, see :meth:`MarketDataActor.on_timer`).
    """

    builders: dict[str, BarBuilderState]
    last_trade_ids: dict[str, int]
    last_bar_end: dict[str, int]
    adjusters: dict[str, ForwardAdjusterState]
    silence_last_ns: dict[str, int] = msgspec.field(default_factory=dict)
    silence_seen_ns: dict[str, int] = msgspec.field(default_factory=dict)
    silence_open: list[str] = msgspec.field(default_factory=list)
    silence_armed: list[str] | None = None
    gap_last_ts: dict[str, int] = msgspec.field(default_factory=dict)


SILENCE_TIMER = "silence|"
"""Prefix of the silence timers' names: ``silence|{topic}``, one per watched topic."""


class MarketDataActor(Actor):
    """Builds bars from trades, detects sequence and time gaps, forward-adjusts bars.

    Args:
        config: the configuration; defaults when None.

    Raises:
        ConfigError: an invalid pattern or interval (bars from trades must last a
            whole number of seconds), or an invalid ``max_silence_s`` (unknown market,
            a bound that is not a positive number of seconds, silence patterns without
            any bound).
    """

    name = "marketdata"
    state_version = 1

    def __init__(self, config: MarketDataConfig | None = None) -> None:
        self.config = config or MarketDataConfig()
        patterns = [
            *self.config.trade_patterns,
            *self.config.watch_bar_patterns,
            *self.config.adjust_patterns,
            *self.config.silence_patterns,
        ]
        for pattern in patterns:
            problem = validate_pattern(pattern)
            if problem is not None:
                raise ConfigError(problem)
        self._intervals: list[tuple[str, int]] = []
        for interval in self.config.bar_intervals:
            length = interval_ns(interval)
            if length % 1_000_000_000:
                raise ConfigError(f"bar interval {interval!r} is not a whole number of seconds")
            self._intervals.append((interval, length))
        corporate = ["md.corporate_action.>"] if self.config.adjust_patterns else []
        self.subscriptions = tuple(dict.fromkeys([*patterns, *corporate]))
        self._builders: dict[str, BarBuilder] = {}
        self._builder_market: dict[str, str] = {}
        self._last_trade_id: dict[str, int] = {}
        self._last_bar_end: dict[str, int] = {}
        self._adjusters: dict[str, ForwardAdjuster] = {}
        self._hours: dict[str, MarketHours] = {}
        self._silences = SilenceWatch(_silence_bounds(self.config), self._hours_for)
        # Watched topics whose silence timer is set; topics restored from a snapshot
        # of the previous format, whose timer is still to be set.
        self._silence_armed: set[str] = set()
        self._silence_unarmed: list[str] = []
        self._gap_times = GapTimes()
        self._routes: dict[str, tuple[bool, bool, bool, bool]] = {}

    # -------------------------------------------------------------- lifecycle

    def on_start(self, ctx: Context) -> None:
        """Set the silence timers a snapshot of the previous format lacks; after a
        restore, count the silences of watched topics from the clock at the earliest.

        Hosts call ``on_start`` after a restore only when they run the actor live (a
        resumed replay continues without it, its clock where the snapshot left it):
        live, the events published while the actor was down are still to be read,
        and the downtime is not a silence of their topics.
        """
        self._silences.restart(ctx.clock.now_ns())
        if self._silence_unarmed:
            self._arm_restored(ctx)

    # ----------------------------------------------------------------- events

    def on_event(self, event: Event, ctx: Context) -> None:
        """Dispatch trades, bars and corporate actions (other types are ignored)."""
        if self._silence_unarmed:
            self._arm_restored(ctx)
        payload = event.payload
        topic = event.topic
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        silence, trades, watch_bars, adjust = route
        if isinstance(payload, Trade):
            if silence:
                self._check_silence(event, "trade", ctx)
            if trades:
                self.on_trade(event, payload, ctx)
        elif isinstance(payload, Quote):
            if silence:
                self._check_silence(event, "quote", ctx)
        elif isinstance(payload, Bar):
            if watch_bars:
                self._check_bar_gap(event, payload, ctx)
            if adjust and not payload.adjusted:
                self._adjust(event, payload, ctx)
        elif isinstance(payload, CorporateAction):
            market, symbol = topic_market_symbol(topic)
            self._adjuster(f"{market}.{symbol}").on_action(payload)

    def _route(self, topic: str) -> tuple[bool, bool, bool, bool]:
        """Which of silence, trade, watched-bar and adjust patterns ``topic`` matches
        (computed once per topic: matching the patterns cost more than the rest of a
        watched trade's handling)."""
        config = self.config
        route = (
            matches_any(config.silence_patterns, topic),
            matches_any(config.trade_patterns, topic),
            matches_any(config.watch_bar_patterns, topic),
            matches_any(config.adjust_patterns, topic),
        )
        self._routes[topic] = route
        return route

    def on_trade(self, event: Event, trade: Trade, ctx: Context) -> None:
        """Check the trade id's continuity and add the trade to every bar interval."""
        market, symbol = topic_market_symbol(event.topic)
        key = f"{market}.{symbol}"
        if trade.trade_id.isdigit():
            trade_id = int(trade.trade_id)
            last = self._last_trade_id.get(key)
            if last is not None and trade_id > last + 1:
                gap = Gap(
                    symbol=symbol,
                    kind="sequence",
                    stream="trade",
                    last_seen=last,
                    next_seen=trade_id,
                    missing=trade_id - last - 1,
                )
                self._publish_gap(
                    market, gap, ctx, event.market, ts_event=ctx.clock.now_ns(), causation=event
                )
            if last is None or trade_id > last:
                self._last_trade_id[key] = trade_id
        now = ctx.clock.now_ns()
        for interval, length in self._intervals:
            name = f"bar|{interval}|{key}"
            builder = self._builders.get(name)
            if builder is None:
                builder = self._builders[name] = BarBuilder(symbol, interval, length)
                self._builder_market[name] = market
            done = builder.add(event.ts_event, trade.price, trade.size)
            if done is not None:
                self._publish_bar(name, done, ctx, event)
            end = builder.end_ns
            assert end is not None
            if end > now:
                try:
                    ctx.clock.set_timer(name, at_ns=end)
                except ClockError:  # live: the clock passed the bar's end since ``now``
                    self._close_bar(name, builder, ctx, event)
                continue
            self._close_bar(name, builder, ctx, event)

    def _close_bar(self, name: str, builder: BarBuilder, ctx: Context, cause: Event) -> None:
        bar = builder.close()
        assert bar is not None
        ctx.clock.cancel_timer(name)
        self._publish_bar(name, bar, ctx, cause)

    def on_timer(self, timer: Timer, ctx: Context) -> None:
        """Publish the bar whose interval ended (timer ``bar|{interval}|{market}.{symbol}``),
        or check a watched topic for a silence (timer ``silence|{topic}``).

        A silence timer is set at the topic's deadline (:meth:`SilenceWatch.deadline`)
        when it has none, and moved (not on every event: only when it fires early) to
        the deadline of the topic's latest event. When it fires and the topic is past
        its deadline, an open ``md.gap`` is published: ``open=True``, ``next_seen=0``,
        ``last_seen`` = the topic's last ``ts_event``, ``ts_event`` = the clock.

        Gaps of one ``md.gap`` topic are never stamped before the previous one: live, a
        gap stamped by the clock (an open one) can be followed by a gap stamped with an
        event's older time, which takes the previous gap's time instead (the log
        refuses time going back on a topic). In replays event and clock times never
        cross, and no gap's time changes.
        """
        if self._silence_unarmed:
            self._arm_restored(ctx)
        if timer.name.startswith(SILENCE_TIMER):
            self._on_silence_timer(timer.name[len(SILENCE_TIMER) :], ctx)
            return
        builder = self._builders.get(timer.name)
        if builder is None:
            return
        end = builder.end_ns
        if end is None or end > ctx.clock.now_ns():
            return
        bar = builder.close()
        if bar is not None:
            self._publish_bar(timer.name, bar, ctx, None)

    def _publish_bar(self, name: str, bar: Bar, ctx: Context, cause: Event | None) -> None:
        market = self._builder_market[name]
        ctx.publish(
            f"md.bar.{bar.interval}.{market}.{bar.symbol}",
            bar,
            market=_market(market),
            ts_event=bar.start_ns + interval_ns(bar.interval),
            causation=cause,
        )

    # ------------------------------------------------------------------- gaps

    def _hours_for(self, market: str, symbol: str) -> MarketHours:
        key = self.config.calendars.get(f"{market}.{symbol}") or self.config.calendars.get(market)
        if key is None:
            raise ConfigError(f"no trading calendar configured for {market}.{symbol}")
        hours = self._hours.get(key)
        if hours is None:
            hours = self._hours[key] = MarketHours(key)
        return hours

    def _check_bar_gap(self, event: Event, bar: Bar, ctx: Context) -> None:
        market, symbol = topic_market_symbol(event.topic)
        topic = event.topic
        previous_end = self._last_bar_end.get(topic)
        self._last_bar_end[topic] = event.ts_event
        if previous_end is None or bar.start_ns <= previous_end:
            return
        hours = self._hours_for(market, symbol)
        if bar.interval.endswith("d"):
            after = datetime.fromtimestamp(previous_end / 1e9, UTC).date()
            before = datetime.fromtimestamp(bar.start_ns / 1e9, UTC).date()
            missing = hours.sessions_between(after, before)
        else:
            length = interval_ns(bar.interval)
            open_minutes = hours.open_minutes(previous_end, bar.start_ns)
            missing = open_minutes * _MINUTE_NS // length
        if missing <= 0:
            return
        gap = Gap(
            symbol=symbol,
            kind="time",
            stream=f"bar.{bar.interval}",
            last_seen=previous_end,
            next_seen=bar.start_ns,
            missing=missing,
        )
        self._publish_gap(market, gap, ctx, event.market, ts_event=event.ts_event, causation=event)

    def _publish_gap(
        self,
        market: str,
        gap: Gap,
        ctx: Context,
        scope: Market | None,
        *,
        ts_event: int,
        causation: Event | None,
    ) -> None:
        topic = f"md.gap.{market}.{gap.symbol}"
        ts_event = self._gap_times.stamp(topic, ts_event)
        ctx.publish(topic, gap, market=scope, ts_event=ts_event, causation=causation)

    def _check_silence(self, event: Event, stream: str, ctx: Context) -> None:
        topic = event.topic
        now = ctx.clock.now_ns()
        gap = self._silences.on_event(topic, stream, event.ts_event, now)
        if topic not in self._silence_armed:
            self._arm_silence(topic, ctx, now)
        if gap is None:
            return
        market = topic_market_symbol(topic)[0]
        self._publish_gap(market, gap, ctx, event.market, ts_event=event.ts_event, causation=event)

    def _arm_silence(self, topic: str, ctx: Context, now: int) -> None:
        """Set the topic's silence timer at its deadline; publish its open gap instead if
        the deadline has passed (``now`` or later)."""
        due = self._silences.deadline(topic)
        if due is None:  # no event yet, reported open, or the calendar ends first
            self._silence_armed.discard(topic)
            return
        if due > now:
            try:
                ctx.clock.set_timer(SILENCE_TIMER + topic, at_ns=due)
            except ClockError:  # live: the clock passed the deadline since ``now``
                now = ctx.clock.now_ns()
            else:
                self._silence_armed.add(topic)
                return
        self._silence_armed.discard(topic)
        gap = self._silences.open_gap(topic, now)
        assert gap is not None  # the deadline is at or before now
        market = topic_market_symbol(topic)[0]
        self._publish_gap(market, gap, ctx, _market(market), ts_event=now, causation=None)

    def _arm_restored(self, ctx: Context) -> None:
        now = ctx.clock.now_ns()
        topics, self._silence_unarmed = self._silence_unarmed, []
        for topic in topics:
            self._arm_silence(topic, ctx, now)

    def _on_silence_timer(self, topic: str, ctx: Context) -> None:
        self._silence_armed.discard(topic)
        if not self._silences.watches(topic):  # restored from a snapshot, no longer watched
            return
        # Past the deadline: the open gap; else (events came since the timer was set)
        # the timer moves to the later deadline.
        self._arm_silence(topic, ctx, ctx.clock.now_ns())

    # ------------------------------------------------------------- adjustment

    def _adjuster(self, key: str) -> ForwardAdjuster:
        adjuster = self._adjusters.get(key)
        if adjuster is None:
            adjuster = self._adjusters[key] = ForwardAdjuster()
        return adjuster

    def _adjust(self, event: Event, bar: Bar, ctx: Context) -> None:
        market, symbol = topic_market_symbol(event.topic)
        session_date = datetime.fromtimestamp(bar.start_ns / 1e9, UTC).date()
        adjusted = self._adjuster(f"{market}.{symbol}").adjust(bar, session_date)
        ctx.publish(
            adjusted_topic(bar.interval, market, symbol),
            adjusted,
            market=event.market,
            ts_event=event.ts_event,
            causation=event,
        )

    # --------------------------------------------------------------- snapshot

    def snapshot(self) -> MarketDataState:
        """Return the open bars, last trade ids, last bar ends, adjusters, the silence
        state of every watched topic and the last time of each gap topic."""
        silences = self._silences.state()
        return MarketDataState(
            builders={k: self._builders[k].state() for k in sorted(self._builders)},
            last_trade_ids=dict(sorted(self._last_trade_id.items())),
            last_bar_end=dict(sorted(self._last_bar_end.items())),
            adjusters={k: self._adjusters[k].state() for k in sorted(self._adjusters)},
            silence_last_ns=silences.last_ns,
            silence_seen_ns=silences.seen_ns,
            silence_open=silences.reported_open,
            # Still unset timers (restored from the previous format): still None.
            silence_armed=None if self._silence_unarmed else sorted(self._silence_armed),
            gap_last_ts=self._gap_times.state(),
        )

    def restore(self, state: bytes) -> None:
        """Restore from the msgpack bytes of a :class:`MarketDataState`.

        Raises:
            ConfigError: a watched topic of the snapshot has no ``max_silence_s`` bound
                or no calendar under the current configuration.
        """
        decoded = msgspec.msgpack.decode(state, type=MarketDataState)
        self._builders.clear()
        self._builder_market.clear()
        for key, builder_state in decoded.builders.items():
            self._builders[key] = BarBuilder.from_state(builder_state)
            self._builder_market[key] = key.split("|")[2].split(".", 1)[0]
        self._last_trade_id = dict(decoded.last_trade_ids)
        self._last_bar_end = dict(decoded.last_bar_end)
        self._adjusters = {k: ForwardAdjuster(v) for k, v in decoded.adjusters.items()}
        self._gap_times = GapTimes(decoded.gap_last_ts)
        # Each stream goes back to the detector its topic maps to under this config;
        # topics no longer watched are dropped (their timers fire and do nothing).
        last = {
            topic: last_ns
            for topic, last_ns in decoded.silence_last_ns.items()
            if matches_any(self.config.silence_patterns, topic)
        }
        self._silences.restore(
            StreamSilenceState(last, decoded.silence_seen_ns, decoded.silence_open)
        )
        watched = self._silences.topics()
        if decoded.silence_armed is None:
            # The previous format: the snapshot's timers have no silence timer.
            self._silence_armed = set()
            self._silence_unarmed = watched
        else:
            self._silence_armed = set(decoded.silence_armed).intersection(watched)
            self._silence_unarmed = []


def _silence_bounds(config: MarketDataConfig) -> dict[str, int]:
    """``max_silence_s`` in ns per ``market`` or ``market.symbol``, validated."""
    bounds = silence_bounds_ns(config.max_silence_s)
    if config.silence_patterns and not bounds:
        raise ConfigError("silence_patterns are set but max_silence_s has no bound")
    return bounds


def _market(market: str) -> Market:
    if market not in MARKETS:
        raise ConfigError(f"unknown market {market!r} in a market-data topic")
    return cast(Market, market)


# ----------------------------------------------------------------------- live

LIVE_STATE_VERSION = 1
"""Version of :class:`LiveMarketDataState` (snapshots of another version are ignored)."""

DEFAULT_FEED_MAX_SILENCE_S = 60.0
"""The live feed's silence bound for crypto topics, seconds (see :class:`LiveFeedConfig`)."""


class LiveFeedConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The live market-data process (``tape feed``): where the venue is, what to build.

    Attributes:
        ws_url: the venue's WebSocket base; the combined-stream path is appended
            (``/stream?streams=btcusdt@trade/...``). Default: the local exchange
            simulator (``tape exchange-sim``).
        rest_url: the venue's REST base (depth snapshots, trade backfill); None
            derives it from ``ws_url`` (``ws`` → ``http``, ``wss`` → ``https``).
        symbols: the symbols followed (upper case).
        bar_intervals: bar intervals built from the trades, whole seconds each.
        bar_grace_ms: how long after a bar's end (on the venue clock) a bar is closed
            when no later trade of its symbol has closed it (trades can arrive a
            little after depth updates of a later time: 213 ms at most in the bundled
            capture).
        max_silence_s: silence detection on the trade and quote topics the feed
            publishes (:class:`~tickertape.actors.marketdata.sessions.SilenceWatch`,
            on the machine's clock; crypto trades 24/7): the longest time, in
            seconds, a topic may go without an event before an open ``md.gap`` is
            published, per ``crypto`` or ``crypto.{SYMBOL}`` (the latter wins), each
            a positive finite number. Empty: no silence detection. Default 60 s for
            every symbol: in the bundled Binance captures (BTCUSDT and ETHUSDT, two
            5–6 minute windows each) the longest wait between two trades of a
            symbol is 3.8 s and between two book tickers 0.9 s, so a minute without
            either means a dead connection or venue, not a quiet market; less liquid
            symbols may need a longer bound of their own.
    """

    ws_url: str = "ws://127.0.0.1:9443"
    rest_url: str | None = None
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    bar_intervals: list[str] = msgspec.field(default_factory=lambda: ["1s", "1m"])
    bar_grace_ms: int = 500
    max_silence_s: dict[str, float] = msgspec.field(
        default_factory=lambda: {"crypto": DEFAULT_FEED_MAX_SILENCE_S}
    )

    def rest_base(self) -> str:
        """The REST base URL (``rest_url``, or derived from ``ws_url``)."""
        if self.rest_url is not None:
            return self.rest_url
        if self.ws_url.startswith("wss://"):
            return "https://" + self.ws_url[len("wss://") :]
        if self.ws_url.startswith("ws://"):
            return "http://" + self.ws_url[len("ws://") :]
        raise ConfigError(f"ws_url {self.ws_url!r} is not a ws:// or wss:// URL")

    def validate(self) -> None:
        """Raises ConfigError naming the field that is wrong."""
        self.rest_base()
        if not self.symbols:
            raise ConfigError("symbols: at least one symbol is needed")
        for symbol in self.symbols:
            if not symbol.isalnum() or symbol != symbol.upper():
                raise ConfigError(f"symbols: {symbol!r} is not an upper-case venue symbol")
        for interval in self.bar_intervals:
            try:
                length = interval_ns(interval)
            except ConfigError as exc:
                raise ConfigError(f"bar_intervals: {exc.detail}") from None
            if length % 1_000_000_000:
                raise ConfigError(f"bar_intervals: {interval!r} is not a whole number of seconds")
        if self.bar_grace_ms < 0:
            raise ConfigError(f"bar_grace_ms must be >= 0 (got {self.bar_grace_ms})")
        self.silence_bounds_ns()

    def silence_bounds_ns(self) -> dict[str, int]:
        """``max_silence_s`` in ns per ``crypto`` or ``crypto.{SYMBOL}``.

        Raises:
            ConfigError: a key of another market, or a bound that is not a positive
                finite number of seconds (the message names the key).
        """
        return silence_bounds_ns(self.max_silence_s, markets=("crypto",))


class LiveBarsState(msgspec.Struct, frozen=True):
    """State of :class:`LiveBars` (keys ``{interval}|{symbol}``, sorted)."""

    builders: dict[str, BarBuilderState]
    closed_until: dict[str, int]
    late_trades: int = 0


class LiveBars:
    """Time bars from a live feed's trades, closed on the venue clock (pure).

    A bar ``[start, end)`` is published, with ``ts_event`` = ``end``, as soon as its
    interval is provably over: a trade of the same symbol at or after ``end`` (the
    venue's trade stream is in time order; the bar comes just before that trade), or
    the venue clock (the latest venue time the feed has seen) at or past ``end +
    grace_ns`` while the symbol's trades are confirmed complete. A trade older than a
    bar already published (of any interval) is *late*: it stays on ``md.trade`` but is
    left out of every bar, and counted in :attr:`late_trades`. Intervals without trades
    have no bar.

    Args:
        intervals: bar intervals (``1s``, ``1m``...), whole seconds.
        grace_ns: see above, ns ≥ 0.
        market: the market of every symbol.

    Raises:
        ConfigError: an interval that is not a whole number of seconds.
    """

    def __init__(
        self, intervals: Sequence[str], *, grace_ns: int, market: Market = "crypto"
    ) -> None:
        self._intervals: list[tuple[str, int]] = []
        for interval in intervals:
            length = interval_ns(interval)
            if length % 1_000_000_000:
                raise ConfigError(f"bar interval {interval!r} is not a whole number of seconds")
            self._intervals.append((interval, length))
        self.grace_ns = grace_ns
        self.market: Market = market
        self._builders: dict[str, BarBuilder] = {}
        self._closed_until: dict[str, int] = {}
        self._unpublished: list[ParsedEvent] = []
        self.late_trades = 0

    # ------------------------------------------------------------------- live

    def on_events(
        self, events: Sequence[ParsedEvent], *, clock_ns: int, held: Collection[str] = ()
    ) -> list[ParsedEvent]:
        """Pass a feed batch through, with the bars it completes; return what to publish.

        Args:
            events: the feed's events, in order.
            clock_ns: the venue clock after this batch, ns.
            held: symbols whose trades may still be completed by a backfill (no clock
                close for them).
        """
        out: list[ParsedEvent] = []
        for event in events:
            if isinstance(event.payload, Trade):
                out.extend(self._add(event.ts_event, event.payload))
            out.append(event)
        out.extend(self.close_due(clock_ns, held))
        return out

    def close_due(self, clock_ns: int, held: Collection[str] = ()) -> list[ParsedEvent]:
        """Close the bars whose end + grace is at or before ``clock_ns`` (sorted by key)."""
        out: list[ParsedEvent] = []
        for key in sorted(self._builders):
            builder = self._builders[key]
            end = builder.end_ns
            if end is None or end + self.grace_ns > clock_ns or builder.symbol in held:
                continue
            bar = builder.close()
            assert bar is not None
            self._closed_until[key] = end
            out.append(self._bar_event(bar))
        return out

    def _add(self, ts_ns: int, trade: Trade) -> list[ParsedEvent]:
        keyed: list[tuple[str, str, int]] = []
        for interval, length in self._intervals:
            key = f"{interval}|{trade.symbol}"
            builder = self._builders.get(key)
            end = None if builder is None else builder.end_ns
            if ts_ns < self._closed_until.get(key, 0) or (end is not None and ts_ns < end - length):
                self.late_trades += 1
                return []
            keyed.append((key, interval, length))
        out: list[ParsedEvent] = []
        for key, interval, length in keyed:
            builder = self._builders.get(key)
            if builder is None:
                builder = self._builders[key] = BarBuilder(trade.symbol, interval, length)
            done = builder.add(ts_ns, trade.price, trade.size)
            if done is not None:
                self._closed_until[key] = done.start_ns + length
                out.append(self._bar_event(done))
        return out

    def _bar_event(self, bar: Bar) -> ParsedEvent:
        topic = f"md.bar.{bar.interval}.{self.market}.{bar.symbol}"
        return ParsedEvent(bar.start_ns + interval_ns(bar.interval), topic, self.market, bar)

    # --------------------------------------------------------------- recovery

    def observe(self, event: ParsedEvent) -> None:
        """Replay an event already in the log (trades and bars; others are ignored).

        Trades rebuild the open bars; a bar in the log closes its builder. Bars that
        the trades complete but the log lacks (the process died before publishing
        them) are kept for :meth:`take_unpublished`.
        """
        payload = event.payload
        if isinstance(payload, Trade):
            self._unpublished.extend(self._add(event.ts_event, payload))
        elif isinstance(payload, Bar):
            key = f"{payload.interval}|{payload.symbol}"
            builder = self._builders.get(key)
            if builder is not None and builder.end_ns == event.ts_event:
                builder.close()
            if event.ts_event > self._closed_until.get(key, 0):
                self._closed_until[key] = event.ts_event
            self._unpublished = [
                e
                for e in self._unpublished
                if not (e.topic == event.topic and e.ts_event <= event.ts_event)
            ]

    def take_unpublished(self) -> list[ParsedEvent]:
        """Return (and forget) the completed bars the log did not have, oldest first."""
        out, self._unpublished = self._unpublished, []
        out.sort(key=lambda e: (e.ts_event, e.topic))
        return out

    # --------------------------------------------------------------- snapshot

    def state(self) -> LiveBarsState:
        """Return the open bars, the end of each last published bar, the late count."""
        return LiveBarsState(
            builders={k: self._builders[k].state() for k in sorted(self._builders)},
            closed_until=dict(sorted(self._closed_until.items())),
            late_trades=self.late_trades,
        )

    def restore(self, state: LiveBarsState) -> None:
        """Continue exactly from ``state``."""
        self._builders = {k: BarBuilder.from_state(v) for k, v in state.builders.items()}
        self._closed_until = dict(state.closed_until)
        self.late_trades = state.late_trades
        self._unpublished = []


class LiveMarketDataState(msgspec.Struct, frozen=True, kw_only=True):
    """Snapshot state of the live market-data process.

    Attributes:
        feed: the venue feed's (:class:`~tickertape.actors.marketdata.binance_feed.BinanceFeed`).
        bars: the bars' (:class:`LiveBars`).
        silences: the silence watch's, over the trade and quote topics (event times,
            the clock each last event was handled at, the topics reported open).
            Empty in snapshots written before the feed watched silences: they
            restore (a compatible addition, same :data:`LIVE_STATE_VERSION`).
        gap_last_ts: the ``ts_event`` of the last ``md.gap`` published per topic
            (:class:`~tickertape.actors.marketdata.sessions.GapTimes`).
    """

    feed: FeedState
    bars: LiveBarsState
    silences: StreamSilenceState = msgspec.field(
        default_factory=lambda: StreamSilenceState(last_ns={})
    )
    gap_last_ts: dict[str, int] = msgspec.field(default_factory=dict)
