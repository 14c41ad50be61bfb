"""SilenceWatch, GapTimes and the live feed's silence configuration (pure)."""

from __future__ import annotations

import msgspec
import pytest

from tickertape.actors.marketdata.actor import (
    LiveBarsState,
    LiveFeedConfig,
    LiveMarketDataState,
)
from tickertape.actors.marketdata.binance_feed import BinanceFeed
from tickertape.actors.marketdata.sessions import (
    GapTimes,
    MarketHours,
    SilenceWatch,
    StreamSilenceState,
    gap_topic,
)
from tickertape.errors import ConfigError

SECOND = 1_000_000_000
TRADES = "md.trade.crypto.BTCUSDT"
QUOTES = "md.quote.crypto.BTCUSDT"
CRYPTO = MarketHours("crypto")


def _watch(bounds_s: dict[str, float] | None = None) -> SilenceWatch:
    bounds = {k: round(v * SECOND) for k, v in (bounds_s or {"crypto": 60}).items()}
    return SilenceWatch(bounds, lambda _market, _symbol: CRYPTO)


def test_open_gap_once_at_the_deadline_then_the_whole_gap() -> None:
    """Past the deadline (last handled + bound + 1 ns) the open gap comes once, flagged
    open; the next event brings the whole gap with the same last_seen."""
    watch = _watch()
    assert watch.on_event(TRADES, "trade", 10 * SECOND, 11 * SECOND) is None
    assert watch.deadline(TRADES) == 71 * SECOND + 1
    assert watch.open_gap(TRADES, 71 * SECOND) is None
    opened = watch.open_gap(TRADES, 71 * SECOND + 1)
    assert opened is not None
    assert (opened.symbol, opened.kind, opened.stream) == ("BTCUSDT", "time", "trade")
    assert (opened.last_seen, opened.next_seen, opened.missing, opened.open) == (
        10 * SECOND,
        0,
        0,
        True,
    )
    assert opened.detail == "open: no event for 61.000 s of open market so far (bound 60 s)"
    assert watch.open_gap(TRADES, 100 * SECOND) is None  # once
    assert watch.next_deadline() is None
    whole = watch.on_event(TRADES, "trade", 90 * SECOND, 91 * SECOND)
    assert whole is not None
    assert (whole.last_seen, whole.next_seen, whole.open) == (
        10 * SECOND,
        90 * SECOND,
        msgspec.UNSET,
    )
    assert whole.detail == "80.000 s of open market without an event (bound 60 s)"
    assert watch.next_deadline() == 151 * SECOND + 1


def test_mark_open_from_the_log_suppresses_the_repeat_and_closes_on_the_next_event() -> None:
    """An open gap read back after a restart: not reported again, and a late event
    (within the bound by its own time) still closes it."""
    watch = _watch()
    watch.on_event(QUOTES, "quote", 10 * SECOND, 10 * SECOND)
    assert not watch.mark_open(QUOTES, 9 * SECOND)  # not the current silence
    assert watch.mark_open(QUOTES, 10 * SECOND)
    assert not watch.mark_open(TRADES, 10 * SECOND)  # not watched
    watch.restart(200 * SECOND)
    assert watch.open_gap(QUOTES, 500 * SECOND) is None
    whole = watch.on_event(QUOTES, "quote", 11 * SECOND, 501 * SECOND)
    assert whole is not None
    assert (whole.last_seen, whole.next_seen) == (10 * SECOND, 11 * SECOND)
    assert whole.detail.endswith(
        "; within the bound by event time, reported open before it arrived"
    )


def test_restart_counts_from_the_restart_and_state_round_trips() -> None:
    """After restart(now) the deadline is now + bound; state()/restore() continue exactly,
    each topic with its own bound (the symbol's wins over the market's)."""
    watch = _watch({"crypto": 60, "crypto.ETHUSDT": 5})
    watch.on_event(TRADES, "trade", 10 * SECOND, 12 * SECOND)
    eth = "md.trade.crypto.ETHUSDT"
    watch.on_event(eth, "trade", 10 * SECOND, 10 * SECOND)
    assert watch.deadline(eth) == 15 * SECOND + 1
    watch.restart(100 * SECOND)
    assert watch.deadline(TRADES) == 160 * SECOND + 1
    assert watch.deadline(eth) == 105 * SECOND + 1
    state = watch.state()
    assert state == StreamSilenceState(
        {eth: 10 * SECOND, TRADES: 10 * SECOND}, {eth: 100 * SECOND, TRADES: 100 * SECOND}, []
    )
    again = _watch({"crypto": 60, "crypto.ETHUSDT": 5})
    again.restore(state)
    assert again.topics() == [TRADES, eth]
    assert (again.deadline(TRADES), again.deadline(eth)) == (160 * SECOND + 1, 105 * SECOND + 1)


