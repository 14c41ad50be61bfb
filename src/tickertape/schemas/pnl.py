"""PnL payloads (``pnl.update.{strategy_id}``, ``pnl.update.portfolio``)."""

from __future__ import annotations

import msgspec

from tickertape.schemas.envelope import Market
from tickertape.schemas.registry import register


class Position(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A netted position: signed quantity, average cost and its mark.

    Attributes:
        quantity: signed contracts (shares, coins).
        average_cost, mark: prices per unit of the underlying.
        unrealized: ``quantity × (mark − average_cost) × multiplier``.
        realized: realized PnL of the symbol, gross of fees.
        multiplier: units of the underlying per contract (1 for shares and coins;
            producers leave it unset for 1, and ``omit_defaults`` then leaves it out
            of the JSON, so such positions are written as before the field existed).
        initial_margin: the initial margin this open position ties up,
            ``|quantity| × the instrument's initial margin per contract``, in the
            book's currency; > 0 exactly for an open position in a margined
            instrument (a future), whose value in :attr:`Book.equity` is then its
            ``unrealized``, not ``quantity × mark × multiplier``. Left unset (0.0,
            not written) for cash-like instruments and flat positions.
        maintenance_margin: the maintenance margin of the open position, likewise
            (the risk gate's margin call holds the book's equity against it).
        borrow_fees: borrow fees paid on the symbol's cash-like shorts so far, in
            the book's currency, part of :attr:`Book.fees` (left unset, 0.0, when
            none was paid).
        dividends: cash dividends received on the symbol (paid, on a short) so far, in
            the book's currency, part of ``realized`` (left unset, 0.0, when none).
    """

    market: Market
    symbol: str
    quantity: float
    average_cost: float
    mark: float
    unrealized: float
    realized: float
    multiplier: float = 1.0
    initial_margin: float = 0.0
    maintenance_margin: float = 0.0
    borrow_fees: float = 0.0
    dividends: float = 0.0


class Book(msgspec.Struct, frozen=True, kw_only=True):
    """The accounts of one market, in that market's currency.

    ``equity = cash + Σ value`` over ``positions``, summed in their order, where a
    position's value is ``quantity × mark × multiplier``, or its ``unrealized`` when
    its ``initial_margin`` is > 0 (an open futures position: buying one pays no
    contract value, and ``cash`` moves only by realized PnL and fees);
    ``drawdown = (hwm - equity) / hwm`` as a
    fraction (0.0 at a high-water mark). ``realized`` is gross of fees; fees are
    paid out of ``cash`` and summed in ``fees`` (with the borrow fees of cash-like
    shorts, :attr:`Position.borrow_fees`), so
    ``equity = initial_cash + realized + unrealized - fees`` up to float rounding.
    The margin the book's futures tie up is the sum of its positions'
    ``initial_margin``.

    Attributes:
        initial_cash: the starting capital of the book, in ``currency``.
        traded_notional: Σ |quantity × price × multiplier| of every fill, in
            ``currency``.
        fills: number of fills applied.
    """

    market: Market
    currency: str
    cash: float
    realized: float
    unrealized: float
    fees: float
    equity: float
    high_water_mark: float
    drawdown: float
    max_drawdown: float
    positions: list[Position] = msgspec.field(default_factory=list)
    fills: int = 0
    initial_cash: float = 0.0
    traded_notional: float = 0.0


@register("pnl.update", 1)
class PnlUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """The books of one strategy (``strategy_id``) or of the portfolio (None).

    The pnl actor publishes one update per (scope, market), with the envelope's
    ``market`` set and exactly one :class:`Book` in ``books``.
    """

    strategy_id: str | None
    books: list[Book]
