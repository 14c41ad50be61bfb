"""Short sales of cash-like instruments (stocks, crypto spot) in the risk gate: refused
in a cash account (``check_cash`` without ``allow_short``); when allowed, the short is
collateralized at 150 % of its value (Regulation T), its proceeds counted as 100 %."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.actors.orders.harness import (
    MINUTE_NS,
    REPO,
    bar_records,
    chain_outcome,
    payloads,
    run_chain,
)
from tests.actors.risk.test_checks import intent
from tests.actors.risk.test_worst_case import Script
from tickertape.actors.orders import OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.pnl.actor import PnlConfig
from tickertape.actors.risk import RiskConfig, parse_limits
from tickertape.actors.risk import checks as rc
from tickertape.actors.strategy import StrategyActor, StrategyConfig
from tickertape.schemas import Record
from tickertape.schemas.pnl import Book
from tickertape.schemas.risk import RiskDecision
from tickertape.schemas.strategy import Intent

T0 = 1_704_067_200_000_000_000
CASH_ACCOUNT = rc.Limits(check_cash=True)
SHORTS = rc.Limits(check_cash=True, allow_short=True)


def view(**kw: object) -> rc.RiskView:
    """Cash-like X at 100 (multiplier 1), 150 of funds."""
    base: dict[str, object] = {"now_ns": T0, "price": 100.0, "last_data_ns": T0, "cash": 150.0}
    base.update(kw)
    return rc.RiskView(**base)  # type: ignore[arg-type]


def sell(quantity: float = 1.0, **kw: object) -> Intent:
    return intent(side="sell", quantity=quantity, **kw)


# ---------------------------------------------------------------- the decision


@pytest.mark.parametrize(
    ("held", "quantity", "code"),
    [
        ({}, 1.0, "SHORT_NOT_ALLOWED"),  # nothing to sell
        ({"position": 2.0}, 2.0, "OK"),  # down to 0
        ({"position": 2.0}, 3.0, "SHORT_NOT_ALLOWED"),  # a flip
        ({"position": 2.0, "open_sells": 1.0}, 1.0, "OK"),  # 2 − 1 − 1 = 0
        ({"position": 2.0, "open_sells": 1.0}, 2.0, "SHORT_NOT_ALLOWED"),  # both fill: −1
        # unfilled buys are not holdings: canceled, the sell would leave a short
        ({"position": 0.0, "open_buys": 2.0}, 1.0, "SHORT_NOT_ALLOWED"),
        ({"position": 0.30000000000000004}, 0.30000000000000004, "OK"),  # 0.1 + 0.2, all
    ],
)
def test_a_cash_account_sells_only_what_it_holds(
    held: dict[str, float], quantity: float, code: str
) -> None:
    """With check_cash and no allow_short, a sell may bring the booked position less the
    open sells down to 0, never below."""
    decision = rc.decide(sell(quantity), view(**held), CASH_ACCOUNT, "ACTIVE")
    assert decision.reason_code == code


def test_short_not_allowed_is_checked_for_reducing_orders_and_after_halts() -> None:
    """Short 0 with open buys of 2 (projected +2): a sell of 1 moves the projected
    position toward zero without raising the worst case, and still may open a short if
    the buys are canceled: so it is no reducing order (refused in REDUCING) and a short
    sale (refused in ACTIVE). HALTED is reported first."""
    straddled = view(open_buys=2.0)
    assert rc.decide(sell(), straddled, CASH_ACCOUNT, "ACTIVE").reason_code == "SHORT_NOT_ALLOWED"
    assert rc.decide(sell(), straddled, CASH_ACCOUNT, "REDUCING").reason_code == "REDUCING"
    assert rc.decide(sell(), straddled, CASH_ACCOUNT, "HALTED").reason_code == "HALTED"


def test_whether_short_sales_are_allowed() -> None:
    """allow_short when set; unset, no with check_cash (a cash account) and yes without
    (the gate checks no funds). An explicit allow_short = false refuses shorts without
    check_cash too; futures may always sell short."""
    assert not CASH_ACCOUNT.short_sales_allowed
    assert SHORTS.short_sales_allowed
    assert rc.Limits().short_sales_allowed
    no_shorts = rc.Limits(allow_short=False)
    assert rc.decide(sell(), view(), no_shorts, "ACTIVE").reason_code == "SHORT_NOT_ALLOWED"
    assert rc.decide(sell(), view(), rc.Limits(), "ACTIVE").approved
    future = view(price=1.1, multiplier=125_000.0, initial_margin=2_310.0, cash=3_000.0)
    assert rc.decide(sell(), future, no_shorts, "ACTIVE").approved
    assert rc.decide(sell(), future, CASH_ACCOUNT, "ACTIVE").approved


def test_allow_short_takes_the_tightest_scope() -> None:
    """allow_short is False when any scope says false, else True when one says true."""
    limits = rc.parse_limits(
        "[markets.crypto]\ncheck_cash = true\nallow_short = true\n"
        "[strategies.long-only]\nallow_short = false\n"
        "[markets.kr]\ncheck_cash = true\n"
    )
    assert rc.effective_limits(limits, "crypto", "s").short_sales_allowed
    assert not rc.effective_limits(limits, "crypto", "long-only").short_sales_allowed
    assert rc.effective_limits(limits, "kr", "s").allow_short is None
    assert not rc.effective_limits(limits, "kr", "s").short_sales_allowed
    assert rc.effective_limits(limits, "us", "s").short_sales_allowed  # no check_cash


@pytest.mark.parametrize(
    ("held", "quantity", "margin", "code"),
    [
        ({}, 1.0, 50.0, "OK"),  # 50 % of 100 ≤ 150
        ({}, 3.0, 150.0, "OK"),
        ({}, 4.0, 200.0, "INSUFFICIENT_CASH"),
        # a flip: the long's proceeds are not counted; the short of 2 needs 100
        ({"position": 1.0, "cash": 50.0}, 3.0, 100.0, "INSUFFICIENT_CASH"),
        ({"position": 1.0, "cash": 50.0}, 2.0, 50.0, "OK"),
        ({"position": 2.0}, 2.0, None, "OK"),  # sells a long: no short sale margin
    ],
)
def test_a_short_sale_needs_half_its_notional_beyond_its_proceeds(
    held: dict[str, float], quantity: float, margin: float | None, code: str
) -> None:
    """With shorts allowed, a cash-like sell needs (150 % − 100 %) of the notional of
    the short it may open (Regulation T's 150 % initial requirement, the proceeds being
    the 100 %). Before, it needed the whole notional once, and its proceeds then
    funded the next."""
    decision = rc.decide(sell(quantity), view(**held), SHORTS, "ACTIVE")
    assert (decision.reason_code, decision.inputs.get("short_sale_margin")) == (code, margin)


# ------------------------------------------------------------------- the chain


def run(
    plan: dict[int, list[tuple[object, ...]]],
    *,
    cash: float,
    limits: str,
    closes: list[float] | None = None,
) -> tuple[list[tuple[str, dict[str, float]]], Book | None]:
    """The chain on cash-like X (``closes``, flat bars, default eight at 100; zero costs
    and borrow fees, ``[markets.us]`` ``limits``); the gate's (reason code, inputs) of each order
    decision, and the strategy's last book (None before its first fill)."""
    prices = closes if closes is not None else [100.0] * 8
    rows = [(T0 + (i + 1) * MINUTE_NS, p, p, p, p, 1_000.0) for i, p in enumerate(prices)]
    return decisions_and_book(bar_records(rows, "us", "X"), plan, cash=cash, limits=limits)


