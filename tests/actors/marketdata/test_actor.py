"""The market-data actor on real data: bars at interval end, gaps, adjustment, snapshots."""

from __future__ import annotations

from datetime import date
from itertools import pairwise
from pathlib import Path

import msgspec
import pytest

from tickertape.actors.base import Event, Timer
from tickertape.actors.marketdata import (
    ACTOR_CLASS,
    CONFIG_CLASS,
    MarketDataActor,
    MarketDataConfig,
)
from tickertape.actors.marketdata.adjustment import PriceBasisError, back_adjust
from tickertape.actors.marketdata.importers import (
    ParsedEvent,
    parse_binance_ws,
    parse_krx_daily,
    parse_ohlcv_csv,
    parse_quandl_wiki,
    source_name,
)
from tickertape.actors.marketdata.sessions import MarketHours
from tickertape.errors import ClockError, ConfigError
from tickertape.schemas.market import Bar, CorporateAction, Gap, Quote, Trade

from .harness import FakeClock, FakeContext, advance, make_event, restart, run

DATA = Path(__file__).resolve().parents[3] / "data"
BTC_0808 = DATA / "binance-spot-ws-2024-08-08" / "btcusdt_20240808.gz"
BTC_0809 = DATA / "binance-spot-ws-2024-08-08" / "btcusdt_20240809.gz"
CME = DATA / "cme-6eh4-1m-2024-01" / "6EH4.XCME_1min_bars_20240101_20240131.csv.gz"
QUANDL = DATA / "us-equities-daily-2014" / "QUANDL_SAMPLE_TABLE.csv"


def _trade_events(*paths: Path, drop_trade_id: str | None = None) -> list:  # type: ignore[type-arg]
    events = []
    for path in paths:
        (parsed,) = parse_binance_ws(path).streams.values()
        events.extend(
            e
            for e in parsed
            if isinstance(e.payload, Trade) and e.payload.trade_id != drop_trade_id
        )
    return [
        make_event(e.topic, e.payload, e.market, e.ts_event, i) for i, e in enumerate(events, 1)
    ]


@pytest.fixture(scope="module")
def btc_trades() -> list:  # type: ignore[type-arg]
    return _trade_events(BTC_0808, BTC_0809)


def test_package_exposes_actor_and_config() -> None:
    """The runtime resolves the actor and its configuration from the package."""
    assert ACTOR_CLASS is MarketDataActor
    assert CONFIG_CLASS is MarketDataConfig
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"bar_intervals": ["1m"], "typo": 1}, MarketDataConfig)


def test_bars_are_published_after_their_interval_with_all_volume(btc_trades: list) -> None:  # type: ignore[type-arg]
    """Every 1s/1m bar appears at its close time, never earlier, and volumes add up."""
    actor = MarketDataActor()
    ctx = FakeContext("marketdata")
    last_ts = btc_trades[-1].ts_event
    run(actor, ctx, btc_trades, until_ns=last_ts + 120_000_000_000)
    bars = [p for p in ctx.published if isinstance(p.payload, Bar)]
    for interval, length in (("1s", 1_000_000_000), ("1m", 60_000_000_000)):
        mine = [p for p in bars if p.payload.interval == interval]
        assert all(p.ts_event == p.payload.start_ns + length for p in mine)
        assert all(p.topic == f"md.bar.{interval}.crypto.BTCUSDT" for p in mine)
        total = sum(p.payload.volume for p in mine)
        assert total == pytest.approx(sum(e.payload.size for e in btc_trades), rel=1e-12)
        starts = [p.payload.start_ns for p in mine]
        assert starts == sorted(set(starts))
    assert not [p for p in ctx.published if isinstance(p.payload, Gap)]


def test_open_bar_is_not_published_before_its_end(btc_trades: list) -> None:  # type: ignore[type-arg]
    """With the clock inside a minute, that minute's bar has not been published."""
    actor = MarketDataActor(MarketDataConfig(bar_intervals=["1m"]))
    ctx = FakeContext("marketdata")
    run(actor, ctx, btc_trades[:500])
    now = ctx.clock.now
    open_start = now - now % 60_000_000_000
    assert all(p.payload.start_ns < open_start for p in ctx.published)


