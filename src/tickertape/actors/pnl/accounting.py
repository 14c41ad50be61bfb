"""Netting accounts with average cost: positions, cash, fees, equity and drawdown.

Pure values in, values out: a :class:`Ledger` is one book (one strategy, or the
portfolio, in one market and that market's currency); :func:`apply_fill` and
:func:`mark` return a new ledger. The risk gate and the pnl actor both use this
module, so they never disagree on a position.

Conventions (the usual netting/average-cost method, as NautilusTrader's ``NETTING``
OMS and most broker statements):

- a fill in the direction of the position (or from flat) moves the average cost to
  the quantity-weighted mean of the old cost and the fill price;
- a fill against the position realizes ``closed × (price − average_cost)`` (× −1 for
  shorts) and keeps the average cost of what remains; a fill larger than the
  position flips it, the excess opening at the fill price;
- quantities count contracts of ``multiplier`` units of the underlying (1 for
  shares and coins, 125,000 euros for a CME 6E future); prices and average costs are
  per unit of the underlying, so every money amount is multiplied by it: realized
  ``closed × (price − average_cost) × multiplier``, notional
  ``quantity × price × multiplier``;
- ``realized`` is gross of fees; fees are paid out of cash and summed in ``fees``;
- a **cash-like** position (stocks, crypto spot: an instrument without an initial
  margin) is fully funded: cash moves by the fill's notional, buys pay
  ``quantity × price × multiplier + fee``, sells receive
  ``quantity × price × multiplier − fee``, and the position counts in equity at its
  value ``quantity × mark × multiplier``;
- a **margined** position (a future: an instrument with an ``initial_margin``, see
  :mod:`tickertape.actors.orders.instruments`) pays no contract value: cash moves only
  by the PnL the fill realizes and its fee (``cash += realized − fee``, the variation
  margin of the closed part, settled at the close), and the position counts in equity
  at its unrealized PnL ``quantity × (mark − average_cost) × multiplier``. The equity
  is the same either way; the cash is the one a futures account shows, except that
  unrealized PnL is not swept into cash at each daily settlement (there is no
  settlement price in the data). The position ties up ``|quantity| × initial_margin``
  (:func:`initial_margin`), reported, and checked by the risk gate before an order;
  the risk gate calls for margin when equity falls below the maintenance margin
  (``checks.maintenance_requirement``), nothing liquidates;
- a cash-like **short** pays a borrow fee (:func:`borrow_fee`), out of cash and
  counted in ``fees`` (and per symbol in :attr:`PositionState.borrow_fees`);
- a **split** of ratio ``r`` (new shares per old share; < 1 for a reverse split)
  multiplies a position's quantity by ``r`` and divides its average cost and mark by
  ``r``: its value and unrealized PnL do not change (:func:`apply_corporate_action`);
  the fractional shares a split may leave are kept (brokers pay them out as cash in
  lieu);
- a cash **dividend** ``D`` per share, on its ex-date, pays a cash-like position
  ``quantity × D × multiplier`` (a short pays it: the payment in lieu it owes the
  lender), counted as realized PnL (and per symbol in
  :attr:`PositionState.dividends`), and lowers the mark to the ex-dividend price
  ``mark − D``, as the exchange lowers the reference price: the equity does not jump
  until the market prices the stock again;
- ``equity = cash + Σ value`` over positions (the value of each as above); the
  high-water mark is the largest equity seen at any fill or mark (a portfolio book's
  rises with the capital a strategy brings, :func:`add_capital`), and
  ``drawdown = (hwm − equity) / hwm`` (0 when hwm ≤ 0).

A symbol's multiplier, and whether it is margined, are fixed while a position is open:
a fill that changes either is refused (:class:`~tickertape.errors.OrderError`).
"""

from __future__ import annotations

import math

import msgspec

from tickertape.actors.orders.fill_logic import CURRENCY
from tickertape.errors import OrderError
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import CorporateAction
from tickertape.schemas.orders import OrderEvent
from tickertape.schemas.pnl import Book, Position
from tickertape.schemas.strategy import Side


