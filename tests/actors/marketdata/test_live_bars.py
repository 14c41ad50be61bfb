"""LiveBars (pure): bars of a live feed closed on the venue clock, and their recovery."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickertape.actors.marketdata.actor import LiveBars, LiveBarsState, LiveFeedConfig
from tickertape.actors.marketdata.importers import ParsedEvent
from tickertape.errors import ConfigError
from tickertape.schemas.market import Bar, Quote, Trade

S = 1_000_000_000
T0 = 1_723_161_600 * S  # a whole minute


def trade(ts: int, price: float, size: float = 1.0, symbol: str = "BTCUSDT") -> ParsedEvent:
    payload = Trade(symbol=symbol, price=price, size=size, side="buy", trade_id=str(ts))
    return ParsedEvent(ts, f"md.trade.crypto.{symbol}", "crypto", payload)


def quote(ts: int) -> ParsedEvent:
    payload = Quote(symbol="BTCUSDT", bid=1.0, bid_size=1.0, ask=2.0, ask_size=1.0)
    return ParsedEvent(ts, "md.quote.crypto.BTCUSDT", "crypto", payload)


def bars_of(events: list[ParsedEvent]) -> list[tuple[str, int, Bar]]:
    return [(e.topic, e.ts_event, e.payload) for e in events if isinstance(e.payload, Bar)]


def test_a_later_trade_closes_the_bar_just_before_itself() -> None:
    """The trade that proves the interval over follows the bar it closes; ts_event is the end."""
    bars = LiveBars(["1s"], grace_ns=S // 2)
    assert bars_of(bars.on_events([trade(T0 + 1, 10.0), trade(T0 + 2, 12.0)], clock_ns=T0)) == []
    out = bars.on_events([trade(T0 + S + 5, 11.0)], clock_ns=T0 + S + 5)
    assert [type(e.payload) for e in out] == [Bar, Trade]
    ((topic, ts, bar),) = bars_of(out)
    assert (topic, ts) == ("md.bar.1s.crypto.BTCUSDT", T0 + S)
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (10.0, 12.0, 10.0, 12.0, 2.0)
    assert (bar.start_ns, bar.interval, bar.adjusted) == (T0, "1s", False)


def test_the_venue_clock_closes_a_bar_only_after_the_grace() -> None:
    """No later trade: the bar closes once the clock reaches end + grace, not before."""
    bars = LiveBars(["1s"], grace_ns=S // 2)
    bars.on_events([trade(T0 + 1, 10.0)], clock_ns=T0 + 1)
    assert bars_of(bars.on_events([quote(T0 + S)], clock_ns=T0 + S + S // 2 - 1)) == []
    assert len(bars_of(bars.on_events([quote(T0 + S)], clock_ns=T0 + S + S // 2))) == 1


def test_a_held_symbol_is_not_closed_by_the_clock() -> None:
    """While a symbol's trades may still be backfilled, only a later trade closes its bar."""
    bars = LiveBars(["1s"], grace_ns=0)
    bars.on_events([trade(T0 + 1, 10.0)], clock_ns=T0 + 1)
    assert bars_of(bars.on_events([], clock_ns=T0 + 5 * S, held={"BTCUSDT"})) == []
    assert len(bars_of(bars.on_events([], clock_ns=T0 + 5 * S))) == 1


def test_a_late_trade_stays_out_of_every_bar() -> None:
    """A trade older than a published bar is counted as late and changes no bar."""
    bars = LiveBars(["1s", "1m"], grace_ns=0)
    bars.on_events([trade(T0 + 1, 10.0)], clock_ns=T0 + S)  # the 1 s bar closes
    out = bars.on_events([trade(T0 + 2, 99.0)], clock_ns=T0 + S)
    assert bars.late_trades == 1
    assert [type(e.payload) for e in out] == [Trade]
    minute = bars_of(bars.on_events([], clock_ns=T0 + 60 * S))
    assert [b.high for _, _, b in minute] == [10.0]


def test_intervals_must_be_whole_seconds() -> None:
    """A sub-second interval is refused, in the bars and in the configuration."""
    with pytest.raises(ConfigError, match="1500ms"):
        LiveBars(["1500ms"], grace_ns=0)
    with pytest.raises(ConfigError, match=r"bar_intervals: .*1500ms"):
        LiveFeedConfig(bar_intervals=["1500ms"]).validate()
    with pytest.raises(ConfigError, match="symbols"):
        LiveFeedConfig(symbols=["btcusdt"]).validate()
    assert LiveFeedConfig(ws_url="wss://stream.example:9443").rest_base() == (
        "https://stream.example:9443"
    )


_trades = st.lists(
    st.tuples(st.integers(0, 4 * S), st.floats(1.0, 2.0), st.floats(0.1, 1.0)),
    min_size=1,
    max_size=60,
).map(lambda items: sorted(items))


@settings(max_examples=60, deadline=None)
@given(_trades, st.data())
def test_recovery_from_state_and_the_log_equals_an_uninterrupted_run(
    items: list[tuple[int, float, float]], data: st.DataObject
) -> None:
    """Snapshot at any point, then replay what was published after it (the log) and
    publish the bars it lacks: the bars equal an uninterrupted run's."""
    events = [trade(T0 + ts, price, size) for ts, price, size in items]
    clock_after = [T0 + ts for ts, _, _ in items]

    def run(bars: LiveBars, chunk: list[ParsedEvent], clocks: list[int]) -> list[ParsedEvent]:
        out: list[ParsedEvent] = []
        for event, clock in zip(chunk, clocks, strict=True):
            out += bars.on_events([event], clock_ns=clock)
        return out

    whole = LiveBars(["1s"], grace_ns=S // 4)
    expected = bars_of(run(whole, events, clock_after))

    cut = data.draw(st.integers(0, len(events)), label="snapshot after")
    crash = data.draw(st.integers(cut, len(events)), label="events handled before the crash")
    first = LiveBars(["1s"], grace_ns=S // 4)
    published = run(first, events[:cut], clock_after[:cut])
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(first.state()), type=LiveBarsState)
    produced = run(first, events[cut:crash], clock_after[cut:crash])
    # The process dies: what it produced reached the log up to some point only.
    stored = data.draw(st.integers(0, len(produced)), label="stored after the snapshot")
    log = published + produced[:stored]

    second = LiveBars(["1s"], grace_ns=S // 4)
    second.restore(state)
    for event in log[len(published) :]:
        second.observe(event)
    recovered = second.take_unpublished()
    # The venue sends again what the log lacks (the feed backfills lost trades).
    lost = [e for e in produced[stored:] if isinstance(e.payload, Trade)]
    lost_clocks = [e.ts_event for e in lost]
    rest = run(second, lost + events[crash:], lost_clocks + clock_after[crash:])
    got = sorted(bars_of(log + recovered + rest), key=lambda b: b[1])
    assert got == expected