def test_one_missing_trade_is_exactly_one_sequence_gap() -> None:
    """Removing one trade from the real capture yields exactly one gap of one id."""
    events = _trade_events(BTC_0808, drop_trade_id="3735690000")
    actor = MarketDataActor(MarketDataConfig(bar_intervals=["1m"]))
    ctx = FakeContext("marketdata")
    run(actor, ctx, events)
    gaps = [p.payload for p in ctx.published if isinstance(p.payload, Gap)]
    assert gaps == [
        Gap(
            symbol="BTCUSDT",
            kind="sequence",
            stream="trade",
            last_seen=3735689999,
            next_seen=3735690001,
            missing=1,
        )
    ]


def test_snapshot_restore_continues_exactly(btc_trades: list) -> None:  # type: ignore[type-arg]
    """A restart from a snapshot mid-stream publishes what the uninterrupted run did."""
    end = btc_trades[-1].ts_event + 120_000_000_000
    whole = MarketDataActor()
    whole_ctx = FakeContext("marketdata")
    run(whole, whole_ctx, btc_trades, until_ns=end)

    cut = 4321
    first = MarketDataActor()
    ctx = FakeContext("marketdata")
    run(first, ctx, btc_trades[:cut])
    state = msgspec.msgpack.encode(first.snapshot())
    second = MarketDataActor()
    second.restore(state)
    ctx2 = FakeContext("marketdata")
    ctx2.clock.now = ctx.clock.now
    ctx2.clock.timers = dict(ctx.clock.timers)
    run(second, ctx2, btc_trades[cut:], until_ns=end)
    assert ctx.published + ctx2.published == whole_ctx.published


def _bar_events(parsed: list[ParsedEvent]) -> list:  # type: ignore[type-arg]
    return [
        make_event(e.topic, e.payload, e.market, e.ts_event, i) for i, e in enumerate(parsed, 1)
    ]


def test_cme_time_gaps_skip_maintenance_hours_and_weekends() -> None:
    """6E bars, January 2024: no gap over CME's daily maintenance hour or a weekend;
    missing open minutes are gaps."""
    (parsed,) = parse_ohlcv_csv(
        CME, market="us", symbol="6EH4", interval="1m", stamp="end"
    ).streams.values()
    events = _bar_events(parsed)
    config = MarketDataConfig(
        trade_patterns=[],
        watch_bar_patterns=["md.bar.1m.us.*"],
        calendars={"us.6EH4": "us-futures"},
    )
    actor = MarketDataActor(config)
    ctx = FakeContext("marketdata")
    run(actor, ctx, events)
    gaps = [p.payload for p in ctx.published if isinstance(p.payload, Gap)]
    assert gaps, "thin overnight minutes of 6E must show as gaps"
    assert all(g.kind == "time" and g.stream == "bar.1m" and g.missing >= 1 for g in gaps)
    hours = MarketHours("us-futures")
    for g in gaps:
        assert g.missing == hours.open_minutes(g.last_seen, g.next_seen)
    # The bars stop at 22:00 UTC (16:00 Chicago) and resume at 23:00 every weekday, and
    # from Friday to Sunday: 22 such silences, none of them a gap.
    hour = 3_600_000_000_000
    breaks = [
        (a.ts_event, b.payload.start_ns)
        for a, b in pairwise(parsed)
        if b.payload.start_ns - a.ts_event >= hour
    ]
    assert len(breaks) == 22
    spans = {(g.last_seen, g.next_seen) for g in gaps}
    assert not spans & set(breaks)
    assert all(g.next_seen - g.last_seen < hour for g in gaps)


