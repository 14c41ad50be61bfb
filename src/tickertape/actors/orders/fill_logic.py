"""All fill and cost logic of the simulated venue, shared by backtest, replay and paper.

Pure functions over values: no clock, no I/O, no randomness beyond a hash of
documented inputs. Every mode (backtest, replay, paper) simulates fills with this
module, so a backtest and a paper run of the same data fill the same way.

The model, pessimistic by default:

- **Latency** (:class:`LatencyModel`): an order reaches the venue ``base_ns`` plus a
  deterministic jitter in ``[0, jitter_ns]`` after it was submitted; the jitter is a
  hash of the seed and the client order id, so a replay reproduces it exactly.
  Zero or negative latency is refused with
  :class:`~tickertape.actors.runtime.errors.ZeroLatencyError` (a BiasError).
  A cancel travels the same way (:func:`cancel_arrival_ns`, its jitter keyed by
  ``"{client order id}:cancel"``) and never lands before its order: until it lands
  the order keeps working, so data in between still fills it; data at the landing
  time comes after the cancel (timers fire before the step's inputs).
- **Eligible data**: an order only fills against market data that happened after it
  arrived at the venue: a trade with ``ts_event > arrival_ns``, or a bar that closes
  after ``arrival_ns`` and either starts at the order's submission time (the bar
  after the signal's, filled at its open by the usual convention) or starts at or
  after ``arrival_ns``. The bar that produced a signal therefore never fills it, and
  when the latency is longer than a bar, no bar whose open printed while the order
  was in flight does.
- **Prices**: market orders fill at the next trade's price or the next bar's open.
  Limit orders fill at the open when it is already through the limit (marketable on
  arrival, taker), otherwise only when the market trades strictly through the limit
  (touching is not enough), at the limit price (maker). Stop orders trigger when the
  market reaches the stop and then fill as market orders at the worse of the stop
  and the open (gaps fill at the open).
- **Slippage** (:class:`SlippageModel`): ``fixed_bps + impact_bps × participation``
  where participation is the quantity the venue's orders have taken from the data
  point so far, this fill included, over its traded volume (a later order in the
  queue walks further into the book); applied against the order (buys pay more,
  sells receive less). Limit prices are never crossed by slippage.
- **Partial fills**: each data point fills at most ``participation_rate`` × its traded
  volume, shared by every working order of the symbol in arrival order (then order
  id); the rest waits for later data (GTC, DAY) or is expired (IOC). With a
  ``lot_size``, fills are whole lots: a share below one lot fills nothing.
- **Fees** (:class:`FeeSchedule`): per market, see :data:`DEFAULT_FEES`; an
  instrument's specification may replace its market's schedule. A schedule's
  minimum and maximum apply to an order's fills of one exchange-local day together,
  as brokers charge them (a GTC order filled over several days pays them each day).
- **Instruments** (:class:`~tickertape.actors.orders.instruments.InstrumentSpec`):
  quantities count contracts of ``multiplier`` units, so notionals (and the fees
  computed from them) are ``quantity × price × multiplier``; with a ``tick_size``,
  taker fill prices are rounded to the tick grid against the order (buys up, sells
  down) and limit or stop prices off the grid are rejected; with a ``lot_size``,
  quantities off the lot grid are rejected. Without a specification an instrument
  has multiplier 1, no grid and no lot.

The sources of every default are in the docstrings below and in ``docs/risk.md``.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

import msgspec

from tickertape.actors.runtime.errors import require_latency
from tickertape.errors import BiasError, ConfigError, OrderError
from tickertape.schemas.envelope import Market
from tickertape.schemas.strategy import OrderType, Side, TimeInForce

if TYPE_CHECKING:
    from tickertape.actors.orders.instruments import InstrumentSpec

Liquidity = Literal["maker", "taker"]
OrderPhase = Literal["pending", "working", "filled", "canceled", "expired"]

CURRENCY: dict[str, str] = {"kr": "KRW", "us": "USD", "crypto": "USDT"}
"""Each market's accounting currency: KRX trades in won, US venues in dollars, and
the bundled crypto data is quoted in Tether (Binance ``BTCUSDT``)."""

EXCHANGE_TIMEZONE: dict[str, str] = {"kr": "Asia/Seoul", "us": "America/New_York", "crypto": "UTC"}
"""The time zone whose calendar day bounds a DAY order in each market."""

_NS_PER_S = 1_000_000_000


class LatencyModel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Order-to-venue latency: a constant plus a deterministic jitter, in ns.

    Attributes:
        base_ns: the constant part, > 0 (default 50 ms, a typical retail round trip
            to a cloud-hosted venue API).
        jitter_ns: the jitter's upper bound, ≥ 0; the jitter of one order is uniform
            in ``[0, jitter_ns]``, drawn from a hash of ``seed`` and the order's
            client id (default 20 ms).
        seed: the jitter's seed.
    """

    base_ns: int = 50_000_000
    jitter_ns: int = 20_000_000
    seed: int = 0

    def validate(self) -> None:
        """Refuse a model that could deliver an order instantly or in the past.

        Raises:
            ZeroLatencyError: ``base_ns`` ≤ 0 (an order that reaches the venue instantly
                trades on data it could not have seen: look-ahead).
            BiasError: ``jitter_ns`` < 0.
        """
        require_latency("the order-to-venue latency (base_ns)", self.base_ns)
        if self.jitter_ns < 0:
            raise BiasError(f"latency jitter_ns must be ≥ 0 (got {self.jitter_ns})")

    def delay_ns(self, client_order_id: str) -> int:
        """Return this order's latency in ns: ``base_ns + jitter`` (always > 0).

        Raises:
            BiasError: the model is invalid (see :meth:`validate`).
        """
        self.validate()
        if self.jitter_ns == 0:
            return self.base_ns
        digest = hashlib.blake2b(f"{self.seed}:{client_order_id}".encode(), digest_size=8).digest()
        return self.base_ns + int.from_bytes(digest, "big") % (self.jitter_ns + 1)


