"""Pre-trade risk checks: limits, trading states and the decision on one intent.

Pure values in, values out. :func:`decide` takes an intent, a :class:`RiskView` of
what the gate knows (positions, open orders, cash, drawdown, market data age...), the
effective :class:`Limits` and the effective trading state, and returns a
:class:`Decision` with a stable reason code and the figures it used.

Checks run in this order; the first failure decides (reason codes in brackets):

1. the intent is well formed [``INVALID_INTENT``], resolves to a non-zero order
   [``NO_CHANGE``], and a cancel names an open order [``UNKNOWN_ORDER``];
2. trading state: HALTED refuses every order [``HALTED``]; REDUCING refuses any
   order that would not reduce the projected position [``REDUCING``]; cancels
   always pass;
3. a sell of a cash-like instrument that could take the position below zero (booked
   position − open sells − the order < 0) when short sales are not allowed
   (:attr:`Limits.short_sales_allowed`) [``SHORT_NOT_ALLOWED``];
4. clock drift alert outstanding [``CLOCK_DRIFT``];
5. drawdown at or beyond ``max_drawdown`` [``MAX_DRAWDOWN``];
6. market data older than ``stale_after_ms`` or never seen [``STALE_MARKET_DATA``];
   no price to value the order [``NO_PRICE``];
7. order notional > ``max_order_notional`` [``MAX_ORDER_NOTIONAL``];
8. worst case position after the order > ``max_position`` [``MAX_POSITION``];
9. gross exposure at the worst case after the order > ``max_gross_exposure``
   [``MAX_GROSS_EXPOSURE``];
10. open orders ≥ ``max_open_orders`` [``MAX_OPEN_ORDERS``];
11. approvals in the last 60 s ≥ ``max_orders_per_minute`` [``ORDER_RATE``];
12. with ``check_cash``: for a cash-like instrument, the funds the order needs >
    available funds [``INSUFFICIENT_CASH``]: a buy needs the notional it opens, a
    short sale the part of its collateral its proceeds do not cover; for a margined
    one (a future), the initial margin the order adds > available funds
    [``INSUFFICIENT_MARGIN``].

Checks 4–12 are skipped for orders that only reduce the projected position: a
risk gate must never stand in the way of getting out. Check 3 is not: a sell that
only reduces unfilled buys may open a short if they are canceled, and a sell within
the booked long never meets it.

"Projected position" is the booked position plus the signed remaining quantity of
the strategy's open orders in that symbol: concurrent orders cannot add up past a
limit, and REDUCING can never increase exposure.

"Worst case position" (:func:`worst_case_position`) does not net open orders of
opposite sides, because either side may fill without the other: it is the larger of
|position + Σ open buys| and |position − Σ open sells|, the position the book reaches
if every open buy fills and no sell does, or the reverse. An order counts as
*reducing* only when it can open nothing on its own side whatever the other open
orders do (the long side ``position + Σ open buys`` for a buy, the short side for a
sell); it then moves the projected position toward zero without flipping it and does
not raise the worst case position. A sell that "reduces" a projected long made of
unfilled buys could, if the buys are canceled, open a short: it is not reducing.

Position and gross exposure limits hold at the worst case: an order is refused when
the worst case position after it exceeds ``max_position``, or when the strategy's
gross exposure with every symbol at its worst case position (the order's symbol after
the order) exceeds ``max_gross_exposure``. So no combination of fills of the open
orders can take a position or the gross exposure past a limit that held before
(prices moving apart): Trading Technologies' position limits are checked the same way,
on the worst case position including the new order.

Quantities and positions count contracts; every notional is a contract value,
``quantity × price × multiplier`` with the instrument's contract multiplier
(:attr:`RiskView.multiplier`, 1 for shares and coins, 125,000 for a CME 6E future).

Funds (:attr:`RiskView.cash`): a cash-like instrument (stock, crypto spot) is paid in
full, so an order needs the notional of the contracts it may open: for a buy, how far
it raises the long side ``max(position + Σ open buys, 0)``; for a sell, how far it
raises the short side ``max(Σ open sells − position, 0)`` (open orders of the other
side are not netted: they may never fill). A margined instrument (a future,
:attr:`RiskView.initial_margin` > 0) needs only the initial margin per contract the
order adds to the worst case position, ``initial_margin × (worst after − worst
before)`` when positive: a reducing order adds none, and a flip from +1 to −1 adds
none as long as |−1| ≤ the current worst case. Available funds are the strategy's
cash plus the unrealized PnL of its futures, minus ``initial_margin × worst case
position`` of each of its futures, the notional its open cash-like buy orders
reserve (those covering a booked short excepted) and the collateral of its cash-like
shorts (below): the "available funds" of a futures account (equity less initial
margin), which is the cash of a cash-only book. Charging open orders on the side that
would increase exposure most is the usual pre-trade treatment of working orders
(Trading Technologies' risk limits, "worst case position": position + working orders
of one side + the new order; CTS T4's ``Position.Worst``).

Short sales of cash-like instruments. A cash account cannot sell what it does not
hold: with ``check_cash`` and unless ``allow_short = true``, a sell may bring the
booked position minus the open sells down to 0, never below (``SHORT_NOT_ALLOWED``).
When short sales are allowed, a short is collateralized as Regulation T requires of a
short sale of a US equity: 150 % of its current market value
(:data:`SHORT_SALE_REQUIREMENT`; 12 CFR 220.12(c)(1)), of which the proceeds of the
sale, held in cash, are 100 %. A booked short takes ``1.5 × |position| × price ×
multiplier`` from the available funds (its proceeds are in the cash, its liability
and the extra 50 % are not free), an open sell that may open a short reserves 50 % of
the notional it opens, and a new short sale needs 50 % of the notional it opens
(``INSUFFICIENT_CASH``). The same rule applies in every market; the longs of a cash
book are fully paid and are not collateral. Futures may always go short (their margin
is the margined rule above).
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from tickertape.errors import ConfigError
from tickertape.schemas.envelope import MARKETS, Market
from tickertape.schemas.pnl import Book
from tickertape.schemas.risk import ApprovedOrder, TradingState
from tickertape.schemas.strategy import Intent, Side

ReasonCode = Literal[
    "OK",
    "INVALID_INTENT",
    "NO_CHANGE",
    "UNKNOWN_ORDER",
    "HALTED",
    "REDUCING",
    "SHORT_NOT_ALLOWED",
    "CLOCK_DRIFT",
    "MAX_DRAWDOWN",
    "STALE_MARKET_DATA",
    "NO_PRICE",
    "MAX_ORDER_NOTIONAL",
    "MAX_POSITION",
    "MAX_GROSS_EXPOSURE",
    "MAX_OPEN_ORDERS",
    "ORDER_RATE",
    "INSUFFICIENT_CASH",
    "INSUFFICIENT_MARGIN",
]

REASON_CODES: tuple[str, ...] = ReasonCode.__args__  # type: ignore[attr-defined]
"""Every reason code, in check order."""

ORDER_RATE_WINDOW_NS = 60_000_000_000
"""The order-rate window: one minute of the gate's clock."""