def test_forward_adjusted_aapl_is_continuous_across_the_split() -> None:
    """AAPL's forward-adjusted close after the 7:1 split is the raw close times 7 (and dividends)."""
    parsed = parse_quandl_wiki(QUANDL).streams[source_name("quandl-wiki", QUANDL, "AAPL")]
    events = _bar_events(parsed)
    actor = MarketDataActor(MarketDataConfig(trade_patterns=[], adjust_patterns=["md.bar.1d.us.*"]))
    ctx = FakeContext("marketdata")
    run(actor, ctx, events)
    adjusted = [p for p in ctx.published if isinstance(p.payload, Bar)]
    assert all(p.topic == "md.bar.1d-adj.us.AAPL" and p.payload.adjusted for p in adjusted)
    raw = [e.payload for e in parsed if isinstance(e.payload, Bar)]
    assert len(adjusted) == len(raw) == 252
    by_day = {r.start_ns: (r, a.payload) for r, a in zip(raw, adjusted, strict=True)}
    before = [v for k, v in sorted(by_day.items()) if k < 1_402_320_600_000_000_000]
    after = [v for k, v in sorted(by_day.items()) if k >= 1_402_320_600_000_000_000]
    r, a = after[0]
    closes = {b.start_ns: b.close for b in raw}
    days = sorted(closes)
    expected = 7.0
    for ex_ns, amount in ((1_391_697_000_000_000_000, 3.05), (1_399_555_800_000_000_000, 3.29)):
        previous = closes[days[days.index(ex_ns) - 1]]
        expected *= previous / (previous - amount)
    assert a.close / r.close == pytest.approx(expected, rel=1e-12)
    assert a.volume == pytest.approx(r.volume / 7.0)
    assert abs(a.close / before[-1][1].close - 1) < 0.05  # no 7x jump in the series
    assert before[0][1].close == before[0][0].close  # nothing effective yet


def test_back_adjusted_samsung_matches_the_vendor_file_exactly() -> None:
    """Raw Samsung bars back-adjusted for the 50:1 split of 2018-05-04 equal the adjusted file."""
    (raw,) = parse_krx_daily(
        DATA / "krx-005930-daily" / "v1_005930_raw_1985_2018.csv", symbol="005930", adjusted=False
    ).streams.values()
    (adj,) = parse_krx_daily(
        DATA / "krx-005930-daily" / "v3_005930_adjusted_2018_2021_with_features.csv",
        symbol="005930",
        adjusted=True,
    ).streams.values()
    window = [e.payload for e in raw if e.payload.start_ns >= adj[0].payload.start_ns]
    split = CorporateAction(symbol="005930", action="split", ex_date="2018-05-04", ratio=50.0)
    dated = [(date(2018, 1, 1), bar) for bar in window]
    result = back_adjust(dated, [split])
    vendor = {e.payload.start_ns: e.payload for e in adj}
    assert len(result) == 32
    for bar in result:
        expected = vendor[bar.start_ns]
        assert (bar.open, bar.high, bar.low, bar.close) == (
            expected.open,
            expected.high,
            expected.low,
            expected.close,
        )
        assert bar.adjusted
    with pytest.raises(PriceBasisError):
        back_adjust([(date(2018, 1, 2), result[0])], [split])


def test_invalid_configuration_is_refused() -> None:
    """Sub-second or malformed intervals and bad patterns raise ConfigError."""
    with pytest.raises(ConfigError):
        MarketDataActor(MarketDataConfig(bar_intervals=["1x"]))
    with pytest.raises(ConfigError):
        MarketDataActor(MarketDataConfig(trade_patterns=["md.>.x"]))


SILENCE_FROM = 1_723_161_480_000_000_000  # 2024-08-08 23:58 UTC
SILENCE_NS = 180_000_000_000
BOUND_NS = (
    60_000_000_000  # max_silence_s = 60 for crypto (24/7: the deadline is last + 60 s + 1 ns)
)


