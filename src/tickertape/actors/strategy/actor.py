"""The strategy actor: hosts one user :class:`Strategy` and turns its wishes into intents.

User code subclasses :class:`Strategy` and overrides the handlers it needs
(``on_start``, ``on_bar``, ``on_trade``, ``on_quote``, ``on_indicator``, ``on_fill``,
``on_stop``). Each handler gets a :class:`StrategyContext`: the clock, the strategy's
positions and open orders (rebuilt from ``order.*`` events), the latest indicator
values and prices, and the only way out: :meth:`StrategyContext.submit_order`,
:meth:`StrategyContext.target_position` and :meth:`StrategyContext.cancel_order`,
which publish ``strategy.intent.{strategy_id}``. A strategy never sees the raw
actor context, so it cannot publish anything but intents (the router's ACL enforces
the same across processes).

The actor is loaded by module path, with no registry::

    tape actor strategy --strategy examples.strategies.sma_cross:SmaCross --config sma.toml

Per strategy, the actor applies a rate limit (``max_intents_per_minute`` in 60 s of the
answered events' ``ts_event``; intents over it are dropped and counted) and a kill switch: a ``risk.state`` of HALTED for the
strategy, its market or globally stops order intents (cancels still go out), as
does ``enabled = false`` in the configuration.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

import msgspec

from tickertape.actors.base import Actor, Context, Event, Timer
from tickertape.actors.orders.fill_logic import CURRENCY
from tickertape.actors.pnl import PORTFOLIO, accounting
from tickertape.errors import ConfigError
from tickertape.importing import import_object
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar, CorporateAction, Quote, Trade
from tickertape.schemas.orders import OrderEvent
from tickertape.schemas.risk import RiskState
from tickertape.schemas.strategy import Intent, OrderType, Side, TimeInForce, is_strategy_id

_MINUTE_NS = 60_000_000_000
_OPEN_STATUSES = frozenset({"submitted", "accepted", "partially_filled"})


class StrategyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of one strategy actor (the ``--config`` TOML file).

    Attributes:
        strategy_id: the strategy's id: its intents go to ``strategy.intent.{id}`` and
            the actor's identity is ``strategy.{id}``. Letters, digits, ``_`` and ``-``.
        strategy: the user class as ``package.module:Class``.
        subscriptions: market data and indicator topic patterns the strategy reads
            (order, risk-state events are added by the actor).
        max_intents_per_minute: rate limit of intents, per 60 s of the ``ts_event`` of
            the events they answer (of the clock for intents from timers).
        enabled: False starts the strategy with its kill switch on.
        params: the strategy's parameters, validated against its ``Params`` Struct.
        orders_source: the only identity whose ``order.*`` events update positions and
            open orders.
        risk_source: the only identity whose ``risk.state`` events switch the kill
            switch.
    """

    strategy_id: str = "default"
    strategy: str = ""
    subscriptions: list[str] = msgspec.field(default_factory=lambda: ["md.bar.>"])
    max_intents_per_minute: int = 60
    enabled: bool = True
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    orders_source: str = "orders"
    risk_source: str = "risk"


class OpenOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An open order of the strategy, as last reported by the order engine."""

    order_id: str
    market: Market
    symbol: str
    side: Side
    quantity: float
    filled_quantity: float
    order_type: OrderType
    status: str


class StrategyState(msgspec.Struct, kw_only=True):
    """The actor's state (its snapshot)."""

    intent_seq: int = 0
    positions: dict[str, float] = msgspec.field(default_factory=dict)
    open_orders: dict[str, OpenOrder] = msgspec.field(default_factory=dict)
    indicators: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    prices: dict[str, float] = msgspec.field(default_factory=dict)
    intent_times: list[int] = msgspec.field(default_factory=list)
    halted_scopes: list[str] = msgspec.field(default_factory=list)
    dropped_intents: int = 0
    ignored_events: int = 0
    user: bytes = b""


def _key(market: str, symbol: str) -> str:
    return f"{market}:{symbol}"


