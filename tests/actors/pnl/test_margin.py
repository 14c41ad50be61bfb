"""Margined (futures) positions in the books: cash moves by realized PnL and fees only,
equity counts unrealized PnL, the margin is reported; cash-like positions unchanged."""

from __future__ import annotations

import tomllib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.actors.orders.harness import REPO
from tests.actors.pnl.test_chain_properties import summed_equity
from tickertape.actors.pnl import accounting as acc
from tickertape.actors.runtime.resolution import resolve_package
from tickertape.errors import OrderError

SIXE = 125_000.0
RATES = (2_310.0, 2_100.0)
"""Initial and maintenance margin per 6E contract of these tests, USD."""


def test_a_futures_round_trip_moves_cash_by_realized_pnl_and_fees_only() -> None:
    """Buy 2 6E at 1.1000 (fee 4.94): cash loses only the fee, equity is cash + the
    unrealized PnL, 2 × 2,310 of initial margin is tied up. A 20-pip rise is USD 500
    unrealized; selling 1 at 1.1030 realizes 375 into cash (fee 2.47)."""
    book = acc.new_ledger("us", 100_000.0)
    book, realized = acc.apply_fill(book, "6EH4", "buy", 2.0, 1.1, 4.94, SIXE, *RATES)
    assert realized == 0.0
    assert book.cash == 100_000.0 - 4.94
    assert acc.equity(book) == book.cash  # marked at its cost: nothing unrealized
    assert acc.initial_margin(book) == 4_620.0
    assert acc.maintenance_margin(book) == 4_200.0
    assert acc.gross_exposure(book) == pytest.approx(275_000.0)  # exposure is notional
    assert book.traded_notional == pytest.approx(275_000.0)
    book = acc.mark(book, "6EH4", 1.102)
    assert acc.equity(book) == pytest.approx(100_000.0 - 4.94 + 500.0)
    book, realized = acc.apply_fill(book, "6EH4", "sell", 1.0, 1.103, 2.47, SIXE, *RATES)
    assert realized == pytest.approx(375.0)
    assert book.cash == pytest.approx(100_000.0 - 4.94 + 375.0 - 2.47)
    assert acc.initial_margin(book) == 2_310.0
    payload = acc.to_book(book)
    (position,) = payload.positions
    assert (position.initial_margin, position.maintenance_margin) == (2_310.0, 2_100.0)
    assert payload.equity == payload.cash + position.unrealized


def test_flat_and_cash_like_positions_carry_no_margin_and_write_as_before() -> None:
    """A flat futures position and a share position leave the margin fields out of the
    JSON (their defaults), so books without open futures are encoded as before."""
    book = acc.new_ledger("us", 100_000.0)
    book, _ = acc.apply_fill(book, "6EH4", "buy", 1.0, 1.1, 0.0, SIXE, *RATES)
    book, _ = acc.apply_fill(book, "6EH4", "sell", 1.0, 1.1, 0.0, SIXE, *RATES)
    book, _ = acc.apply_fill(book, "AAPL", "buy", 1.0, 190.0, 0.0)
    encoded = msgspec.json.encode(acc.to_book(book))
    assert b"margin" not in encoded
    assert acc.initial_margin(book) == 0.0


def test_the_margined_kind_of_an_open_position_is_fixed() -> None:
    """An open futures position refuses a cash-like fill of the same symbol and the other
    way round; bad margins are refused; once flat, the symbol may change kind."""
    book = acc.new_ledger("us", 100_000.0)
    book, _ = acc.apply_fill(book, "X", "buy", 1.0, 10.0, 0.0, 1.0, 5.0, 4.0)
    with pytest.raises(OrderError, match="cash-like fill of X"):
        acc.apply_fill(book, "X", "buy", 1.0, 10.0, 0.0)
    book, _ = acc.apply_fill(book, "X", "sell", 1.0, 10.0, 0.0, 1.0, 5.0, 4.0)
    book, _ = acc.apply_fill(book, "X", "buy", 1.0, 10.0, 0.0)
    with pytest.raises(OrderError, match="margined fill of X"):
        acc.apply_fill(book, "X", "buy", 1.0, 10.0, 0.0, 1.0, 5.0, 4.0)
    with pytest.raises(OrderError, match="invalid margins"):
        acc.apply_fill(book, "Y", "buy", 1.0, 10.0, 0.0, 1.0, 5.0, 6.0)
    with pytest.raises(OrderError, match="invalid margins"):
        acc.apply_fill(book, "Y", "buy", 1.0, 10.0, 0.0, 1.0, -1.0, 0.0)


