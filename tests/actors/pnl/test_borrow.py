"""Borrow fees of cash-like shorts (docs/risk.md, "Borrow fees"): the formula, the
pnl actor's charges at marks and fills, the portfolio as the sum of its strategies,
and the risk gate's funds."""

from __future__ import annotations

from itertools import pairwise

import pytest

from tests.actors.orders.harness import MINUTE_NS, bar_records, payloads, run_chain
from tests.actors.risk.test_worst_case import Script
from tickertape.actors.orders import OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.orders.instruments import InstrumentSpec
from tickertape.actors.pnl import PnlActor, PnlConfig
from tickertape.actors.pnl import accounting as acc
from tickertape.actors.risk import RiskConfig, parse_limits
from tickertape.actors.strategy import StrategyActor, StrategyConfig
from tickertape.errors import ConfigError
from tickertape.schemas import Record
from tickertape.schemas.orders import OrderEvent
from tickertape.schemas.pnl import PnlUpdate
from tickertape.schemas.risk import RiskDecision

T0 = 1_704_067_200_000_000_000
DAY_NS = 86_400 * 1_000_000_000


def test_a_days_fee_is_the_brokers_calculation() -> None:
    """Short 1,000 shares at 13.00 at 6 % a year for one day: 13 × 1.02 × 1,000 × 0.06
    / 360 = 2.21 (the brokers' published example rounds the collateral per share up
    to 14.00 and gets 2.33; that rounding is not applied)."""
    book = acc.new_ledger("us", 100_000.0)
    book, _ = acc.apply_fill(book, "X", "sell", 1_000.0, 13.0, 0.0)
    book = acc.accrue_borrow(book, "X", 0.0, T0)
    short = book.positions["X"]
    assert short.accrued_ns == T0
    fee = acc.borrow_fee(short, 0.06, T0 + DAY_NS)
    assert fee == pytest.approx(2.21)
    charged = acc.accrue_borrow(book, "X", fee, T0 + DAY_NS)
    assert charged.cash == pytest.approx(book.cash - 2.21)
    assert charged.fees == pytest.approx(2.21)
    assert charged.positions["X"].borrow_fees == pytest.approx(2.21)
    assert charged.positions["X"].accrued_ns == T0 + DAY_NS
    assert acc.equity(charged) == pytest.approx(acc.equity(book) - 2.21)
    assert charged.max_drawdown > book.max_drawdown
    assert acc.to_book(charged).positions[0].borrow_fees == pytest.approx(2.21)


def test_longs_futures_and_positions_not_accruing_pay_nothing() -> None:
    book = acc.new_ledger("us", 100_000.0)
    book, _ = acc.apply_fill(book, "L", "buy", 10.0, 50.0, 0.0)
    book, _ = acc.apply_fill(book, "F", "sell", 1.0, 1.1, 0.0, 125_000.0, 2_310.0, 2_100.0)
    book, _ = acc.apply_fill(book, "S", "sell", 10.0, 50.0, 0.0)
    for symbol in ("L", "F", "S"):
        book = acc.accrue_borrow(book, symbol, 0.0, T0)
    assert [book.positions[s].accrued_ns for s in ("L", "F", "S")] == [0, 0, T0]
    later = T0 + DAY_NS
    assert acc.borrow_fee(book.positions["L"], 1.0, later) == 0.0
    assert acc.borrow_fee(book.positions["F"], 1.0, later) == 0.0
    assert acc.borrow_fee(book.positions["S"], 1.0, later) > 0.0
    assert acc.borrow_fee(book.positions["S"], 0.0, later) == 0.0
    assert acc.borrow_fee(book.positions["S"], 1.0, T0) == 0.0
    assert acc.to_book(book).positions[0].borrow_fees == 0.0  # omitted from the JSON


def run(
    rate: float, closes: list[float], plan: dict[int, list[tuple[object, ...]]]
) -> list[Record]:
    """Strategy ``s`` on crypto ABC bars a minute apart (open = close), USDT 10,000,
    shorts allowed, zero trading costs, pnl updates every minute, a borrow rate of
    ``rate`` for crypto; the outputs."""
    rows = [(T0 + (i + 1) * MINUTE_NS, c, c, c, c, 1_000.0) for i, c in enumerate(closes)]
    return run_chain(
        bar_records(rows, "crypto", "ABC"),
        [StrategyActor(StrategyConfig(strategy_id="s"), strategy=Script(plan))],
        orders=OrderEngineConfig(markets={"crypto": fl.ZERO_COST}),
        risk=RiskConfig(
            initial_cash={"crypto": 10_000.0},
            limits=parse_limits("[markets.crypto]\ncheck_cash = true\nallow_short = true\n"),
        ),
        pnl=PnlConfig(
            initial_cash={"crypto": 10_000.0},
            update_interval_ns=MINUTE_NS,
            borrow_rates={"crypto": rate},
        ),
    )


