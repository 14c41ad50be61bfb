"""Defects a review proved in the pnl actor and its report, each with the case that showed
it: adjusted bars as marks, a fill price as every book's mark, a strategy named
``portfolio``, and the Sharpe ratio of a book wiped out on its last day."""

from __future__ import annotations

import math

import msgspec
import pytest

from tests.actors.orders.harness import AAPL_SPLIT_NS, MINUTE_NS, aapl_with_a_buy, bar_records
from tests.actors.pnl.test_actor import INTERVAL, T0, fill_record, latest_books, run_pnl
from tickertape.actors.marketdata import MarketDataActor, MarketDataConfig
from tickertape.actors.pnl import PnlActor, PnlConfig
from tickertape.actors.pnl.report import build_report, sharpe_ratio
from tickertape.actors.runtime import InProcessHost, MemorySink
from tickertape.actors.strategy import Strategy, StrategyActor, StrategyConfig
from tickertape.errors import ConfigError
from tickertape.schemas import Record, decode_payload
from tickertape.schemas.pnl import Book, PnlUpdate
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.scheduler import StepPlanner
from tickertape.topics import matches_any

DAY_NS = 86_400_000_000_000


# ------------------------------------------------------------- adjusted bars as marks


@pytest.mark.parametrize("intervals", [[], ["1d"]])
def test_forward_adjusted_bars_never_mark_a_book(intervals: list[str]) -> None:
    """The market-data actor republishes AAPL's bars forward-adjusted on
    ``md.bar.1d-adj.us.AAPL`` (interval ``1d``, ``adjusted`` set), ×7 after the split.
    Strategy s holds 100 AAPL bought at a raw close: every mark the pnl actor publishes
    is a raw close, never an adjusted one, through the split to the last (raw) close of
    the year; with ``bar_intervals`` set, the actor does not even receive the adjusted
    topic. Before, both series marked the books: the last mark was the adjusted 788.92
    where the raw close is 110.38."""
    inputs, raw = aapl_with_a_buy()
    sink = MemorySink()
    host = InProcessHost(sink, clock=SimulatedClock(inputs[0].ts_event))
    host.add(MarketDataActor(MarketDataConfig(trade_patterns=[], adjust_patterns=["md.bar.1d.us.AAPL"])))  # fmt: skip
    pnl = PnlActor(PnlConfig(bar_intervals=intervals, update_interval_ns=DAY_NS))
    host.add(pnl)
    host.start()
    host.run(StepPlanner(inputs, host.timers, start_ns=inputs[0].ts_event, end_ns=inputs[-1].ts_event))  # fmt: skip
    host.stop()
    adjusted = [r for r in sink.records if r.topic == "md.bar.1d-adj.us.AAPL"]
    assert len(adjusted) == len(raw)  # the adjusted series exists, ×7 after the split
    after = [decode_payload(r.type, r.v, r.payload) for r in adjusted if r.ts_event > AAPL_SPLIT_NS]
    assert after[0].close > 6 * raw[[b.start_ns for b in raw].index(after[0].start_ns)].close
    raw_closes = {b.close for b in raw}
    marks = [
        decode_payload(r.type, r.v, r.payload).books[0].positions[0].mark
        for r in sink.records
        if r.topic == "pnl.update.s"
    ]
    assert len(marks) > 100
    assert set(marks) <= raw_closes
    assert pnl.state.ledgers["s:us"].positions["AAPL"].mark == raw[-1].close == 110.38
    assert matches_any(pnl.subscriptions, "md.bar.1d-adj.us.AAPL") is not bool(intervals)


# ------------------------------------------------- a fill price is not the market's


def _bars(*closes: tuple[int, float]) -> list[Record]:
    """``md.bar.1m.crypto.ABC`` records of (minute, close), open = close."""
    return bar_records([(T0 + m * MINUTE_NS, c, c, c, c, 1.0) for m, c in closes], "crypto", "ABC")


