"""Run reports: performance figures per strategy and market from the events of a run.

Pure: :func:`build_report` takes ``(topic, ts_event, payload)`` triples of
``pnl.update.*`` and ``order.*`` events (in log order) and returns a :class:`Report`;
``tape report`` feeds it from the log reader and renders it.

Definitions (per book: a strategy, or the portfolio, in one market's currency):

- **total return**: ``final equity / initial cash − 1``.
- **annualized Sharpe**: mean / standard deviation (ddof = 1) of daily returns,
  × √252 for ``kr`` and ``us`` (trading days) and × √365 for ``crypto`` (every day);
  daily returns come from the last equity of each UTC day, the initial cash opening
  the series; risk-free rate 0 (Sharpe, 1994, "The Sharpe Ratio", with the usual
  √periods annualization). None with fewer than two returns or zero variance.
- **max drawdown**: the largest ``(hwm − equity) / hwm`` the pnl actor saw.
- **trades**: number of fills. **Round trips**: a position going from flat back to
  flat (a flip closes one and opens the next); **win rate**: share of round trips
  whose realized PnL minus the fees of their fills is > 0 (the fee of a flipping
  fill counts against the round trip it closes).
- **fees**: Σ fees. **turnover**: Σ |fill notional| / initial cash.
- **PnL**: ``final equity − initial cash``, net of fees, in the book's currency.
- **orders**: orders the engine submitted for the book (``order.submitted.*``).
- **events**: input events of the book's market the run replayed (market data read
  from the source namespace), and **events/s** those per second of the run's wall
  time; both come from outside the run's events (the log holds simulated time only),
  so the caller passes them in, and they are None when unknown.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from tickertape.actors.pnl import accounting
from tickertape.schemas.envelope import Market
from tickertape.schemas.orders import OrderEvent
from tickertape.schemas.pnl import Book, PnlUpdate

_DAY_NS = 86_400_000_000_000
PERIODS_PER_YEAR: dict[str, int] = {"kr": 252, "us": 252, "crypto": 365}
"""Annualization periods of daily returns: trading days for exchanges, all days for crypto."""


class ReportRow(msgspec.Struct, frozen=True, kw_only=True):
    """Figures of one book (see the module docstring for definitions)."""

    scope: str
    market: str
    currency: str
    events: int | None
    events_per_s: float | None
    orders: int
    initial_cash: float
    final_equity: float
    pnl: float
    total_return: float
    sharpe: float | None
    max_drawdown: float
    trades: int
    round_trips: int
    win_rate: float | None
    fees: float
    turnover: float
    traded_notional: float


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """Rows sorted by (scope, market), portfolio last; equity curves per ``scope:market``."""

    rows: list[ReportRow]
    curves: dict[str, list[tuple[int, float]]]


class _RoundTrips:
    __slots__ = ("closed", "ledger", "pnl", "wins")

    def __init__(self, ledger: accounting.Ledger) -> None:
        self.ledger = ledger
        self.pnl: dict[str, float] = {}
        self.closed = 0
        self.wins = 0

    def fill(self, order: OrderEvent) -> None:
        fill = order.fill
        assert fill is not None
        before = accounting.position(self.ledger, order.symbol)
        self.ledger, realized = accounting.apply_order_fill(self.ledger, order)
        after = accounting.position(self.ledger, order.symbol)
        running = self.pnl.get(order.symbol, 0.0) + realized - fill.fee
        if before != 0.0 and (after == 0.0 or (after > 0.0) != (before > 0.0)):
            self.closed += 1
            self.wins += running > 0.0
            running = 0.0
        self.pnl[order.symbol] = running


def sharpe_ratio(curve: list[tuple[int, float]], initial: float, market: str) -> float | None:
    """Annualized Sharpe of an equity curve's daily returns (see the module docstring)."""
    days: dict[int, float] = {}
    for ts, equity in curve:
        days[ts // _DAY_NS] = equity
    values = [initial] + [days[d] for d in sorted(days)]
    returns = [b / a - 1.0 for a, b in itertools.pairwise(values) if a != 0.0]
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    if var <= 0.0:
        return None
    return mean / math.sqrt(var) * math.sqrt(PERIODS_PER_YEAR.get(market, 252))


def build_report(
    events: Iterable[tuple[str, int, Any]],
    *,
    market_events: Mapping[Market, int] | None = None,
    wall_seconds: float | None = None,
) -> Report:
    """Compute the report of a run.

    Args:
        events: ``(topic, ts_event, payload)`` of the run's ``pnl.update.*`` and
            ``order.*`` events, in log order; other payloads are ignored.
        market_events: input events replayed per market (``{"us": 29996}``), or None
            when unknown; a market missing from it had none. A market with events and
            no book gets an empty portfolio row, so every market replayed is listed.
        wall_seconds: the run's wall time in seconds, or None when unknown.

    Returns:
        One row per (scope, market) with a pnl update or a submitted order, strategies
        sorted by id, then the portfolio books. A book with orders but no pnl update
        (nothing filled) shows zero cash figures.
    """
    last: dict[str, Book] = {}
    curves: dict[str, list[tuple[int, float]]] = {}
    trips: dict[str, _RoundTrips] = {}
    orders: dict[str, int] = {}
    unfilled: dict[str, Book] = {}  # books with orders (or events) and no fill: empty
    for _topic, ts, payload in events:
        if isinstance(payload, PnlUpdate):
            scope = payload.strategy_id if payload.strategy_id is not None else "portfolio"
            for book in payload.books:
                key = f"{scope}:{book.market}"
                last[key] = book
                curves.setdefault(key, []).append((ts, book.equity))
        elif isinstance(payload, OrderEvent):
            if payload.status == "submitted":
                for scope in (payload.strategy_id, "portfolio"):
                    key = f"{scope}:{payload.market}"
                    orders[key] = orders.get(key, 0) + 1
                    if key not in unfilled:
                        unfilled[key] = accounting.to_book(
                            accounting.new_ledger(payload.market, 0.0)
                        )
            if payload.fill is not None:
                for scope in (payload.strategy_id, "portfolio"):
                    key = f"{scope}:{payload.market}"
                    if key not in trips:
                        trips[key] = _RoundTrips(accounting.new_ledger(payload.market, 0.0))
                    trips[key].fill(payload)
    for replayed in market_events or {}:
        key = f"portfolio:{replayed}"
        if key not in last and key not in unfilled:
            unfilled[key] = accounting.to_book(accounting.new_ledger(replayed, 0.0))
    rows = []
    for key in sorted(last.keys() | unfilled.keys(), key=lambda k: (k.startswith("portfolio:"), k)):
        scope, _, market = key.rpartition(":")
        book = last.get(key) or unfilled[key]
        rt = trips.get(key)
        initial = book.initial_cash
        events_seen = None if market_events is None else market_events.get(book.market, 0)
        rate = None
        if events_seen is not None and wall_seconds is not None and wall_seconds > 0.0:
            rate = events_seen / wall_seconds
        rows.append(
            ReportRow(
                scope=scope,
                market=market,
                currency=book.currency,
                events=events_seen,
                events_per_s=rate,
                orders=orders.get(key, 0),
                initial_cash=initial,
                final_equity=book.equity,
                pnl=book.equity - initial,
                total_return=book.equity / initial - 1.0 if initial else 0.0,
                sharpe=sharpe_ratio(curves[key], initial, market) if initial else None,
                max_drawdown=book.max_drawdown,
                trades=book.fills,
                round_trips=rt.closed if rt else 0,
                win_rate=(rt.wins / rt.closed) if rt and rt.closed else None,
                fees=book.fees,
                turnover=book.traded_notional / initial if initial else 0.0,
                traded_notional=book.traded_notional,
            )
        )
    return Report(rows=rows, curves={k: curves[k] for k in sorted(curves)})