SHORT_SALE_REQUIREMENT = 1.5
"""Collateral of a short sale of a cash-like instrument, a fraction of its market value:
Regulation T's initial requirement for a short sale of a nonexempted security, 150 %
of its current market value (12 CFR 220.12(c)(1)); the sale's proceeds are 100 % of
it, the account adds the other 50 %."""

SHORT_MAINTENANCE_REQUIREMENT = 0.30
"""Maintenance requirement of a booked short of a cash-like instrument, a fraction of
its current market value: FINRA Rule 4210(c)(2)(C), 30 % of the current market value
of each security short in the account selling at $5.00 per share or above (the rule's
$5.00-per-share floor, and its 100 % / $2.50 rule under $5.00, are not applied). The
account's equity must stay at or above it (:func:`maintenance_requirement`)."""

_STATE_RANK: dict[str, int] = {"ACTIVE": 0, "REDUCING": 1, "HALTED": 2}


def maintenance_requirement(book: Book) -> float:
    """The equity a book must keep to hold its open positions, in its currency.

    ``Σ maintenance_margin`` of its margined positions (futures: contracts × the
    instrument's maintenance margin, as the pnl actor books them) plus
    :data:`SHORT_MAINTENANCE_REQUIREMENT` × ``|quantity| × mark × multiplier`` of each
    cash-like short. Longs of a cash book are fully paid and require nothing. A book
    whose ``equity`` falls below this is under a margin call (the risk gate's
    ``MARGIN_CALL``, docs/risk.md).

    Args:
        book: one book of a ``pnl.update``.

    Returns:
        The requirement, ≥ 0 (0.0 for a flat book or one holding only cash-like longs).
    """
    required = 0.0
    for held in book.positions:
        if held.initial_margin > 0.0 or held.maintenance_margin > 0.0:
            required += held.maintenance_margin
        elif held.quantity < 0.0:
            required += SHORT_MAINTENANCE_REQUIREMENT * -held.quantity * held.mark * held.multiplier
    return required


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Risk limits of one scope; None means "no limit at this scope".

    Attributes:
        max_order_notional: largest ``quantity × price × multiplier`` of one order, in
            the market's currency.
        max_position: largest |position| per symbol, in contracts (shares, coins), at
            the worst case position (every open order of one side filled).
        max_gross_exposure: largest Σ |position × price × multiplier| of a strategy's
            book in one market, in its currency, every symbol at its worst case
            position.
        max_open_orders: most open orders per strategy.
        max_orders_per_minute: most approvals per strategy in any 60 s of the intents' time.
        max_drawdown: drawdown (fraction of the high-water mark) at which new
            exposure is refused and the scope is halted, in (0, 1].
        stale_after_ms: market data older than this refuses new exposure.
        check_cash: refuse orders that need more than the available funds: the
            opening notional of a cash-like instrument (50 % of it for a short
            sale), the added initial margin of a margined one (a future). It also
            turns on margin calls: a book whose equity falls below its
            :func:`maintenance_requirement` puts its scope in REDUCING.
        allow_short: whether a sell of a cash-like instrument may take its position
            below zero. None (absent from every scope) means "not with check_cash"
            (a cash account) and "yes" without it; see :attr:`short_sales_allowed`.
            Futures may always go short.
    """

    max_order_notional: float | None = None
    max_position: float | None = None
    max_gross_exposure: float | None = None
    max_open_orders: int | None = None
    max_orders_per_minute: int | None = None
    max_drawdown: float | None = None
    stale_after_ms: int | None = None
    check_cash: bool | None = None
    allow_short: bool | None = None

    @property
    def short_sales_allowed(self) -> bool:
        """``allow_short`` when set, else True without ``check_cash`` and False with it."""
        if self.allow_short is not None:
            return self.allow_short
        return not self.check_cash

    def validate(self, where: str) -> None:
        """Raises ConfigError naming ``where`` when a limit is out of range."""
        for name in (
            "max_order_notional",
            "max_position",
            "max_gross_exposure",
            "max_open_orders",
            "max_orders_per_minute",
            "stale_after_ms",
        ):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{where}.{name} must be a finite number > 0 (got {value})")
        if self.max_drawdown is not None and not 0.0 < self.max_drawdown <= 1.0:
            raise ConfigError(f"{where}.max_drawdown must be in (0, 1] (got {self.max_drawdown})")


class LimitsFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The limits TOML file: ``[global]``, ``[markets.<market>]``, ``[strategies.<id>]``.

    The effective limit of an order is the most restrictive of the three scopes
    that apply to it (see :func:`effective_limits`).
    """

    global_: Limits = msgspec.field(default_factory=Limits, name="global")
    markets: dict[Market, Limits] = msgspec.field(default_factory=dict)
    strategies: dict[str, Limits] = msgspec.field(default_factory=dict)

    def validate(self) -> None:
        """Raises ConfigError when a limit is out of range."""
        self.global_.validate("global")
        for market, limits in sorted(self.markets.items()):
            limits.validate(f"markets.{market}")
        for strategy, limits in sorted(self.strategies.items()):
            limits.validate(f"strategies.{strategy}")


