"""Splits and dividends applied to positions: the accounting rules, the pnl actor on
AAPL's real 2014 bars and actions, and the whole chain (strategy, risk gate, order
engine, pnl) across the 7:1 split."""

from __future__ import annotations

import math

import msgspec
import pytest

from tests.actors.orders.harness import AAPL_SPLIT_NS, aapl_records, aapl_with_a_buy, run_chain
from tests.actors.pnl.test_actor import latest_books, run_pnl
from tickertape.actors.pnl import PnlActor, PnlConfig
from tickertape.actors.pnl import accounting as acc
from tickertape.actors.strategy import Strategy, StrategyActor, StrategyConfig
from tickertape.actors.strategy.actor import StrategyContext
from tickertape.errors import OrderError
from tickertape.schemas import decode_payload
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar, CorporateAction

DAY_NS = 86_400_000_000_000
SPLIT = CorporateAction(symbol="X", action="split", ex_date="2014-06-09", ratio=7.0)


def _dividend(amount: float, currency: str | None = "USD") -> CorporateAction:
    return CorporateAction(
        symbol="X", action="dividend", ex_date="2014-08-07", amount=amount, currency=currency
    )


def _book(quantity: float, price: float, mark: float) -> acc.Ledger:
    """A USD book that filled ``quantity`` X (signed) at ``price``, marked at ``mark``."""
    side = "buy" if quantity > 0 else "sell"
    book, _ = acc.apply_fill(acc.new_ledger("us", 100_000.0), "X", side, abs(quantity), price, 1.0)
    return acc.mark(book, "X", mark)


# ------------------------------------------------------------------- accounting


def test_a_split_scales_quantity_cost_and_mark_and_keeps_the_equity() -> None:
    """100 X bought at 600, marked at 630, split 7:1: 700 X at an average cost of
    600 / 7, marked at 90; cash, realized, unrealized and equity as before."""
    before = _book(100.0, 600.0, 630.0)
    after = acc.apply_corporate_action(before, SPLIT)
    held = after.positions["X"]
    assert (held.quantity, held.mark) == (700.0, 90.0)
    assert held.average_cost == pytest.approx(600.0 / 7.0, rel=1e-15)
    assert (after.cash, after.realized, after.fees) == (before.cash, before.realized, 1.0)
    assert held.unrealized == pytest.approx(before.positions["X"].unrealized, rel=1e-12)
    assert acc.equity(after) == pytest.approx(acc.equity(before), rel=1e-15)
    assert after.max_drawdown == before.max_drawdown


def test_a_reverse_split_of_a_short() -> None:
    """−1,000 X sold at 2, split 1:10 (ratio 0.1): −100 X at 20, marked at 19."""
    after = acc.apply_corporate_action(
        _book(-1000.0, 2.0, 1.9), msgspec.structs.replace(SPLIT, ratio=0.1)
    )
    held = after.positions["X"]
    assert held.quantity == pytest.approx(-100.0)
    assert held.average_cost == pytest.approx(20.0)
    assert held.mark == pytest.approx(19.0)


@pytest.mark.parametrize("quantity", [100.0, -100.0])
def test_a_dividend_pays_a_long_and_charges_a_short(quantity: float) -> None:
    """A 0.47 dividend on ±100 X marked at 95: cash and realized PnL move by ±47 (a
    short pays the lender), the mark goes ex-dividend to 94.53, the equity stays."""
    before = _book(quantity, 90.0, 95.0)
    after = acc.apply_corporate_action(before, _dividend(0.47))
    income = quantity * 0.47
    held = after.positions["X"]
    assert after.cash == pytest.approx(before.cash + income)
    assert after.realized == pytest.approx(income)
    assert held.realized == held.dividends == pytest.approx(income)
    assert held.mark == pytest.approx(94.53)
    assert acc.equity(after) == pytest.approx(acc.equity(before), rel=1e-12)
    book = acc.to_book(after)
    assert book.positions[0].dividends == pytest.approx(income)
    # The identity of a published book holds with the dividend in the realized PnL.
    assert book.equity == pytest.approx(
        book.initial_cash + book.realized + book.unrealized - book.fees, rel=1e-12
    )


def test_futures_and_books_without_the_symbol_are_left_alone() -> None:
    """A margined position (a future) has no dividends nor splits; a book that never
    held the symbol is returned as it is."""
    future, _ = acc.apply_fill(acc.new_ledger("us", 1e6), "X", "buy", 2.0, 100.0, 0.0, 1.0, 500.0)
    assert acc.apply_corporate_action(future, SPLIT) is future
    assert acc.apply_corporate_action(future, _dividend(1.0)) is future
    empty = acc.new_ledger("us", 1.0)
    assert acc.apply_corporate_action(empty, SPLIT) is empty


@pytest.mark.parametrize(
    ("action", "words"),
    [
        (msgspec.structs.replace(SPLIT, ratio=0.0), "ratio 0.0"),
        (msgspec.structs.replace(SPLIT, ratio=None), "ratio None"),
        (msgspec.structs.replace(SPLIT, ratio=math.nan), "ratio nan"),
        (_dividend(-0.1), "amount -0.1"),
        (_dividend(0.5, "KRW"), "in KRW, but the books are in USD"),
        (CorporateAction(symbol="X", action="delisting", ex_date="2014-01-02"), "not applied"),
    ],
)
def test_an_action_that_cannot_be_applied_says_why(action: CorporateAction, words: str) -> None:
    problem = acc.corporate_action_problem(action, "USD")
    assert problem is not None
    assert words in problem
    assert "X" in problem
    with pytest.raises(OrderError, match=words):
        acc.apply_corporate_action(_book(1.0, 10.0, 10.0), action)


# -------------------------------------------------------------- the pnl actor