def test_silent_trade_stream_publishes_an_open_gap_then_the_whole_gap(btc_trades: list) -> None:  # type: ignore[type-arg]
    """BTCUSDT trades with three minutes cut out: an open md.gap at the deadline, the whole
    gap when trades resume; a restart just before the silence publishes the same."""
    kept = [e for e in btc_trades if not SILENCE_FROM <= e.ts_event < SILENCE_FROM + SILENCE_NS]
    before = max(e.ts_event for e in kept if e.ts_event < SILENCE_FROM)
    after = min(e.ts_event for e in kept if e.ts_event >= SILENCE_FROM)
    config = MarketDataConfig(
        trade_patterns=[], silence_patterns=["md.trade.crypto.*"], max_silence_s={"crypto": 60}
    )
    whole = MarketDataActor(config)
    ctx = FakeContext("marketdata")
    run(whole, ctx, kept)
    opened, closed = ctx.published
    assert isinstance(opened.payload, Gap)
    assert isinstance(closed.payload, Gap)
    assert opened.topic == closed.topic == "md.gap.crypto.BTCUSDT"
    assert opened.ts_event == before + BOUND_NS + 1
    assert (opened.payload.kind, opened.payload.stream, opened.payload.symbol) == (
        "time",
        "trade",
        "BTCUSDT",
    )
    assert (opened.payload.last_seen, opened.payload.next_seen) == (before, 0)
    assert opened.payload.detail == (
        "open: no event for 60.000 s of open market so far (bound 60 s)"
    )
    # Gap.open says which is which; the whole gap leaves it unset (bytes as before).
    assert opened.payload.open is True
    assert closed.payload.open is msgspec.UNSET
    assert closed.ts_event == after
    assert (closed.payload.last_seen, closed.payload.next_seen) == (before, after)
    assert closed.payload.detail.endswith(" s of open market without an event (bound 60 s)")
    first = MarketDataActor(config)
    ctx1 = FakeContext("marketdata")
    cut = next(i for i, e in enumerate(kept) if e.ts_event >= SILENCE_FROM) - 1
    run(first, ctx1, kept[:cut])
    second = MarketDataActor(config)
    ctx2 = restart(first, ctx1, second)
    run(second, ctx2, kept[cut:])
    assert ctx1.published + ctx2.published == ctx.published


def _capture_events(*kinds: type) -> list[Event]:
    """The BTCUSDT capture's events of these payload types, with three minutes cut out."""
    events: list[ParsedEvent] = []
    for path in (BTC_0808, BTC_0809):
        (parsed,) = parse_binance_ws(path).streams.values()
        events.extend(
            e
            for e in parsed
            if isinstance(e.payload, kinds)
            and not SILENCE_FROM <= e.ts_event < SILENCE_FROM + SILENCE_NS
        )
    events.sort(key=lambda e: e.ts_event)  # one merged feed, as the log delivers it
    return [
        make_event(e.topic, e.payload, e.market, e.ts_event, i) for i, e in enumerate(events, 1)
    ]


SILENCE_CONFIG = MarketDataConfig(
    trade_patterns=[],
    silence_patterns=["md.trade.crypto.*", "md.quote.crypto.*"],
    max_silence_s={"crypto": 60},
)


def test_silent_trade_and_quote_streams_each_publish_one_open_and_one_whole_gap() -> None:
    """Trades and quotes both cut for three minutes: per stream, one open gap at its deadline
    and one whole gap at the resuming event, nothing else."""
    events = _capture_events(Trade, Quote)
    ctx = FakeContext("marketdata")
    run(MarketDataActor(SILENCE_CONFIG), ctx, events)
    assert len(ctx.published) == 4
    assert all(p.topic == "md.gap.crypto.BTCUSDT" for p in ctx.published)
    for stream in ("trade", "quote"):
        opened, closed = [p for p in ctx.published if p.payload.stream == stream]
        topic = f"md.{stream}.crypto.BTCUSDT"
        times = [e.ts_event for e in events if e.topic == topic]
        before = max(t for t in times if t < SILENCE_FROM)
        after = min(t for t in times if t >= SILENCE_FROM)
        for published in (opened, closed):
            gap = published.payload
            assert isinstance(gap, Gap)
            assert (gap.kind, gap.symbol, gap.missing, gap.last_seen) == (
                "time",
                "BTCUSDT",
                0,
                before,
            )
        assert (opened.payload.next_seen, opened.payload.open) == (0, True)
        assert closed.payload.open is msgspec.UNSET
        assert opened.ts_event == before + BOUND_NS + 1  # at the deadline, before it resumed
        assert closed.payload.next_seen == after
        assert closed.ts_event == after
        assert f"{(after - before) / 1e9:.3f} s of open market" in closed.payload.detail


