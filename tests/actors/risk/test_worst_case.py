"""The risk gate does not net open buy and sell orders: funds, the margin an order adds
and the cash it needs are taken at the worst case position (every open order of one
side fills, none of the other)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.actors.orders.harness import (
    MINUTE_NS,
    bar_records,
    chain_outcome,
    run_chain,
)
from tests.actors.risk.test_checks import intent as checks_intent
from tickertape.actors.orders import OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.orders.instruments import InstrumentSpec
from tickertape.actors.pnl.actor import PnlConfig
from tickertape.actors.risk import RiskConfig, parse_limits
from tickertape.actors.risk import checks as rc
from tickertape.actors.strategy import Strategy, StrategyActor, StrategyConfig, StrategyContext
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar
from tickertape.schemas.pnl import Book
from tickertape.schemas.strategy import Intent

T0 = 1_704_067_200_000_000_000
MARGIN = 2_310.0
SIXE = InstrumentSpec(multiplier=125_000.0, tick_size=0.00005, initial_margin=MARGIN)
CHECK_CASH = rc.Limits(check_cash=True)


def intent(**kw: object) -> Intent:
    """test_checks' intent, on 6EH4."""
    return checks_intent(**{"symbol": "6EH4", **kw})


def view(**kw: object) -> rc.RiskView:
    """A 6EH4 view at 1.1000, margined at 2,310 per contract, USD 100,000 of funds."""
    base: dict[str, object] = {
        "now_ns": T0, "price": 1.1, "last_data_ns": T0, "cash": 100_000.0,
        "multiplier": 125_000.0, "initial_margin": MARGIN,
    }  # fmt: skip
    base.update(kw)
    return rc.RiskView(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the formula


def test_worst_case_position_takes_the_worse_side() -> None:
    """max(|position + open buys|, |position − open sells|): Trading Technologies'
    example (long 5, working buys 4, working sells 3: worst long +9, worst short +2),
    then with a 7-lot of each side (+16; −5); a long 1 with a resting sell of 1 stays 1,
    and 5 buys against 5 sells on a flat book is 5, not 0."""
    assert rc.worst_case_position(5.0, 4.0, 3.0) == 9.0
    assert rc.worst_case_position(5.0, 4.0 + 7.0, 3.0) == 16.0
    assert rc.worst_case_position(5.0, 4.0, 3.0 + 7.0) == 9.0  # |5 − 10| = 5 < 9
    assert rc.worst_case_position(1.0, 0.0, 1.0) == 1.0
    assert rc.worst_case_position(0.0, 5.0, 5.0) == 5.0
    assert rc.worst_case_position(-3.0, 5.0, 0.0) == 3.0
    assert view(position=5.0, open_buys=4.0, open_sells=3.0).worst_case == 9.0


@pytest.mark.parametrize(
    ("held", "side", "quantity", "added"),
    [
        ({"position": 5.0, "open_buys": 4.0, "open_sells": 3.0}, "buy", 7.0, 7.0),  # 9 → 16
        ({"position": 5.0, "open_buys": 4.0, "open_sells": 3.0}, "sell", 7.0, 0.0),  # 9 → 9
        ({"position": 5.0, "open_buys": 4.0, "open_sells": 3.0}, "sell", 13.0, 2.0),  # → 11
        # a sell against unfilled buys: the buys may be canceled, the short stays
        ({"open_buys": 2.0}, "sell", 3.0, 1.0),  # 2 → 3 (netted: 2 → 1, no margin)
        ({"position": 1.0, "open_sells": 1.0}, "buy", 1.0, 1.0),  # 1 → 2
        ({"position": 1.0}, "sell", 2.0, 0.0),  # a flip within the worst case
        ({"position": 1.0}, "sell", 3.0, 1.0),  # 1 → 2
    ],
)
def test_an_order_adds_the_margin_of_its_rise_of_the_worst_case(
    held: dict[str, float], side: str, quantity: float, added: float
) -> None:
    """The margin an order needs is initial margin × (worst case after − before), > 0."""
    decision = rc.decide(intent(side=side, quantity=quantity), view(**held), CHECK_CASH, "ACTIVE")
    assert decision.approved
    assert decision.inputs["opening_margin"] == added * MARGIN
    recorded = (decision.inputs.get("open_buys"), decision.inputs.get("open_sells"))
    if "open_buys" in held or "open_sells" in held:
        assert recorded == (held.get("open_buys", 0.0), held.get("open_sells", 0.0))
    else:
        assert recorded == (None, None)  # recorded only when there are open orders


def test_a_sell_that_only_reduces_unfilled_buys_is_not_reducing() -> None:
    """Short 3 with open buys of 5 (projected +2): selling 2 brings the projected
    position to 0, but if the buys are canceled the book is short 5. It is charged the
    2 contracts of margin it adds (refused with no funds) and refused in REDUCING;
    before, it passed every check as "reduces exposure"."""
    straddled = view(position=-3.0, open_buys=5.0, cash=0.0)
    sell = intent(side="sell", quantity=2.0)
    refused = rc.decide(sell, straddled, CHECK_CASH, "ACTIVE")
    assert (refused.reason_code, refused.inputs["opening_margin"]) == (
        "INSUFFICIENT_MARGIN",
        2 * MARGIN,
    )
    assert rc.decide(sell, straddled, CHECK_CASH, "REDUCING").reason_code == "REDUCING"
    buy_back = rc.decide(intent(side="buy", quantity=1.0), view(position=-3.0, cash=0.0),
                         CHECK_CASH, "REDUCING")  # fmt: skip
    assert (buy_back.approved, buy_back.reason) == (True, "reduces exposure")


@given(
    position=st.integers(-4, 4),
    buys=st.integers(0, 4),
    sells=st.integers(0, 4),
    side=st.sampled_from(["buy", "sell"]),
    quantity=st.integers(1, 8),
    spare=st.integers(0, 4),
    state=st.sampled_from(["ACTIVE", "REDUCING"]),
)
def test_an_approved_futures_order_keeps_the_worst_case_funded(
    position: int, buys: int, sells: int, side: str, quantity: int, spare: int, state: str
) -> None:
    """With check_cash, whatever the open orders on either side, a book whose cash
    covers the margin of its worst case position still covers it after any approval."""
    worst = rc.worst_case_position(position, buys, sells)
    cash = (worst + spare) * MARGIN
    held = view(position=float(position), open_buys=float(buys), open_sells=float(sells),
                cash=cash - worst * MARGIN)  # fmt: skip
    decision = rc.decide(intent(side=side, quantity=float(quantity)), held, CHECK_CASH, state)  # type: ignore[arg-type]
    if decision.approved:
        buys_after = buys + quantity if side == "buy" else buys
        sells_after = sells + quantity if side == "sell" else sells
        assert rc.worst_case_position(position, buys_after, sells_after) * MARGIN <= cash


def test_a_cash_like_order_pays_for_what_it_may_open_without_netting() -> None:
    """Cash-like, at 100 with 150 of cash: a buy of 2 against a resting sell of 1 may
    open a long of 2 (the sell may never fill): 200 > 150, refused. Before, the flip
    from −1 to +1 was charged 1 contract. A sell of 3 against open buys of 2 may open a
    short of 3. With no open order of the other side nothing changes: a flip from +1 to
    −1 still opens 1 and adding to a long opens what it adds."""
    cash_like = {"price": 100.0, "multiplier": 1.0, "initial_margin": 0.0, "cash": 150.0}
    flip = rc.decide(intent(side="buy", quantity=2.0), view(open_sells=1.0, **cash_like),
                     CHECK_CASH, "ACTIVE")  # fmt: skip
    assert (flip.reason_code, flip.inputs["opening_notional"]) == ("INSUFFICIENT_CASH", 200.0)
    short = rc.decide(intent(side="sell", quantity=3.0), view(open_buys=2.0, **cash_like),
                      rc.Limits(), "ACTIVE")  # fmt: skip
    assert short.inputs["opening_notional"] == 300.0
    for held, side, quantity, opening in [
        ({"position": 1.0}, "sell", 2.0, 1.0),
        ({"position": 1.0, "open_buys": 1.0}, "buy", 1.0, 1.0),
        ({"position": -2.0, "open_buys": 1.0}, "buy", 3.0, 2.0),
        ({"position": 1.0, "open_sells": 1.0}, "buy", 1.0, 1.0),
    ]:
        decision = rc.decide(intent(side=side, quantity=quantity), view(**held, **cash_like),
                             rc.Limits(), "ACTIVE")  # fmt: skip
        assert decision.inputs["opening_notional"] == opening * 100.0, held


# ------------------------------------------------------------------- the chain


class Script(Strategy):
    """On bar number n (from 1), does ``plan[n]``: ``(side, quantity, order options)``
    orders, or ``("cancel", side)`` to cancel its open orders of that side."""

    def __init__(self, plan: dict[int, list[tuple[object, ...]]]) -> None:
        super().__init__()
        self.plan = plan
        self.n = 0

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        self.n += 1
        for action in self.plan.get(self.n, []):
            if action[0] == "cancel":
                for order in ctx.open_orders(market, bar.symbol):
                    if order.side == action[1]:
                        ctx.cancel_order(order.order_id)
            else:
                options: dict[str, object] = action[2] if len(action) > 2 else {}  # type: ignore[assignment]
                ctx.submit_order(market, bar.symbol, action[0], action[1], **options)  # type: ignore[arg-type]


def run(
    plan: dict[int, list[tuple[object, ...]]],
    *,
    cash: float,
    symbol: str = "6EH4",
    price: float = 1.1,
    volume: float = 1_000.0,
    participation_rate: float | None = None,
    bars: int = 8,
    limits: str = "",
) -> tuple[list[tuple[str, dict[str, float]]], Book | None]:
    """The chain on flat bars a minute apart (6E margined at 2,310, ``check_cash`` and
    the ``[markets.us]`` lines ``limits``, zero costs); the gate's (reason code, inputs)
    of each order decision, and the strategy's last book (None before its first
    fill)."""
    rows = [(T0 + (i + 1) * MINUTE_NS, price, price, price, price, volume) for i in range(bars)]
    instruments = {"us": {"6E": SIXE}}
    fills = msgspec.structs.replace(fl.ZERO_COST, participation_rate=participation_rate)
    out = run_chain(
        bar_records(rows, "us", symbol),
        [StrategyActor(StrategyConfig(strategy_id="s"), strategy=Script(plan))],
        orders=OrderEngineConfig(markets={"us": fills}, instruments=instruments),  # type: ignore[arg-type]
        risk=RiskConfig(
            initial_cash={"us": cash},
            instruments=instruments,  # type: ignore[arg-type]
            limits=parse_limits(f"[markets.us]\ncheck_cash = true\n{limits}"),
        ),
        pnl=PnlConfig(initial_cash={"us": cash}, instruments=instruments),  # type: ignore[arg-type]
    )
    return chain_outcome(out)


def test_a_resting_reducing_order_does_not_free_the_margin_of_the_position() -> None:
    """The reviewer's scenario: USD 3,000, 6E at 2,310. Buy 1 (filled); a sell of 1 at
    1.5 rests as reducing; a second buy 1 is refused: the sell may never fill, so the
    long 1 keeps its margin (3,000 − 2,310 = 690 of funds). Before, the projected
    position 0 freed it: the buy was approved and filled, 2 contracts (4,620 of
    margin) on 3,000 of equity."""
    limit = {"order_type": "limit", "limit_price": 1.5}
    decisions, book = run(
        {1: [("buy", 1.0)], 3: [("sell", 1.0, limit)], 4: [("buy", 1.0)]}, cash=3_000.0
    )
    assert [code for code, _ in decisions] == ["OK", "OK", "INSUFFICIENT_MARGIN"]
    assert decisions[2][1]["cash"] == 690.0
    assert decisions[2][1]["opening_margin"] == MARGIN
    assert book is not None
    assert [(p.quantity, p.initial_margin) for p in book.positions] == [(1.0, MARGIN)]


def test_partial_fills_and_cancels_move_the_worst_case() -> None:
    """USD 10,000; each order fills 1 contract a bar. Bar 1 buys 3; bar 2 (long 1,
    2 to fill) rests a sell of 2 at 1.5; bar 3 (long 2, 1 to fill) rests a buy of 1 at
    1.0: worst case max(2 + 2, 2 − 2) = 3 before it, 10,000 − 3 × 2,310 = 3,070 of
    funds (netted, 7,690). Bar 4 (long 3, the buy at 1.0 and the sell open): worst case
    4, 760 of funds, a buy of 1 refused (netted: 5,380, approved). Bar 5 cancels the
    buy at 1.0, releasing its margin: bar 6's buy sees 3,070 and is approved. The book
    ends long 4, 9,240 of margin; before, long 5, 11,550 on 10,000."""
    limit_sell = {"order_type": "limit", "limit_price": 1.5}
    limit_buy = {"order_type": "limit", "limit_price": 1.0}
    plan: dict[int, list[tuple[object, ...]]] = {
        1: [("buy", 3.0)],
        2: [("sell", 2.0, limit_sell)],
        3: [("buy", 1.0, limit_buy)],
        4: [("buy", 1.0)],
        5: [("cancel", "buy")],
        6: [("buy", 1.0)],
    }
    decisions, book = run(plan, cash=10_000.0, volume=2.0, participation_rate=0.5)
    codes = [code for code, _ in decisions]
    assert codes == ["OK", "OK", "OK", "INSUFFICIENT_MARGIN", "OK"]
    seen = [
        (i.get("position"), i.get("open_buys"), i.get("open_sells"), i.get("cash"))
        for _, i in decisions
    ]
    assert seen == [
        (0.0, None, None, 10_000.0),
        (1.0, 2.0, 0.0, 3_070.0),  # may open a short of 1 if the buys are canceled: funds checked
        (2.0, 1.0, 2.0, 3_070.0),
        (3.0, 1.0, 2.0, 760.0),
        (3.0, 0.0, 2.0, 3_070.0),
    ]
    assert book is not None
    assert [(p.quantity, p.initial_margin) for p in book.positions] == [(4.0, 4 * MARGIN)]


def test_a_cash_like_flip_against_a_resting_order_needs_the_whole_buy() -> None:
    """Cash-like X at 100 with 150 of cash, short sales allowed: a sell of 1 at 101
    rests (its short sale margin, 50.50, is covered, and it reserves 50 of the funds);
    a buy of 2 is refused (200 > 100). Before, the flip from −1 to +1 was charged 100,
    approved, and filled: long 2 bought with 150, cash −50."""
    limit = {"order_type": "limit", "limit_price": 101.0}
    decisions, book = run(
        {1: [("sell", 1.0, limit)], 2: [("buy", 2.0)]},
        cash=150.0,
        symbol="X",
        price=100.0,
        limits="allow_short = true\n",
    )
    assert [code for code, _ in decisions] == ["OK", "INSUFFICIENT_CASH"]
    assert decisions[0][1]["short_sale_margin"] == 50.5
    assert (decisions[1][1]["opening_notional"], decisions[1][1]["cash"]) == (200.0, 100.0)
    assert book is None  # nothing filled


@given(
    position=st.floats(-10.0, 10.0),
    buys=st.floats(0.0, 5.0),
    sells=st.floats(0.0, 5.0),
    side=st.sampled_from(["buy", "sell"]),
    quantity=st.floats(0.001, 20.0),
)
def test_reducing_never_raises_the_worst_case(
    position: float, buys: float, sells: float, side: str, quantity: float
) -> None:
    """In REDUCING, an approved order never raises the worst case position, whatever
    the open orders of either side (cash-like, no limits)."""
    held = view(position=position, open_buys=buys, open_sells=sells, initial_margin=0.0)
    decision = rc.decide(intent(side=side, quantity=quantity), held, rc.Limits(), "REDUCING")
    if decision.approved:
        buys_after = buys + quantity if side == "buy" else buys
        sells_after = sells + quantity if side == "sell" else sells
        worst_after = rc.worst_case_position(position, buys_after, sells_after)
        assert worst_after <= held.worst_case + 1e-9 * max(held.worst_case, 1.0)


# ------------------------------------------------- position and exposure limits


@pytest.mark.parametrize(
    ("held", "side", "quantity", "code"),
    [
        # long 1 with a resting sell of 1: the buy can fill first, long 2
        ({"position": 1.0, "open_sells": 1.0}, "buy", 1.0, "MAX_POSITION"),
        # open buys of 1 and sells of 1 on a flat book: a buy may make it long 2
        ({"open_buys": 1.0, "open_sells": 1.0}, "buy", 1.0, "MAX_POSITION"),
        # a sell of 2 against an open buy of 1: if the buy is canceled, short 2
        ({"open_buys": 1.0}, "sell", 2.0, "MAX_POSITION"),
        ({"position": 1.0}, "sell", 2.0, "OK"),  # a flip to −1 stays within 1
        ({"position": 1.0, "open_sells": 1.0}, "sell", 1.0, "OK"),  # both fill: short 1
    ],
)
def test_max_position_holds_at_the_worst_case(
    held: dict[str, float], side: str, quantity: float, code: str
) -> None:
    """max_position 1 is checked against the worst case position after the order, not
    the projected one: the first three were approved before (projected after 1, 1, −1)."""
    limits = rc.Limits(max_position=1.0)
    decision = rc.decide(intent(side=side, quantity=quantity), view(**held), limits, "ACTIVE")
    assert decision.reason_code == code


def test_max_gross_exposure_holds_at_the_worst_case() -> None:
    """Gross exposure limit of 1.5 contracts (USD 206,250 at 1.1): long 1 with a resting
    sell of 1, a buy of 1 may reach long 2 (275,000): refused. Before, the projected
    position after it, 1, gave 137,500 and it was approved."""
    contract = 1.1 * 125_000.0
    held = view(position=1.0, open_sells=1.0, gross_exposure=contract)
    limits = rc.Limits(max_gross_exposure=1.5 * contract)
    decision = rc.decide(intent(), held, limits, "ACTIVE")
    assert decision.reason_code == "MAX_GROSS_EXPOSURE"
    assert decision.inputs["gross_exposure_after"] == pytest.approx(2 * contract)
    assert decision.inputs["worst_case_after"] == 2.0


@given(
    position=st.integers(-3, 3),
    buys=st.integers(0, 4),
    sells=st.integers(0, 4),
    others=st.integers(0, 3),
    side=st.sampled_from(["buy", "sell"]),
    quantity=st.integers(1, 8),
    state=st.sampled_from(["ACTIVE", "REDUCING"]),
)
def test_no_fill_combination_passes_a_limit_after_an_approval(
    position: int, buys: int, sells: int, others: int, side: str, quantity: int, state: str
) -> None:
    """max_position 3 and max_gross_exposure 5 contracts at 100 (cash-like, other
    symbols at their worst case holding ``others``): from a book within both at its
    worst case, an approved order leaves every combination of fills within both."""
    worst = rc.worst_case_position(position, buys, sells)
    if worst > 3 or worst + others > 5:
        return
    held = view(
        position=float(position), open_buys=float(buys), open_sells=float(sells), price=100.0,
        multiplier=1.0, initial_margin=0.0, gross_exposure=(worst + others) * 100.0,
    )  # fmt: skip
    limits = rc.Limits(max_position=3.0, max_gross_exposure=500.0)
    decision = rc.decide(intent(side=side, quantity=float(quantity)), held, limits, state)  # type: ignore[arg-type]
    if decision.approved:
        buys_after = buys + quantity if side == "buy" else buys
        sells_after = sells + quantity if side == "sell" else sells
        for filled_buys in range(buys_after + 1):
            for filled_sells in range(sells_after + 1):
                reached = abs(position + filled_buys - filled_sells)
                assert reached <= 3
                assert (reached + others) * 100.0 <= 500.0


@pytest.mark.parametrize(
    ("limits", "code", "figure", "value"),
    [
        ("max_position = 1\n", "MAX_POSITION", "worst_case_after", 2.0),
        (
            "max_gross_exposure = 206_250.0\n",
            "MAX_GROSS_EXPOSURE",
            "gross_exposure_after",
            275_000.0,
        ),
    ],
    ids=["max_position", "max_gross_exposure"],
)
def test_a_resting_reducing_order_does_not_lift_a_limit(
    limits: str, code: str, figure: str, value: float
) -> None:
    """The reviewer's scenario (USD 100,000, 6E): buy 1 (filled); a sell of 1 at 1.5
    rests; a second buy of 1 is refused: at max_position 1 for its worst case of 2
    (MAX_POSITION), at max_gross_exposure 1.5 contracts at 1.1 (USD 206,250) for a worst
    case exposure of 2 contracts (275,000). Before, it was approved on the projected
    position 1 (exposure 137,500) and filled: long 2 past the limit."""
    limit = {"order_type": "limit", "limit_price": 1.5}
    decisions, book = run(
        {1: [("buy", 1.0)], 3: [("sell", 1.0, limit)], 4: [("buy", 1.0)]},
        cash=100_000.0,
        limits=limits,
    )
    assert [c for c, _ in decisions] == ["OK", "OK", code]
    assert decisions[2][1][figure] == pytest.approx(value)
    assert book is not None
    assert [p.quantity for p in book.positions] == [1.0]


def test_gross_exposure_values_the_symbol_at_the_order_price() -> None:
    """Long 1 at a last price of 100 (gross exposure 100), a buy of 1 limited at 120:
    after it the symbol's worst case, 2, is valued at 120 (240). Before, the 100 of the
    view was replaced as if it had been valued at 120 (220)."""
    held = view(position=1.0, price=100.0, multiplier=1.0, initial_margin=0.0,
                gross_exposure=100.0)  # fmt: skip
    order = intent(order_type="limit", limit_price=120.0)
    decision = rc.decide(order, held, rc.Limits(), "ACTIVE")
    assert decision.inputs["gross_exposure_after"] == 240.0