def decisions_and_book(
    records: list[Record], plan: dict[int, list[tuple[object, ...]]], *, cash: float, limits: str
) -> tuple[list[tuple[str, dict[str, float]]], Book | None]:
    out = run_chain(
        records,
        [StrategyActor(StrategyConfig(strategy_id="s"), strategy=Script(plan))],
        orders=OrderEngineConfig(markets={"us": fl.ZERO_COST}),
        risk=RiskConfig(initial_cash={"us": cash}, limits=parse_limits(limits)),
        pnl=PnlConfig(initial_cash={"us": cash}, borrow_rates={"us": 0.0}),  # no borrow fee
    )
    return chain_outcome(out)


SIX_SELLS: dict[int, list[tuple[object, ...]]] = {n: [("sell", 1.0)] for n in range(1, 7)}


def test_a_cash_account_cannot_sell_short_through_the_chain() -> None:
    """150 of cash, X at 100, six sells of 1 in a row with check_cash: each is refused
    (SHORT_NOT_ALLOWED) and nothing fills. Before, all six were approved: the proceeds
    of each short went into cash and funded the next, ending short 6 with cash 750 and
    equity 150."""
    decisions, book = run(SIX_SELLS, cash=150.0, limits="[markets.us]\ncheck_cash = true\n")
    assert [code for code, _ in decisions] == ["SHORT_NOT_ALLOWED"] * 6
    assert book is None