def test_restore_drops_the_topics_left_out_of_last_ns_whole() -> None:
    """A topic the caller leaves out of last_ns (no longer watched) is dropped with its
    seen_ns and reported_open entries; the other topics continue exactly."""
    watch = _watch()
    eth = "md.trade.crypto.ETHUSDT"
    for topic in (TRADES, eth):
        watch.on_event(topic, "trade", 10 * SECOND, 12 * SECOND)
        assert watch.open_gap(topic, 100 * SECOND) is not None
    watch.on_event(QUOTES, "quote", 20 * SECOND, 21 * SECOND)
    state = watch.state()
    assert state == StreamSilenceState(
        {eth: 10 * SECOND, QUOTES: 20 * SECOND, TRADES: 10 * SECOND},
        {eth: 12 * SECOND, QUOTES: 21 * SECOND, TRADES: 12 * SECOND},
        [TRADES, eth],
    )
    again = _watch()
    kept = {t: ns for t, ns in state.last_ns.items() if t != eth}
    again.restore(StreamSilenceState(kept, state.seen_ns, state.reported_open))
    assert not again.watches(eth)
    assert again.state() == StreamSilenceState(
        kept, {QUOTES: 21 * SECOND, TRADES: 12 * SECOND}, [TRADES]
    )


def test_a_topic_without_a_bound_is_a_config_error() -> None:
    """The error names the market, symbol and topic."""
    watch = _watch({"crypto.BTCUSDT": 60})
    assert watch.bound_ns("md.quote.crypto.ETHUSDT") is None
    with pytest.raises(
        ConfigError, match=r"no bound for crypto\.ETHUSDT .*md\.quote\.crypto\.ETHUSDT"
    ):
        watch.on_event("md.quote.crypto.ETHUSDT", "quote", 1, 1)


def test_gap_times_never_go_back() -> None:
    """A gap older than the topic's last one takes the last one's time; others keep theirs."""
    times = GapTimes()
    topic = gap_topic(TRADES)
    assert topic == "md.gap.crypto.BTCUSDT"
    assert times.stamp(topic, 100) == 100
    assert times.stamp(topic, 90) == 100
    assert times.stamp(topic, 120) == 120
    times.observe(topic, 110)
    times.observe("md.gap.crypto.ETHUSDT", 5)
    assert times.state() == {"md.gap.crypto.BTCUSDT": 120, "md.gap.crypto.ETHUSDT": 5}
    assert GapTimes(times.state()).stamp(topic, 1) == 120


def test_live_feed_config_silence_bounds() -> None:
    """60 s for every crypto symbol by default; per symbol overrides; other markets and
    non-positive bounds are refused naming the key; empty turns detection off."""
    assert LiveFeedConfig().silence_bounds_ns() == {"crypto": 60 * SECOND}
    config = LiveFeedConfig(max_silence_s={"crypto": 30, "crypto.ETHUSDT": 2.5})
    assert config.silence_bounds_ns() == {"crypto": 30 * SECOND, "crypto.ETHUSDT": 2_500_000_000}
    assert LiveFeedConfig(max_silence_s={}).silence_bounds_ns() == {}
    with pytest.raises(ConfigError, match=r"max_silence_s\['us'\]: 'us' is not a market"):
        LiveFeedConfig(max_silence_s={"us": 60}).validate()
    with pytest.raises(ConfigError, match=r"max_silence_s\['crypto.BTCUSDT'\] must be > 0"):
        LiveFeedConfig(max_silence_s={"crypto.BTCUSDT": 0}).validate()
    with pytest.raises(ConfigError, match=r"must be > 0 seconds, got inf"):
        LiveFeedConfig(max_silence_s={"crypto": float("inf")}).validate()


def test_a_live_snapshot_of_the_previous_format_restores() -> None:
    """A LiveMarketDataState written before silences (feed and bars only) decodes, with
    no watched topic and no gap time."""

    class Previous(msgspec.Struct, frozen=True, kw_only=True):
        feed: object
        bars: LiveBarsState

    feed = BinanceFeed(["BTCUSDT"]).state()
    bars = LiveBarsState(builders={}, closed_until={})
    raw = msgspec.msgpack.encode(Previous(feed=feed, bars=bars))
    state = msgspec.msgpack.decode(raw, type=LiveMarketDataState)
    assert (state.feed, state.bars) == (feed, bars)
    assert state.silences == StreamSilenceState({})
    assert state.gap_last_ts == {}