class PositionState(msgspec.Struct, frozen=True, kw_only=True):
    """One symbol's netted position.

    Attributes:
        quantity: signed contracts (> 0 long, < 0 short).
        average_cost: average entry price of the open quantity, per unit of the
            underlying (0.0 when flat).
        realized: realized PnL of this symbol so far, gross of fees.
        mark: last mark price (0.0 until marked or filled).
        multiplier: units of the underlying per contract, from the symbol's fills.
        initial_margin: margin per contract of a margined instrument, in the book's
            currency; 0.0 for a cash-like one (then the position is fully funded).
        maintenance_margin: maintenance margin per contract (0.0 when cash-like).
        borrow_fees: borrow fees paid on this symbol's shorts so far (part of the
            ledger's ``fees``), in the book's currency.
        accrued_ns: the time up to which a cash-like short's borrow fee has been
            charged (0 when the position is no such short).
        dividends: cash dividends received (paid, when short) on this symbol so far,
            part of ``realized``, in the book's currency.
    """

    quantity: float = 0.0
    average_cost: float = 0.0
    realized: float = 0.0
    mark: float = 0.0
    multiplier: float = 1.0
    initial_margin: float = 0.0
    maintenance_margin: float = 0.0
    borrow_fees: float = 0.0
    accrued_ns: int = 0
    dividends: float = 0.0

    @property
    def borrowing(self) -> bool:
        """True for a short of a cash-like instrument (one that pays a borrow fee)."""
        return self.quantity < 0.0 and not self.initial_margin

    @property
    def unrealized(self) -> float:
        """``quantity × (mark − average_cost) × multiplier``."""
        if not self.quantity:
            return 0.0
        return self.quantity * (self.mark - self.average_cost) * self.multiplier


class Ledger(msgspec.Struct, frozen=True, kw_only=True):
    """The accounts of one book in one market.

    Attributes:
        market: ``kr``, ``us`` or ``crypto``.
        currency: the market's currency (KRW, USD, USDT).
        initial_cash: starting capital.
        cash: current cash.
        fees: Σ fees paid (≥ 0).
        realized: Σ realized PnL, gross of fees.
        positions: symbol → position.
        high_water_mark: largest equity seen.
        max_drawdown: largest drawdown seen (fraction).
        fills: number of fills applied.
        traded_notional: Σ |quantity × price × multiplier| of fills.
    """

    market: Market
    currency: str
    initial_cash: float
    cash: float
    fees: float = 0.0
    realized: float = 0.0
    positions: dict[str, PositionState] = msgspec.field(default_factory=dict)
    high_water_mark: float = 0.0
    max_drawdown: float = 0.0
    fills: int = 0
    traded_notional: float = 0.0


def new_ledger(market: Market, initial_cash: float) -> Ledger:
    """An empty book holding ``initial_cash`` in ``market``'s currency."""
    return Ledger(
        market=market,
        currency=CURRENCY[market],
        initial_cash=initial_cash,
        cash=initial_cash,
        high_water_mark=initial_cash,
    )


def position(ledger: Ledger, symbol: str) -> float:
    """Signed quantity held in ``symbol`` (0.0 when none)."""
    state = ledger.positions.get(symbol)
    return state.quantity if state is not None else 0.0


def equity(ledger: Ledger) -> float:
    """``cash + Σ value`` over positions, in the book's currency: the value of a
    cash-like position is ``quantity × mark × multiplier``, of a margined one its
    unrealized PnL (:attr:`PositionState.unrealized`).

    Summed in symbol order, each term computed as ``(quantity × mark) × multiplier``,
    or ``(quantity × (mark − average_cost)) × multiplier``, so the result does not
    depend on insertion order and a reader of a :class:`~tickertape.schemas.pnl.Book`
    who sums its positions the same way gets the same float.
    """
    return _equity(ledger.positions, ledger.cash)


def _equity(positions: dict[str, PositionState], cash: float) -> float:
    total = cash
    for symbol in sorted(positions):
        state = positions[symbol]
        if state.initial_margin:
            total += state.unrealized
        else:
            total += state.quantity * state.mark * state.multiplier
    return total


def unrealized(ledger: Ledger) -> float:
    """Σ unrealized PnL of the open positions."""
    return sum(ledger.positions[s].unrealized for s in sorted(ledger.positions))


def gross_exposure(ledger: Ledger) -> float:
    """Σ |quantity × mark × multiplier| over positions, in the book's currency."""
    return sum(abs(p.quantity * p.mark * p.multiplier) for _, p in sorted(ledger.positions.items()))