def test_capital_added_is_neither_a_gain_nor_a_loss() -> None:
    """add_capital raises cash, initial cash and high-water mark by the amount: the
    equity rises as much, the drawdown in progress keeps its size in money against the
    larger base, the largest drawdown seen is kept."""
    book = acc.new_ledger("us", 1_000.0)
    book, _ = acc.apply_fill(book, "X", "buy", 10.0, 10.0, 0.0)
    book = acc.mark(book, "X", 5.0)  # equity 950, hwm 1,000: 5 % down
    grown = acc.add_capital(book, 1_000.0)
    assert (grown.cash, grown.initial_cash, grown.high_water_mark) == (1_900.0, 2_000.0, 2_000.0)
    assert acc.equity(grown) == acc.equity(book) + 1_000.0
    assert acc.drawdown(grown) == pytest.approx(50.0 / 2_000.0)
    assert grown.max_drawdown == book.max_drawdown == pytest.approx(0.05)


fills = st.lists(
    st.tuples(
        st.sampled_from(["buy", "sell"]),
        st.floats(min_value=1.0, max_value=20.0),
        st.floats(min_value=0.9, max_value=1.3),
        st.floats(min_value=0.0, max_value=5.0),
        st.floats(min_value=0.9, max_value=1.3),
    ),
    max_size=40,
)


@given(fills=fills)
def test_margined_and_fully_funded_books_agree_on_everything_but_cash(
    fills: list[tuple[str, float, float, float, float]],
) -> None:
    """The same fills and marks booked margined and fully funded: the same positions,
    realized PnL, fees and (up to rounding) equity, high-water mark and drawdown; the
    margined cash is initial + realized − fees, and every published book satisfies
    equity = cash + Σ value exactly (unrealized for futures)."""
    margined = acc.new_ledger("us", 100_000.0)
    funded = acc.new_ledger("us", 100_000.0)
    for side, quantity, price, fee, mark in fills:
        margined, r1 = acc.apply_fill(margined, "6EH4", side, quantity, price, fee, SIXE, *RATES)  # type: ignore[arg-type]
        funded, r2 = acc.apply_fill(funded, "6EH4", side, quantity, price, fee, SIXE)  # type: ignore[arg-type]
        assert r1 == r2
        margined = acc.mark(margined, "6EH4", mark)
        funded = acc.mark(funded, "6EH4", mark)
        scale = 1e-9 * (margined.initial_cash + margined.traded_notional)
        assert margined.realized == funded.realized
        assert margined.fees == funded.fees
        assert margined.cash == pytest.approx(
            margined.initial_cash + margined.realized - margined.fees, abs=scale
        )
        assert acc.equity(margined) == pytest.approx(acc.equity(funded), abs=scale)
        assert margined.high_water_mark == pytest.approx(funded.high_water_mark, abs=scale)
        assert margined.max_drawdown == pytest.approx(funded.max_drawdown, abs=1e-9)
        held = margined.positions["6EH4"]
        assert acc.initial_margin(margined) == abs(held.quantity) * RATES[0]
        payload = acc.to_book(margined)
        assert payload.equity == summed_equity(payload)


def test_the_examples_give_pnl_and_risk_the_engines_margins() -> None:
    """examples/actors/pnl.toml and risk.toml carry the same 6E margins as orders.toml (the
    pnl actor and the gate must book and check futures alike), and the pnl configuration
    builds an actor that books 6EH4 as margined and crypto spot as cash-like."""
    actors = REPO / "examples" / "actors"
    sections = {
        name: tomllib.loads((actors / f"{name}.toml").read_text())["instruments"]
        for name in ("orders", "risk", "pnl")
    }
    for name in ("risk", "pnl"):
        for market, table in sections["orders"].items():
            for key, spec in table.items():
                theirs = sections[name][market][key]
                assert (theirs["initial_margin"], theirs["maintenance_margin"]) == (
                    spec["initial_margin"],
                    spec["maintenance_margin"],
                ), name
    pnl = resolve_package("pnl", actors / "pnl.toml").actor
    assert pnl.instruments.margin_rates("us", "6EH4") == (2_310.0, 2_100.0)  # type: ignore[attr-defined]
    assert pnl.instruments.margin_rates("crypto", "BTCUSDT") == (0.0, 0.0)  # type: ignore[attr-defined]