class SlippageModel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Slippage in basis points: ``fixed_bps + impact_bps × participation``.

    Attributes:
        fixed_bps: paid on every taker fill (default 1 bp: half of a one-tick spread
            on liquid instruments, e.g. 0.5 pip on EURUSD at 1.10 is ~0.45 bp).
        impact_bps: bps added per unit of participation (fill quantity / traded
            volume of the data point); default 10 bps at 100 % participation, a
            linear impact in the spirit of Almgren–Chriss (2000) temporary impact.
    """

    fixed_bps: float = 1.0
    impact_bps: float = 10.0


class FeeSchedule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fees of one market, in its currency. Every component is ≥ 0.

    ``fee = max(notional × rate_bps / 1e4 + quantity × per_unit, minimum)``, capped at
    ``maximum_rate × notional`` when ``maximum_rate`` > 0, plus ``sell_tax_bps`` of the
    notional on sells. ``rate_bps`` is ``maker_bps`` or ``taker_bps``; ``notional`` is
    ``quantity × price × multiplier`` (the contract value traded) and ``quantity``
    counts contracts.

    Attributes:
        maker_bps, taker_bps: proportional commission.
        per_unit: commission per share or contract (per side).
        minimum: minimum commission per fill (0 for none).
        maximum_rate: cap as a fraction of notional (0 for none).
        sell_tax_bps: tax on sell notional (KRX securities transaction tax, SEC fee).
    """

    maker_bps: float = 0.0
    taker_bps: float = 0.0
    per_unit: float = 0.0
    minimum: float = 0.0
    maximum_rate: float = 0.0
    sell_tax_bps: float = 0.0

    def validate(self) -> None:
        """Raises ConfigError when a component is negative."""
        for name in (
            "maker_bps",
            "taker_bps",
            "per_unit",
            "minimum",
            "maximum_rate",
            "sell_tax_bps",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"fees.{name} must be ≥ 0 (got {getattr(self, name)})")

    def fee(
        self,
        side: Side,
        quantity: float,
        price: float,
        liquidity: Liquidity,
        multiplier: float = 1.0,
    ) -> float:
        """Return the fee of one fill as an order of its own, ≥ 0, in the market's
        currency (:func:`match` applies the minimum and maximum to an order's fills of
        one day together).

        Args:
            side: ``"buy"`` or ``"sell"`` (the sell tax applies to sells only).
            quantity: contracts (shares, coins) filled, > 0.
            price: fill price, in the market's currency per unit of the underlying.
            liquidity: ``"maker"`` or ``"taker"``.
            multiplier: units of the underlying per contract (1 for shares and coins).
        """
        notional = abs(quantity * price * multiplier)
        raw = self.raw_commission(quantity, notional, liquidity)
        commission = raw + self.adjustment(raw, notional)
        return max(commission + self.tax(side, notional), 0.0)

    def raw_commission(self, quantity: float, notional: float, liquidity: Liquidity) -> float:
        """The commission of a fill before the minimum and maximum, in the market's
        currency, ≥ 0: ``notional`` (quantity × price × multiplier, market currency) ×
        the maker or taker rate + ``|quantity|`` (contracts) × ``per_unit``."""
        rate = self.maker_bps if liquidity == "maker" else self.taker_bps
        return notional * rate / 10_000.0 + abs(quantity) * self.per_unit

    def adjustment(self, raw: float, notional: float) -> float:
        """What the minimum and the maximum add to (or take from) the raw commission
        ``raw`` of fills worth ``notional`` together (one order's fills of one day):
        ``min(max(raw, minimum), notional × maximum_rate) − raw``, in the market's
        currency (> 0 when the minimum binds, < 0 when the maximum does, else 0.0).
        Brokers apply both per order and day (Interactive Brokers Pro "Fixed": minimum
        USD 1.00 and maximum 1 % of trade value per order)."""
        commission = max(raw, self.minimum)
        if self.maximum_rate > 0.0:
            commission = min(commission, notional * self.maximum_rate)
        return commission - raw

    def tax(self, side: Side, notional: float) -> float:
        """The sell-side tax of a fill worth ``notional`` (market currency): ``notional``
        × ``sell_tax_bps`` / 10,000 for a sell, 0.0 for a buy."""
        return notional * self.sell_tax_bps / 10_000.0 if side == "sell" else 0.0