def initial_margin(ledger: Ledger) -> float:
    """Σ ``|quantity| × initial_margin`` over the margined positions: the initial
    margin the book's open futures tie up, in its currency (0.0 for a cash-like book)."""
    return sum(abs(p.quantity) * p.initial_margin for _, p in sorted(ledger.positions.items()))


def maintenance_margin(ledger: Ledger) -> float:
    """Σ ``|quantity| × maintenance_margin`` over the margined positions."""
    return sum(abs(p.quantity) * p.maintenance_margin for _, p in sorted(ledger.positions.items()))


def drawdown(ledger: Ledger) -> float:
    """Current drawdown from the high-water mark, as a fraction (0.0 at the mark)."""
    hwm = ledger.high_water_mark
    if hwm <= 0.0:
        return 0.0
    return max((hwm - equity(ledger)) / hwm, 0.0)


def _peaks(ledger: Ledger, positions: dict[str, PositionState], cash: float) -> tuple[float, float]:
    """The high-water mark and maximum drawdown of ``ledger`` once it holds
    ``positions`` and ``cash`` (its equity summed as :func:`equity` does)."""
    eq = _equity(positions, cash)
    hwm = ledger.high_water_mark
    if eq > hwm:
        hwm = eq
    dd = max((hwm - eq) / hwm, 0.0) if hwm > 0.0 else 0.0
    return hwm, dd if dd > ledger.max_drawdown else ledger.max_drawdown


def apply_fill(
    ledger: Ledger,
    symbol: str,
    side: Side,
    quantity: float,
    price: float,
    fee: float,
    multiplier: float = 1.0,
    initial_margin: float = 0.0,
    maintenance_margin: float = 0.0,
    *,
    mark_price: float | None = None,
) -> tuple[Ledger, float]:
    """Book one fill; the symbol is marked at ``mark_price``, else at the fill price.

    Args:
        ledger: the book.
        symbol: the instrument.
        side: ``"buy"`` or ``"sell"``.
        quantity: contracts (shares, coins) filled, > 0.
        price: fill price per unit of the underlying, > 0.
        fee: fee paid, ≥ 0, in the book's currency.
        multiplier: units of the underlying per contract, > 0 (the fill's
            :attr:`~tickertape.schemas.orders.Fill.multiplier`).
        initial_margin: initial margin per contract, in the book's currency: > 0 for a
            margined instrument (a future), 0.0 for a cash-like one (see the module
            docstring for how each moves cash).
        maintenance_margin: maintenance margin per contract, 0.0 ≤ it ≤
            ``initial_margin`` (0.0 when cash-like).
        mark_price: the symbol's mark once the fill is booked (the pnl actor's newest
            market price, per unit of the underlying), or None for the fill price.
            The high-water mark and maximum drawdown move at that mark: a fill price
            off the market (slippage) is no peak of the book.

    Returns:
        The new ledger and the PnL this fill realized (gross of its fee), in the
        book's currency.

    Raises:
        OrderError: ``quantity`` ≤ 0, ``price`` ≤ 0, ``fee`` < 0, ``multiplier`` ≤ 0,
            margins out of range, or a multiplier, or a margined/cash-like kind, other
            than the one of the symbol's open position.
    """
    if not quantity > 0.0 or not price > 0.0 or fee < 0.0 or not multiplier > 0.0:
        raise OrderError(
            f"invalid fill for {symbol}: quantity {quantity}, price {price}, fee {fee}, "
            f"multiplier {multiplier}"
        )
    if not (initial_margin >= 0.0 and 0.0 <= maintenance_margin <= initial_margin):
        raise OrderError(
            f"invalid margins for {symbol}: initial {initial_margin}, "
            f"maintenance {maintenance_margin}"
        )
    signed = quantity if side == "buy" else -quantity
    old = ledger.positions.get(symbol, PositionState())
    q0, cost = old.quantity, old.average_cost
    if q0 != 0.0 and old.multiplier != multiplier:
        raise OrderError(
            f"fill of {symbol} with multiplier {multiplier}, but its open position of "
            f"{q0} was booked with multiplier {old.multiplier}"
        )
    if q0 != 0.0 and (old.initial_margin > 0.0) != (initial_margin > 0.0):
        kinds = ("cash-like", "margined")
        raise OrderError(
            f"{kinds[initial_margin > 0.0]} fill of {symbol}, but its open position of "
            f"{q0} was booked {kinds[old.initial_margin > 0.0]}"
        )
    realized = 0.0
    if q0 == 0.0 or (q0 > 0.0) == (signed > 0.0):
        q1 = q0 + signed
        cost = (abs(q0) * cost + quantity * price) / abs(q1)
    else:
        closed = min(abs(q0), quantity)
        realized = closed * (price - cost) * (1.0 if q0 > 0.0 else -1.0) * multiplier
        q1 = q0 + signed
        if abs(q1) <= 1e-12 * max(abs(q0), quantity):
            q1, cost = 0.0, 0.0
        elif (q1 > 0.0) != (q0 > 0.0):
            cost = price  # flipped: the excess opens at the fill price
    positions = dict(ledger.positions)
    positions[symbol] = PositionState(
        quantity=q1,
        average_cost=cost,
        realized=old.realized + realized,
        mark=price if mark_price is None else mark_price,
        multiplier=multiplier,
        initial_margin=initial_margin,
        maintenance_margin=maintenance_margin,
        borrow_fees=old.borrow_fees,
        accrued_ns=old.accrued_ns,
        dividends=old.dividends,
    )
    notional = quantity * price * multiplier
    if initial_margin > 0.0:
        cash = ledger.cash + realized - fee
    elif side == "buy":
        cash = ledger.cash - notional - fee
    else:
        cash = ledger.cash + notional - fee
    hwm, max_dd = _peaks(ledger, positions, cash)
    updated = msgspec.structs.replace(
        ledger,
        positions=positions,
        cash=cash,
        fees=ledger.fees + fee,
        realized=ledger.realized + realized,
        fills=ledger.fills + 1,
        traded_notional=ledger.traded_notional + notional,
        high_water_mark=hwm,
        max_drawdown=max_dd,
    )
    return updated, realized