def _slipped_fill(second: str) -> tuple[PnlActor, list[Record]]:
    """Strategy a buys 1,000 ABC at 100 (minute 1); bars close at 100, 99 and 99 (minutes
    1, 3, 8); strategy ``second`` buys 1 at 100.5 at minute 6 (the open plus slippage).
    Returns the pnl actor and its outputs up to minute 12."""
    bar1, bar3, bar8 = _bars((1, 100.0), (3, 99.0), (8, 99.0))
    inputs = [
        bar1,
        fill_record(1, T0 + MINUTE_NS, "a", "buy", 1000.0, 100.0),
        bar3,
        fill_record(2, T0 + 6 * MINUTE_NS, second, "buy", 1.0, 100.5),
        bar8,
    ]
    pnl = PnlActor(PnlConfig(update_interval_ns=INTERVAL))
    return pnl, run_pnl(inputs, pnl, end_ns=T0 + 12 * MINUTE_NS)


def test_a_fill_above_the_market_moves_no_other_book() -> None:
    """Strategy a holds 1,000 ABC bought at 100, marked at the 99 close of the 3-minute
    bar (equity 99,000, high-water mark 100,000). Strategy b then buys 1 at 100.5, the
    bar's open plus slippage. a's book keeps the market's 99: no update after b's fill,
    no new high-water mark. b's and the portfolio's books are marked at 99 too, so b's
    equity shows the 1.5 its fill paid over the market and the portfolio stays the sum
    of its strategies'. Before, b's fill re-marked every book at 100.5: a's equity rose
    to 100,500, a false high-water mark, then a 1.5 % drawdown at the next 99 close."""
    pnl, records = _slipped_fill("b")
    marks = {key: ledger.positions["ABC"].mark for key, ledger in pnl.state.ledgers.items()}
    assert marks == {"a:crypto": 99.0, "b:crypto": 99.0, "portfolio:crypto": 99.0}
    a_updates = [r.ts_event for r in records if r.topic == "pnl.update.a"]
    assert max(a_updates) == T0 + 5 * MINUTE_NS  # the tick after the 99 close, none later
    books = latest_books(records)
    assert (books["a"].equity, books["a"].high_water_mark) == (99_000.0, 100_000.0)
    assert books["a"].max_drawdown == pytest.approx(0.01)
    assert books["b"].equity == 100_000.0 - 100.5 + 99.0
    assert books["b"].high_water_mark == 100_000.0
    assert books["portfolio"].equity == books["a"].equity + books["b"].equity
    assert books["portfolio"].high_water_mark == 200_000.0


def test_a_fill_above_the_market_is_no_peak_of_its_own_book() -> None:
    """Strategy a holds 1,000 ABC bought at 100, marked down to 99, and buys 1 more at
    100.5 (slippage). Its book is marked at the market's 99 at the fill: equity 98,998.5,
    the high-water mark stays 100,000. Before, the fill marked the 1,001 at 100.5, a
    peak of 100,500 the market never gave, and a drawdown from it at the next close."""
    _, records = _slipped_fill("a")
    fill_update = [r for r in records if r.topic == "pnl.update.a" and r.causation_id][-1]
    book = decode_payload(fill_update.type, fill_update.v, fill_update.payload).books[0]
    assert [p.mark for p in book.positions] == [99.0]
    assert book.equity == 1001 * 99.0 - 100.5
    assert book.high_water_mark == 100_000.0
    assert book.max_drawdown == pytest.approx(1_001.5 / 100_000.0)  # the fill's own cost
    books = latest_books(records)
    assert books["portfolio"].equity == books["a"].equity
    assert books["portfolio"].high_water_mark == 100_000.0


def test_without_a_market_price_the_fill_price_marks_every_book() -> None:
    """No bar or trade of ABC yet: strategy a buys 1 at 100, then b 1 at 120. The fill
    price is the only price: every book holding ABC is marked at 120 (a's at the next
    tick). The next bar, 110, marks them all."""
    inputs = [
        fill_record(1, T0 + MINUTE_NS, "a", "buy", 1.0, 100.0),
        fill_record(2, T0 + 2 * MINUTE_NS, "b", "buy", 1.0, 120.0),
        *_bars((7, 110.0)),
    ]
    pnl = PnlActor(PnlConfig(update_interval_ns=INTERVAL))
    records = run_pnl(inputs, pnl, end_ns=T0 + 12 * MINUTE_NS)
    a_marks = [
        (r.ts_event - T0) // MINUTE_NS
        for r in records
        if r.topic == "pnl.update.a"
        and decode_payload(r.type, r.v, r.payload).books[0].positions[0].mark == 120.0
    ]
    assert a_marks == [5]
    marks = {key: ledger.positions["ABC"].mark for key, ledger in pnl.state.ledgers.items()}
    assert marks == {"a:crypto": 110.0, "b:crypto": 110.0, "portfolio:crypto": 110.0}


