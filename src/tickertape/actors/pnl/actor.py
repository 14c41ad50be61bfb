"""The pnl actor: keeps the books per strategy and for the portfolio, per market.

Consumes fills (``order.partially_filled.*``, ``order.filled.*``, through ``order.>``)
and marks (``md.trade.>`` prices, raw ``md.bar`` closes: ``md.bar.>``, or
``md.bar.{interval}.>`` per configured interval). Publishes
:class:`~tickertape.schemas.pnl.PnlUpdate` on ``pnl.update.{strategy_id}`` and
``pnl.update.portfolio``, one event per (book, market) with the envelope's market
set: on every fill (for the strategy and the portfolio of that market), and for
books whose marks changed at most once per ``update_interval_ns`` of the clock
(timer ``publish``, due on multiples of the interval since the epoch, so a restart
keeps the schedule). The timer is armed only while a book waits for its update: a
quiet market (a weekend, the months between two datasets) costs no timer steps, and
the updates are the ones a timer firing every interval would publish.

Marks are market prices in the units fills are in: a bar with ``adjusted`` set (the
forward-adjusted copies on ``md.bar.{interval}-adj.*``) never marks a book, as raw
fill prices and adjusted marks would mix (DESIGN §9: a position bought before a 7:1
split would be worth 7 times its value after it).

One mark per instrument: every book holding a symbol (each strategy's, and the
portfolio's of its market) is marked at the same price at the same time, the
instrument's last market price (the newer of its last trade price and raw bar close,
kept per market and symbol). A fill is booked at its price and its books are then
marked at that market price: a fill price carries the fill's slippage (a bar's open
plus slippage, under the next-bar-open rule), so it is not the market's price, and
it re-marks no book (one strategy's slippage never moves another's equity, nor makes a
high-water mark). Only a symbol without any market price yet is marked at its fill
price, in every book holding it (those books then wait for their next publish tick like
any re-marked book). The portfolio's equity is therefore the sum of its strategies' at
every moment.

Futures: instruments configured with an ``initial_margin`` (``[instruments]``, the
order engine's and risk gate's section) are booked as margined positions (see
:mod:`tickertape.actors.pnl.accounting`); without the section every instrument is
booked fully funded, which gives the same equity, PnL and drawdown but not a futures
account's cash.

Borrow fees: a strategy's short of a cash-like instrument pays
:func:`~tickertape.actors.pnl.accounting.borrow_fee` at the instrument's
``borrow_rate`` (else the market's ``borrow_rates``), charged at each new mark of the
symbol and before each of its fills, for the time since the last charge at the mark
of that time, and at the stop; the portfolio is charged what its strategies are (not
its net position's fee), so it stays their sum. A charge runs to the ``ts_event`` of
the price, fill or action that calls for it, not to the clock (live, the clock is a few
milliseconds later, and a restart catching up on the log would charge other amounts
than it published), and never back (events of different topics need not come in time
order).

Corporate actions (``md.corporate_action.>``, at their ex-date's session open): a
split or cash dividend of a symbol is applied to every book holding it
(:func:`~tickertape.actors.pnl.accounting.apply_corporate_action`: a split multiplies
the quantity and divides the cost and mark by its ratio; a dividend pays
``quantity × amount`` into cash and realized PnL and marks the symbol ex-dividend), and
to the symbol's last market price, after the borrow fees due at the old mark are
charged: prices stay raw, as fills are, and positions follow them. Symbol changes and
delistings are not applied (logged). A changed book waits for its publish tick, as after
a mark.

On a clean stop (the end of a replay, a stopped process), every book still waiting for
its update is published: each book's last update is its final state.

Fills count only from the order engine's identity (``orders_source``): an
``order.*`` event from anyone else (a strategy that managed to publish one) is ignored,
counted and logged as an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import msgspec

from tickertape.actors.base import Actor, Context, Event, Timer
from tickertape.actors.orders.fill_logic import CURRENCY
from tickertape.actors.orders.instruments import InstrumentsConfig, load_instruments
from tickertape.actors.pnl import accounting
from tickertape.errors import ConfigError
from tickertape.schemas.envelope import MARKETS, Market
from tickertape.schemas.market import Bar, CorporateAction, Trade
from tickertape.schemas.orders import OrderEvent
from tickertape.schemas.pnl import PnlUpdate

DEFAULT_INITIAL_CASH: dict[Market, float] = {
    "kr": 100_000_000.0,
    "us": 100_000.0,
    "crypto": 100_000.0,
}
"""Starting capital per market when none is configured (KRW 100 M, USD 100 k, USDT 100 k)."""

DEFAULT_BORROW_RATE = 0.0025
"""Annual borrow fee rate of a cash-like short when neither the instrument nor the
market sets one: 0.25 % a year, the order of the fee US brokers quote for an
easy-to-borrow (general collateral) stock, the least a short pays. Hard-to-borrow
names cost far more (tens of percent a year): set ``borrow_rate`` per instrument."""

PORTFOLIO = "portfolio"


class PnlConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of the pnl actor.

    Attributes:
        initial_cash: starting cash of every strategy book per market. The portfolio
            book of a market holds the cash of the strategies that have filled in it:
            a strategy's joins at its first fill, and the portfolio's high-water mark
            rises by as much (:func:`~tickertape.actors.pnl.accounting.add_capital`),
            so the new capital is not a gain and the drawdown is measured against a
            base that includes it from then on.
        update_interval_ns: the longest a changed book waits for a ``pnl.update``
            (default 60 s of the clock), > 0.
        bar_intervals: bar intervals used as marks (``"1m"``, ``"1d"``: the
            ``{interval}`` token of raw bar topics, which the actor then subscribes
            to alone); empty for all. Adjusted bars never mark.
        orders_source: the only identity whose fills are booked.
        instruments: instrument specifications, ``[instruments.<market>.<symbol or
            futures root>]`` (:mod:`tickertape.actors.orders.instruments`); the books
            use their ``initial_margin`` and ``maintenance_margin`` (an instrument with
            an initial margin is booked as a margined position). Give the same section
            as the order engine and the risk gate; the multiplier always comes from
            each fill.
        instruments_file: a TOML file of specifications, instead of ``instruments``;
            relative to the working directory.
        borrow_rates: annual borrow fee rate (a fraction, ≥ 0) of cash-like shorts
            per market, where the instrument sets no ``borrow_rate``; a market not
            listed pays :data:`DEFAULT_BORROW_RATE`.
    """

    initial_cash: dict[Market, float] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_INITIAL_CASH)
    )
    update_interval_ns: int = 60_000_000_000
    bar_intervals: list[str] = msgspec.field(default_factory=list)
    orders_source: str = "orders"
    instruments: InstrumentsConfig = msgspec.field(default_factory=dict)
    instruments_file: str | None = None
    borrow_rates: dict[Market, float] = msgspec.field(default_factory=dict)


