"""Tests for tickertape.actors.risk.checks: limits file, states and each reason code."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickertape.actors.risk import checks as rc
from tickertape.errors import ConfigError
from tickertape.schemas.strategy import Intent

NOW = 1_704_150_000_000_000_000


def intent(**kw: object) -> Intent:
    base: dict[str, object] = {
        "strategy_id": "s", "intent_id": "s-1", "market": "us", "symbol": "X",
        "side": "buy", "quantity": 1.0,
    }  # fmt: skip
    base.update(kw)
    return Intent(**base)  # type: ignore[arg-type]


def view(**kw: object) -> rc.RiskView:
    base: dict[str, object] = {"now_ns": NOW, "price": 100.0, "last_data_ns": NOW, "cash": 1e9}
    base.update(kw)
    return rc.RiskView(**base)  # type: ignore[arg-type]


NO_LIMITS = rc.Limits()


def test_limits_file_refuses_unknown_keys_and_bad_values() -> None:
    """Unknown keys, unknown markets and out-of-range limits are ConfigErrors."""
    with pytest.raises(ConfigError, match="max_postion"):
        rc.parse_limits("[global]\nmax_postion = 3\n")
    with pytest.raises(ConfigError, match="eu"):
        rc.parse_limits("[markets.eu]\nmax_position = 3\n")
    with pytest.raises(ConfigError, match="max_drawdown"):
        rc.parse_limits("[global]\nmax_drawdown = 1.5\n")
    with pytest.raises(ConfigError, match="TOML"):
        rc.parse_limits("[global\n")


def test_effective_limits_take_the_tightest_scope() -> None:
    """Each field's effective limit is the minimum over global, market and strategy."""
    limits = rc.parse_limits(
        "[global]\nmax_position = 10\nmax_open_orders = 5\n"
        "[markets.us]\nmax_position = 4\n"
        "[strategies.s]\nmax_position = 6\nmax_open_orders = 2\ncheck_cash = true\n"
    )
    eff = rc.effective_limits(limits, "us", "s")
    assert (eff.max_position, eff.max_open_orders, eff.check_cash) == (4.0, 2, True)
    other = rc.effective_limits(limits, "kr", "t")
    assert (other.max_position, other.max_open_orders, other.check_cash) == (10.0, 5, None)


def test_effective_state_is_the_most_restrictive() -> None:
    """HALTED beats REDUCING beats ACTIVE across scopes."""
    states = rc.TradingStates().with_state("market", "us", "REDUCING")
    assert rc.effective_state(states, "us", "s") == "REDUCING"
    assert rc.effective_state(states, "kr", "s") == "ACTIVE"
    states = states.with_state("strategy", "s", "HALTED")
    assert rc.effective_state(states, "us", "s") == "HALTED"
    with pytest.raises(ConfigError):
        states.with_state("market", "eu", "HALTED")


@pytest.mark.parametrize(
    ("limits", "v", "kw", "code"),
    [
        (NO_LIMITS, {}, {"quantity": -1.0}, "INVALID_INTENT"),
        (NO_LIMITS, {}, {"side": None, "quantity": None, "target_position": 0.0}, "NO_CHANGE"),
        (NO_LIMITS, {}, {"action": "cancel", "cancel_order_id": "o9"}, "UNKNOWN_ORDER"),
        (NO_LIMITS, {"clock_drift": True}, {}, "CLOCK_DRIFT"),
        (rc.Limits(max_drawdown=0.1), {"drawdown": 0.1}, {}, "MAX_DRAWDOWN"),
        (
            rc.Limits(stale_after_ms=1000),
            {"last_data_ns": NOW - 2_000_000_000},
            {},
            "STALE_MARKET_DATA",
        ),
        (rc.Limits(stale_after_ms=1000), {"last_data_ns": None}, {}, "STALE_MARKET_DATA"),
        (NO_LIMITS, {"price": None}, {}, "NO_PRICE"),
        (rc.Limits(max_order_notional=99.0), {}, {}, "MAX_ORDER_NOTIONAL"),
        (rc.Limits(max_position=1.0), {"position": 0.5}, {}, "MAX_POSITION"),
        (rc.Limits(max_position=1.0), {"open_buys": 0.5}, {}, "MAX_POSITION"),
        (rc.Limits(max_gross_exposure=150.0), {"gross_exposure": 60.0}, {}, "MAX_GROSS_EXPOSURE"),
        (rc.Limits(max_open_orders=2), {"open_orders": 2}, {}, "MAX_OPEN_ORDERS"),
        (rc.Limits(max_orders_per_minute=3), {"recent_orders": 3}, {}, "ORDER_RATE"),
        (rc.Limits(check_cash=True), {"cash": 99.0}, {}, "INSUFFICIENT_CASH"),
        (rc.Limits(check_cash=True), {"cash": 100.0}, {}, "OK"),
    ],
)
def test_each_check_has_its_reason_code(
    limits: rc.Limits, v: dict[str, object], kw: dict[str, object], code: str
) -> None:
    """Each failing check rejects with its own reason code."""
    decision = rc.decide(intent(**kw), view(**v), limits, "ACTIVE")
    assert decision.reason_code == code
    assert decision.approved is (code == "OK")
    assert (decision.order is not None) is (code == "OK")


