"""The risk gate actor: the only source of approvals (DESIGN §1.4, §9).

Consumes intents (``strategy.intent.>``), order lifecycle events (``order.>``: open
orders and fills), PnL updates (``pnl.update.>``: drawdown), market data (prices and
their age), corporate actions (``md.corporate_action.>``: splits and dividends change
positions and prices, :func:`~tickertape.actors.pnl.accounting.apply_corporate_action`),
manual commands (``system.command.risk``: ``tape halt`` / ``tape resume``)
and clock drift alerts (``system.clock_drift``). For each intent it publishes one
:class:`~tickertape.schemas.risk.RiskDecision` on ``risk.approved.{strategy_id}`` or
``risk.rejected.{strategy_id}`` with its reason code and inputs: the log is the audit
trail. Every trading-state change is a ``risk.state`` event.

Automatic halts: a strategy whose drawdown reaches its ``max_drawdown`` is HALTED
(reason ``DRAWDOWN``); a portfolio book of a market reaching the market's limit halts
the market; a clock drift alert halts everything (reason ``CLOCK_DRIFT``) until a
global ``resume``.

Margin calls (with ``check_cash``): a strategy's book whose equity falls below its
maintenance requirement (:func:`~tickertape.actors.risk.checks.maintenance_requirement`)
puts that strategy in REDUCING (reason ``MARGIN_CALL``), a portfolio book its market;
once every book that called it is back at or above its requirement, the scope returns
to ACTIVE (reason ``MARGIN_RESTORED``), unless a command or another rule changed its
state meanwhile (then the call is dropped and the state left as it is).

An intent is only considered when its envelope's ``source`` is
``strategy.{intent.strategy_id}``: a strategy cannot ask in another's name. Order
events count only from the order engine's identity and PnL updates only from the pnl
actor's, and a ``strategy.*`` identity cannot command the gate: anything else is
ignored, counted and logged as an error, so a strategy that manages to publish on
those topics (the router's ACL refuses it across processes) changes nothing here.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import msgspec

from tickertape.actors.base import Actor, Context, Event
from tickertape.actors.orders.fill_logic import CURRENCY
from tickertape.actors.orders.instruments import InstrumentsConfig, load_instruments
from tickertape.actors.pnl import PORTFOLIO, accounting
from tickertape.actors.risk.checks import (
    ORDER_RATE_WINDOW_NS,
    SHORT_SALE_REQUIREMENT,
    Decision,
    Limits,
    LimitsFile,
    RiskView,
    TradingStates,
    decide,
    effective_limits,
    effective_state,
    maintenance_requirement,
    parse_limits,
    worst_case_position,
)
from tickertape.errors import ConfigError
from tickertape.schemas.envelope import MARKETS, Market
from tickertape.schemas.market import Bar, CorporateAction, Trade
from tickertape.schemas.orders import OrderEvent
from tickertape.schemas.pnl import Book, PnlUpdate
from tickertape.schemas.risk import RiskCommand, RiskDecision, RiskState, TradingState
from tickertape.schemas.strategy import Intent
from tickertape.schemas.system import ClockDrift

DEFAULT_INITIAL_CASH: dict[Market, float] = {
    "kr": 100_000_000.0,
    "us": 100_000.0,
    "crypto": 100_000.0,
}
"""Starting capital per market when none is configured (KRW 100 M, USD 100 k, USDT 100 k)."""

_OPEN = frozenset({"submitted", "accepted", "partially_filled"})


class RiskConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of the risk actor.

    Attributes:
        limits_file: path of the limits TOML (see ``docs/risk.md``), read and validated
            when the actor is built; None for ``limits`` only.
        limits: inline limits, used when ``limits_file`` is None.
        initial_cash: starting cash per market, for the cash check (the pnl actor must
            be configured with the same figures).
        halt_on_clock_drift: halt everything on a clock drift alert (open orders
            are then canceled); false: keep the trading state, refuse every order
            that is not reducing with ``CLOCK_DRIFT``. Either until a global resume.
        orders_source: the only identity whose ``order.*`` events are counted.
        pnl_source: the only identity whose ``pnl.update.*`` events are counted.
        instruments: instrument specifications, ``[instruments.<market>.<symbol or
            futures root>]``; the gate uses their contract multipliers to value
            orders (notional, exposure, cash), and their ``initial_margin`` to book
            futures as margined and check the margin an order adds
            (``INSUFFICIENT_MARGIN``). Give the order engine and the pnl actor the
            same section (see :mod:`tickertape.actors.orders.instruments`);
            instruments not listed have multiplier 1 and are cash-like.
        instruments_file: a TOML file of specifications, instead of ``instruments``;
            relative to the working directory.
    """

    limits_file: str | None = None
    limits: LimitsFile = msgspec.field(default_factory=LimitsFile)
    initial_cash: dict[Market, float] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_INITIAL_CASH)
    )
    halt_on_clock_drift: bool = True
    orders_source: str = "orders"
    pnl_source: str = "pnl"
    instruments: InstrumentsConfig = msgspec.field(default_factory=dict)
    instruments_file: str | None = None