class StrategyContext:
    """What a strategy's handlers can see and do.

    Read access: :meth:`now_ns`, :meth:`position`, :meth:`open_orders`,
    :meth:`indicator`, :meth:`last_price`. Output: intents only.
    """

    __slots__ = ("_actor", "_ctx", "_event")

    def __init__(self, actor: StrategyActor, ctx: Context, event: Event | None) -> None:
        self._actor = actor
        self._ctx = ctx
        self._event = event

    @property
    def strategy_id(self) -> str:
        """This strategy's id."""
        return self._actor.strategy_id

    @property
    def log(self) -> Any:
        """The actor's structlog logger."""
        return self._ctx.log

    def now_ns(self) -> int:
        """The clock, ns since the epoch (the only time a strategy may read)."""
        return self._ctx.clock.now_ns()

    def set_timer(
        self, name: str, *, at_ns: int | None = None, interval_ns: int | None = None
    ) -> None:
        """Ask for ``Strategy.on_timer(name, ...)`` at ``at_ns`` or every ``interval_ns``."""
        self._ctx.clock.set_timer(f"user:{name}", at_ns=at_ns, interval_ns=interval_ns)

    def position(self, market: Market, symbol: str) -> float:
        """Signed filled position in ``symbol`` (from order fills, multiplied by the
        ratio of each split since), 0.0 when none."""
        return self._actor.state.positions.get(_key(market, symbol), 0.0)

    def open_orders(
        self, market: Market | None = None, symbol: str | None = None
    ) -> list[OpenOrder]:
        """Open orders, sorted by order id, optionally of one market and symbol."""
        orders = self._actor.state.open_orders
        return [
            orders[o]
            for o in sorted(orders)
            if (market is None or orders[o].market == market)
            and (symbol is None or orders[o].symbol == symbol)
        ]

    def indicator(self, name: str, market: Market, symbol: str) -> dict[str, float] | None:
        """Latest values of indicator ``name`` (e.g. ``rsi_14``) for ``symbol``, or None."""
        return self._actor.state.indicators.get(f"{name}:{market}:{symbol}")

    def last_price(self, market: Market, symbol: str) -> float | None:
        """Last trade price or bar close seen for ``symbol`` (on a split's or
        dividend's ex-date, its ex price until the next one), or None."""
        return self._actor.state.prices.get(_key(market, symbol))

    def submit_order(
        self,
        market: Market,
        symbol: str,
        side: Side,
        quantity: float,
        *,
        order_type: OrderType = "market",
        limit_price: float | None = None,
        stop_price: float | None = None,
        time_in_force: TimeInForce = "GTC",
        reason: str = "",
    ) -> str | None:
        """Ask the risk gate for an order of ``quantity`` units.

        Returns:
            The intent id, or None when the kill switch or the rate limit dropped it.
        """
        return self._actor._emit(
            self._ctx,
            self._event,
            market=market,
            symbol=symbol,
            side=side,
            quantity=quantity,
            order_type=order_type,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
            reason=reason,
        )

    def target_position(
        self,
        market: Market,
        symbol: str,
        target: float,
        *,
        order_type: OrderType = "market",
        limit_price: float | None = None,
        time_in_force: TimeInForce = "GTC",
        reason: str = "",
    ) -> str | None:
        """Ask the risk gate to bring the position to ``target`` (signed units).

        The gate computes the order from the position it knows, open orders included.

        Returns:
            The intent id, or None when dropped (kill switch, rate limit).
        """
        return self._actor._emit(
            self._ctx,
            self._event,
            market=market,
            symbol=symbol,
            target_position=target,
            order_type=order_type,
            limit_price=limit_price,
            time_in_force=time_in_force,
            reason=reason,
        )

    def cancel_order(self, order_id: str, reason: str = "") -> str | None:
        """Ask the risk gate to cancel an open order (allowed even when halted).

        Returns:
            The intent id, or None when the order is not open.
        """
        order = self._actor.state.open_orders.get(order_id)
        if order is None:
            return None
        return self._actor._emit(
            self._ctx,
            self._event,
            market=order.market,
            symbol=order.symbol,
            action="cancel",
            cancel_order_id=order_id,
            reason=reason,
        )


