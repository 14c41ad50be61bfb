"""The risk gate's funds check for futures: initial margin, not contract value
(``INSUFFICIENT_MARGIN``); cash-like instruments keep the full-notional check."""

from __future__ import annotations

import pytest

from tests.actors.orders.harness import MINUTE_NS, bar_records, payloads, run_chain
from tests.actors.risk.test_worst_case import Script, intent
from tickertape.actors.orders import OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.orders.instruments import InstrumentSpec
from tickertape.actors.risk import RiskConfig, parse_limits
from tickertape.actors.risk import checks as rc
from tickertape.actors.strategy import StrategyActor, StrategyConfig

T0 = 1_704_067_200_000_000_000
NOW = T0
SIXE = InstrumentSpec(multiplier=125_000.0, tick_size=0.00005, initial_margin=2_310.0)
CHECK_CASH = rc.Limits(check_cash=True)


def view(**kw: object) -> rc.RiskView:
    base: dict[str, object] = {
        "now_ns": NOW, "price": 1.1, "last_data_ns": NOW, "cash": 100_000.0,
        "multiplier": 125_000.0,
    }  # fmt: skip
    base.update(kw)
    return rc.RiskView(**base)  # type: ignore[arg-type]


def test_a_future_needs_its_initial_margin_not_its_contract_value() -> None:
    """One 6E contract at 1.1000 is worth USD 137,500: more than the 100,000 of cash if
    it had to be paid (a cash-like instrument: INSUFFICIENT_CASH), well within it as a
    future needing 2,310 of initial margin (approved, the margin in the inputs)."""
    paid = rc.decide(intent(), view(), CHECK_CASH, "ACTIVE")
    assert (paid.approved, paid.reason_code) == (False, "INSUFFICIENT_CASH")
    assert paid.inputs["opening_notional"] == pytest.approx(137_500.0)
    margined = rc.decide(intent(), view(initial_margin=2_310.0), CHECK_CASH, "ACTIVE")
    assert (margined.approved, margined.reason_code) == (True, "OK")
    assert margined.inputs["initial_margin"] == 2_310.0
    assert margined.inputs["opening_margin"] == 2_310.0
    assert margined.inputs["opening_notional"] == pytest.approx(137_500.0)


def test_the_margin_an_order_adds_is_checked_against_available_funds() -> None:
    """Adding 2 contracts to a long of 1 needs 2 × 2,310: refused with 4,000 of funds
    (INSUFFICIENT_MARGIN), approved with 5,000 or without check_cash; a flip from +1 to
    -1 adds no margin (the worst case position stays 1) and passes with no funds."""
    held = {"position": 1.0, "initial_margin": 2_310.0}
    refused = rc.decide(intent(quantity=2.0), view(cash=4_000.0, **held), CHECK_CASH, "ACTIVE")
    assert (refused.approved, refused.reason_code) == (False, "INSUFFICIENT_MARGIN")
    assert refused.inputs["opening_margin"] == 4_620.0
    assert "4620.00 > available funds 4000.00" in refused.reason
    enough = rc.decide(intent(quantity=2.0), view(cash=5_000.0, **held), CHECK_CASH, "ACTIVE")
    assert enough.approved
    unchecked = rc.decide(intent(quantity=2.0), view(cash=0.0, **held), rc.Limits(), "ACTIVE")
    assert unchecked.approved
    flip = rc.decide(intent(target_position=-1.0, side=None, quantity=None),
                     view(cash=0.0, **held), CHECK_CASH, "ACTIVE")  # fmt: skip
    assert (flip.approved, flip.inputs["opening_margin"]) == (True, 0.0)
    assert "INSUFFICIENT_MARGIN" in rc.REASON_CODES


def run(closes: list[tuple[float, float]], buys: set[int]) -> list[tuple[str, dict[str, float]]]:
    """The chain on 6EH4 bars ``(open, close)`` a minute apart, with USD 10,000 of cash,
    6E margined at 2,310 and ``check_cash``, zero costs; the gate's (reason code, inputs)
    of each decision."""
    rows = [
        (T0 + (i + 1) * MINUTE_NS, o, max(o, c), min(o, c), c, 1_000.0)
        for i, (o, c) in enumerate(closes)
    ]
    instruments = {"us": {"6E": SIXE}}
    out = run_chain(
        bar_records(rows, "us", "6EH4"),
        [
            StrategyActor(
                StrategyConfig(strategy_id="s"), strategy=Script({n: [("buy", 1.0)] for n in buys})
            )
        ],
        orders=OrderEngineConfig(markets={"us": fl.ZERO_COST}, instruments=instruments),  # type: ignore[arg-type]
        risk=RiskConfig(
            initial_cash={"us": 10_000.0},
            instruments=instruments,  # type: ignore[arg-type]
            limits=parse_limits("[markets.us]\ncheck_cash = true\n"),
        ),
    )
    return [(d.reason_code, d.inputs) for r, d in payloads(out, "risk.") if r.topic != "risk.state"]


def test_the_gate_charges_margin_for_booked_and_open_futures() -> None:
    """Buying a contract a minute with USD 10,000: four are approved (10,000 − 4 × 2,310
    = 760 left, booked positions and the open order alike), the fifth is refused with
    INSUFFICIENT_MARGIN. Before, the gate valued a contract at its full 137,500 and
    refused the first."""
    decisions = run([(1.1, 1.1)] * 6, {1, 2, 3, 4, 5})
    codes = [code for code, _ in decisions]
    assert codes == ["OK", "OK", "OK", "OK", "INSUFFICIENT_MARGIN"]
    funds = [inputs["cash"] for _, inputs in decisions]
    assert funds == pytest.approx([10_000.0, 7_690.0, 5_380.0, 3_070.0, 760.0])


def test_available_funds_count_the_unrealized_pnl_of_futures() -> None:
    """Two contracts bought at 1.1000 and marked at 1.1020 are USD 500 up: the third
    order sees 10,000 + 500 − 2 × 2,310 = 5,880 of funds (the cash moved by no contract
    value)."""
    decisions = run([(1.1, 1.1), (1.1, 1.1), (1.1, 1.102), (1.102, 1.102)], {1, 2, 4})
    assert [code for code, _ in decisions] == ["OK", "OK", "OK"]
    assert decisions[2][1]["cash"] == pytest.approx(5_880.0)
    assert decisions[2][1]["position"] == 2.0