def test_a_position_held_through_the_split_and_two_dividends() -> None:
    """Strategy s buys 100 AAPL at a raw close a week before the 7:1 split and holds
    it to the end of 2014 (raw prices, as fills and marks are). Its book ends with 700
    shares marked at the last raw close, the dividends of 2014-08-07 and 2014-11-06
    (0.47 a share each, on 700 shares) in its cash and realized PnL, and an equity of
    initial cash − cost + 700 × 110.38 + 658. Its drawdown never shows the split:
    before positions followed it, 100 shares marked at 93 after it cost the book 54 %."""
    inputs, raw = aapl_with_a_buy()
    pnl = PnlActor(PnlConfig(update_interval_ns=DAY_NS))
    run_pnl(inputs, pnl, end_ns=inputs[-1].ts_event + 1)
    fill = next(decode_payload(r.type, r.v, r.payload) for r in inputs if r.type == "order.event")
    book = pnl.state.ledgers["s:us"]
    held = book.positions["AAPL"]
    assert held.quantity == 700.0
    assert held.mark == raw[-1].close == 110.38
    assert held.average_cost == pytest.approx(fill.fill.price / 7.0)
    assert held.dividends == pytest.approx(2 * 700 * 0.47)
    cost = 100.0 * fill.fill.price
    assert book.cash == pytest.approx(100_000.0 - cost + 658.0)
    assert acc.equity(book) == pytest.approx(100_000.0 - cost + 700 * 110.38 + 658.0)
    assert book.max_drawdown < 0.1
    portfolio = pnl.state.ledgers["portfolio:us"]
    assert acc.equity(portfolio) == pytest.approx(acc.equity(book))


def test_a_dividend_marks_ex_until_the_next_bar() -> None:
    """On an ex-date the dividend is in the cash from the session open, and the mark
    is the previous close less the dividend until the day's bar: the equity between the
    two is the one before (no high-water mark made of the dividend counted twice)."""
    inputs, _ = aapl_with_a_buy()
    ex_ns = next(
        r.ts_event for r in inputs if r.type == "md.corporate_action" and r.ts_event > AAPL_SPLIT_NS
    )
    before = [r for r in inputs if r.ts_event < ex_ns]
    pnl = PnlActor(PnlConfig(update_interval_ns=DAY_NS))
    run_pnl(before, pnl, end_ns=ex_ns)
    equity_before = acc.equity(pnl.state.ledgers["s:us"])
    mark_before = pnl.state.ledgers["s:us"].positions["AAPL"].mark
    pnl_after = PnlActor(PnlConfig(update_interval_ns=DAY_NS))
    run_pnl([r for r in inputs if r.ts_event <= ex_ns], pnl_after, end_ns=ex_ns + 1)
    book = pnl_after.state.ledgers["s:us"]
    assert book.positions["AAPL"].mark == pytest.approx(mark_before - 0.47)
    assert acc.equity(book) == pytest.approx(equity_before, rel=1e-12)
    assert book.high_water_mark == pytest.approx(pnl.state.ledgers["s:us"].high_water_mark)


# ---------------------------------------------------------------- the whole chain


class _AcrossTheSplit(Strategy):
    """Buys 100 AAPL and rests a GTC limit buy of 10 at 1.0 at the fifth close before
    the split; at the first close after it, notes its position and goes flat."""

    def __init__(self, buy_ns: int) -> None:
        super().__init__()
        self.buy_ns = buy_ns
        self.seen_after_split: float | None = None

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        now = ctx.now_ns()
        if now == self.buy_ns:
            ctx.target_position(market, bar.symbol, 100.0)
            ctx.submit_order(market, bar.symbol, "buy", 10.0, order_type="limit", limit_price=1.0)
        elif now > AAPL_SPLIT_NS and self.seen_after_split is None:
            self.seen_after_split = ctx.position(market, bar.symbol)
            ctx.target_position(market, bar.symbol, 0.0)


def test_the_chain_across_a_split() -> None:
    """Through the strategy, the risk gate, the order engine with the simulated venue
    and the pnl actor, on AAPL's real bars: at the split the engine cancels the resting
    limit order (its price is on the old scale), the strategy's position is 700, and
    the gate turns "target 0" into a sell of 700 (before, a sell of 100 left 600
    shares held). The book ends flat with realized PnL 700 × sell − 100 × buy."""
    records = aapl_records()
    bars = [r for r in records if r.type == "md.bar" and r.ts_event < AAPL_SPLIT_NS]
    strategy = _AcrossTheSplit(bars[-5].ts_event)
    config = StrategyConfig(strategy_id="s", subscriptions=["md.bar.1d.us.AAPL"])
    outputs = run_chain(records, [StrategyActor(config, strategy)])
    assert strategy.seen_after_split == 700.0
    decoded = [(r, decode_payload(r.type, r.v, r.payload)) for r in outputs]
    canceled = [p for r, p in decoded if r.topic == "order.canceled.us"]
    assert [(c.order_type, c.quantity) for c in canceled] == [("limit", 10.0)]
    assert "split" in canceled[0].reason
    canceled_at = next(r.ts_event for r, _ in decoded if r.topic == "order.canceled.us")
    assert AAPL_SPLIT_NS < canceled_at < AAPL_SPLIT_NS + 1_000_000_000  # + the venue's latency
    fills = [p for r, p in decoded if r.topic == "order.filled.us"]
    assert [(f.side, f.quantity) for f in fills] == [("buy", 100.0), ("sell", 700.0)]
    book = latest_books(outputs)["s"]
    assert book.positions[0].quantity == 0.0
    buy, sell = (f.fill.price for f in fills)
    assert book.realized == pytest.approx(700.0 * sell - 100.0 * buy, rel=1e-9)