class PnlState(msgspec.Struct, kw_only=True):
    """The actor's state (its snapshot).

    Attributes:
        ledgers: the books, keyed ``"{book}:{market}"``.
        dirty: keys of the books waiting for their update.
        ignored_fills: fills not from ``orders_source``, ignored.
        prices: last market price (trade price or raw bar close) per
            ``"{market}:{symbol}"``, in the instrument's price units.
    """

    ledgers: dict[str, accounting.Ledger] = msgspec.field(default_factory=dict)
    dirty: list[str] = msgspec.field(default_factory=list)
    ignored_fills: int = 0
    prices: dict[str, float] = msgspec.field(default_factory=dict)


class PnlActor(Actor):
    """The pnl actor (identity ``pnl``).

    Args:
        config: the configuration.

    Raises:
        ConfigError: a non-positive interval, a negative or unknown-market cash, or
            invalid instrument specifications.
    """

    name = "pnl"
    state_version = 3  # 2: positions carry their margin rates; 3: last market prices

    def __init__(self, config: PnlConfig | None = None) -> None:
        self.config = config if config is not None else PnlConfig()
        if self.config.update_interval_ns <= 0:
            raise ConfigError("update_interval_ns must be > 0")
        for market, cash in self.config.initial_cash.items():
            if market not in MARKETS or cash < 0:
                raise ConfigError(f"initial_cash.{market} must be ≥ 0 for a known market")
        for market, rate in self.config.borrow_rates.items():
            if market not in MARKETS or not (math.isfinite(rate) and rate >= 0.0):
                raise ConfigError(f"borrow_rates.{market} must be ≥ 0 for a known market")
        self.instruments = load_instruments(
            self.config.instruments, self.config.instruments_file, owner="pnl"
        )
        self.state = PnlState()
        self._dirty: set[str] = set()
        self._holders: dict[str, list[str]] = {}
        self._intervals = frozenset(self.config.bar_intervals)
        # Raw bars only where the topics allow it (an adjusted interval token ends in
        # "-adj"); with every interval wanted, on_event drops the adjusted bars.
        bars = [f"md.bar.{interval}.>" for interval in sorted(self._intervals)]
        self.subscriptions = (
            "order.>",
            "md.trade.>",
            *(bars or ["md.bar.>"]),
            "md.corporate_action.>",
        )
        self._borrow_rates: dict[str, float] = {}

    def on_event(self, event: Event, ctx: Context) -> None:
        payload = event.payload
        market = event.market
        if isinstance(payload, Bar):
            wanted = not self._intervals or payload.interval in self._intervals
            if (
                market is not None
                and wanted
                and not payload.adjusted
                and self._mark_market(market, payload.symbol, payload.close, event.ts_event)
            ):
                self._arm(ctx)
        elif isinstance(payload, Trade):
            if market is not None and self._mark_market(
                market, payload.symbol, payload.price, event.ts_event
            ):
                self._arm(ctx)
        elif isinstance(payload, CorporateAction):
            if market is not None and self._on_corporate_action(market, payload, event, ctx):
                self._arm(ctx)
        elif isinstance(payload, OrderEvent) and payload.fill is not None:
            if event.source == self.config.orders_source:
                self._on_fill(payload, event, ctx)
            else:
                self.state.ignored_fills += 1
                ctx.log.error("fill_ignored_not_from_orders", source=event.source, id=event.id)

    def on_timer(self, timer: Timer, ctx: Context) -> None:
        if timer.name == "publish":
            self._publish_dirty(ctx)

    def on_stop(self, ctx: Context) -> None:
        """Charge the borrow fees due up to the stop and publish every book still
        waiting for its update: each book's last ``pnl.update`` is its final state
        (the publish tick the last marks wait for may lie after the end of a run)."""
        now = ctx.clock.now_ns()
        ledgers = self.state.ledgers
        for key in sorted(ledgers):
            ledger = ledgers[key]
            for symbol in sorted(ledger.positions):
                if ledger.positions[symbol].accrued_ns:  # a strategy's cash-like short
                    self._charge_borrow(key, ledger.market, symbol, now)
            if ledgers[key].fees != ledger.fees:  # charged: a new ledger
                self._dirty.update((key, f"{PORTFOLIO}:{ledger.market}"))
        self._publish_dirty(ctx)

    def _publish_dirty(self, ctx: Context) -> None:
        """Publish the books changed since their last update, in key order."""
        for key in sorted(self._dirty):
            self._publish(key, ctx, None)
        self._dirty.clear()

    def _arm(self, ctx: Context) -> None:
        # Publish ticks sit on multiples of the interval (epoch-aligned), so a restart
        # re-arms the very schedule an uninterrupted run follows; called when a book
        # becomes dirty, it (re)sets the timer to the tick the book waits for.
        interval = self.config.update_interval_ns
        ctx.clock.set_timer("publish", at_ns=(ctx.clock.now_ns() // interval + 1) * interval)

    def snapshot(self) -> msgspec.Struct:
        self.state.dirty = sorted(self._dirty)
        return self.state

    def restore(self, state: bytes) -> None:
        self.state = msgspec.msgpack.decode(state, type=PnlState)
        self._dirty = set(self.state.dirty)
        self._holders = {}
        for key, ledger in sorted(self.state.ledgers.items()):
            for symbol in ledger.positions:
                self._hold(f"{ledger.market}:{symbol}", key)

    # -------------------------------------------------------------- internals

    def _hold(self, symbol_key: str, book_key: str) -> None:
        holders = self._holders.setdefault(symbol_key, [])
        if book_key not in holders:
            holders.append(book_key)
            holders.sort()

    def _ledger(self, book: str, market: Market) -> accounting.Ledger:
        key = f"{book}:{market}"
        ledger = self.state.ledgers.get(key)
        if ledger is None:
            cash = self.config.initial_cash.get(market, DEFAULT_INITIAL_CASH[market])
            if book == PORTFOLIO:
                cash = 0.0  # grows by each strategy's initial cash as strategies appear
            ledger = accounting.new_ledger(market, cash)
            self.state.ledgers[key] = ledger
        return ledger

    def _portfolio_for(self, strategy_id: str, market: Market) -> accounting.Ledger:
        portfolio = self._ledger(PORTFOLIO, market)
        if f"{strategy_id}:{market}" not in self.state.ledgers:
            cash = self.config.initial_cash.get(market, DEFAULT_INITIAL_CASH[market])
            portfolio = accounting.add_capital(portfolio, cash)
        return portfolio

    def _mark_market(self, market: Market, symbol: str, price: float, at_ns: int) -> bool:
        """Keep ``price`` as the symbol's last market price and mark the books holding
        it (:meth:`_mark`)."""
        symbol_key = f"{market}:{symbol}"
        self.state.prices[symbol_key] = price
        return self._mark(market, symbol, price, at_ns, symbol_key)

    def _mark(self, market: Market, symbol: str, price: float, at_ns: int, symbol_key: str) -> bool:
        """Mark the books holding ``symbol`` (``symbol_key`` is ``"{market}:{symbol}"``)
        at ``price``, charging the borrow fees due at the old mark up to ``at_ns`` (the
        price's ``ts_event``) first; True when one of them became dirty (it then waits
        for the next publish tick)."""
        holders = self._holders.get(symbol_key)
        if not holders:
            return False
        ledgers = self.state.ledgers
        for key in holders:
            held = ledgers[key].positions[symbol]
            if held.accrued_ns and held.mark != price:  # a strategy's cash-like short
                self._charge_borrow(key, market, symbol, at_ns)
        return self._change(holders, lambda ledger: accounting.mark(ledger, symbol, price))

    def _change(
        self, keys: list[str], change: Callable[[accounting.Ledger], accounting.Ledger]
    ) -> bool:
        """Replace each book of ``keys`` by ``change`` of it; True when one of them
        became dirty (``change`` returns the book itself when nothing changed)."""
        ledgers = self.state.ledgers
        dirty = self._dirty
        newly = False
        for key in keys:
            before = ledgers[key]
            after = change(before)
            if after is not before:
                ledgers[key] = after
                if key not in dirty:
                    dirty.add(key)
                    newly = True
        return newly

    def _on_corporate_action(
        self, market: Market, action: CorporateAction, event: Event, ctx: Context
    ) -> bool:
        """Apply a split or dividend to the symbol's last price and to every book
        holding it; True when one of them became dirty. An action that cannot be
        applied (:func:`~tickertape.actors.pnl.accounting.corporate_action_problem`)
        is logged and skipped."""
        problem = accounting.corporate_action_problem(action, CURRENCY[market])
        if problem is not None:
            ctx.log.warning("corporate_action_not_applied", reason=problem)
            return False
        symbol = action.symbol
        symbol_key = f"{market}:{symbol}"
        price = self.state.prices.get(symbol_key)
        if price is not None:
            self.state.prices[symbol_key] = accounting.ex_price(price, action)
        ledgers = self.state.ledgers
        holders = self._holders.get(symbol_key, [])
        now = event.ts_event
        for key in holders:  # the fees due at the old mark, before it changes
            if ledgers[key].positions[symbol].accrued_ns:
                self._charge_borrow(key, market, symbol, now)
        return self._change(
            holders, lambda ledger: accounting.apply_corporate_action(ledger, action)
        )

    def _on_fill(self, order: OrderEvent, event: Event, ctx: Context) -> None:
        market = order.market
        sid = order.strategy_id
        now = event.ts_event  # not the clock: a restart catching up must charge the same
        held = self.state.ledgers.get(f"{sid}:{market}")
        if held is not None and order.symbol in held.positions:
            # the fee of the short so far, before its quantity changes
            self._charge_borrow(f"{sid}:{market}", market, order.symbol, now)
        portfolio = self._portfolio_for(sid, market)
        strategy = self._ledger(sid, market)
        rates = self.instruments.margin_rates(market, order.symbol)
        symbol_key = f"{market}:{order.symbol}"
        last = self.state.prices.get(symbol_key)  # None: no market price yet
        for book, ledger in ((sid, strategy), (PORTFOLIO, portfolio)):
            key = f"{book}:{market}"
            updated, _ = accounting.apply_order_fill(ledger, order, rates, mark_price=last)
            if book == sid:  # a short accrues from its fill on (the portfolio mirrors)
                updated = accounting.accrue_borrow(updated, order.symbol, 0.0, now)
            self.state.ledgers[key] = updated
            self._hold(symbol_key, key)
            self._publish(key, ctx, event)
            self._dirty.discard(key)
        # The two books above are marked at the market price, which the other books
        # holding the symbol already have. Without one, the fill's price is the only
        # price: every book holding the symbol is marked at it.
        fill = order.fill
        if (
            last is None
            and fill is not None
            and self._mark(market, order.symbol, fill.price, now, symbol_key)
        ):
            self._arm(ctx)

    def _borrow_rate(self, market: Market, symbol: str) -> float:
        key = f"{market}:{symbol}"
        rate = self._borrow_rates.get(key)
        if rate is None:
            rate = self.instruments.spec(market, symbol).borrow_rate
            if rate is None:
                rate = self.config.borrow_rates.get(market, DEFAULT_BORROW_RATE)
            self._borrow_rates[key] = rate
        return rate

    def _charge_borrow(self, key: str, market: Market, symbol: str, now: int) -> None:
        """Charge book ``key`` (a strategy's) the borrow fee of ``symbol`` up to
        ``now``, and its market's portfolio the same amount."""
        ledgers = self.state.ledgers
        ledger = ledgers[key]
        fee = accounting.borrow_fee(
            ledger.positions[symbol], self._borrow_rate(market, symbol), now
        )
        ledgers[key] = accounting.accrue_borrow(ledger, symbol, fee, now)
        if fee:
            portfolio = f"{PORTFOLIO}:{market}"
            ledgers[portfolio] = accounting.accrue_borrow(ledgers[portfolio], symbol, fee, 0)

    def _publish(self, key: str, ctx: Context, cause: Event | None) -> None:
        ledger = self.state.ledgers[key]
        book, _, _ = key.rpartition(":")
        update = PnlUpdate(
            strategy_id=None if book == PORTFOLIO else book,
            books=[accounting.to_book(ledger)],
        )
        ctx.publish(f"pnl.update.{book}", update, market=ledger.market, causation=cause)