@pytest.mark.parametrize(
    ("where", "published_before"),
    [("before", 0), ("before-deadline", 0), ("after-deadline", 2), ("after", 3)],
)
def test_restart_around_a_silence_publishes_its_gaps_exactly_once(
    where: str, published_before: int
) -> None:
    """A snapshot before the silence, inside it before or after the deadlines, or just after
    it: the restarted run's gaps are the uninterrupted run's, two per stream."""
    events = _capture_events(Trade, Quote)
    whole = FakeContext("marketdata")
    run(MarketDataActor(SILENCE_CONFIG), whole, events)
    assert len(whole.published) == 4
    resume = next(i for i, e in enumerate(events) if e.ts_event >= SILENCE_FROM)
    cut = {"after": resume + 1, "before": resume - 50}.get(where, resume)
    # Inside the silence: the clock is 30 s (before the deadlines) or 90 s into it.
    until = {"before-deadline": 30, "after-deadline": 90}.get(where)
    first = MarketDataActor(SILENCE_CONFIG)
    ctx1 = FakeContext("marketdata")
    run(first, ctx1, events[:cut], until_ns=None if until is None else SILENCE_FROM + until * 10**9)
    assert len(ctx1.published) == published_before
    second = MarketDataActor(SILENCE_CONFIG)
    ctx2 = restart(first, ctx1, second)
    state = msgspec.msgpack.encode(first.snapshot())
    assert msgspec.msgpack.encode(second.snapshot()) == state
    run(second, ctx2, events[cut:])
    assert ctx1.published + ctx2.published == whole.published


class _StateBeforeSilenceTimers(msgspec.Struct, frozen=True):
    """:class:`MarketDataState` as written before the silence timers (commit cb76b51)."""

    builders: dict[str, object]
    last_trade_ids: dict[str, int]
    last_bar_end: dict[str, int]
    adjusters: dict[str, object]
    silence_last_ns: dict[str, int]


@pytest.mark.parametrize("where", ["before-silence", "inside-silence"])
def test_snapshot_without_silence_timers_sets_them_at_the_next_event(where: str) -> None:
    """A snapshot of the previous format (no silence timer among its timers) restores and
    the timers are set at the actor's next event: restored before the silence, the run
    equals an uninterrupted one; restored inside it, past the deadlines, both streams'
    open gaps come at that next event, before it ends its stream's silence."""
    events = _capture_events(Trade, Quote)
    whole = FakeContext("marketdata")
    run(MarketDataActor(SILENCE_CONFIG), whole, events)
    resume = next(i for i, e in enumerate(events) if e.ts_event >= SILENCE_FROM)
    cut = resume - 50 if where == "before-silence" else resume
    first = MarketDataActor(SILENCE_CONFIG)
    ctx1 = FakeContext("marketdata")
    run(first, ctx1, events[:cut])
    assert ctx1.published == []
    old = msgspec.msgpack.encode(
        msgspec.convert(msgspec.to_builtins(first.snapshot()), _StateBeforeSilenceTimers)
    )
    second = MarketDataActor(SILENCE_CONFIG)
    second.restore(old)
    assert second.snapshot().silence_armed is None  # still to be set
    ctx2 = FakeContext("marketdata")  # that format's runs had no silence timer
    if where == "before-silence":
        ctx2.clock.now = ctx1.clock.now
        run(second, ctx2, events[cut:])
        assert ctx2.published == whole.published
        return
    ctx2.clock.now = SILENCE_FROM + 100 * 10**9  # snapshot taken 100 s into the silence
    first_back = events[resume]
    assert first_back.topic == "md.trade.crypto.BTCUSDT"  # the trades resume first
    run(second, ctx2, [first_back])
    quote_open, trade_open, trade_whole = ctx2.published
    assert (quote_open.payload.stream, quote_open.payload.next_seen) == ("quote", 0)
    assert (trade_open.payload.stream, trade_open.payload.next_seen) == ("trade", 0)
    assert quote_open.ts_event == trade_open.ts_event == first_back.ts_event
    assert (trade_whole.payload.stream, trade_whole.payload.next_seen) == (
        "trade",
        first_back.ts_event,
    )
    assert second.snapshot().silence_armed == ["md.trade.crypto.BTCUSDT"]


