"""Venue adapters behind one small interface: the simulated venue, and real ones later.

The order engine talks to a :class:`Venue` only. A venue takes orders and cancels,
sees market data and timers, and answers with :class:`VenueReport` values (accepted,
rejected, fill, canceled, expired) and :class:`TimerRequest` values (a simulated
venue models latency as a timer of the engine's clock, never as an instant).

A real broker adapter implements the same methods, and the engine takes it without
being edited (``OrderEngine(config, venue=...)``, or ``venue = "package.module:factory"``
in the engine's configuration): ``submit`` sends the order with its
``client_order_id`` (a venue refuses a client id it has seen, closed orders included,
which is what makes a resend after a crash harmless), ``status`` answers what the
venue knows of a client id (the engine reconciles from it on start),
``on_market_data`` and ``on_timer`` return nothing, reports arrive from the broker's
stream (polled in ``on_timer``), and ``snapshot_state`` / ``restore_state`` carry
whatever the adapter keeps across restarts as opaque bytes in the engine's snapshot.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.orders.instruments import InstrumentTable
from tickertape.errors import BiasError, OrderError
from tickertape.schemas.envelope import Market
from tickertape.schemas.strategy import OrderType, Side, TimeInForce

ReportKind = Literal["accepted", "rejected", "fill", "canceled", "expired"]
VenueOrderState = Literal["unknown", "open", "filled", "canceled", "expired", "rejected"]


class VenueOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An order as the engine sends it to a venue."""

    order_id: str
    client_order_id: str
    market: Market
    symbol: str
    side: Side
    order_type: OrderType
    quantity: float
    time_in_force: TimeInForce = "GTC"
    limit_price: float | None = None
    stop_price: float | None = None


class VenueReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a venue says happened to an order.

    Attributes:
        order_id: the engine's order id.
        kind: ``accepted``, ``rejected``, ``fill``, ``canceled`` or ``expired``.
        fill: the execution, for ``fill``.
        filled_quantity: cumulative filled quantity after this report.
        average_price: volume-weighted average fill price after this report.
        arrival_ns: when the order reached (reaches) the venue, ns.
        reason: detail for rejections, cancels and expiries.
    """

    order_id: str
    kind: ReportKind
    fill: fl.FillResult | None = None
    filled_quantity: float = 0.0
    average_price: float = 0.0
    arrival_ns: int = 0
    reason: str = ""


class TimerRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A timer the venue needs on the engine's clock (name, due time in ns)."""

    name: str
    at_ns: int


class VenueResult(msgspec.Struct, frozen=True, kw_only=True):
    """Reports and timer requests of one venue call."""

    reports: list[VenueReport] = msgspec.field(default_factory=list)
    timers: list[TimerRequest] = msgspec.field(default_factory=list)


class VenueOrderStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What a venue knows of one client order id (:meth:`Venue.status`).

    Attributes:
        state: ``unknown`` (never received: sending it is safe), ``open`` (pending or
            working), or how it closed: ``filled``, ``canceled``, ``expired``,
            ``rejected``.
        reports: every report the venue made for the order, oldest first (accepted,
            fills, then the closing one); empty when ``unknown``. The engine publishes
            those it has not seen.
    """

    state: VenueOrderState
    reports: list[VenueReport] = msgspec.field(default_factory=list)


class Venue(Protocol):
    """The interface every venue adapter implements (simulated or real)."""

    def submit(self, order: VenueOrder, now_ns: int) -> VenueResult:
        """Send an order; a resend of a known ``client_order_id`` is a no-op, closed
        orders included (it returns an empty result)."""
        ...

    def status(self, client_order_id: str) -> VenueOrderStatus:
        """What the venue knows of ``client_order_id``: ``unknown``, ``open``, or
        closed (``filled``, ``canceled``, ``expired``, ``rejected``), with every report
        it made for the order. Called by the engine's reconciliation on start."""
        ...

    def cancel(self, order_id: str, now_ns: int, reason: str) -> VenueResult:
        """Request the cancel of an open order; unknown or closed orders give no report.

        The ``canceled`` report comes when the venue has handled the request (for the
        simulated venue, from ``on_timer`` after the modeled latency); the order may
        fill meanwhile, and then no ``canceled`` report comes.
        """
        ...

    def on_market_data(
        self, market: Market, symbol: str, data: fl.MarketData, now_ns: int
    ) -> VenueResult:
        """Market data of ``symbol`` (the simulated venue matches against it)."""
        ...

    def on_timer(self, name: str, now_ns: int) -> VenueResult:
        """A timer the venue asked for is due."""
        ...

    def watches(self, market: Market, symbol: str) -> bool:
        """True when ``on_market_data`` of this symbol can matter now (a simulated venue
        holding open orders in it); a real venue, fed by its own market, says False."""
        ...

    def open_order_ids(self) -> list[str]:
        """Order ids the venue holds open (pending or working), sorted."""
        ...

    def snapshot_state(self) -> bytes:
        """What the adapter keeps across restarts, as opaque bytes (stored in the
        engine's snapshot; ``b""`` when it keeps nothing)."""
        ...

    def restore_state(self, data: bytes) -> None:
        """Restore what :meth:`snapshot_state` returned (``b""``: a fresh venue)."""
        ...


class CancelInFlight(msgspec.Struct, frozen=True, kw_only=True):
    """A cancel on its way to the simulated venue.

    Attributes:
        arrival_ns: when it reaches the venue (timer ``cancel:{order_id}``), ns.
        reason: the reason reported with the ``canceled`` event.
    """

    arrival_ns: int
    reason: str


class KnownOrder(msgspec.Struct, kw_only=True):
    """What the simulated venue remembers of a client order id it received.

    Attributes:
        order_id: the engine's order id.
        state: ``open``, ``filled``, ``canceled``, ``expired`` or ``rejected``.
        reports: every report made for the order, oldest first.
    """

    order_id: str
    state: VenueOrderState = "open"
    reports: list[VenueReport] = msgspec.field(default_factory=list)


class SimulatedVenueState(msgspec.Struct, kw_only=True):
    """The simulated venue's book: open orders, cancels in flight, and every client
    order id it ever received with its reports (closed ones are all kept, never
    pruned: a resend of any of them is refused, and their history answers
    :meth:`SimulatedVenue.status`)."""

    orders: dict[str, fl.SimOrder] = msgspec.field(default_factory=dict)
    cancels: dict[str, CancelInFlight] = msgspec.field(default_factory=dict)
    known: dict[str, KnownOrder] = msgspec.field(default_factory=dict)


_STATE_DECODER = msgspec.msgpack.Decoder(SimulatedVenueState)
_STATE_ENCODER = msgspec.msgpack.Encoder()