class TrackedOrder(msgspec.Struct, kw_only=True):
    """An approved order the gate still counts as open."""

    strategy_id: str
    market: Market
    symbol: str
    signed_remaining: float
    price: float
    multiplier: float = 1.0


class RiskActorState(msgspec.Struct, kw_only=True):
    """The gate's state (its snapshot)."""

    states: TradingStates = msgspec.field(default_factory=TradingStates)
    ledgers: dict[str, accounting.Ledger] = msgspec.field(default_factory=dict)
    orders: dict[str, TrackedOrder] = msgspec.field(default_factory=dict)
    prices: dict[str, tuple[float, int]] = msgspec.field(default_factory=dict)
    drawdowns: dict[str, float] = msgspec.field(default_factory=dict)
    borrow_fees: dict[str, float] = msgspec.field(default_factory=dict)
    """``"{strategy_id}:{market}"`` → the borrow fees its book has paid, from its last
    pnl update (the gate's own books see fills only: this comes off their cash)."""
    approvals: dict[str, list[int]] = msgspec.field(default_factory=dict)
    clock_drift: bool = False
    drawdown_breaches: list[str] = msgspec.field(default_factory=list)
    """Books (``"{strategy_id or portfolio}:{market}"``) whose last pnl update had their
    drawdown at or past its limit: the automatic halt comes on entering that set only,
    so an operator's resume is not undone by the next update of the same breach."""
    margin_calls: dict[str, str] = msgspec.field(default_factory=dict)
    """Books under a margin call (``"{strategy_id or portfolio}:{market}"``) → the scope
    they put in REDUCING (``"strategy:{id}"`` or ``"market:{market}"``)."""
    decisions: int = 0
    ignored_events: int = 0