def test_catching_up_on_old_events_reports_no_silence_until_the_bound_passes_on_the_clock(
    btc_trades: list,  # type: ignore[type-arg]
) -> None:
    """Live, history is handled long after its ts_event: silences count from the clock at
    which each event was handled, so only a topic quiet for the bound of clock is open."""
    actor = MarketDataActor(SILENCE_CONFIG)
    ctx = FakeContext("marketdata")
    history = btc_trades[:2000]
    start = history[-1].ts_event + 86_400 * 10**9  # a day later
    for i, event in enumerate(history):
        advance(actor, ctx, start + i * 1_000_000)  # 1 ms of clock per event
        actor.on_event(event, ctx)  # type: ignore[arg-type]
    handled = ctx.clock.now
    advance(actor, ctx, handled + BOUND_NS)
    assert ctx.published == []
    advance(actor, ctx, handled + BOUND_NS + 1)
    (opened,) = ctx.published
    assert opened.ts_event == handled + BOUND_NS + 1
    assert (opened.payload.last_seen, opened.payload.next_seen) == (history[-1].ts_event, 0)


def test_a_late_live_event_closes_the_open_gap_without_going_back_in_time() -> None:
    """Live, the timer can fire before an event dated within the bound arrives: the open
    gap is still closed, stamped no earlier than the open one."""
    actor = MarketDataActor(SILENCE_CONFIG)
    ctx = FakeContext("marketdata")
    topic = "md.trade.crypto.BTCUSDT"

    def trade(ts: int, n: int) -> Event:
        payload = Trade(symbol="BTCUSDT", price=1.0, size=1.0, side="buy", trade_id=str(n))
        return make_event(topic, payload, "crypto", ts, n)

    t0 = SILENCE_FROM
    ctx.clock.now = t0 + 200_000_000  # handled 200 ms after its venue time
    actor.on_event(trade(t0, 1), ctx)  # type: ignore[arg-type]
    advance(actor, ctx, t0 + 200_000_000 + BOUND_NS + 1)
    (opened,) = ctx.published
    assert opened.payload.next_seen == 0
    late = t0 + BOUND_NS - 1_000_000  # 59.999 s after the first: within the bound
    advance(actor, ctx, opened.ts_event + 300_000_000)
    actor.on_event(trade(late, 2), ctx)  # type: ignore[arg-type]
    _, closed = ctx.published
    assert (closed.payload.last_seen, closed.payload.next_seen) == (t0, late)
    assert closed.ts_event == opened.ts_event  # not the late event's older time
    assert "within the bound by event time" in closed.payload.detail
    advance(actor, ctx, ctx.clock.now + BOUND_NS)
    assert len(ctx.published) == 2  # the topic's timer is counting again, not yet due


class _TickingClock(FakeClock):
    """A live clock: every read is 10 ns later than the one before, and set_timer reads it."""

    def now_ns(self) -> int:
        self.now += 10
        return self.now

    def set_timer(
        self, name: str, *, at_ns: int | None = None, interval_ns: int | None = None
    ) -> None:
        if at_ns is None or at_ns < self.now_ns():
            raise ClockError(f"timer {name}: at_ns {at_ns} is in the past")
        self.timers[name] = at_ns


def test_a_deadline_the_live_clock_passes_while_setting_its_timer_is_reported_open() -> None:
    """Live, the clock moves between the actor's read and set_timer's: a deadline a few ns
    ahead can be in the past for set_timer; the open gap is then published at once."""
    actor = MarketDataActor(SILENCE_CONFIG)
    ctx = FakeContext("marketdata")
    ctx.clock = _TickingClock()
    topic = "md.trade.crypto.BTCUSDT"

    def trade(ts: int, n: int) -> Event:
        payload = Trade(symbol="BTCUSDT", price=1.0, size=1.0, side="buy", trade_id=str(n))
        return make_event(topic, payload, "crypto", ts, n)

    start = SILENCE_FROM
    ctx.clock.now = start
    actor.on_event(trade(start, 1), ctx)  # type: ignore[arg-type]
    due = ctx.clock.timers.pop(f"silence|{topic}")
    assert due == start + 10 + BOUND_NS + 1
    # A second trade handled so that its deadline falls between the timer handler's clock
    # read (due + 10) and set_timer's (due + 20).
    ctx.clock.now = due + 15 - BOUND_NS - 1 - 10
    actor.on_event(trade(start + 1, 2), ctx)  # type: ignore[arg-type]
    ctx.clock.now = due
    actor.on_timer(Timer(f"silence|{topic}", due), ctx)  # type: ignore[arg-type]
    (opened,) = ctx.published
    assert (opened.payload.last_seen, opened.payload.next_seen) == (start + 1, 0)
    assert opened.ts_event == due + 30  # the clock read after set_timer refused
    assert ctx.clock.timers == {}