def parse_limits(text: str, path: str | None = None) -> LimitsFile:
    """Parse and validate a limits TOML document.

    Raises:
        ConfigError: invalid TOML, an unknown key (named with its path), a wrong type,
            an unknown market or an out-of-range limit.
    """
    try:
        limits = msgspec.toml.decode(text.encode(), type=LimitsFile)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid risk limits: {exc}", path) from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path) from None
    try:
        limits.validate()
    except ConfigError as exc:
        raise ConfigError(exc.detail, path) from None
    return limits


def _tightest(values: list[float | int | None]) -> float | int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def effective_limits(limits: LimitsFile, market: Market, strategy_id: str) -> Limits:
    """The most restrictive of the global, market and strategy limits, field by field.

    ``check_cash`` is on when any scope turns it on; ``allow_short`` is False when any
    scope says false, else True when one says true, else None (unset).
    """
    scopes = [limits.global_, limits.markets.get(market), limits.strategies.get(strategy_id)]
    present = [s for s in scopes if s is not None]
    fields: dict[str, float | int | bool | None] = {}
    for name in Limits.__struct_fields__:
        if name == "check_cash":
            fields[name] = any(s.check_cash for s in present) or None
        elif name == "allow_short":
            said = [s.allow_short for s in present if s.allow_short is not None]
            fields[name] = min(said) if said else None  # False beats True
        else:
            fields[name] = _tightest([getattr(s, name) for s in present])
    return msgspec.convert(fields, Limits)