def test_an_allowed_short_is_collateralized_at_150_percent() -> None:
    """The same with allow_short: each sell needs 50; the funds are the cash less 150 %
    of the short's value (150, 250 − 150, 350 − 300, 450 − 450): three are approved,
    then INSUFFICIENT_CASH. The book ends short 3, cash 450, equity 150: a short of
    twice the equity, Regulation T's initial limit."""
    decisions, book = run(
        SIX_SELLS, cash=150.0, limits="[markets.us]\ncheck_cash = true\nallow_short = true\n"
    )
    assert [(code, i["cash"]) for code, i in decisions] == [
        ("OK", 150.0),
        ("OK", 100.0),
        ("OK", 50.0),
        ("INSUFFICIENT_CASH", 0.0),
        ("INSUFFICIENT_CASH", 0.0),
        ("INSUFFICIENT_CASH", 0.0),
    ]
    assert book is not None
    assert [p.quantity for p in book.positions] == [-3.0]
    assert (book.cash, book.equity) == (450.0, 150.0)


def test_a_short_is_marked_to_the_last_price() -> None:
    """Short 1 at 100 with 150 of cash (cash 250); X rises to 150: the short takes
    1.5 × 150 = 225 of the funds, 25 are left, and a sell of 1 at 150 (needing 75) is
    refused. At 100 it would have had 100 of funds and been approved."""
    decisions, _ = run(
        {1: [("sell", 1.0)], 4: [("sell", 1.0)]},
        cash=150.0,
        limits="[markets.us]\ncheck_cash = true\nallow_short = true\n",
        closes=[100.0, 100.0, 150.0, 150.0, 150.0],
    )
    assert [(code, i["cash"]) for code, i in decisions] == [
        ("OK", 150.0),
        ("INSUFFICIENT_CASH", 25.0),
    ]
    assert decisions[1][1]["short_sale_margin"] == 75.0


def test_a_resting_buy_that_covers_a_short_reserves_nothing() -> None:
    """300 of cash, shorts allowed: three sells of 1 (short 3, cash 600, funds 150); a
    buy of 3 at 50 rests (it only covers the short: filled, it would free 450 of
    collateral for 150); a further sell needing 50 sees funds of 150 and is approved.
    Counting the resting buy's 300 like an opening buy's would leave −150."""
    limit = {"order_type": "limit", "limit_price": 50.0}
    plan: dict[int, list[tuple[object, ...]]] = {
        1: [("sell", 1.0)],
        2: [("sell", 1.0)],
        3: [("sell", 1.0)],
        4: [("buy", 3.0, limit)],
        5: [("sell", 1.0)],
    }
    decisions, book = run(
        plan, cash=300.0, limits="[markets.us]\ncheck_cash = true\nallow_short = true\n"
    )
    assert [code for code, _ in decisions] == ["OK"] * 5
    assert decisions[4][1]["cash"] == 150.0
    assert book is not None
    assert [p.quantity for p in book.positions] == [-4.0]


def test_gross_exposure_counts_the_open_orders_of_other_symbols() -> None:
    """max_gross_exposure 150 at 100: a buy of 1 X at 50 rests (never reached); a buy of
    1 Y is refused (X's worst case 1 + Y's 1 = 200 > 150). Before, the other symbols
    counted their booked positions only (100: approved)."""
    rows = [(T0 + (i + 1) * MINUTE_NS, 100.0, 100.0, 100.0, 100.0, 1_000.0) for i in range(4)]
    x, y = bar_records(rows, "us", "X"), bar_records(rows, "us", "Y")
    records = sorted(x + y, key=lambda r: (r.ts_event, r.topic))
    records = [msgspec.structs.replace(r, gseq=i + 1) for i, r in enumerate(records)]
    limit = {"order_type": "limit", "limit_price": 50.0}
    # bars arrive X, Y, X, Y...: bar 1 is X's first, bar 4 Y's second
    decisions, _ = decisions_and_book(
        records,
        {1: [("buy", 1.0, limit)], 4: [("buy", 1.0)]},
        cash=1_000.0,
        limits="[markets.us]\nmax_gross_exposure = 150.0\n",
    )
    assert [(code, i.get("gross_exposure_after")) for code, i in decisions] == [
        ("OK", 100.0),
        ("MAX_GROSS_EXPOSURE", 200.0),
    ]