def load_limits(config: RiskConfig) -> LimitsFile:
    """The limits of ``config``: the file when given, else the inline table.

    Raises:
        ConfigError: the file cannot be read or does not validate.
    """
    if config.limits_file is None:
        config.limits.validate()
        return config.limits
    path = Path(config.limits_file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read risk limits: {exc.strerror}", path) from None
    return parse_limits(text, str(path))


class RiskActor(Actor):
    """The risk gate (identity ``risk``).

    Args:
        config: the configuration (limits are loaded and validated here).

    Raises:
        ConfigError: invalid limits, initial cash or instrument specifications.
    """

    name = "risk"
    subscriptions = (
        "strategy.intent.>",
        "order.>",
        "pnl.update.>",
        "md.trade.>",
        "md.bar.>",
        "md.corporate_action.>",
        "system.command.risk",
        "system.clock_drift",
        "system.clock.drift",
    )
    state_version = 3  # 2: books carry margin rates; 3: drawdown_breaches

    def __init__(self, config: RiskConfig | None = None) -> None:
        self.config = config if config is not None else RiskConfig()
        self.limits = load_limits(self.config)
        self.instruments = load_instruments(
            self.config.instruments, self.config.instruments_file, owner="risk"
        )
        for market, cash in self.config.initial_cash.items():
            if market not in MARKETS or not (math.isfinite(cash) and cash >= 0):
                raise ConfigError(
                    f"initial_cash.{market} must be a finite number ≥ 0 for a known market"
                )
        self.state = RiskActorState()
        self._recent: dict[str, deque[int]] = {}
        self._breaches: set[str] = set()  # the state's drawdown_breaches, sorted there
        self._limits_cache: dict[tuple[str, str], Limits] = {}

    # ----------------------------------------------------------- actor hooks

    def on_event(self, event: Event, ctx: Context) -> None:
        payload = event.payload
        kind = type(payload)
        if kind is Bar:  # the most frequent: a price and its time
            # Raw prices only, as the venue fills (DESIGN §9): a split-adjusted copy
            # (md.bar.<interval>-adj.*) would price orders on another scale.
            if event.market is not None and not payload.adjusted:
                key = f"{event.market}:{payload.symbol}"
                self.state.prices[key] = (payload.close, event.ts_event)
        elif kind is Trade:
            if event.market is not None:
                key = f"{event.market}:{payload.symbol}"
                self.state.prices[key] = (payload.price, event.ts_event)
        elif kind is Intent:
            self._on_intent(payload, event, ctx)
        elif kind is CorporateAction:
            if event.market is not None:
                self._on_corporate_action(event.market, payload, ctx)
        elif kind is OrderEvent:
            if event.source == self.config.orders_source:
                self._on_order(payload)
            else:
                self._ignore(event, ctx)
        elif kind is PnlUpdate:
            if event.source == self.config.pnl_source:
                self._on_pnl(payload, event, ctx)
            else:
                self._ignore(event, ctx)
        elif kind is RiskCommand:
            if event.source.startswith("strategy."):
                self._ignore(event, ctx)
            else:
                self._on_command(payload, event, ctx)
        elif kind is ClockDrift:
            self.state.clock_drift = True  # refused with CLOCK_DRIFT until a global resume
            if self.config.halt_on_clock_drift:
                self._set_state("global", None, "HALTED", "CLOCK_DRIFT", event, ctx)

    def snapshot(self) -> msgspec.Struct:
        self.state.approvals = {k: list(v) for k, v in sorted(self._recent.items())}
        self.state.drawdown_breaches = sorted(self._breaches)  # same bytes whatever the hash seed
        return self.state

    def restore(self, state: bytes) -> None:
        self.state = msgspec.msgpack.decode(state, type=RiskActorState)
        self._recent = {k: deque(v) for k, v in self.state.approvals.items()}
        self._breaches = set(self.state.drawdown_breaches)

    # -------------------------------------------------------------- internals

    def _ignore(self, event: Event, ctx: Context) -> None:
        self.state.ignored_events += 1
        ctx.log.error("event_ignored_wrong_source", source=event.source, id=event.id)

    def _limits(self, market: Market, strategy_id: str) -> Limits:
        key = (market, strategy_id)
        limits = self._limits_cache.get(key)
        if limits is None:
            limits = effective_limits(self.limits, market, strategy_id)
            self._limits_cache[key] = limits
        return limits

    def _ledger(self, strategy_id: str, market: Market) -> accounting.Ledger:
        key = f"{strategy_id}:{market}"
        ledger = self.state.ledgers.get(key)
        if ledger is None:
            cash = self.config.initial_cash.get(market, DEFAULT_INITIAL_CASH[market])
            ledger = accounting.new_ledger(market, cash)
            self.state.ledgers[key] = ledger
        return ledger

    def _view(self, intent: Intent, now: int) -> RiskView:
        sid, market, symbol = intent.strategy_id, intent.market, intent.symbol
        ledger = self._ledger(sid, market)
        price_seen = self.state.prices.get(f"{market}:{symbol}")
        price = price_seen[0] if price_seen else None
        instruments = self.instruments
        reserved = 0.0
        # symbol -> its open orders: [Σ remaining of the buys, of the sells, Σ notional
        # of the buys (cash-like symbols only), the price of the last one]
        book_open: dict[str, list[float]] = {}
        open_ids: list[str] = []
        for order_id, order in sorted(self.state.orders.items()):
            if order.strategy_id != sid:
                continue
            open_ids.append(order_id)
            if order.market != market:
                continue
            remaining = order.signed_remaining
            sides = book_open.setdefault(order.symbol, [0.0, 0.0, 0.0, 0.0])
            sides[3] = order.price
            if remaining > 0:
                sides[0] += remaining
            else:
                sides[1] -= remaining
            if remaining > 0 and not instruments.spec(market, order.symbol).margined:
                notional = remaining * order.price * order.multiplier
                reserved += notional
                sides[2] += notional
        open_buys, open_sells = book_open.get(symbol, (0.0, 0.0))[:2]
        funds = ledger.cash - reserved - self.state.borrow_fees.get(f"{sid}:{market}", 0.0)
        funds -= self._futures_margin_less_unrealized(ledger, market, book_open)
        if book_open or any(p.quantity < 0.0 for p in ledger.positions.values()):
            funds -= self._short_collateral_less_covers(ledger, market, book_open)
        gross = 0.0
        for sym in sorted(ledger.positions.keys() | book_open.keys()):
            if sym == symbol:
                continue
            held = ledger.positions.get(sym)
            buys, sells = book_open.get(sym, (0.0, 0.0))[:2]
            worst = worst_case_position(held.quantity if held is not None else 0.0, buys, sells)
            if not worst:
                continue
            sym_multiplier = (
                held.multiplier if held is not None else instruments.spec(market, sym).multiplier
            )
            gross += worst * self._mark(market, sym, held, book_open) * sym_multiplier
        position = accounting.position(ledger, symbol)
        spec = instruments.spec(market, symbol)
        multiplier = spec.multiplier
        if price is not None:
            gross += worst_case_position(position, open_buys, open_sells) * price * multiplier
        recent = self._recent.get(sid)
        while recent and recent[0] <= now - ORDER_RATE_WINDOW_NS:
            recent.popleft()
        return RiskView(
            now_ns=now,
            position=position,
            open_buys=open_buys,
            open_sells=open_sells,
            price=price,
            last_data_ns=price_seen[1] if price_seen else None,
            gross_exposure=gross,
            open_orders=len(open_ids),
            open_order_ids=frozenset(open_ids),
            recent_orders=len(recent) if recent else 0,
            cash=funds,
            drawdown=self.state.drawdowns.get(f"{sid}:{market}", 0.0),
            clock_drift=self.state.clock_drift,
            multiplier=multiplier,
            initial_margin=spec.margin_rates[0],
        )

    def _mark(
        self,
        market: Market,
        symbol: str,
        held: accounting.PositionState | None,
        book_open: dict[str, list[float]],
    ) -> float:
        """The symbol's last price seen, else its position's mark, else the price its
        last open order was approved at (0.0 with none of them)."""
        seen = self.state.prices.get(f"{market}:{symbol}")
        if seen:
            return seen[0]
        if held is not None and held.mark:
            return held.mark
        return book_open[symbol][3] if symbol in book_open else 0.0

    def _short_collateral_less_covers(
        self, ledger: accounting.Ledger, market: Market, book_open: dict[str, list[float]]
    ) -> float:
        """What cash-like shorts take from the book's available funds, less the buy
        reservations they release: per cash-like symbol, ``SHORT_SALE_REQUIREMENT ×``
        the booked short's value (its proceeds are in the cash), ``(SHORT_SALE_REQUIREMENT
        − 1) ×`` the value of the further short its open sells may open (their
        proceeds are not), both at :meth:`_mark`; minus the part of its open buys'
        reserved notional that only covers the booked short (such a buy, filled,
        frees more collateral than it costs). ``book_open`` maps a symbol to [Σ
        remaining of its open buys, of its open sells, Σ notional of the buys, the
        last one's price]."""
        collateral = 0.0
        for sym in sorted(ledger.positions.keys() | book_open.keys()):
            spec = self.instruments.spec(market, sym)
            if spec.margined:
                continue
            held = ledger.positions.get(sym)
            quantity = held.quantity if held is not None else 0.0
            buys, sells, bought, _ = book_open.get(sym, (0.0, 0.0, 0.0, 0.0))
            booked_short = max(-quantity, 0.0)
            worst_short = max(sells - quantity, 0.0)
            if worst_short:
                value = self._mark(market, sym, held, book_open) * spec.multiplier
                collateral += SHORT_SALE_REQUIREMENT * booked_short * value
                collateral += (SHORT_SALE_REQUIREMENT - 1.0) * (worst_short - booked_short) * value
            covering = min(booked_short, buys)
            if covering:
                collateral -= bought * covering / buys
        return collateral

    def _futures_margin_less_unrealized(
        self, ledger: accounting.Ledger, market: Market, book_open: dict[str, list[float]]
    ) -> float:
        """Σ initial margin of the book's futures at their worst case positions (booked
        position and the open orders of one side, ``checks.worst_case_position``) minus
        Σ their unrealized PnL at the last price seen (the position's own mark before
        any, :meth:`_mark`): what futures take from the book's available funds (0.0
        without futures). ``book_open`` maps a symbol to its open orders, as in
        :meth:`_short_collateral_less_covers`."""
        margin = 0.0
        unrealized = 0.0
        for sym in sorted(ledger.positions.keys() | book_open.keys()):
            rate = self.instruments.margin_rates(market, sym)[0]
            if not rate:
                continue
            held = ledger.positions.get(sym)
            quantity = held.quantity if held is not None else 0.0
            buys, sells = book_open.get(sym, (0.0, 0.0))[:2]
            margin += worst_case_position(quantity, buys, sells) * rate
            if held is not None and quantity:
                mark = self._mark(market, sym, held, book_open)
                unrealized += quantity * (mark - held.average_cost) * held.multiplier
        return margin - unrealized

    def _on_intent(self, intent: Intent, event: Event, ctx: Context) -> None:
        # Decided as of the intent's time, not the clock: live the clock is a few ms
        # later, and a restart catching up on the log (on event time) would regenerate
        # other data ages, rate windows and even verdicts than the ones published. In
        # a replay both are the step's time.
        now = event.ts_event
        if event.source != f"strategy.{intent.strategy_id}":
            decision = Decision(
                approved=False,
                reason_code="INVALID_INTENT",
                reason=f"source {event.source!r} may not act for strategy {intent.strategy_id!r}",
                order=None,
                inputs={},
            )
        else:
            limits = self._limits(intent.market, intent.strategy_id)
            state = effective_state(self.state.states, intent.market, intent.strategy_id)
            decision = decide(intent, self._view(intent, now), limits, state)
        self.state.decisions += 1
        verdict = "approved" if decision.approved else "rejected"
        payload = RiskDecision(
            strategy_id=intent.strategy_id,
            intent_id=intent.intent_id,
            approved=decision.approved,
            reason_code=decision.reason_code,
            reason=decision.reason,
            order=decision.order,
            inputs=dict(sorted(decision.inputs.items())),
        )
        approval_id = ctx.publish(
            f"risk.{verdict}.{intent.strategy_id}", payload, market=intent.market, causation=event
        )
        order = decision.order
        if decision.approved and order is not None and order.cancel_order_id is None:
            signed = order.quantity if order.side == "buy" else -order.quantity
            self.state.orders[f"approval:{approval_id}"] = TrackedOrder(
                strategy_id=intent.strategy_id,
                market=intent.market,
                symbol=intent.symbol,
                signed_remaining=signed,
                price=decision.inputs.get("price", 0.0),
                multiplier=decision.inputs.get("multiplier", 1.0),
            )
            self._recent.setdefault(intent.strategy_id, deque()).append(now)

    def _on_corporate_action(self, market: Market, action: CorporateAction, ctx: Context) -> None:
        """Apply a split or dividend to the books holding the symbol and to its last
        price seen (kept with the time it was seen: the data is no fresher), as the
        pnl actor does; the order engine cancels the symbol's open orders at a split."""
        problem = accounting.corporate_action_problem(action, CURRENCY[market])
        if problem is not None:
            ctx.log.warning("corporate_action_not_applied", reason=problem)
            return
        key = f"{market}:{action.symbol}"
        seen = self.state.prices.get(key)
        if seen is not None:
            self.state.prices[key] = (accounting.ex_price(seen[0], action), seen[1])
        ledgers = self.state.ledgers
        for book_key, ledger in sorted(ledgers.items()):
            if ledger.market == market:
                ledgers[book_key] = accounting.apply_corporate_action(ledger, action)

    def _on_order(self, order: OrderEvent) -> None:
        if order.approval_id is not None:
            tracked = self.state.orders.pop(f"approval:{order.approval_id}", None)
            if tracked is not None and order.status in _OPEN:
                self.state.orders[order.order_id] = tracked
        if order.fill is not None:
            key = f"{order.strategy_id}:{order.market}"
            ledger = self._ledger(order.strategy_id, order.market)
            rates = self.instruments.margin_rates(order.market, order.symbol)
            self.state.ledgers[key], _ = accounting.apply_order_fill(ledger, order, rates)
        tracked = self.state.orders.get(order.order_id)
        if tracked is None:
            return
        if order.status not in _OPEN:
            del self.state.orders[order.order_id]
            return
        remaining = max(order.quantity - order.filled_quantity, 0.0)
        tracked.signed_remaining = remaining if order.side == "buy" else -remaining

    def _on_pnl(self, update: PnlUpdate, event: Event, ctx: Context) -> None:
        for book in update.books:
            market = book.market
            if update.strategy_id is None:
                limits = self._limits(market, "")
                if self._enters_breach(f"{PORTFOLIO}:{market}", book, limits) and (
                    self.state.states.of("market", market) != "HALTED"
                ):
                    self._set_state("market", market, "HALTED", "DRAWDOWN", event, ctx)
                if limits.check_cash:
                    self._margin(f"{PORTFOLIO}:{market}", "market", market, book, event, ctx)
                continue
            sid = update.strategy_id
            self.state.drawdowns[f"{sid}:{market}"] = book.drawdown
            borrowed = sum(p.borrow_fees for p in book.positions)
            if borrowed:
                self.state.borrow_fees[f"{sid}:{market}"] = borrowed
            limits = self._limits(market, sid)
            if self._enters_breach(f"{sid}:{market}", book, limits) and (
                self.state.states.of("strategy", sid) != "HALTED"
            ):
                self._set_state("strategy", sid, "HALTED", "DRAWDOWN", event, ctx)
            if limits.check_cash:
                self._margin(f"{sid}:{market}", "strategy", sid, book, event, ctx)

    def _enters_breach(self, book_key: str, book: Book, limits: Limits) -> bool:
        """Whether this update takes the book's drawdown to or past its limit from
        under it (or from no update yet); keeps the books in breach (in snapshots as
        :attr:`RiskActorState.drawdown_breaches`)."""
        breaches = self._breaches
        if limits.max_drawdown is None or book.drawdown < limits.max_drawdown:
            breaches.discard(book_key)
            return False
        if book_key in breaches:
            return False
        breaches.add(book_key)
        return True

    def _margin(
        self, book_key: str, scope: str, key: str, book: Book, event: Event, ctx: Context
    ) -> None:
        """Call or release the margin of one book (see the module's docstring)."""
        calls = self.state.margin_calls
        tag = f"{scope}:{key}"
        state = self.state.states.of(scope, key)
        if book.equity < maintenance_requirement(book):
            if book_key in calls:
                return  # called already
            if state == "ACTIVE":
                calls[book_key] = tag
                self._set_state(scope, key, "REDUCING", "MARGIN_CALL", event, ctx)
            elif tag in calls.values():
                calls[book_key] = tag  # joins another book's call on the scope
            return
        if calls.pop(book_key, None) is None or tag in calls.values():
            return  # not called, or another book still holds the scope's call
        if state == "REDUCING":
            self._set_state(scope, key, "ACTIVE", "MARGIN_RESTORED", event, ctx)

    def _on_command(self, command: RiskCommand, event: Event, ctx: Context) -> None:
        target: TradingState = {"halt": "HALTED", "resume": "ACTIVE", "reduce": "REDUCING"}[
            command.command
        ]  # type: ignore[assignment]
        try:
            self._set_state(command.scope, command.key, target, command.reason, event, ctx)
        except ConfigError as exc:
            ctx.log.error("risk_command_refused", error=str(exc), id=event.id)
            return
        # The operator decides this scope's state from now on: its margin calls are
        # dropped (a book still short of its requirement calls again at its next update
        # if the scope is ACTIVE).
        tag = f"{command.scope}:{command.key}"
        self.state.margin_calls = {
            book: called for book, called in self.state.margin_calls.items() if called != tag
        }
        if command.scope == "global" and command.command == "resume":
            self.state.clock_drift = False

    def _set_state(
        self,
        scope: str,
        key: str | None,
        state: TradingState,
        reason: str,
        event: Event,
        ctx: Context,
    ) -> None:
        self.state.states = self.state.states.with_state(scope, key, state)
        market: Market | None = key if scope == "market" and key in MARKETS else None  # type: ignore[assignment]
        ctx.publish(
            "risk.state",
            RiskState(scope=scope, key=key, state=state, reason=reason),  # type: ignore[arg-type]
            market=market,
            causation=event,
        )