def test_a_bar_end_the_live_clock_passes_while_setting_its_timer_closes_the_bar() -> None:
    """Live, a trade handled a few ns before its 1 s bar's end: set_timer's clock read is
    past the end and refuses the timer; the bar is published at once instead."""
    actor = MarketDataActor()
    ctx = FakeContext("marketdata")
    ctx.clock = _TickingClock()
    end = SILENCE_FROM + 1_000_000_000
    trade = Trade(symbol="BTCUSDT", price=1.0, size=2.0, side="buy", trade_id="1")
    ctx.clock.now = end - 15  # on_trade reads end - 5, set_timer end + 5
    actor.on_event(make_event("md.trade.crypto.BTCUSDT", trade, "crypto", end - 500, 1), ctx)  # type: ignore[arg-type]
    (bar,) = ctx.published
    assert (bar.topic, bar.ts_event, bar.payload.volume) == ("md.bar.1s.crypto.BTCUSDT", end, 2.0)
    assert list(ctx.clock.timers) == ["bar|1m|crypto.BTCUSDT"]  # the minute is not over


def test_a_live_restart_counts_silences_from_the_restart() -> None:
    """A live host calls on_start after the restore: the downtime is not a silence, the
    events published meanwhile are still to be read."""
    actor = MarketDataActor(SILENCE_CONFIG)
    ctx = FakeContext("marketdata")
    trade = Trade(symbol="BTCUSDT", price=1.0, size=1.0, side="buy", trade_id="1")
    ctx.clock.now = SILENCE_FROM
    actor.on_event(make_event("md.trade.crypto.BTCUSDT", trade, "crypto", SILENCE_FROM, 1), ctx)  # type: ignore[arg-type]
    fresh = MarketDataActor(SILENCE_CONFIG)
    ctx2 = restart(actor, ctx, fresh)
    restarted = SILENCE_FROM + 3_600 * 10**9  # an hour later
    ctx2.clock.now = restarted
    fresh.on_start(ctx2)  # type: ignore[arg-type]
    advance(fresh, ctx2, restarted + BOUND_NS)  # the restored timer fires and moves
    assert ctx2.published == []
    advance(fresh, ctx2, restarted + BOUND_NS + 1)
    (opened,) = ctx2.published
    assert (opened.payload.last_seen, opened.payload.next_seen) == (SILENCE_FROM, 0)


def test_a_restore_under_fewer_silence_patterns_drops_the_unwatched_topics() -> None:
    """Restored with quotes no longer watched, the quote topic's silence state (its event
    time, handling clock and open report) is gone; the trade topic's is kept exactly."""
    actor = MarketDataActor(SILENCE_CONFIG)
    ctx = FakeContext("marketdata")
    trades, quotes = "md.trade.crypto.BTCUSDT", "md.quote.crypto.BTCUSDT"
    trade = Trade(symbol="BTCUSDT", price=1.0, size=1.0, side="buy", trade_id="1")
    quote = Quote(symbol="BTCUSDT", bid=1.0, bid_size=1.0, ask=2.0, ask_size=1.0)
    handled = SILENCE_FROM + 200_000_000  # 200 ms after the events' time
    ctx.clock.now = handled
    actor.on_event(make_event(trades, trade, "crypto", SILENCE_FROM, 1), ctx)  # type: ignore[arg-type]
    actor.on_event(make_event(quotes, quote, "crypto", SILENCE_FROM, 2), ctx)  # type: ignore[arg-type]
    advance(actor, ctx, handled + BOUND_NS + 1)
    assert len(ctx.published) == 2  # both reported open
    state = actor.snapshot()
    assert state.silence_open == [quotes, trades]
    assert state.silence_seen_ns == {quotes: handled, trades: handled}
    narrower = MarketDataActor(
        MarketDataConfig(
            trade_patterns=[], silence_patterns=["md.trade.crypto.*"], max_silence_s={"crypto": 60}
        )
    )
    narrower.restore(msgspec.msgpack.encode(state))
    restored = narrower.snapshot()
    assert restored.silence_last_ns == {trades: SILENCE_FROM}
    assert restored.silence_seen_ns == {trades: handled}
    assert restored.silence_open == [trades]
    assert restored.silence_armed == []