class Strategy:
    """Base class of user strategies: override the handlers you need.

    Class attributes:
        Params: a msgspec Struct (``forbid_unknown_fields=True`` recommended) that the
            configuration's ``params`` table is validated against; None for none.

    Attributes:
        params: the validated parameters (an instance of ``Params``), or None.

    A strategy keeps its own state in attributes; :meth:`snapshot_state` and
    :meth:`restore_state` make it survive restarts (the default keeps nothing, and
    the actor rebuilds the strategy by replaying its inputs).
    """

    Params: ClassVar[type[msgspec.Struct] | None] = None

    def __init__(self, params: msgspec.Struct | None = None) -> None:
        self.params = params

    def on_start(self, ctx: StrategyContext) -> None:
        """Called once before any event."""

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        """A bar closed (``md.bar.*``); ``ctx.now_ns()`` is its close time."""

    def on_trade(self, market: Market, trade: Trade, ctx: StrategyContext) -> None:
        """A trade printed (``md.trade.*``)."""

    def on_quote(self, market: Market, quote: Quote, ctx: StrategyContext) -> None:
        """The best bid or ask changed (``md.quote.*``)."""

    def on_indicator(
        self, market: Market, name: str, symbol: str, values: dict[str, float], ctx: StrategyContext
    ) -> None:
        """An indicator value arrived (``indicator.{name}.v1.*``, or one call per value of
        an ``indicator.bar.v1.*`` event, in its order); also readable via ``ctx.indicator``."""

    def on_fill(self, order: OrderEvent, ctx: StrategyContext) -> None:
        """One of this strategy's orders (partially) filled; ``order.fill`` has the fill."""

    def on_order(self, order: OrderEvent, ctx: StrategyContext) -> None:
        """Any lifecycle event of this strategy's orders (after the books are updated)."""

    def on_timer(self, name: str, ctx: StrategyContext) -> None:
        """A timer set with ``ctx.set_timer`` is due."""

    def on_stop(self, ctx: StrategyContext) -> None:
        """Called once on a clean stop."""

    def snapshot_state(self) -> bytes:
        """The strategy's own state as bytes (default: nothing)."""
        return b""

    def restore_state(self, state: bytes) -> None:
        """Restore what :meth:`snapshot_state` returned."""


def load_strategy_class(path: str) -> type[Strategy]:
    """Import ``package.module:Class`` and check it is a :class:`Strategy`.

    The current directory is searched too (:func:`~tickertape.importing.import_object`).

    Raises:
        ConfigError: malformed path, module not importable, class missing or not a
            Strategy subclass.
    """
    cls = import_object(path, "strategy")
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(f"{path!r} is not a tickertape Strategy subclass")
    return cls


def build_strategy(config: StrategyConfig, cls: type[Strategy] | None = None) -> Strategy:
    """Instantiate the configured strategy with its validated ``params``.

    Raises:
        ConfigError: the class cannot be loaded or the params do not validate.
    """
    if cls is None:
        if not config.strategy:
            raise ConfigError("no strategy class given (strategy = 'package.module:Class')")
        cls = load_strategy_class(config.strategy)
    if cls.Params is None:
        if config.params:
            raise ConfigError(f"{cls.__name__} takes no params, got {sorted(config.params)}")
        return cls()
    try:
        params = msgspec.convert(config.params, cls.Params)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"strategy params: {exc}") from None
    return cls(params)