def apply_order_fill(
    ledger: Ledger,
    order: OrderEvent,
    margin_rates: tuple[float, float] = (0.0, 0.0),
    *,
    mark_price: float | None = None,
) -> tuple[Ledger, float]:
    """Book the fill an order event carries (:func:`apply_fill` with its fields).

    Args:
        ledger: the book.
        order: an order event with a fill.
        margin_rates: ``(initial, maintenance)`` margin per contract of the
            instrument, ``(0.0, 0.0)`` when cash-like
            (:meth:`~tickertape.actors.orders.instruments.InstrumentTable.margin_rates`).
        mark_price: the symbol's mark once the fill is booked, or None for the fill
            price (as :func:`apply_fill`).

    Raises:
        OrderError: as :func:`apply_fill`, or ``order`` carries no fill.
    """
    fill = order.fill
    if fill is None:
        raise OrderError(f"order {order.order_id} ({order.status}) carries no fill")
    return apply_fill(
        ledger,
        order.symbol,
        order.side,
        fill.quantity,
        fill.price,
        fill.fee,
        fill.multiplier,
        margin_rates[0],
        margin_rates[1],
        mark_price=mark_price,
    )


def add_capital(ledger: Ledger, amount: float) -> Ledger:
    """``ledger`` with ``amount`` (in the book's currency, ≥ 0 by its callers: not
    checked) more cash, initial cash and high-water mark.

    How a portfolio book takes in the capital of a strategy that joins it: new capital
    is neither a gain nor a loss, so the high-water mark rises by the amount the equity
    does, the drawdown in progress keeps its size in money and is measured from then
    on against the larger base (``(hwm − equity) / (hwm + amount)`` with the figures
    before the addition), and the largest drawdown seen so far is kept.
    """
    return msgspec.structs.replace(
        ledger,
        initial_cash=ledger.initial_cash + amount,
        cash=ledger.cash + amount,
        high_water_mark=ledger.high_water_mark + amount,
    )


BORROW_COLLATERAL = 1.02
"""The loan value of borrowed stock as a multiple of its price: the US securities
lending convention of collateral at 102 % of the market value, on which brokers
compute the daily borrow fee ("(price × 1.02) × shares × rate / 360"; e.g. Webull's
and BBAE's published hard-to-borrow fee calculations). The convention's rounding of
the per-share collateral up to a whole dollar is not applied."""