DEFAULT_FEES: dict[str, FeeSchedule] = {
    # Binance spot, regular user (VIP 0) without BNB discount: 0.1000 % maker and
    # 0.1000 % taker (binance.com/en/fee/schedule, as published in 2024).
    "crypto": FeeSchedule(maker_bps=10.0, taker_bps=10.0),
    # Interactive Brokers Pro "Fixed" US stocks: USD 0.005 per share, minimum USD 1.00,
    # maximum 1 % of trade value (interactivebrokers.com commissions-stocks, 2024);
    # plus the SEC Section 31 fee on sales, USD 27.80 per million from 2024-05-22
    # (SEC fee rate advisory for fiscal year 2024) = 0.278 bp.
    "us": FeeSchedule(per_unit=0.005, minimum=1.0, maximum_rate=0.01, sell_tax_bps=0.278),
    # KRX online brokerage commission 0.015 % (a common Korean retail online rate,
    # e.g. Kiwoom Securities' standard online fee, 2024) and the sell-side
    # securities transaction tax of 0.18 % in 2024 (KOSPI: 0.03 % transaction tax +
    # 0.15 % special tax for rural development; KOSDAQ 0.18 %; Enforcement Decree of
    # the Securities Transaction Tax Act, 2024 rates).
    "kr": FeeSchedule(maker_bps=1.5, taker_bps=1.5, sell_tax_bps=18.0),
}


class MarketFillConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything that decides how orders of one market fill.

    Attributes:
        latency: order-to-venue latency.
        slippage: slippage model.
        fees: fee schedule; None uses :data:`DEFAULT_FEES` of the market.
        participation_rate: the largest fraction of a data point's traded volume the
            venue's orders of the symbol may take together, in (0, 1]; None for no
            cap (default 0.1: 10 % is a common ceiling of participation algorithms,
            e.g. a POV algo's max rate).
    """

    latency: LatencyModel = msgspec.field(default_factory=LatencyModel)
    slippage: SlippageModel = msgspec.field(default_factory=SlippageModel)
    fees: FeeSchedule | None = None
    participation_rate: float | None = 0.1

    def fee_schedule(self, market: Market) -> FeeSchedule:
        """The configured schedule, or the market's documented default."""
        return self.fees if self.fees is not None else DEFAULT_FEES[market]

    def validate(self) -> None:
        """Raises BiasError (zero latency) or ConfigError (bad rate or fees)."""
        self.latency.validate()
        if self.fees is not None:
            self.fees.validate()
        if self.participation_rate is not None and not 0.0 < self.participation_rate <= 1.0:
            raise ConfigError(
                f"participation_rate must be in (0, 1] or absent (got {self.participation_rate})"
            )
        if self.slippage.fixed_bps < 0 or self.slippage.impact_bps < 0:
            raise ConfigError("slippage bps must be ≥ 0")


ZERO_COST = MarketFillConfig(
    latency=LatencyModel(base_ns=1, jitter_ns=0),
    slippage=SlippageModel(fixed_bps=0.0, impact_bps=0.0),
    fees=FeeSchedule(),
    participation_rate=None,
)
"""Zero costs with the smallest legal latency (1 ns) and no participation cap: the
configuration that matches a textbook "fill at the next bar's open" backtest."""


class MarketData(msgspec.Struct, frozen=True, kw_only=True):
    """One data point as the fill logic sees it (a trade or a bar).

    A trade is a bar with ``open = high = low = close = price``, ``volume = size``
    and ``start_ns = ts_event``.

    Attributes:
        ts_event: when it happened (a bar's close time), ns.
        start_ns: a bar's start, ns (a trade's own time).
        open, high, low, close: prices.
        volume: traded volume; 0 means nothing can fill against it.
    """

    ts_event: int
    start_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    @classmethod
    def from_trade(cls, ts_event: int, price: float, size: float) -> MarketData:
        """A trade at ``ts_event``."""
        return cls(
            ts_event=ts_event, start_ns=ts_event, open=price, high=price, low=price,
            close=price, volume=size,
        )  # fmt: skip


class SimOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An order at the simulated venue.

    Attributes:
        order_id, client_order_id: the engine's ids.
        market, symbol, side, order_type, quantity, limit_price, stop_price,
            time_in_force: as approved.
        created_ns: when the engine submitted it (its clock), ns.
        arrival_ns: when it reaches the venue, ``created_ns`` + latency, ns.
        expire_ns: DAY orders' end of day, ns; None for GTC and IOC.
        phase: ``pending`` (in flight), ``working``, ``filled``, ``canceled``, ``expired``.
        filled_quantity: cumulative fill, ≤ ``quantity``.
        average_price: volume-weighted fill price (0.0 before any fill).
        triggered: a stop order's stop was reached.
        evaluated: the order has met a data point it could rest against or fill from
            (a marketable order that got no share of a taker quote has not: it stays
            marketable at the next open).
        fills: number of fills so far.
        fee_day: the exchange-local day (proleptic ordinal) of the fills that
            ``day_raw``, ``day_notional`` and ``day_adjustment`` sum; 0 before any.
        day_raw: Σ raw commission (:meth:`FeeSchedule.raw_commission`) of that day's
            fills.
        day_notional: Σ notional of that day's fills.
        day_adjustment: what the schedule's minimum and maximum have added to that
            day's fills' fees so far (:meth:`FeeSchedule.adjustment`).
    """

    order_id: str
    client_order_id: str
    market: Market
    symbol: str
    side: Side
    order_type: OrderType
    quantity: float
    created_ns: int
    arrival_ns: int
    time_in_force: TimeInForce = "GTC"
    limit_price: float | None = None
    stop_price: float | None = None
    expire_ns: int | None = None
    phase: OrderPhase = "pending"
    filled_quantity: float = 0.0
    average_price: float = 0.0
    triggered: bool = False
    evaluated: bool = False
    fills: int = 0
    fee_day: int = 0
    day_raw: float = 0.0
    day_notional: float = 0.0
    day_adjustment: float = 0.0

    @property
    def remaining(self) -> float:
        """Quantity still to fill."""
        return max(self.quantity - self.filled_quantity, 0.0)

    @property
    def is_open(self) -> bool:
        """True while the order can still fill (pending or working)."""
        return self.phase in ("pending", "working")


class FillResult(msgspec.Struct, frozen=True, kw_only=True):
    """One execution computed by :func:`match`.

    Attributes:
        price: fill price, slippage included.
        reference_price: the market price before slippage.
        quantity: units filled, > 0.
        fee: ≥ 0, in the market's currency.
        liquidity: ``"maker"`` or ``"taker"``.
        slippage_bps: slippage applied, ≥ 0.
        ts_fill: the data point's ``ts_event`` (> the order's ``arrival_ns``).
        multiplier: the instrument's contract multiplier (the fill's notional is
            ``quantity × price × multiplier``).
    """

    price: float
    reference_price: float
    quantity: float
    fee: float
    liquidity: Liquidity
    slippage_bps: float
    ts_fill: int
    multiplier: float = 1.0


class MatchResult(msgspec.Struct, frozen=True, kw_only=True):
    """The order after one data point, and what happened to it."""

    order: SimOrder
    fill: FillResult | None = None
    expired: bool = False


def _tick_tolerance(steps: float) -> float:
    """How far from a whole number of ticks still counts as on the grid: a millionth of
    a tick, or the float error of ``price / tick_size`` when the count is huge."""
    return max(1e-6, abs(steps) * 1e-12)


def on_tick(price: float, tick_size: float) -> bool:
    """True when ``price`` is a multiple of ``tick_size`` (to a millionth of a tick).

    Args:
        price: a price, in the market's currency per unit of the underlying.
        tick_size: the instrument's price increment, in the same unit, > 0 (as
            :meth:`~tickertape.actors.orders.instruments.InstrumentSpec.validate`
            checks; 0 raises ZeroDivisionError).
    """
    steps = price / tick_size
    return abs(steps - round(steps)) <= _tick_tolerance(steps)


def round_to_tick(price: float, tick_size: float, side: Side) -> float:
    """Round a fill price to the tick grid against the order: up for a buy, down for
    a sell (a price already on the grid, to a millionth of a tick, stays).

    The result is rounded to the tick's decimal places, so ``1.09575`` comes out as
    written rather than as ``1.0957500000000001``.

    Args:
        price: the fill price, in the market's currency per unit of the underlying.
        tick_size: the instrument's price increment, in the same unit, > 0 (0 raises
            ZeroDivisionError).
        side: ``"buy"`` (rounds up) or ``"sell"`` (rounds down).

    Returns:
        The price on the grid, a whole number of ticks.
    """
    steps = price / tick_size
    tolerance = _tick_tolerance(steps)
    n = math.ceil(steps - tolerance) if side == "buy" else math.floor(steps + tolerance)
    return round(n * tick_size, _decimals(tick_size))


def _decimals(tick_size: float) -> int:
    """Decimal places of a tick size as written (0.00005 → 5, 0.25 → 2, 5.0 → 0)."""
    text = repr(tick_size)
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        digits = len(mantissa.partition(".")[2].rstrip("0"))
        return max(digits - int(exponent), 0)
    return len(text.partition(".")[2].rstrip("0"))


def validate_order(
    order: SimOrder, tick_size: float | None = None, lot_size: float | None = None
) -> None:
    """Check an order's shape before it is accepted.

    Args:
        order: the order.
        tick_size: the instrument's price increment, or None for no grid.
        lot_size: the instrument's quantity increment, or None for any quantity.

    Raises:
        OrderRejected: quantity ≤ 0 or off the lot grid, a limit order without a
            positive limit price, a stop order without a positive stop price, a
            limit or stop price off the tick grid.
        BiasError: arrival not after creation.
    """
    if not (order.quantity > 0.0 and math.isfinite(order.quantity)):
        raise OrderRejected(order.order_id, f"quantity must be > 0 (got {order.quantity})")
    if lot_size is not None and not on_tick(order.quantity, lot_size):
        raise OrderRejected(
            order.order_id,
            f"quantity {order.quantity} is not a multiple of the lot size {lot_size}",
        )
    if order.order_type == "limit" and not (order.limit_price and order.limit_price > 0):
        raise OrderRejected(order.order_id, "limit order without a positive limit_price")
    if order.order_type == "stop" and not (order.stop_price and order.stop_price > 0):
        raise OrderRejected(order.order_id, "stop order without a positive stop_price")
    if tick_size is not None:
        for name, price in (("limit_price", order.limit_price), ("stop_price", order.stop_price)):
            if price is not None and not on_tick(price, tick_size):
                raise OrderRejected(
                    order.order_id, f"{name} {price} is not a multiple of the tick size {tick_size}"
                )
    if order.arrival_ns <= order.created_ns:
        raise BiasError(
            f"order {order.order_id}: arrival_ns {order.arrival_ns} is not after "
            f"created_ns {order.created_ns} (zero latency)"
        )


class OrderRejected(OrderError):
    """The venue refused an order's shape (see :func:`validate_order`).

    Attributes:
        order_id: the refused order.
        reason: what is wrong.
    """

    def __init__(self, order_id: str, reason: str) -> None:
        self.order_id = order_id
        self.reason = reason
        super().__init__(f"order {order_id} rejected: {reason}")


def day_end_ns(market: Market, ts_ns: int) -> int:
    """End of the exchange-local calendar day containing ``ts_ns``, in ns (UTC).

    A DAY order expires there: midnight Asia/Seoul for ``kr``, America/New_York for
    ``us``, UTC for ``crypto`` (which trades around the clock).
    """
    tz = ZoneInfo(EXCHANGE_TIMEZONE[market])
    next_midnight = datetime.combine(
        local_day(market, ts_ns) + timedelta(days=1), time(0), tzinfo=tz
    )
    return int(next_midnight.timestamp()) * _NS_PER_S


def local_day(market: Market, ts_ns: int) -> date:
    """The exchange-local calendar date of ``ts_ns`` (ns since the epoch, UTC): in
    Asia/Seoul for ``kr``, America/New_York for ``us``, UTC for ``crypto``. Whole
    seconds are taken before converting, so an instant just before midnight is never
    rounded into the next day."""
    tz = ZoneInfo(EXCHANGE_TIMEZONE[market])
    return datetime.fromtimestamp(ts_ns // _NS_PER_S, tz=UTC).astimezone(tz).date()


def new_order(
    *,
    order_id: str,
    client_order_id: str,
    market: Market,
    symbol: str,
    side: Side,
    order_type: OrderType,
    quantity: float,
    created_ns: int,
    config: MarketFillConfig,
    time_in_force: TimeInForce = "GTC",
    limit_price: float | None = None,
    stop_price: float | None = None,
    tick_size: float | None = None,
    lot_size: float | None = None,
) -> SimOrder:
    """Build a pending order whose arrival is ``created_ns`` + the modeled latency.

    ``tick_size`` is the instrument's price increment (None for no grid): limit and
    stop prices off it are rejected; ``lot_size`` its quantity increment (None for
    any quantity): a quantity off it is rejected.

    Raises:
        BiasError: the latency model is zero or negative.
        OrderRejected: the order's shape is invalid (see :func:`validate_order`).
    """
    arrival = created_ns + config.latency.delay_ns(client_order_id)
    order = SimOrder(
        order_id=order_id, client_order_id=client_order_id, market=market, symbol=symbol,
        side=side, order_type=order_type, quantity=quantity, created_ns=created_ns,
        arrival_ns=arrival, time_in_force=time_in_force, limit_price=limit_price,
        stop_price=stop_price,
        expire_ns=day_end_ns(market, arrival) if time_in_force == "DAY" else None,
    )  # fmt: skip
    validate_order(order, tick_size, lot_size)
    return order


def arrive(order: SimOrder, now_ns: int) -> SimOrder:
    """The order reaches the venue: ``pending`` → ``working``.

    Raises:
        BiasError: ``now_ns`` is before the order's ``arrival_ns``.
    """
    if now_ns < order.arrival_ns:
        raise BiasError(
            f"order {order.order_id} cannot arrive at {now_ns}, before its modeled "
            f"arrival {order.arrival_ns}"
        )
    if order.phase != "pending":
        return order
    return msgspec.structs.replace(order, phase="working")


def is_eligible(order: SimOrder, data: MarketData) -> bool:
    """True when ``data`` happened after the order reached the venue.

    A trade must be later than ``arrival_ns``; a bar must close after ``arrival_ns``
    and start at ``created_ns`` (the bar after the signal's: its open is the fill
    price by convention) or at or after ``arrival_ns`` (a bar that opened while the
    order was in flight never fills it at that open). The signal's bar never fills.
    """
    start = data.start_ns
    return data.ts_event > order.arrival_ns and (
        start == order.created_ns or start >= order.arrival_ns
    )


def slippage_bps(config: MarketFillConfig, quantity: float, volume: float) -> float:
    """Slippage of a taker fill of ``quantity`` against ``volume`` traded, in bps (≥ 0)."""
    participation = quantity / volume if volume > 0 else 1.0
    return config.slippage.fixed_bps + config.slippage.impact_bps * min(participation, 1.0)


def _apply_slippage(side: Side, price: float, bps: float) -> float:
    factor = bps / 10_000.0
    return price * (1.0 + factor) if side == "buy" else price * (1.0 - factor)


def _reference(order: SimOrder, data: MarketData) -> tuple[float, Liquidity, bool] | None:
    """Price the order could trade at against ``data``: (price, liquidity, triggered)."""
    buy = order.side == "buy"
    triggered = order.triggered
    if order.order_type == "stop":
        stop = order.stop_price or 0.0
        if not triggered:
            if buy and data.high >= stop:
                return (max(stop, data.open), "taker", True)
            if not buy and data.low <= stop:
                return (min(stop, data.open), "taker", True)
            return None
        return (data.open, "taker", True)
    if order.order_type == "market":
        return (data.open, "taker", triggered)
    limit = order.limit_price or 0.0
    if not order.evaluated and ((buy and data.open <= limit) or (not buy and data.open >= limit)):
        return (data.open, "taker", triggered)  # marketable on arrival
    if (buy and data.low < limit) or (not buy and data.high > limit):
        return (limit, "maker", triggered)  # traded strictly through the resting limit
    return None


def match(
    order: SimOrder,
    data: MarketData,
    config: MarketFillConfig,
    instrument: InstrumentSpec | None = None,
    taken: float = 0.0,
) -> MatchResult:
    """Match a working order against one data point of its symbol.

    Args:
        order: the order (pending orders and closed orders are returned unchanged).
        data: a trade or bar of the order's symbol.
        config: the market's fill configuration.
        instrument: the instrument's specification (multiplier, tick size, lot size,
            fees); None for multiplier 1, no tick grid, no lot and the market's fees.
        taken: the quantity other orders ahead of this one have already filled
            against ``data`` (≥ 0): the participation cap is the venue's, and the
            slippage's participation counts it.

    Returns:
        The updated order, the fill if any, and whether the order expired (IOC after
        its first eligible data point, DAY past its ``expire_ns``).
    """
    if order.phase != "working" or not is_eligible(order, data):
        return MatchResult(order=order)
    if order.expire_ns is not None and data.ts_event >= order.expire_ns:
        return MatchResult(order=msgspec.structs.replace(order, phase="expired"), expired=True)
    quote = _reference(order, data)
    fill: FillResult | None = None
    triggered = order.triggered
    filled = order.filled_quantity
    average = order.average_price
    fills = order.fills
    fee_day, day_raw = order.fee_day, order.day_raw
    day_notional, day_adjustment = order.day_notional, order.day_adjustment
    if quote is not None and data.volume > 0:
        reference, liquidity, triggered = quote
        cap = order.remaining
        if config.participation_rate is not None:
            cap = min(cap, data.volume * config.participation_rate - taken)
        if instrument is not None and instrument.lot_size is not None and cap > 0.0:
            cap = round_to_tick(cap, instrument.lot_size, "sell")  # whole lots, down
        if cap > 0.0:
            multiplier = 1.0
            tick = None
            fees = config.fee_schedule(order.market)
            if instrument is not None:
                multiplier = instrument.multiplier
                tick = instrument.tick_size
                if instrument.fees is not None:
                    fees = instrument.fees
            bps = slippage_bps(config, taken + cap, data.volume) if liquidity == "taker" else 0.0
            price = _apply_slippage(order.side, reference, bps)
            if tick is not None and liquidity == "taker":
                price = round_to_tick(price, tick, order.side)
                bps = abs(price - reference) / reference * 10_000.0 if reference else 0.0
            if order.order_type == "limit" and order.limit_price is not None:
                price = (
                    min(price, order.limit_price)
                    if order.side == "buy"
                    else max(price, order.limit_price)
                )
                bps = abs(price - reference) / reference * 10_000.0 if reference else 0.0
            # The minimum and maximum bind the order's fills of one local day together.
            notional = abs(cap * price * multiplier)
            day = local_day(order.market, data.ts_event).toordinal()
            if day != fee_day:
                fee_day, day_raw, day_notional, day_adjustment = day, 0.0, 0.0, 0.0
            raw = fees.raw_commission(cap, notional, liquidity)
            day_raw += raw
            day_notional += notional
            adjustment = fees.adjustment(day_raw, day_notional)
            fee = max(raw + adjustment - day_adjustment + fees.tax(order.side, notional), 0.0)
            day_adjustment = adjustment
            fill = FillResult(
                price=price, reference_price=reference, quantity=cap, fee=fee,
                liquidity=liquidity, slippage_bps=bps, ts_fill=data.ts_event,
                multiplier=multiplier,
            )  # fmt: skip
            average = (average * filled + price * cap) / (filled + cap)
            filled = filled + cap
            fills += 1
    elif quote is not None:
        triggered = quote[2]
    # A taker quote the order got no share of (a zero-volume bar, a participation share
    # below one lot or taken by orders ahead) leaves it as it arrived: still marketable
    # at a later open, not a resting limit filled at its limit.
    evaluated = order.evaluated or fill is not None or quote is None or quote[1] != "taker"
    phase: OrderPhase = "working"
    if filled >= order.quantity - 1e-12 * max(order.quantity, 1.0):
        filled = order.quantity
        phase = "filled"
    expired = False
    if phase == "working" and order.time_in_force == "IOC":
        phase = "expired"
        expired = True
    updated = msgspec.structs.replace(
        order, phase=phase, filled_quantity=filled, average_price=average,
        triggered=triggered, evaluated=evaluated, fills=fills, fee_day=fee_day,
        day_raw=day_raw, day_notional=day_notional, day_adjustment=day_adjustment,
    )  # fmt: skip
    return MatchResult(order=updated, fill=fill, expired=expired)


def cancel_arrival_ns(order: SimOrder, now_ns: int, config: MarketFillConfig) -> int:
    """When a cancel of ``order`` sent at ``now_ns`` reaches the venue, ns.

    ``now_ns`` + the market's latency (jitter keyed by ``"{client_order_id}:cancel"``),
    and not before the order itself arrives (a venue cannot cancel what it has not
    received; the arrival is handled first at equal times).

    Raises:
        BiasError: the latency model is zero or negative.
    """
    delay = config.latency.delay_ns(f"{order.client_order_id}:cancel")
    return max(now_ns + delay, order.arrival_ns)


def cancel(order: SimOrder) -> SimOrder:
    """Cancel an open order (no-op on a closed one): the cancel has reached the venue."""
    if not order.is_open:
        return order
    return msgspec.structs.replace(order, phase="canceled")


def expire_if_due(order: SimOrder, now_ns: int) -> SimOrder:
    """Expire a DAY order whose ``expire_ns`` is at or before ``now_ns``."""
    if order.is_open and order.expire_ns is not None and now_ns >= order.expire_ns:
        return msgspec.structs.replace(order, phase="expired")
    return order