class TradingStates(msgspec.Struct, frozen=True, kw_only=True):
    """Trading states of every scope (absent = ACTIVE)."""

    global_state: TradingState = "ACTIVE"
    markets: dict[str, TradingState] = msgspec.field(default_factory=dict)
    strategies: dict[str, TradingState] = msgspec.field(default_factory=dict)

    def of(self, scope: str, key: str | None) -> TradingState:
        """The state of one scope (``global``, ``market`` or ``strategy``)."""
        if scope == "global":
            return self.global_state
        table = self.markets if scope == "market" else self.strategies
        return table.get(key or "", "ACTIVE")

    def with_state(self, scope: str, key: str | None, state: TradingState) -> TradingStates:
        """A copy with one scope set to ``state``."""
        if scope == "global":
            return msgspec.structs.replace(self, global_state=state)
        if scope == "market":
            if key not in MARKETS:
                raise ConfigError(f"unknown market {key!r} (expected one of {MARKETS})")
            return msgspec.structs.replace(self, markets={**self.markets, key: state})
        if not key:
            raise ConfigError("a strategy scope needs a strategy id")
        return msgspec.structs.replace(self, strategies={**self.strategies, key: state})


def effective_state(states: TradingStates, market: Market, strategy_id: str) -> TradingState:
    """The most restrictive of the global, market and strategy states."""
    candidates = (
        states.global_state,
        states.markets.get(market, "ACTIVE"),
        states.strategies.get(strategy_id, "ACTIVE"),
    )
    return max(candidates, key=lambda s: _STATE_RANK[s])


def worst_case_position(position: float, open_buys: float, open_sells: float) -> float:
    """The largest |position| a book can reach if its open orders fill, one side only.

    ``max(|position + open_buys|, |position − open_sells|)``: every open buy fills and
    no sell does, or the reverse. Open orders of opposite sides are not netted, as
    either may be canceled or never reached (Trading Technologies' risk limits,
    "worst case position"; CTS T4's ``Position.Worst``).

    Args:
        position: the booked position, signed contracts.
        open_buys: Σ remaining quantity of open buy orders, contracts, ≥ 0.
        open_sells: Σ remaining quantity of open sell orders, contracts, ≥ 0.

    Returns:
        The worst case position, contracts, ≥ 0.
    """
    return max(abs(position + open_buys), abs(position - open_sells))


