"""Tests for tickertape.actors.pnl.accounting: netting, average cost, equity, drawdown."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickertape.actors.pnl import accounting as acc
from tickertape.errors import OrderError


def test_average_cost_and_partial_close() -> None:
    """Adding averages the cost; a partial close realizes against the average."""
    book = acc.new_ledger("us", 10_000.0)
    book, r1 = acc.apply_fill(book, "X", "buy", 10.0, 100.0, 1.0)
    book, r2 = acc.apply_fill(book, "X", "buy", 10.0, 110.0, 1.0)
    assert (r1, r2) == (0.0, 0.0)
    assert book.positions["X"].average_cost == pytest.approx(105.0)
    book, r3 = acc.apply_fill(book, "X", "sell", 5.0, 120.0, 1.0)
    assert r3 == pytest.approx(75.0)
    assert book.positions["X"].quantity == 15.0
    assert book.positions["X"].average_cost == pytest.approx(105.0)
    assert book.cash == pytest.approx(10_000 - 1000 - 1100 + 600 - 3)
    assert book.fees == 3.0
    assert acc.equity(book) == pytest.approx(book.cash + 15 * 120)


def test_flip_opens_excess_at_fill_price() -> None:
    """A sell larger than a long closes it and opens a short at the fill price."""
    book = acc.new_ledger("crypto", 1000.0)
    book, _ = acc.apply_fill(book, "X", "buy", 1.0, 100.0, 0.0)
    book, realized = acc.apply_fill(book, "X", "sell", 3.0, 90.0, 0.0)
    assert realized == pytest.approx(-10.0)
    assert book.positions["X"].quantity == -2.0
    assert book.positions["X"].average_cost == 90.0
    book = acc.mark(book, "X", 80.0)
    assert book.positions["X"].unrealized == pytest.approx(20.0)


def test_short_close_realizes_inverted() -> None:
    """Closing a short below its cost realizes a gain."""
    book = acc.new_ledger("kr", 1_000_000.0)
    book, _ = acc.apply_fill(book, "S", "sell", 10.0, 70_000.0, 0.0)
    book, realized = acc.apply_fill(book, "S", "buy", 10.0, 69_000.0, 0.0)
    assert realized == pytest.approx(10_000.0)
    assert book.positions["S"].quantity == 0.0
    assert book.positions["S"].average_cost == 0.0
    assert book.currency == "KRW"


def test_drawdown_tracks_high_water_mark() -> None:
    """Drawdown is measured from the highest equity seen at any fill or mark."""
    book = acc.new_ledger("us", 1000.0)
    book, _ = acc.apply_fill(book, "X", "buy", 10.0, 10.0, 0.0)
    book = acc.mark(book, "X", 20.0)
    assert book.high_water_mark == pytest.approx(1100.0)
    book = acc.mark(book, "X", 9.0)
    assert acc.drawdown(book) == pytest.approx((1100 - 990) / 1100)
    book = acc.mark(book, "X", 15.0)
    assert book.max_drawdown == pytest.approx((1100 - 990) / 1100)
    assert acc.to_book(book).drawdown == pytest.approx((1100 - 1050) / 1100)


def test_contracts_value_cash_pnl_and_exposure_with_the_multiplier() -> None:
    """Two 6E contracts (125,000 EUR each): cash pays the contract value, a 20-pip move is
    USD 500 unrealized, closing one contract 30 pips up realizes USD 375."""
    book = acc.new_ledger("us", 100_000.0)
    book, realized = acc.apply_fill(book, "6EH4", "buy", 2.0, 1.1, 4.94, 125_000.0)
    assert realized == 0.0
    assert book.cash == pytest.approx(100_000.0 - 275_000.0 - 4.94)
    assert book.traded_notional == pytest.approx(275_000.0)
    assert book.positions["6EH4"].average_cost == 1.1  # a price, per euro
    book = acc.mark(book, "6EH4", 1.102)
    assert book.positions["6EH4"].unrealized == pytest.approx(500.0)
    assert acc.equity(book) == pytest.approx(100_000.0 - 4.94 + 500.0)
    assert acc.gross_exposure(book) == pytest.approx(2 * 1.102 * 125_000.0)
    book, realized = acc.apply_fill(book, "6EH4", "sell", 1.0, 1.103, 2.47, 125_000.0)
    assert realized == pytest.approx(375.0)
    assert book.realized == pytest.approx(375.0)
    assert acc.equity(book) == pytest.approx(100_000.0 + 375.0 + 375.0 - 4.94 - 2.47)
    payload = acc.to_book(book)
    assert payload.positions[0].multiplier == 125_000.0
    assert payload.unrealized == pytest.approx(1 * (1.103 - 1.1) * 125_000.0)


def test_a_fill_with_another_multiplier_than_the_open_position_is_refused() -> None:
    """An open position keeps its multiplier; once flat the symbol may take another."""
    book = acc.new_ledger("us", 100_000.0)
    book, _ = acc.apply_fill(book, "X", "buy", 1.0, 10.0, 0.0, 100.0)
    with pytest.raises(OrderError, match=r"multiplier 1\.0, but its open position"):
        acc.apply_fill(book, "X", "buy", 1.0, 10.0, 0.0)
    book, _ = acc.apply_fill(book, "X", "sell", 1.0, 11.0, 0.0, 100.0)
    assert book.realized == pytest.approx(100.0)
    book, _ = acc.apply_fill(book, "X", "buy", 1.0, 11.0, 0.0)
    assert book.positions["X"].multiplier == 1.0
    with pytest.raises(OrderError, match="multiplier"):
        acc.apply_fill(book, "Y", "buy", 1.0, 1.0, 0.0, 0.0)


def test_invalid_fill_is_refused() -> None:
    """A zero quantity or a negative fee is an OrderError."""
    book = acc.new_ledger("us", 0.0)
    with pytest.raises(OrderError):
        acc.apply_fill(book, "X", "buy", 0.0, 1.0, 0.0)
    with pytest.raises(OrderError):
        acc.apply_fill(book, "X", "buy", 1.0, 1.0, -0.1)


MULTIPLIERS = {"A": 1.0, "B": 50.0, "C": 125_000.0}
"""Contract multipliers of the property tests' symbols (a share, a small and a 6E-sized
contract)."""

fills = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", "C"]),
        st.sampled_from(["buy", "sell"]),
        st.floats(min_value=0.01, max_value=100.0),
        st.floats(min_value=0.5, max_value=500.0),
        st.floats(min_value=0.0, max_value=5.0),
        st.floats(min_value=0.5, max_value=500.0),
    ),
    max_size=40,
)


@given(fills=fills)
def test_equity_identities(fills: list[tuple[str, str, float, float, float, float]]) -> None:
    """equity = cash + Σ qty × mark × multiplier = initial + realized + unrealized − fees;
    fees ≥ 0; with multipliers 1, 50 and 125,000."""
    book = acc.new_ledger("crypto", 10_000.0)
    for symbol, side, qty, price, fee, mark in fills:
        multiplier = MULTIPLIERS[symbol]
        book, _ = acc.apply_fill(book, symbol, side, qty, price, fee, multiplier)  # type: ignore[arg-type]
        book = acc.mark(book, symbol, mark)
        payload = acc.to_book(book)
        total = payload.cash
        for p in payload.positions:  # sorted by symbol, summed left to right
            assert p.multiplier == MULTIPLIERS[p.symbol]
            total += p.quantity * p.mark * p.multiplier
        assert payload.equity == total
        assert payload.equity == pytest.approx(
            payload.initial_cash + payload.realized + payload.unrealized - payload.fees,
            rel=1e-9,
            abs=1e-9 * (payload.initial_cash + payload.traded_notional),
        )
        assert payload.fees >= 0.0
        assert 0.0 <= payload.drawdown <= payload.max_drawdown + 1e-12


@given(
    st.lists(st.floats(min_value=0.5, max_value=2.0), min_size=1, max_size=30),
    st.sampled_from(["buy", "sell"]),
    st.sampled_from([1.0, 125_000.0]),
)
def test_mark_equals_a_fresh_recomputation(
    prices: list[float], side: str, multiplier: float
) -> None:
    """mark's fast path gives, bit for bit, the ledger of re-marking and recomputing equity,
    high-water mark and max drawdown from scratch (two symbols held, one of them with a
    contract multiplier)."""
    book = acc.new_ledger("us", 1_000_000.0)
    book, _ = acc.apply_fill(book, "A", side, 3.0, 1.0, 0.1, multiplier)  # type: ignore[arg-type]
    book, _ = acc.apply_fill(book, "B", "buy", 2.0, 1.5, 0.1)
    for price in prices:
        fast = acc.mark(book, "A", price)
        state = book.positions["A"]
        positions = {**book.positions, "A": acc.PositionState(
            quantity=state.quantity, average_cost=state.average_cost,
            realized=state.realized, mark=price, multiplier=multiplier,
        )}  # fmt: skip
        equity = book.cash  # summed onto cash in symbol order, as acc.equity defines it
        for symbol in ("A", "B"):
            held = positions[symbol]
            equity += held.quantity * held.mark * held.multiplier
        hwm = max(book.high_water_mark, equity)
        drawdown = max((hwm - equity) / hwm, 0.0)
        assert fast.positions == positions
        assert acc.equity(fast) == equity
        assert fast.high_water_mark == hwm
        assert fast.max_drawdown == max(book.max_drawdown, drawdown)
        assert (fast.cash, fast.fees, fast.fills) == (book.cash, book.fees, book.fills)
        book = fast
