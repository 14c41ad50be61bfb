"""Run reports: performance figures per strategy and market from the events of a run.

Pure: :func:`build_report` takes ``(topic, ts_event, payload)`` triples of
``pnl.update.*`` and ``order.*`` events (in log order) and returns a :class:`Report`;
``tape report`` feeds it from the log reader and renders it.

Definitions (per book: a strategy, or the portfolio, in one market's currency). A
book's **capital** is its initial cash at the end of the run: a strategy's
configured cash, and for a portfolio the sum of its strategies' (the pnl actor adds a
strategy's cash to the portfolio book when that strategy first fills, so the
portfolio's ``initial_cash`` grows during a run).

- **total return**: ``final equity / capital − 1``.
- **annualized Sharpe**: ``mean / standard deviation (ddof = 1) × √365`` of the book's
  daily returns, risk-free rate 0: Sharpe (1994), "The Sharpe Ratio", Journal of
  Portfolio Management 21(1), the ratio of the mean to the standard deviation of
  the differential return, annualized by √(periods per year) as that paper does for
  returns that are independent over time. The benchmark is the book's own idle
  cash, which earns nothing in the accounting, hence 0.

  The returns are sampled on every UTC calendar day of the market's window (from the
  day of the first to the day of the last pnl update of any book of that market in
  the run), so 365 periods per year for every market: a day without an update (a
  weekend, a holiday) is a zero return, as the book's value did not move, and the
  √365 of calendar days then matches the √252 of trading days for an exchange
  closed at weekends (365 × 5/7 ≈ 261) without a calendar per venue. Every book of a
  market shares the window, so a strategy that starts trading later holds its cash
  (zero returns) until then. A day's value is ``equity + capital − initial_cash``
  of the book's last update at or before the day's end (the capital before the first
  update, which also opens the series): for a strategy that is its equity; for a
  portfolio it counts the cash of the strategies that have not traded yet as held
  idle from the start, so the portfolio's value is the sum of its strategies' values
  and a strategy's arrival is not a return. The daily returns compound to the total
  return.

  Daily, not per bar: the √periods rule assumes independent returns (Lo, 2002, "The
  Statistics of Sharpe Ratios", Financial Analysts Journal 58(4)), which 1-minute
  returns are not (bid-ask bounce, intraday seasonality). A run of one month gives
  about 30 daily returns, and the figure is then an extrapolation with a large
  standard error: about ``√((1 + SR_d² / 2) / T) × √365`` for ``T`` daily returns
  and a daily ratio ``SR_d`` (Lo, 2002), ±3.4 for ``T = 31`` near zero and ±4.7
  near −25. None with fewer than two returns, zero variance, zero capital, or a
  value ≤ 0 at a day's close (the book was wiped out: later returns are undefined).
- **max drawdown**: the largest ``(hwm − equity) / hwm`` the pnl actor saw.
- **trades**: number of fills. **Round trips**: a strategy's position in a symbol
  going from flat back to flat (a flip closes one and opens the next); **win rate**:
  share of round trips whose realized PnL minus the fees of their fills is > 0 (the
  fee of a flipping fill counts against the round trip it closes). A portfolio row
  sums its strategies' round trips and wins: the portfolio nets its strategies'
  positions, and its net position also goes flat when one strategy's position
  offsets another's, a "round trip" no strategy traded.
- **fees**: Σ fees. **turnover**: Σ |fill notional| / capital.
- **PnL**: ``final equity − capital``, net of fees, in the book's currency.
- **orders**: orders the engine submitted for the book (``order.submitted.*``).
- **events**: input events of the book's market the run replayed (market data read
  from the source namespace), and **events/s** those per second of the run's wall
  time. The wall time is that of the whole run (every market, every actor), so the
  rates of a run's markets add up to its throughput; a strategy row shows its
  market's figures, not what that strategy consumed. Both come from outside the
  run's events (the log holds simulated time only), so the caller passes them in,
  and they are None when unknown.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from tickertape.actors.pnl import accounting
from tickertape.schemas.envelope import Market
from tickertape.schemas.orders import OrderEvent
from tickertape.schemas.pnl import Book, PnlUpdate

DAY_NS = 86_400_000_000_000
"""One UTC day in nanoseconds: day ``d`` holds ``d × DAY_NS ≤ ts_event < (d + 1) × DAY_NS``."""
DAYS_PER_YEAR = 365
"""Annualization periods of the daily returns: calendar days, for every market."""


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
    """Rows sorted by (scope, market), portfolio last; equity curves per ``scope:market``.

    A curve is the ``(ts_event ns, equity)`` of every update of the book, as the pnl
    actor published it (a portfolio's equity steps up when a strategy's cash joins it).
    """

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


def daily_values(
    updates: Sequence[tuple[int, float, float]], capital: float, first_day: int, last_day: int
) -> list[float]:
    """A book's value at the end of each UTC day, on constant capital.

    Args:
        updates: ``(ts_event ns, equity, initial_cash)`` of the book's pnl updates, in
            log order (``ts_event`` never decreasing).
        capital: the book's capital (its ``initial_cash`` at the end of the run).
        first_day, last_day: the window, as UTC day numbers (``ts_event // DAY_NS``),
            both included; every update must fall inside it.

    Returns:
        ``last_day − first_day + 1`` values, one per day: ``equity + capital −
        initial_cash`` of the last update at or before the end of the day, or
        ``capital`` before the first update (see the module docstring).

    Raises:
        ValueError: ``last_day < first_day``, a ``ts_event`` smaller than the one
            before it, or an update outside the window.
    """
    if last_day < first_day:
        raise ValueError(f"empty window: last day {last_day} < first day {first_day}")
    values: list[float] = []
    value = capital
    day = first_day
    previous_ts: int | None = None
    for i, (ts, equity, initial_cash) in enumerate(updates):
        if previous_ts is not None and ts < previous_ts:
            raise ValueError(
                f"update {i} has ts_event {ts} < {previous_ts} of the update before it"
            )
        previous_ts = ts
        if not first_day <= ts // DAY_NS <= last_day:
            raise ValueError(
                f"update {i} (ts_event {ts}, day {ts // DAY_NS}) is outside the window "
                f"of days {first_day}..{last_day}"
            )
        while day < ts // DAY_NS:  # close the days before this update
            values.append(value)
            day += 1
        value = equity + capital - initial_cash
    values.extend(value for _ in range(day, last_day + 1))
    return values


def sharpe_ratio(
    values: Sequence[float], capital: float, periods_per_year: float = DAYS_PER_YEAR
) -> float | None:
    """Annualized Sharpe ratio of a value series, risk-free rate 0.

    The returns are ``values[0] / capital − 1``, then ``values[i] / values[i − 1] − 1``;
    the ratio is their mean over their standard deviation (ddof = 1) × √periods_per_year
    (Sharpe, 1994; see the module docstring for the sampling and its limits).

    Args:
        values: the book's value at the end of each period (:func:`daily_values`).
        capital: the value before the first period, > 0.
        periods_per_year: periods in a year (365 for calendar days), > 0.

    Returns:
        The ratio, or None with fewer than two returns, returns of zero variance, or
        a value ≤ 0 at the end of any period, the last included (the book was wiped
        out; a return on such a value is undefined).

    Raises:
        ValueError: ``capital`` ≤ 0 or ``periods_per_year`` ≤ 0.
    """
    if not capital > 0.0:
        raise ValueError(f"capital must be > 0, got {capital}")
    if not periods_per_year > 0.0:
        raise ValueError(f"periods_per_year must be > 0, got {periods_per_year}")
    if len(values) < 2 or min(values) <= 0.0:
        return None
    bases = [capital, *values[:-1]]
    returns = [value / base - 1.0 for base, value in zip(bases, values, strict=True)]
    deviation = statistics.stdev(returns)  # exact arithmetic: 0.0 for a constant series
    if deviation == 0.0:
        return None
    return statistics.fmean(returns) / deviation * math.sqrt(periods_per_year)


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

    Raises:
        ValueError: a book's pnl updates go back in time (not in log order).
    """
    last: dict[str, Book] = {}
    updates: dict[str, list[tuple[int, float, float]]] = {}
    trips: dict[str, _RoundTrips] = {}
    orders: dict[str, int] = {}
    unfilled: dict[str, Book] = {}  # books with orders (or events) and no fill: empty
    for _topic, ts, payload in events:
        if isinstance(payload, PnlUpdate):
            scope = payload.strategy_id if payload.strategy_id is not None else "portfolio"
            for book in payload.books:
                key = f"{scope}:{book.market}"
                last[key] = book
                updates.setdefault(key, []).append((ts, book.equity, book.initial_cash))
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
                key = f"{payload.strategy_id}:{payload.market}"
                if key not in trips:
                    trips[key] = _RoundTrips(accounting.new_ledger(payload.market, 0.0))
                trips[key].fill(payload)
    for replayed in market_events or {}:
        key = f"portfolio:{replayed}"
        if key not in last and key not in unfilled:
            unfilled[key] = accounting.to_book(accounting.new_ledger(replayed, 0.0))
    windows: dict[str, tuple[int, int]] = {}  # market -> (first day, last day)
    for key, points in updates.items():
        market = key.rpartition(":")[2]
        first, end = points[0][0] // DAY_NS, points[-1][0] // DAY_NS
        if market in windows:
            first, end = min(first, windows[market][0]), max(end, windows[market][1])
        windows[market] = (first, end)
    rows = []
    for key in sorted(last.keys() | unfilled.keys(), key=lambda k: (k.startswith("portfolio:"), k)):
        scope, _, market = key.rpartition(":")
        book = last.get(key) or unfilled[key]
        if scope == "portfolio":
            books = [t for k, t in trips.items() if k.rpartition(":")[2] == market]
        else:
            books = [trips[key]] if key in trips else []
        closed = sum(t.closed for t in books)
        wins = sum(t.wins for t in books)
        initial = book.initial_cash
        sharpe = None
        if initial > 0.0 and key in updates:
            sharpe = sharpe_ratio(daily_values(updates[key], initial, *windows[market]), initial)
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
                sharpe=sharpe,
                max_drawdown=book.max_drawdown,
                trades=book.fills,
                round_trips=closed,
                win_rate=wins / closed if closed else None,
                fees=book.fees,
                turnover=book.traded_notional / initial if initial else 0.0,
                traded_notional=book.traded_notional,
            )
        )
    curves = {k: [(ts, equity) for ts, equity, _ in updates[k]] for k in sorted(updates)}
    return Report(rows=rows, curves=curves)