class RiskView(msgspec.Struct, frozen=True, kw_only=True):
    """What the gate knows when it decides one intent.

    Attributes:
        now_ns: the time the decision is made as of, ns: the intent's ``ts_event``.
        position: the strategy's booked position in the symbol (signed contracts).
        open_buys: Σ remaining quantity of the strategy's open buy orders in the
            symbol (contracts, ≥ 0).
        open_sells: Σ remaining quantity of its open sell orders in the symbol
            (contracts, ≥ 0).
        price: last traded price or bar close of the symbol; None if never seen.
        last_data_ns: ``ts_event`` of that price; None if never seen.
        gross_exposure: the strategy's Σ worst case position × price × multiplier
            over its symbols in the market (booked positions and open orders, see
            :func:`worst_case_position`), the symbol's own at ``price`` (left out
            when ``price`` is None).
        open_orders: the strategy's open orders (all symbols).
        open_order_ids: ids of those orders (for cancels).
        recent_orders: approvals of the strategy within the last 60 s.
        cash: the strategy's available funds in the market: its cash, plus the
            unrealized PnL of its futures positions, minus their initial margin at
            their worst case positions (open orders of each side included, see
            :func:`worst_case_position`), the notional reserved by open buy orders
            of cash-like instruments but for those covering a booked short, and the
            collateral of cash-like shorts (:data:`SHORT_SALE_REQUIREMENT` of a
            booked short's value, the part of it an open sell's proceeds would not
            cover; see the module docstring). For a book without futures: cash
            minus those reservations and collateral.
        drawdown: the strategy's current drawdown (fraction), from pnl updates.
        clock_drift: a clock drift alert is outstanding.
        multiplier: the symbol's contract multiplier (units of the underlying per
            contract, > 0).
        initial_margin: the symbol's initial margin per contract in the market's
            currency, > 0 for a margined instrument (a future); 0.0 for a cash-like
            one.
    """

    now_ns: int
    position: float = 0.0
    open_buys: float = 0.0
    open_sells: float = 0.0
    price: float | None = None
    last_data_ns: int | None = None
    gross_exposure: float = 0.0
    open_orders: int = 0
    open_order_ids: frozenset[str] = frozenset()
    recent_orders: int = 0
    cash: float = 0.0
    drawdown: float = 0.0
    clock_drift: bool = False
    multiplier: float = 1.0
    initial_margin: float = 0.0

    @property
    def projected(self) -> float:
        """Booked position plus open orders' signed remaining quantity."""
        return self.position + self.open_buys - self.open_sells

    @property
    def worst_case(self) -> float:
        """:func:`worst_case_position` of the booked position and the open orders."""
        return worst_case_position(self.position, self.open_buys, self.open_sells)


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The gate's answer: approved or not, why, the order, and the figures used."""

    approved: bool
    reason_code: ReasonCode
    reason: str
    order: ApprovedOrder | None
    inputs: dict[str, float]


def resolve_order(intent: Intent, projected: float) -> tuple[Side, float] | None:
    """Turn an order intent into (side, quantity), or None when it changes nothing.

    A ``target_position`` becomes the difference from the projected position.
    """
    if intent.target_position is not None:
        delta = intent.target_position - projected
        if abs(delta) <= 1e-12 * max(abs(intent.target_position), abs(projected), 1.0):
            return None
        return ("buy", delta) if delta > 0 else ("sell", -delta)
    if intent.side is None or intent.quantity is None:
        return None
    return (intent.side, intent.quantity)


def _opening(view: RiskView, side: Side, quantity: float) -> tuple[float, float, float]:
    """(contracts the order may open, worst case position before, and after it).

    The first is how far the order raises its own side: the long side
    ``max(position + open buys, 0)`` for a buy, the short side ``max(open sells −
    position, 0)`` for a sell (what a cash-like order must pay or cover); the others,
    :func:`worst_case_position` before and after the order (a future's margin is
    charged on the rise; position limits hold at the second). With no open order of
    the other side the first equals the opening of the projected position: ``|after|``
    on a flip, else ``max(|after| − |projected|, 0)``.
    """
    long_side = view.position + view.open_buys  # every open buy fills, no sell
    short_side = view.position - view.open_sells  # every open sell fills, no buy
    worst = max(abs(long_side), abs(short_side))
    if side == "buy":
        opening = max(long_side + quantity, 0.0) - max(long_side, 0.0)
        worst_after = max(abs(long_side + quantity), abs(short_side))
    else:
        opening = max(-(short_side - quantity), 0.0) - max(-short_side, 0.0)
        worst_after = max(abs(long_side), abs(short_side - quantity))
    return opening, worst, worst_after


def _invalid(intent: Intent) -> str | None:
    if intent.action == "cancel":
        return None if intent.cancel_order_id else "a cancel intent needs cancel_order_id"
    if intent.target_position is not None:
        if intent.quantity is not None or intent.side is not None:
            return "give either target_position or side and quantity, not both"
    elif intent.side is None or intent.quantity is None:
        return "an order intent needs side and quantity, or target_position"
    elif not intent.quantity > 0:
        return f"quantity must be > 0 (got {intent.quantity})"
    if intent.order_type == "limit" and not (intent.limit_price and intent.limit_price > 0):
        return "a limit order needs a positive limit_price"
    if intent.order_type == "stop" and not (intent.stop_price and intent.stop_price > 0):
        return "a stop order needs a positive stop_price"
    return None