# ------------------------------------------------------------------ properties


@given(
    position=st.integers(-3, 4),
    buys=st.integers(0, 4),
    sells=st.integers(0, 4),
    side=st.sampled_from(["buy", "sell"]),
    quantity=st.integers(1, 8),
    state=st.sampled_from(["ACTIVE", "REDUCING"]),
)
def test_a_cash_account_never_approves_a_sell_past_its_holdings(
    position: int, buys: int, sells: int, side: str, quantity: int, state: str
) -> None:
    """With check_cash and no allow_short, an approved sell never lets the booked
    position less the open sells (this one included) fall below 0, whatever the open
    orders and the trading state; a buy is never refused as a short sale."""
    held = view(position=float(position), open_buys=float(buys), open_sells=float(sells),
                cash=1e9)  # fmt: skip
    order = intent(side=side, quantity=float(quantity))
    decision = rc.decide(order, held, CASH_ACCOUNT, state)  # type: ignore[arg-type]
    if side == "buy":
        assert decision.reason_code != "SHORT_NOT_ALLOWED"
    elif decision.approved:
        assert position - sells - quantity >= 0


def test_the_example_limits_let_only_the_live_sma_example_sell_crypto_short() -> None:
    """examples/risk.toml: crypto is a cash account (check_cash), except for the live SMA
    example (strategy sma-live, BTCUSDT spot), which goes short on a cross down: its
    short sale of 0.01 BTC is approved, another strategy's is SHORT_NOT_ALLOWED."""
    limits = (REPO / "examples" / "risk.toml").read_text(encoding="utf-8")
    rows = [(T0 + (i + 1) * MINUTE_NS, 60_000.0, 60_000.0, 60_000.0, 60_000.0, 5.0)
            for i in range(3)]  # fmt: skip
    plan: dict[int, list[tuple[object, ...]]] = {1: [("sell", 0.01)]}
    codes = {}
    for sid in ("sma-live", "other"):
        out = run_chain(
            bar_records(rows, "crypto", "BTCUSDT"),
            [StrategyActor(StrategyConfig(strategy_id=sid), strategy=Script(plan))],
            orders=OrderEngineConfig(markets={"crypto": fl.ZERO_COST}),
            risk=RiskConfig(limits=parse_limits(limits)),
        )
        codes[sid] = [
            d.reason_code for _, d in payloads(out, "risk.") if isinstance(d, RiskDecision)
        ]
    assert codes == {"sma-live": ["OK"], "other": ["SHORT_NOT_ALLOWED"]}


def test_an_order_that_could_open_a_position_if_another_were_canceled_is_not_reducing() -> None:
    """Cash-like X at 100 with 1,000 of funds and a resting sell of 19 (projected −19):
    a buy of 19 moves the projected position to zero, but opens a long of 19 if the
    sell is canceled, so it is checked like any order (1,900 > 1,000 of funds), not
    waved through as reducing. In REDUCING, long 1 with a buy of 10 open, a sell of 11
    (long 1 → short 10 if the buy is canceled) is refused; a sell of 1 passes."""
    resting = view(cash=1_000.0, open_sells=19.0)
    buy = intent(side="buy", quantity=19.0)
    assert rc.decide(buy, resting, SHORTS, "ACTIVE").reason_code == "INSUFFICIENT_CASH"
    assert rc.decide(buy, resting, SHORTS, "REDUCING").reason_code == "REDUCING"
    straddled = view(position=1.0, open_buys=10.0)
    assert rc.decide(sell(11.0), straddled, SHORTS, "REDUCING").reason_code == "REDUCING"
    decision = rc.decide(sell(1.0), straddled, SHORTS, "REDUCING")
    assert (decision.reason_code, decision.reason) == ("OK", "reduces exposure")