def test_the_pnl_actor_charges_a_short_at_each_mark_until_it_is_covered() -> None:
    """Short 10 ABC from its fill at 100 until a buy covers it: the strategy pays, at
    each new mark and at the covering fill, the fee since the last charge at the mark
    of that period; nothing after the cover. The portfolio pays the same, and every
    book keeps ``equity = initial cash + realized + unrealized − fees``."""
    closes = [100.0, 100.0, 101.0, 103.0, 102.0, 102.0, 104.0, 99.0]
    out = run(36.0, closes, {1: [("sell", 10.0)], 5: [("buy", 10.0)]})
    fills = [(r.ts_event, p.fill) for r, p in payloads(out, "order.") if isinstance(p, OrderEvent) and p.fill]  # fmt: skip
    assert [f.quantity for _, f in fills] == [10.0, 10.0]
    (opened, sold), (covered, bought) = fills
    # the marks while short: the sale's price from its fill, then each bar's close that
    # differs from the mark, then the covering fill
    marks = [(opened, sold.price)]
    for i, close in enumerate(closes):
        ts = T0 + (i + 1) * MINUTE_NS
        if opened < ts < covered and close != marks[-1][1]:
            marks.append((ts, close))
    marks.append((covered, bought.price))
    expected = sum(
        10.0 * price * 1.02 * 36.0 * (t1 - t0) / (360 * DAY_NS)
        for (t0, price), (t1, _) in pairwise(marks)
    )
    assert expected > 0.0
    updates = {
        sid: [p.books[0] for r, p in payloads(out, f"pnl.update.{sid}") if isinstance(p, PnlUpdate)]
        for sid in ("s", "portfolio")
    }  # fmt: skip
    last = updates["s"][-1]
    assert last.fees == pytest.approx(expected)
    assert last.positions[0].borrow_fees == pytest.approx(expected)
    assert last.positions[0].quantity == 0.0
    assert updates["portfolio"][-1].fees == pytest.approx(expected)
    for book in updates["s"] + updates["portfolio"]:
        assert book.equity == pytest.approx(
            book.initial_cash + book.realized + book.unrealized - book.fees
        )
    # Later bars moved the mark and were published: had the covered position kept
    # accruing, the last update's fees would exceed ``expected``.
    assert [r for r, _ in payloads(out, "pnl.update.s") if r.ts_event > covered]


def test_a_short_still_open_at_the_stop_pays_up_to_the_stop() -> None:
    """Short 10 ABC from the second bar to the end: the last update of each book is
    published at the stop (the publish tick the last marks wait for is after the
    run), with the fee up to the stop's time, charged at each mark of its period; the
    last two closes are equal, so no new mark charged the last minute before."""
    closes = [100.0, 100.0, 101.0, 103.0, 102.0, 102.0]
    out = run(36.0, closes, {1: [("sell", 10.0)]})
    ((opened, sold),) = [(r.ts_event, p.fill) for r, p in payloads(out, "order.") if isinstance(p, OrderEvent) and p.fill]  # fmt: skip
    stop = T0 + len(closes) * MINUTE_NS  # the last bar's time: the run ends there
    marks = [(opened, sold.price)]
    for i, close in enumerate(closes):
        ts = T0 + (i + 1) * MINUTE_NS
        if ts > opened and close != marks[-1][1]:
            marks.append((ts, close))
    marks.append((stop, closes[-1]))
    expected = sum(
        10.0 * price * 1.02 * 36.0 * (t1 - t0) / (360 * DAY_NS)
        for (t0, price), (t1, _) in pairwise(marks)
    )
    for sid in ("s", "portfolio"):
        record, update = payloads(out, f"pnl.update.{sid}")[-1]
        assert isinstance(update, PnlUpdate)
        (book,) = update.books
        assert record.ts_event == stop
        assert book.fees == pytest.approx(expected)
        assert book.positions[0].quantity == -10.0
        assert book.positions[0].mark == closes[-1]
        assert book.equity == pytest.approx(
            book.initial_cash + book.realized + book.unrealized - book.fees
        )


def test_the_gate_takes_the_borrow_fees_off_the_funds() -> None:
    """The same short with and without a borrow rate: a later order's available funds
    (the decision's ``cash`` input) differ by the fees of the last pnl update."""
    closes = [100.0, 100.0, 101.0, 103.0, 102.0, 104.0, 104.0]
    plan: dict[int, list[tuple[object, ...]]] = {1: [("sell", 10.0)], 6: [("sell", 1.0)]}
    funds = []
    for rate in (0.0, 36.0):
        out = run(rate, closes, plan)
        decision = [(r, p) for r, p in payloads(out, "risk.") if isinstance(p, RiskDecision)][-1]
        updates = [
            (r, p.books[0])
            for r, p in payloads(out, "pnl.update.s")
            if isinstance(p, PnlUpdate) and r.gseq < decision[0].gseq
        ]
        funds.append((decision[1].inputs["cash"], updates[-1][1].fees))
    (free_cash, no_fees), (charged_cash, fees) = funds
    assert no_fees == 0.0
    assert fees > 0.0
    assert charged_cash == pytest.approx(free_cash - fees)


def test_rates_are_validated_and_an_instrument_rate_wins() -> None:
    with pytest.raises(ConfigError, match=r"borrow_rates\.crypto"):
        PnlActor(PnlConfig(borrow_rates={"crypto": -0.01}))
    with pytest.raises(ConfigError, match="borrow_rate"):
        InstrumentSpec(borrow_rate=float("nan")).validate("crypto.ABC")
    actor = PnlActor(
        PnlConfig(
            borrow_rates={"crypto": 0.05},
            instruments={"crypto": {"ABC": InstrumentSpec(borrow_rate=0.5)}},
        )
    )
    assert actor._borrow_rate("crypto", "ABC") == 0.5
    assert actor._borrow_rate("crypto", "XYZ") == 0.05
    assert actor._borrow_rate("us", "XYZ") == 0.0025