def test_target_position_resolves_against_projected_position() -> None:
    """A target becomes the difference from position plus open orders."""
    decision = rc.decide(
        intent(side=None, quantity=None, target_position=-1.0),
        view(position=1.0, open_buys=0.5),
        NO_LIMITS,
        "ACTIVE",
    )
    assert decision.order is not None
    assert (decision.order.side, decision.order.quantity) == ("sell", 2.5)


def test_reducing_orders_skip_exposure_checks() -> None:
    """An order that only reduces the position passes even when limits are breached."""
    tight = rc.Limits(max_drawdown=0.05, max_open_orders=1, max_position=0.1)
    decision = rc.decide(
        intent(side="sell", quantity=1.0),
        view(position=2.0, drawdown=0.5, open_orders=9),
        tight,
        "REDUCING",
    )
    assert decision.approved


def test_cancels_pass_when_halted() -> None:
    """HALTED refuses orders but lets cancels of open orders through."""
    v = view(open_order_ids=frozenset({"o1"}))
    assert rc.decide(intent(), v, NO_LIMITS, "HALTED").reason_code == "HALTED"
    cancel = rc.decide(intent(action="cancel", cancel_order_id="o1"), v, NO_LIMITS, "HALTED")
    assert cancel.approved
    assert cancel.order is not None
    assert cancel.order.cancel_order_id == "o1"


def test_notional_checks_value_contracts_with_the_multiplier() -> None:
    """One 6E contract at 1.1 is USD 137,500: order notional, gross exposure and cash
    checks use quantity × price × multiplier, and the decision records the multiplier."""
    six_e = view(price=1.1, multiplier=125_000.0)
    ok = rc.decide(intent(), six_e, NO_LIMITS, "ACTIVE")
    assert ok.approved
    assert ok.inputs["multiplier"] == 125_000.0
    assert ok.inputs["notional"] == pytest.approx(137_500.0)
    assert ok.inputs["opening_notional"] == pytest.approx(137_500.0)
    notional = rc.Limits(max_order_notional=100_000.0)
    assert rc.decide(intent(), six_e, notional, "ACTIVE").reason_code == "MAX_ORDER_NOTIONAL"
    assert rc.decide(intent(), view(price=1.1), notional, "ACTIVE").approved  # one euro
    assert "multiplier" not in rc.decide(intent(), view(price=1.1), notional, "ACTIVE").inputs
    held = view(price=1.1, multiplier=125_000.0, position=1.0, gross_exposure=137_500.0)
    gross = rc.Limits(max_gross_exposure=200_000.0)
    decision = rc.decide(intent(), held, gross, "ACTIVE")
    assert decision.reason_code == "MAX_GROSS_EXPOSURE"
    assert decision.inputs["gross_exposure_after"] == pytest.approx(275_000.0)
    cash = rc.Limits(check_cash=True)
    poor = view(price=1.1, multiplier=125_000.0, cash=100_000.0)
    assert rc.decide(intent(), poor, cash, "ACTIVE").reason_code == "INSUFFICIENT_CASH"
    assert rc.decide(intent(), view(price=1.1, cash=100_000.0), cash, "ACTIVE").approved


intents = st.builds(
    intent,
    side=st.sampled_from(["buy", "sell"]),
    quantity=st.floats(min_value=0.001, max_value=100.0),
    order_type=st.sampled_from(["market", "limit"]),
    limit_price=st.just(100.0),
)
views = st.builds(
    view,
    position=st.floats(min_value=-10.0, max_value=10.0),
    open_buys=st.floats(min_value=0.0, max_value=5.0),
    open_sells=st.floats(min_value=0.0, max_value=5.0),
    multiplier=st.sampled_from([1.0, 50.0, 125_000.0]),
)


@given(i=intents, v=views)
def test_nothing_approved_while_halted(i: Intent, v: rc.RiskView) -> None:
    """No order intent is approved in the HALTED state."""
    assert not rc.decide(i, v, NO_LIMITS, "HALTED").approved


@given(i=intents, v=views)
def test_reducing_never_increases_exposure(i: Intent, v: rc.RiskView) -> None:
    """In REDUCING, an approved order never increases |projected position| nor flips it."""
    decision = rc.decide(i, v, NO_LIMITS, "REDUCING")
    if decision.approved:
        assert decision.order is not None
        signed = (
            decision.order.quantity if decision.order.side == "buy" else -decision.order.quantity
        )
        after = v.projected + signed
        assert abs(after) <= abs(v.projected) + 1e-9
        assert after == 0.0 or (after > 0) == (v.projected > 0) or abs(after) < 1e-9


@given(i=intents, v=views)
def test_recorded_notional_is_contract_value(i: Intent, v: rc.RiskView) -> None:
    """Whatever the multiplier, the notional a decision records is quantity × price ×
    multiplier, and the multiplier is recorded whenever it is not 1."""
    decision = rc.decide(i, v, NO_LIMITS, "ACTIVE")
    if "notional" in decision.inputs:
        price = decision.inputs["price"]
        quantity = decision.inputs["quantity"]
        assert decision.inputs["notional"] == pytest.approx(quantity * price * v.multiplier)
        assert decision.inputs.get("multiplier", 1.0) == v.multiplier