BORROW_YEAR_NS = 360 * 86_400 * 1_000_000_000
"""The year of a borrow rate: 360 days (the ACT/360 money-market convention of those
same calculations: the daily fee is the annual one / 360)."""


def borrow_fee(state: PositionState, rate: float, until_ns: int) -> float:
    """The borrow fee a position owes from its ``accrued_ns`` to ``until_ns``.

    ``|quantity| × mark × multiplier × BORROW_COLLATERAL × rate × elapsed /
    BORROW_YEAR_NS`` for a cash-like short (:attr:`PositionState.borrowing`), 0.0
    otherwise, or when ``accrued_ns`` is 0 (not accruing) or not before ``until_ns``.
    The fee accrues continuously in the clock's time at the position's current mark,
    where brokers charge once a day on the settled position: an intraday short pays
    here for its hours, and a price move counts from the next mark on.

    Args:
        state: the position (its ``mark`` is the price of the period).
        rate: the annual borrow fee rate, a fraction (0.0025 = 0.25 %).
        until_ns: the clock's time, ns.

    Returns:
        The fee, ≥ 0, in the book's currency.
    """
    since = state.accrued_ns
    if not state.borrowing or not since or until_ns <= since or not rate:
        return 0.0
    value = -state.quantity * state.mark * state.multiplier * BORROW_COLLATERAL
    return value * rate * (until_ns - since) / BORROW_YEAR_NS


def accrue_borrow(ledger: Ledger, symbol: str, fee: float, until_ns: int) -> Ledger:
    """Charge ``fee`` (≥ 0) of borrowing ``symbol``, and start its next period at
    ``until_ns``, or where the last one started if that is later (0 when the position
    is no cash-like short: nothing accrues).

    The fee leaves the cash and joins ``fees`` and the position's ``borrow_fees``;
    the high-water mark and maximum drawdown move as after a fill. A book that
    mirrors others (a portfolio) is charged their fees with ``until_ns`` 0.
    """
    state = ledger.positions.get(symbol)
    if state is None:
        return ledger
    accrued = max(until_ns, state.accrued_ns) if state.borrowing else 0
    if not fee and state.accrued_ns == accrued:
        return ledger
    positions = dict(ledger.positions)
    positions[symbol] = msgspec.structs.replace(
        state, borrow_fees=state.borrow_fees + fee, accrued_ns=accrued
    )
    if not fee:
        return msgspec.structs.replace(ledger, positions=positions)
    cash = ledger.cash - fee
    hwm, max_dd = _peaks(ledger, positions, cash)
    return msgspec.structs.replace(
        ledger,
        positions=positions,
        cash=cash,
        fees=ledger.fees + fee,
        high_water_mark=hwm,
        max_drawdown=max_dd,
    )


def corporate_action_problem(action: CorporateAction, currency: str) -> str | None:
    """Why ``action`` cannot be applied to books in ``currency``, or None when it can
    (a split with a finite ratio > 0, a dividend with a finite amount ≥ 0 in that
    currency or none named). Symbol changes and delistings are not applied (a
    position's symbol, or its cash-out price, is not derived from them yet)."""
    what = f"{action.action} of {action.symbol} on {action.ex_date}"
    if action.action == "split":
        ratio = action.ratio
        if ratio is None or not (math.isfinite(ratio) and ratio > 0.0):
            return f"{what}: ratio {ratio}, not a number > 0"
    elif action.action == "dividend":
        amount = action.amount
        if amount is None or not (math.isfinite(amount) and amount >= 0.0):
            return f"{what}: amount {amount}, not a number ≥ 0"
        if action.currency not in (None, currency):
            return f"{what}: in {action.currency}, but the books are in {currency}"
    else:
        return f"{what}: not applied to positions"
    return None


def ex_price(price: float, action: CorporateAction) -> float:
    """``price`` (per share, before ``action``) on the scale after it: divided by a
    split's ratio, less a cash dividend (not below 0.0); unchanged by other actions.
    ``action`` is one :func:`corporate_action_problem` accepts."""
    if action.action == "split":
        return price / float(action.ratio or 1.0)
    if action.action == "dividend":
        return max(price - float(action.amount or 0.0), 0.0)
    return price