class SimulatedVenue:
    """A venue simulated with :mod:`tickertape.actors.orders.fill_logic`.

    Orders arrive after the modeled latency (timer ``arrive:{order_id}``), fill
    against later market data of their symbol, expire (IOC after their first data
    point, DAY at the exchange-local midnight, timer ``expire:{order_id}``).
    Cancels travel with the same latency model (timer ``cancel:{order_id}``, see
    :func:`~tickertape.actors.orders.fill_logic.cancel_arrival_ns`): the order keeps
    working, and filling, until its cancel lands; a cancel landing after the order
    filled or expired does nothing.

    Args:
        configs: fill configuration per market; markets not listed use
            :class:`~tickertape.actors.orders.fill_logic.MarketFillConfig` defaults.
        instruments: instrument specifications (contract multiplier, tick size,
            fees); None or empty for multiplier 1, no tick grid and the market's fees
            everywhere.

    Raises:
        BiasError: a market's latency is zero or negative.
        ConfigError: a market's rates or fees are out of range.
    """

    def __init__(
        self,
        configs: dict[Market, fl.MarketFillConfig] | None = None,
        instruments: InstrumentTable | None = None,
    ) -> None:
        self.configs: dict[str, fl.MarketFillConfig] = {
            m: fl.MarketFillConfig() for m in ("kr", "us", "crypto")
        }
        for market, config in (configs or {}).items():
            self.configs[market] = config
        for config in self.configs.values():
            config.validate()
        self.instruments = instruments if instruments is not None else InstrumentTable()
        self.state = SimulatedVenueState()
        self._by_symbol: dict[str, list[str]] = {}

    def snapshot_state(self) -> bytes:
        """The book as msgpack bytes (:class:`SimulatedVenueState`)."""
        return _STATE_ENCODER.encode(self.state)

    def restore_state(self, data: bytes) -> None:
        """Restore what :meth:`snapshot_state` returned; ``b""`` empties the book."""
        self.state = state = _STATE_DECODER.decode(data) if data else SimulatedVenueState()
        self._by_symbol = {}
        for order_id, order in sorted(state.orders.items()):
            self._by_symbol.setdefault(f"{order.market}:{order.symbol}", []).append(order_id)

    def status(self, client_order_id: str) -> VenueOrderStatus:
        """What the venue knows of ``client_order_id``, closed orders included."""
        known = self.state.known.get(client_order_id)
        if known is None:
            return VenueOrderStatus(state="unknown")
        return VenueOrderStatus(state=known.state, reports=list(known.reports))

    def submit(self, order: VenueOrder, now_ns: int) -> VenueResult:
        """Accept an order in flight; it reaches the venue at ``now_ns`` + latency.

        A client order id the venue has received before (open or closed) gives
        nothing: it is not traded twice.
        """
        if order.client_order_id in self.state.known or order.order_id in self.state.orders:
            return VenueResult()
        known = KnownOrder(order_id=order.order_id)
        self.state.known[order.client_order_id] = known
        config = self.configs[order.market]
        spec = self.instruments.spec(order.market, order.symbol)
        try:
            sim = fl.new_order(
                order_id=order.order_id,
                client_order_id=order.client_order_id,
                market=order.market,
                symbol=order.symbol,
                side=order.side,
                order_type=order.order_type,
                quantity=order.quantity,
                created_ns=now_ns,
                config=config,
                time_in_force=order.time_in_force,
                limit_price=order.limit_price,
                stop_price=order.stop_price,
                tick_size=spec.tick_size,
                lot_size=spec.lot_size,
            )
        except fl.OrderRejected as exc:
            report = VenueReport(order_id=order.order_id, kind="rejected", reason=exc.reason)
            known.state = "rejected"
            known.reports.append(report)
            return VenueResult(reports=[report])
        self.state.orders[order.order_id] = sim
        self._by_symbol.setdefault(f"{order.market}:{order.symbol}", []).append(order.order_id)
        return VenueResult(
            timers=[TimerRequest(name=f"arrive:{order.order_id}", at_ns=sim.arrival_ns)]
        )

    def cancel(self, order_id: str, now_ns: int, reason: str) -> VenueResult:
        """Send a cancel: it lands after the modeled latency (a ``cancel:`` timer).

        Unknown and closed orders, and orders with a cancel already in flight, give
        nothing.
        """
        order = self.state.orders.get(order_id)
        if order is None or not order.is_open or order_id in self.state.cancels:
            return VenueResult()
        at_ns = fl.cancel_arrival_ns(order, now_ns, self.configs[order.market])
        self.state.cancels[order_id] = CancelInFlight(arrival_ns=at_ns, reason=reason)
        return VenueResult(timers=[TimerRequest(name=f"cancel:{order_id}", at_ns=at_ns)])

    def on_timer(self, name: str, now_ns: int) -> VenueResult:
        """Arrival (``arrive:``), cancel (``cancel:``) and DAY expiry (``expire:``) timers."""
        kind, _, order_id = name.partition(":")
        order = self.state.orders.get(order_id)
        if order is None or not order.is_open:
            self.state.cancels.pop(order_id, None)
            return VenueResult()
        if kind == "cancel":
            request = self.state.cancels.get(order_id)
            if request is None or now_ns < request.arrival_ns:
                return VenueResult()
            canceled = fl.cancel(order)
            report = self._report(canceled, "canceled", None, request.reason)
            self._close(canceled)
            return VenueResult(reports=[report])
        if kind == "arrive":
            arrived = fl.arrive(order, now_ns)
            self.state.orders[order_id] = arrived
            timers = []
            if arrived.expire_ns is not None:
                timers.append(TimerRequest(name=f"expire:{order_id}", at_ns=arrived.expire_ns))
            report = VenueReport(order_id=order_id, kind="accepted", arrival_ns=arrived.arrival_ns)
            self._remember(arrived, report)
            return VenueResult(reports=[report], timers=timers)
        if kind == "expire":
            expired = fl.expire_if_due(order, now_ns)
            if expired.phase == "expired":
                report = self._report(expired, "expired", None, "DAY")
                self._close(expired)
                return VenueResult(reports=[report])
            return VenueResult()
        raise OrderError(f"unknown venue timer {name!r}")

    def on_market_data(
        self, market: Market, symbol: str, data: fl.MarketData, now_ns: int
    ) -> VenueResult:
        """Match the symbol's working orders against ``data``, in arrival order (then
        order id): they share its participation cap, each taking what the ones ahead
        left."""
        ids = self._by_symbol.get(f"{market}:{symbol}")
        if not ids:
            return VenueResult()
        if data.ts_event > now_ns:
            raise BiasError(f"market data at {data.ts_event} is after the clock {now_ns}")
        config = self.configs[market]
        instrument = self.instruments.spec(market, symbol)
        reports: list[VenueReport] = []
        orders = self.state.orders
        taken = 0.0
        for order_id in sorted(ids, key=lambda i: (orders[i].arrival_ns, i)):
            result = fl.match(orders[order_id], data, config, instrument, taken)
            order = result.order
            orders[order_id] = order
            if result.fill is not None:
                taken += result.fill.quantity
                reports.append(self._report(order, "fill", result.fill, ""))
            if result.expired:
                reports.append(self._report(order, "expired", None, order.time_in_force))
            if not order.is_open:
                self._close(order)
        return VenueResult(reports=reports)

    def watches(self, market: Market, symbol: str) -> bool:
        """True when the venue holds open orders in ``symbol`` (data can fill them)."""
        return bool(self._by_symbol.get(f"{market}:{symbol}"))

    def open_order_ids(self) -> list[str]:
        """Ids of pending and working orders, sorted."""
        return sorted(o for o, order in self.state.orders.items() if order.is_open)

    def _remember(self, order: fl.SimOrder, report: VenueReport) -> None:
        # Every order came through submit(), which knows its client id first.
        self.state.known[order.client_order_id].reports.append(report)

    def _close(self, order: fl.SimOrder) -> None:
        """Drop a closed order (``phase`` filled, canceled or expired) from the book."""
        assert order.phase in ("filled", "canceled", "expired")
        self.state.known[order.client_order_id].state = order.phase
        self.state.orders.pop(order.order_id, None)
        self.state.cancels.pop(order.order_id, None)
        key = f"{order.market}:{order.symbol}"
        ids = self._by_symbol.get(key, [])
        if order.order_id in ids:
            ids.remove(order.order_id)

    def _report(
        self, order: fl.SimOrder, kind: ReportKind, fill: fl.FillResult | None, reason: str
    ) -> VenueReport:
        report = VenueReport(
            order_id=order.order_id,
            kind=kind,
            fill=fill,
            filled_quantity=order.filled_quantity,
            average_price=order.average_price,
            arrival_ns=order.arrival_ns,
            reason=reason,
        )
        self._remember(order, report)
        return report