def test_the_last_market_price_survives_a_restart() -> None:
    """A bar closes ABC at 99 and strategy a buys; the actor is restarted from its
    snapshot; strategy b's fill at 100.5 then marks b's book at 99, as without the
    restart: the last market price is part of the snapshot (state version 3)."""
    bar1, bar3 = _bars((1, 100.0), (3, 99.0))
    first = PnlActor(PnlConfig(update_interval_ns=INTERVAL))
    run_pnl([bar1, fill_record(1, T0 + MINUTE_NS, "a", "buy", 10.0, 100.0), bar3], first, T0 + 4 * MINUTE_NS)  # fmt: skip
    second = PnlActor(PnlConfig(update_interval_ns=INTERVAL))
    second.restore(msgspec.msgpack.encode(first.snapshot()))
    records = run_pnl([fill_record(2, T0 + 6 * MINUTE_NS, "b", "buy", 1.0, 100.5)], second, T0 + 8 * MINUTE_NS)  # fmt: skip
    books = latest_books(records)
    assert [p.mark for p in books["b"].positions] == [99.0]
    assert "a" not in books  # a's book is not re-marked
    assert second.state.ledgers["a:crypto"].positions["ABC"].mark == 99.0
    assert second.state_version == 3  # an older snapshot has no prices: rebuilt from the log


# --------------------------------------------------------- a strategy named portfolio


def test_the_strategy_id_portfolio_is_reserved() -> None:
    """``pnl.update.portfolio`` and the pnl actor's ``portfolio:{market}`` books are the
    portfolio's: a strategy of that id would be booked into the portfolio's book (its
    fills counted twice there). The strategy actor refuses the id; ``portfolio2`` is
    fine."""
    with pytest.raises(ConfigError, match="'portfolio' is reserved"):
        StrategyActor(StrategyConfig(strategy_id="portfolio"), strategy=Strategy())
    assert StrategyActor(StrategyConfig(strategy_id="portfolio2"), strategy=Strategy()).name == (
        "strategy.portfolio2"
    )


# ------------------------------------------------------- Sharpe of a wiped-out book


def _update(ts: int, scope: str | None, equity: float) -> tuple[str, int, PnlUpdate]:
    book = Book(
        market="us", currency="USD", cash=equity, realized=0.0, unrealized=0.0, fees=0.0,
        equity=equity, high_water_mark=100.0, drawdown=0.0, max_drawdown=0.0,
        initial_cash=100.0,
    )  # fmt: skip
    return (f"pnl.update.{scope or 'portfolio'}", ts, PnlUpdate(strategy_id=scope, books=[book]))


def test_no_sharpe_for_a_book_wiped_out_on_its_last_day() -> None:
    """Capital 100, worth 50 then −10 at the last day's close: the book was wiped out, and
    its Sharpe is "—" (None) as for one wiped out earlier. Before, the last day's value
    was left out of the check and the ratio came out (−17.96)."""
    assert sharpe_ratio([100.0, 50.0, -10.0], 100.0) is None
    assert sharpe_ratio([100.0, 50.0, 0.0], 100.0) is None
    assert sharpe_ratio([100.0, -10.0, 5.0], 100.0) is None
    assert sharpe_ratio([100.0, 50.0, 10.0], 100.0) is not None
    start = 1_704_067_200_000_000_000 + 3_600_000_000_000
    events = [_update(start + day * DAY_NS, scope, value)
              for day, value in enumerate((100.0, 50.0, -10.0)) for scope in ("a", None)]  # fmt: skip
    rows = {row.scope: row for row in build_report(events).rows}
    assert rows["a"].sharpe is None
    assert rows["portfolio"].sharpe is None
    assert math.isclose(rows["a"].total_return, -1.1)