def apply_corporate_action(ledger: Ledger, action: CorporateAction) -> Ledger:
    """Apply a split or cash dividend of ``action.symbol`` to the book's position in it.

    A split multiplies the quantity by its ratio and divides the average cost and
    mark by it; a dividend pays ``quantity × amount × multiplier`` into the cash and
    the realized PnL of a cash-like position (a short pays it) and lowers the mark
    to :func:`ex_price` (see the module docstring). The equity does not change, up to
    float rounding; the high-water mark and maximum drawdown move as after a mark.
    A margined position (a future) and a book without the symbol are returned
    unchanged.

    Raises:
        OrderError: an action :func:`corporate_action_problem` refuses for the book's
            currency (symbol changes and delistings included).
    """
    problem = corporate_action_problem(action, ledger.currency)
    if problem is not None:
        raise OrderError(problem)
    state = ledger.positions.get(action.symbol)
    if state is None or state.initial_margin:
        return ledger
    mark_after = ex_price(state.mark, action)
    cash, realized = ledger.cash, ledger.realized
    if action.action == "split":
        ratio = float(action.ratio or 1.0)
        updated = msgspec.structs.replace(
            state,
            quantity=state.quantity * ratio,
            average_cost=state.average_cost / ratio,
            mark=mark_after,
        )
    else:
        income = state.quantity * float(action.amount or 0.0) * state.multiplier
        cash += income
        realized += income
        updated = msgspec.structs.replace(
            state,
            mark=mark_after,
            realized=state.realized + income,
            dividends=state.dividends + income,
        )
    positions = dict(ledger.positions)
    positions[action.symbol] = updated
    hwm, max_dd = _peaks(ledger, positions, cash)
    return msgspec.structs.replace(
        ledger,
        positions=positions,
        cash=cash,
        realized=realized,
        high_water_mark=hwm,
        max_drawdown=max_dd,
    )


def mark(ledger: Ledger, symbol: str, price: float) -> Ledger:
    """Mark ``symbol`` at ``price``; a book without that symbol is returned unchanged.

    The hot path of the pnl actor (every bar or trade of a held symbol): one new
    position, one new ledger (:func:`apply_fill` moves the peaks the same way).
    """
    positions = ledger.positions
    state = positions.get(symbol)
    if state is None or state.mark == price:
        return ledger
    positions = dict(positions)
    positions[symbol] = msgspec.structs.replace(state, mark=price)
    hwm, max_dd = _peaks(ledger, positions, ledger.cash)
    return msgspec.structs.replace(
        ledger, positions=positions, high_water_mark=hwm, max_drawdown=max_dd
    )


def to_book(ledger: Ledger) -> Book:
    """The :class:`~tickertape.schemas.pnl.Book` payload of a ledger (positions sorted)."""
    positions = []
    for symbol, state in sorted(ledger.positions.items()):
        position = Position(
            market=ledger.market,
            symbol=symbol,
            quantity=state.quantity,
            average_cost=state.average_cost,
            mark=state.mark,
            unrealized=state.unrealized,
            realized=state.realized,
        )
        if state.multiplier != 1.0:
            # Left at its default otherwise (msgspec omits a default by identity).
            position = msgspec.structs.replace(position, multiplier=state.multiplier)
        if state.borrow_fees:
            position = msgspec.structs.replace(position, borrow_fees=state.borrow_fees)
        if state.dividends:
            position = msgspec.structs.replace(position, dividends=state.dividends)
        if state.initial_margin and state.quantity:
            position = msgspec.structs.replace(
                position,
                initial_margin=abs(state.quantity) * state.initial_margin,
                maintenance_margin=abs(state.quantity) * state.maintenance_margin,
            )
        positions.append(position)
    return Book(
        market=ledger.market,
        currency=ledger.currency,
        cash=ledger.cash,
        realized=ledger.realized,
        unrealized=unrealized(ledger),
        fees=ledger.fees,
        equity=equity(ledger),
        high_water_mark=ledger.high_water_mark,
        drawdown=drawdown(ledger),
        max_drawdown=ledger.max_drawdown,
        positions=positions,
        fills=ledger.fills,
        initial_cash=ledger.initial_cash,
        traded_notional=ledger.traded_notional,
    )