def _reject(code: ReasonCode, reason: str, inputs: dict[str, float]) -> Decision:
    return Decision(approved=False, reason_code=code, reason=reason, order=None, inputs=inputs)


def decide(intent: Intent, view: RiskView, limits: Limits, state: TradingState) -> Decision:
    """Decide one intent (see the module docstring for the checks and their order).

    Args:
        intent: the strategy's intent.
        view: what the gate knows now.
        limits: the effective limits (:func:`effective_limits`).
        state: the effective trading state (:func:`effective_state`).

    Returns:
        The decision; ``inputs`` holds every figure a check used, for the audit trail
        (``multiplier`` among them when it is not 1; ``open_buys``,
        ``open_sells`` and ``worst_case_after`` when the symbol has open orders;
        ``initial_margin``, per contract, and ``opening_margin`` for a margined
        instrument; ``short_sale_margin`` for a cash-like sell that may open a
        short).
    """
    inputs: dict[str, float] = {
        "position": view.position,
        "projected_position": view.projected,
        "open_orders": float(view.open_orders),
        "recent_orders": float(view.recent_orders),
        "drawdown": view.drawdown,
        "state": float(_STATE_RANK[state]),
    }
    problem = _invalid(intent)
    if problem is not None:
        return _reject("INVALID_INTENT", problem, inputs)
    if intent.action == "cancel":
        order_id = intent.cancel_order_id or ""
        if order_id not in view.open_order_ids:
            return _reject("UNKNOWN_ORDER", f"no open order {order_id!r}", inputs)
        order = ApprovedOrder(
            market=intent.market,
            symbol=intent.symbol,
            side="buy",
            quantity=0.0,
            cancel_order_id=order_id,
        )
        return Decision(
            approved=True, reason_code="OK", reason="cancel", order=order, inputs=inputs
        )
    resolved = resolve_order(intent, view.projected)
    if resolved is None:
        return _reject("NO_CHANGE", "the order would not change the position", inputs)
    side, quantity = resolved
    signed = quantity if side == "buy" else -quantity
    after = view.projected + signed
    inputs["quantity"] = quantity
    inputs["projected_after"] = after
    opening, worst, worst_after = _opening(view, side, quantity)
    worst_added = worst_after - worst
    if view.open_buys or view.open_sells:
        inputs["open_buys"] = view.open_buys
        inputs["open_sells"] = view.open_sells
        inputs["worst_case_after"] = worst_after
    # Reducing: the order can open nothing on its own side whatever the other open
    # orders do (a buy against a resting sell would open a long if the sell were
    # canceled). Then it also moves the projected position toward zero without
    # flipping and does not raise the worst case: no fill of the other open orders can
    # leave the book further from flat. It skips the checks below (funds among them).
    reducing = opening <= 1e-12 * max(quantity, 1.0)
    if state == "HALTED":
        return _reject("HALTED", "trading is halted", inputs)
    if state == "REDUCING" and not reducing:
        return _reject("REDUCING", "only orders that reduce the position are accepted", inputs)
    margined = view.initial_margin > 0.0
    if side == "sell" and not margined and not limits.short_sales_allowed:
        short_side_after = view.position - view.open_sells - quantity
        if short_side_after < -1e-12 * max(abs(view.position), view.open_sells + quantity):
            return _reject(
                "SHORT_NOT_ALLOWED",
                f"selling {quantity} of {intent.symbol} with {view.open_sells} open to sell"
                f" and a position of {view.position} could leave it at {short_side_after};"
                " short sales of a cash-like instrument need allow_short = true",
                inputs,
            )
    price = view.price
    if intent.order_type == "limit" and intent.limit_price is not None:
        price = intent.limit_price if price is None else max(price, intent.limit_price)
    elif intent.order_type == "stop" and intent.stop_price is not None:
        price = intent.stop_price if price is None else max(price, intent.stop_price)
    if price is not None:
        inputs["price"] = price
    multiplier = view.multiplier
    if multiplier != 1.0:
        inputs["multiplier"] = multiplier
    if view.last_data_ns is not None:
        # ≥ 0: live, a price stamped after the intent can reach the gate before it.
        inputs["data_age_ms"] = max(0, view.now_ns - view.last_data_ns) / 1e6
    order = ApprovedOrder(
        market=intent.market,
        symbol=intent.symbol,
        side=side,
        quantity=quantity,
        order_type=intent.order_type,
        limit_price=intent.limit_price,
        stop_price=intent.stop_price,
        time_in_force=intent.time_in_force,
    )
    if reducing:
        return Decision(
            approved=True, reason_code="OK", reason="reduces exposure", order=order, inputs=inputs
        )
    if view.clock_drift:
        return _reject("CLOCK_DRIFT", "a clock drift alert is outstanding", inputs)
    if limits.max_drawdown is not None and view.drawdown >= limits.max_drawdown:
        return _reject(
            "MAX_DRAWDOWN",
            f"drawdown {view.drawdown:.4f} ≥ limit {limits.max_drawdown:.4f}",
            inputs,
        )
    if limits.stale_after_ms is not None:
        age_ms = inputs.get("data_age_ms")
        if age_ms is None or age_ms > limits.stale_after_ms:
            return _reject(
                "STALE_MARKET_DATA",
                f"market data age {age_ms} ms > {limits.stale_after_ms} ms",
                inputs,
            )
    if price is None or not price > 0:
        return _reject("NO_PRICE", f"no price known for {intent.symbol}", inputs)
    notional = quantity * price * multiplier
    inputs["notional"] = notional
    if limits.max_order_notional is not None and notional > limits.max_order_notional:
        return _reject(
            "MAX_ORDER_NOTIONAL",
            f"notional {notional:.2f} > limit {limits.max_order_notional:.2f}",
            inputs,
        )
    if limits.max_position is not None and worst_after > limits.max_position:
        return _reject(
            "MAX_POSITION",
            f"worst case position {worst_after} would exceed {limits.max_position}",
            inputs,
        )
    contract_value = price * multiplier
    # view.gross_exposure holds the symbol at its last price; after the order, the
    # symbol's worst case is valued at the order's price
    held_value = worst * (view.price * multiplier) if view.price is not None else 0.0
    gross_after = view.gross_exposure - held_value + worst_after * contract_value
    inputs["gross_exposure_after"] = gross_after
    if limits.max_gross_exposure is not None and gross_after > limits.max_gross_exposure:
        return _reject(
            "MAX_GROSS_EXPOSURE",
            f"gross exposure {gross_after:.2f} > limit {limits.max_gross_exposure:.2f}",
            inputs,
        )
    if limits.max_open_orders is not None and view.open_orders >= limits.max_open_orders:
        return _reject(
            "MAX_OPEN_ORDERS", f"{view.open_orders} open orders ≥ {limits.max_open_orders}", inputs
        )
    if limits.max_orders_per_minute is not None and (
        view.recent_orders >= limits.max_orders_per_minute
    ):
        return _reject(
            "ORDER_RATE",
            f"{view.recent_orders} orders in the last minute ≥ {limits.max_orders_per_minute}",
            inputs,
        )
    opening_notional = opening * price * multiplier
    inputs["opening_notional"] = opening_notional
    inputs["cash"] = view.cash
    if margined:
        opening_margin = max(worst_added, 0.0) * view.initial_margin
        inputs["initial_margin"] = view.initial_margin
        inputs["opening_margin"] = opening_margin
        if limits.check_cash and opening_margin > view.cash:
            return _reject(
                "INSUFFICIENT_MARGIN",
                f"initial margin {opening_margin:.2f} > available funds {view.cash:.2f}",
                inputs,
            )
    elif side == "sell" and opening > 0.0:
        short_sale_margin = (SHORT_SALE_REQUIREMENT - 1.0) * opening_notional
        inputs["short_sale_margin"] = short_sale_margin
        if limits.check_cash and short_sale_margin > view.cash:
            return _reject(
                "INSUFFICIENT_CASH",
                f"short sale margin {short_sale_margin:.2f} (the collateral beyond its"
                f" proceeds) > available cash {view.cash:.2f}",
                inputs,
            )
    elif limits.check_cash and opening_notional > view.cash:
        return _reject(
            "INSUFFICIENT_CASH",
            f"opening notional {opening_notional:.2f} > available cash {view.cash:.2f}",
            inputs,
        )
    return Decision(approved=True, reason_code="OK", reason="", order=order, inputs=inputs)