def test_silences_count_only_open_market_time() -> None:
    """6E minutes as trades on CME hours: no silence over 10 minutes (timers included: the
    daily and weekend closes are none); on 24/7 hours the maintenance hours and weekends
    are 22 silences."""
    (parsed,) = parse_ohlcv_csv(
        CME, market="us", symbol="6EH4", interval="1m", stamp="end"
    ).streams.values()
    closes = [(e.ts_event, e.payload.close) for e in parsed if isinstance(e.payload, Bar)]
    trades = [
        make_event(
            "md.trade.us.6EH4",
            Trade(symbol="6EH4", price=close, size=1.0, side="buy", trade_id=str(i)),
            "us",
            ts,
            i,
        )
        for i, (ts, close) in enumerate(closes, 1)
    ]
    published = {}
    for hours in ("us-futures", "crypto"):
        config = MarketDataConfig(
            trade_patterns=[],
            silence_patterns=["md.trade.us.*"],
            max_silence_s={"us": 1.0, "us.6EH4": 600},  # the symbol's bound wins
            calendars={"us.6EH4": hours},
        )
        ctx = FakeContext("marketdata")
        run(MarketDataActor(config), ctx, trades)
        published[hours] = [p.payload for p in ctx.published]
    assert published["us-futures"] == []  # no timer found one either
    gaps = published["crypto"]
    assert all(g.kind == "time" and g.stream == "trade" for g in gaps)
    opened = [g for g in gaps if g.next_seen == 0]
    whole = [g for g in gaps if g.next_seen != 0]
    assert len(opened) == len(whole) == 22  # each found open 10 minutes in, then whole
    assert [g.last_seen for g in opened] == [g.last_seen for g in whole]
    hour = 3_600_000_000_000
    assert all(g.next_seen - g.last_seen >= hour for g in whole)


def test_invalid_silence_configuration_is_refused() -> None:
    """Bounds must be positive seconds of a known market; a watched topic needs a bound."""
    with pytest.raises(ConfigError, match="no bound"):
        MarketDataActor(MarketDataConfig(silence_patterns=["md.trade.>"]))
    with pytest.raises(ConfigError, match=r"max_silence_s\['nyse'\]"):
        MarketDataActor(
            MarketDataConfig(silence_patterns=["md.trade.>"], max_silence_s={"nyse": 5})
        )
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=r"max_silence_s\['crypto'\] must be > 0"):
            MarketDataActor(
                MarketDataConfig(silence_patterns=["md.trade.>"], max_silence_s={"crypto": bad})
            )
    with pytest.raises(ConfigError):
        MarketDataActor(MarketDataConfig(silence_patterns=["md.>.x"], max_silence_s={"us": 5}))
    actor = MarketDataActor(
        MarketDataConfig(
            trade_patterns=[], silence_patterns=["md.trade.>"], max_silence_s={"us": 5}
        )
    )
    trade = Trade(symbol="BTCUSDT", price=1.0, size=1.0, side="buy", trade_id="1")
    event = make_event("md.trade.crypto.BTCUSDT", trade, "crypto", 1, 1)
    with pytest.raises(ConfigError, match=r"no bound for crypto\.BTCUSDT .*md\.trade\.crypto"):
        run(actor, FakeContext("marketdata"), [event])


def test_snapshot_without_silence_state_still_restores(btc_trades: list) -> None:  # type: ignore[type-arg]
    """A snapshot written before silence detection existed restores; streams start unwatched."""

    class OldState(msgspec.Struct, frozen=True):
        builders: dict[str, object]
        last_trade_ids: dict[str, int]
        last_bar_end: dict[str, int]
        adjusters: dict[str, object]

    old = msgspec.msgpack.encode(OldState({}, {"crypto.BTCUSDT": 7}, {}, {}))
    actor = MarketDataActor(SILENCE_CONFIG)
    actor.restore(old)
    state = actor.snapshot()
    assert state.last_trade_ids == {"crypto.BTCUSDT": 7}
    assert state.silence_last_ns == {}