class StrategyActor(Actor):
    """The actor hosting one strategy (identity ``strategy.{strategy_id}``).

    Args:
        config: the configuration; the user class is loaded from ``config.strategy``
            unless ``strategy`` is given.
        strategy: an already built strategy instance (tests, in-process runs).

    Raises:
        ConfigError: invalid id, class or params.
    """

    name = "strategy"
    state_version = 1

    def __init__(
        self, config: StrategyConfig | None = None, strategy: Strategy | None = None
    ) -> None:
        self.config = config if config is not None else StrategyConfig()
        if not is_strategy_id(self.config.strategy_id):
            raise ConfigError(f"strategy_id {self.config.strategy_id!r}: letters, digits, _ and -")
        if self.config.strategy_id == PORTFOLIO:
            raise ConfigError(
                f"strategy_id {PORTFOLIO!r} is reserved: the pnl actor's portfolio book "
                f"(pnl.update.{PORTFOLIO}) has that name; choose another id"
            )
        self.strategy = strategy if strategy is not None else build_strategy(self.config)
        self.strategy_id = self.config.strategy_id
        self.name = f"strategy.{self.strategy_id}"  # type: ignore[misc]
        self.subscriptions = (
            *self.config.subscriptions,
            "order.>",
            "risk.state",
            "md.corporate_action.>",
        )
        self.state = StrategyState()
        if not self.config.enabled:
            self.state.halted_scopes.append("config")
        self._recent: deque[int] = deque()

    # ----------------------------------------------------------- actor hooks

    def on_start(self, ctx: Context) -> None:
        self.strategy.on_start(StrategyContext(self, ctx, None))

    def on_stop(self, ctx: Context) -> None:
        self.strategy.on_stop(StrategyContext(self, ctx, None))

    def on_timer(self, timer: Timer, ctx: Context) -> None:
        if timer.name.startswith("user:"):
            self.strategy.on_timer(timer.name[5:], StrategyContext(self, ctx, None))

    def on_event(self, event: Event, ctx: Context) -> None:
        payload = event.payload
        market = event.market
        if isinstance(payload, Bar):
            if market is None:
                return
            self.state.prices[_key(market, payload.symbol)] = payload.close
            self.strategy.on_bar(market, payload, StrategyContext(self, ctx, event))
        elif isinstance(payload, Trade):
            if market is None:
                return
            self.state.prices[_key(market, payload.symbol)] = payload.price
            self.strategy.on_trade(market, payload, StrategyContext(self, ctx, event))
        elif isinstance(payload, Quote):
            if market is not None:
                self.strategy.on_quote(market, payload, StrategyContext(self, ctx, event))
        elif isinstance(payload, CorporateAction):
            if market is not None:
                self._on_corporate_action(market, payload, ctx)
        elif isinstance(payload, OrderEvent):
            if payload.strategy_id != self.strategy_id:
                return
            if event.source == self.config.orders_source:
                self._on_order(payload, event, ctx)
            else:
                self._ignore(event, ctx)
        elif isinstance(payload, RiskState):
            if event.source == self.config.risk_source:
                self._on_risk_state(payload)
            else:
                self._ignore(event, ctx)
        elif event.type == "indicator.value" and market is not None:
            sctx = StrategyContext(self, ctx, event)
            self._on_indicator(market, payload.name, payload.symbol, payload.values, sctx)
        elif event.type == "indicator.bar" and market is not None:
            # A series published per bar: the same calls, in the same order, as its
            # indicator.value events would have made.
            sctx = StrategyContext(self, ctx, event)
            for name, values in payload.values.items():
                self._on_indicator(market, name, payload.symbol, values, sctx)

    def _on_indicator(
        self,
        market: Market,
        name: str,
        symbol: str,
        values: dict[str, float],
        sctx: StrategyContext,
    ) -> None:
        own = dict(values)
        self.state.indicators[f"{name}:{market}:{symbol}"] = own
        self.strategy.on_indicator(market, name, symbol, own, sctx)

    def snapshot(self) -> msgspec.Struct:
        self.state.intent_times = list(self._recent)
        self.state.user = self.strategy.snapshot_state()
        return self.state

    def restore(self, state: bytes) -> None:
        self.state = msgspec.msgpack.decode(state, type=StrategyState)
        # The config's kill switch follows the config the actor starts with, not the
        # one the snapshot was taken under (`enabled = false` is applied at every start).
        self.state.halted_scopes = [s for s in self.state.halted_scopes if s != "config"]
        if not self.config.enabled:
            self.state.halted_scopes.append("config")
        self._recent = deque(self.state.intent_times)
        self.strategy.restore_state(self.state.user)

    # -------------------------------------------------------------- internals

    def _ignore(self, event: Event, ctx: Context) -> None:
        self.state.ignored_events += 1
        ctx.log.error("event_ignored_wrong_source", source=event.source, id=event.id)

    def _on_corporate_action(self, market: Market, action: CorporateAction, ctx: Context) -> None:
        """A split multiplies the symbol's position by its ratio; a split or dividend
        moves its last price to the ex price, as the pnl actor and the risk gate do
        (:func:`~tickertape.actors.pnl.accounting.ex_price`)."""
        problem = accounting.corporate_action_problem(action, CURRENCY[market])
        if problem is not None:
            ctx.log.warning("corporate_action_not_applied", reason=problem)
            return
        key = _key(market, action.symbol)
        if action.action == "split" and key in self.state.positions:
            self.state.positions[key] *= float(action.ratio or 1.0)
        if key in self.state.prices:
            self.state.prices[key] = accounting.ex_price(self.state.prices[key], action)

    def _on_order(self, order: OrderEvent, event: Event, ctx: Context) -> None:
        if order.fill is not None:
            key = _key(order.market, order.symbol)
            signed = order.fill.quantity if order.side == "buy" else -order.fill.quantity
            self.state.positions[key] = self.state.positions.get(key, 0.0) + signed
        if order.status in _OPEN_STATUSES:
            self.state.open_orders[order.order_id] = OpenOrder(
                order_id=order.order_id,
                market=order.market,
                symbol=order.symbol,
                side=order.side,
                quantity=order.quantity,
                filled_quantity=order.filled_quantity,
                order_type=order.order_type,
                status=order.status,
            )
        else:
            self.state.open_orders.pop(order.order_id, None)
        sctx = StrategyContext(self, ctx, event)
        if order.fill is not None:
            self.strategy.on_fill(order, sctx)
        self.strategy.on_order(order, sctx)

    def _on_risk_state(self, state: RiskState) -> None:
        if state.scope == "strategy" and state.key != self.strategy_id:
            return
        scope = f"{state.scope}:{state.key or ''}"
        halted = set(self.state.halted_scopes)
        if state.state == "HALTED":
            halted.add(scope)
        else:
            halted.discard(scope)
        self.state.halted_scopes = sorted(halted)

    def _halted_for(self, market: Market) -> bool:
        for scope in self.state.halted_scopes:
            kind, _, key = scope.partition(":")
            if kind in ("config", "global", "strategy") or (kind == "market" and key == market):
                return True
        return False

    def _emit(
        self,
        ctx: Context,
        event: Event | None,
        *,
        market: Market,
        symbol: str,
        action: str = "order",
        **fields: Any,
    ) -> str | None:
        # The window runs on the time of the event the intent answers, not the clock:
        # live the clock is later by the time the actor took to get to the event, and
        # a restart catching up on the log (on event time) would drop other intents
        # than it dropped live, and publish those it had dropped. Never back: events of
        # different topics need not come in time order. Timers and on_start/on_stop
        # have no event: the clock.
        now = ctx.clock.now_ns() if event is None else event.ts_event
        if self._recent and now < self._recent[-1]:
            now = self._recent[-1]
        if action == "order" and self._halted_for(market):
            self.state.dropped_intents += 1
            ctx.log.warning("intent_dropped_kill_switch", strategy=self.strategy_id, symbol=symbol)
            return None
        while self._recent and self._recent[0] <= now - _MINUTE_NS:
            self._recent.popleft()
        if len(self._recent) >= self.config.max_intents_per_minute:
            self.state.dropped_intents += 1
            ctx.log.warning("intent_dropped_rate_limit", strategy=self.strategy_id, symbol=symbol)
            return None
        self._recent.append(now)
        self.state.intent_seq += 1
        intent = Intent(
            strategy_id=self.strategy_id,
            intent_id=f"{self.strategy_id}-{self.state.intent_seq}",
            market=market,
            symbol=symbol,
            action=action,  # type: ignore[arg-type]
            **fields,
        )
        return ctx.publish(
            f"strategy.intent.{self.strategy_id}", intent, market=market, causation=event
        )
