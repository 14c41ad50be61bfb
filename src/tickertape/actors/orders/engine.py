"""The order engine actor: acts only on risk approvals, owns the order lifecycle.

Consumes ``risk.approved.>`` (only from the risk identity; anything else is ignored
and logged), ``risk.state`` (from the risk identity too: a HALTED scope cancels its
open orders), splits (``md.corporate_action.>``: a split cancels its symbol's open
orders, priced on the old scale), market data (``md.trade.>``, ``md.bar.>``, forwarded to the venue) and
its own ``order.submitted.>``. Publishes the lifecycle on ``order.{event}.{market}``:
``submitted``, ``accepted``, ``rejected``, ``partially_filled``, ``filled``,
``canceled``, ``expired``.

Ids are derived from the approval: the approval ``risk:42`` gives order id
``ord-risk-42`` and client order id ``tt-risk-42``, so a replay or a restart
produces the same ids and a venue refuses a second send. An approval is acted on
once: a second delivery of it, while its order is open or after it closed, is ignored.

**Record before send** (DESIGN §8): an approval makes the engine record the order, by
publishing ``order.submitted``; the order goes to the venue only when that record
comes back to the engine from the log, which delivers a record only once it is
fsync'd. A crash in between leaves a recorded order that was never sent: the record is
delivered again after the restart and sends it then; never an order sent and not
recorded. A snapshot taken between the two holds the order as not sent: on start the
venue is asked about it as about every open order, and what it did is published. In a replay the record comes back in the next wave of the same step (same
clock time), so the venue sees the order at the same time. An order canceled (by its
strategy, or by a halt) before its record came back is canceled by the engine itself
(``order.canceled``) and never sent.

The venue is any :class:`~tickertape.actors.orders.venue.Venue`: given to the
constructor, or built by the factory ``config.venue`` names (:data:`VENUES`, or a
``package.module:factory`` import path). Its state is opaque bytes in the engine's
snapshot (``Venue.snapshot_state`` / ``restore_state``).

On start the engine reconciles each order it records as open with what the venue says
of its client id (``Venue.status``): an order the venue does not know is sent (same
client id); one it holds open is left working, and one it closed while the engine was
down is never sent again: the reports the engine missed (accepted, fills, the cancel or
expiry) are published. An order the venue holds open that the engine does not know is
canceled.

Fills use one data source per symbol: trades when the symbol has trades, bars
otherwise (a symbol with both never fills twice on the same prints).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import msgspec

from tickertape.actors.base import Actor, Context, Event, Timer
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.orders.instruments import (
    InstrumentsConfig,
    InstrumentTable,
    load_instruments,
)
from tickertape.actors.orders.venue import (
    SimulatedVenue,
    Venue,
    VenueOrder,
    VenueReport,
    VenueResult,
)
from tickertape.errors import ClockError, ConfigError
from tickertape.importing import import_object
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar, CorporateAction, Trade
from tickertape.schemas.orders import Fill, OrderEvent, OrderStatus
from tickertape.schemas.risk import RiskDecision, RiskState

_OPEN = frozenset({"submitted", "accepted", "partially_filled"})


class OrderEngineConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of the order engine.

    Attributes:
        risk_source: the only source whose approvals are acted on.
        venue: the venue adapter: a name of :data:`VENUES` (``simulated``, the only
            adapter shipped) or the import path ``package.module:factory`` of a
            :data:`VenueFactory`. Ignored when the engine is given a venue.
        venue_options: settings of the venue adapter, for its factory to read (the
            simulated venue reads none).
        markets: fill configuration per market (latency, slippage, fees,
            participation); see ``docs/risk.md`` for the defaults and their sources.
        bar_intervals: bar intervals the simulated venue fills against, e.g.
            ``["1m"]``; empty for every interval (use one interval per symbol).
        instruments: instrument specifications, ``[instruments.<market>.<symbol or
            futures root>]`` (contract multiplier, tick size, fees; see
            :mod:`tickertape.actors.orders.instruments`); instruments not listed have
            multiplier 1, no tick grid and their market's fees.
        instruments_file: a TOML file of specifications (``[<market>.<key>]`` tables),
            instead of ``instruments``; relative to the working directory.
    """

    risk_source: str = "risk"
    venue: str = "simulated"
    venue_options: dict[str, Any] = msgspec.field(default_factory=dict)
    markets: dict[Market, fl.MarketFillConfig] = msgspec.field(default_factory=dict)
    bar_intervals: list[str] = msgspec.field(default_factory=list)
    instruments: InstrumentsConfig = msgspec.field(default_factory=dict)
    instruments_file: str | None = None


class OrderRecord(msgspec.Struct, kw_only=True):
    """The engine's record of one order."""

    order_id: str
    client_order_id: str
    strategy_id: str
    approval_id: str
    approval_seq: int
    correlation_id: str | None
    order: VenueOrder
    status: OrderStatus = "submitted"
    filled_quantity: float = 0.0
    average_price: float = 0.0
    arrival_ns: int = 0
    fills: int = 0
    sent: bool = False
    """Handed to the venue (once its ``submitted`` record came back from the log)."""


class OrderEngineState(msgspec.Struct, kw_only=True):
    """The engine's state (its snapshot).

    Attributes:
        orders: the open orders by order id.
        venue: the venue's state (``Venue.snapshot_state``), opaque.
        trade_symbols: ``market:symbol`` keys that have trades (they fill on trades).
        ignored_approvals: approvals and risk states ignored as not from risk.
        closed_approvals: ``source_seq`` of the approvals whose orders closed, sorted
            (a second delivery of one is ignored); every one is kept.
    """

    orders: dict[str, OrderRecord] = msgspec.field(default_factory=dict)
    venue: bytes = b""
    trade_symbols: list[str] = msgspec.field(default_factory=list)
    ignored_approvals: int = 0
    closed_approvals: list[int] = msgspec.field(default_factory=list)


VenueFactory = Callable[[OrderEngineConfig, InstrumentTable], Venue]
"""Builds a venue adapter from the engine's configuration and instrument table."""


def simulated_venue(config: OrderEngineConfig, instruments: InstrumentTable) -> Venue:
    """The ``simulated`` adapter: a :class:`SimulatedVenue` of ``config.markets``."""
    return SimulatedVenue(dict(config.markets), instruments)


VENUES: dict[str, VenueFactory] = {"simulated": simulated_venue}
"""Venue factories by the name ``OrderEngineConfig.venue`` gives; a program may add
its own (``VENUES["mybroker"] = factory``), a configuration may instead name an import
path ``package.module:factory``."""


def venue_factory(name: str) -> VenueFactory:
    """The factory of venue ``name``: an entry of :data:`VENUES`, or the callable at
    import path ``package.module:factory`` (the working directory is searched last,
    as for strategies).

    Raises:
        ConfigError: an unknown name, a malformed or unimportable path, or an
            attribute that is missing or not callable.
    """
    if name in VENUES:
        return VENUES[name]
    if ":" not in name:  # (a malformed path is import_object's to refuse)
        available = ", ".join(sorted(VENUES))
        raise ConfigError(
            f"unknown venue {name!r} (available: {available}, or 'package.module:factory')"
        )
    factory = import_object(name, "venue")
    if not callable(factory):
        raise ConfigError(f"venue {name!r} is not a callable venue factory")
    return cast("VenueFactory", factory)


def order_ids(approval_id: str) -> tuple[str, str]:
    """(order id, client order id) derived from an approval's event id."""
    token = approval_id.replace(":", "-").replace(".", "_")
    return (f"ord-{token}", f"tt-{token}")


class OrderEngine(Actor):
    """The order engine (identity ``orders``) over a :class:`~.venue.Venue`.

    Args:
        config: the configuration.
        venue: the venue adapter; None to build the one ``config.venue`` names
            (:func:`venue_factory`).

    Raises:
        ConfigError: an unknown venue, invalid fill settings or instrument
            specifications.
        BiasError: a zero or negative latency.
    """

    name = "orders"
    # 2: the venue's state is opaque bytes; approvals of closed orders. 3: OrderRecord.sent.
    state_version = 3

    def __init__(self, config: OrderEngineConfig | None = None, venue: Venue | None = None) -> None:
        self.config = config if config is not None else OrderEngineConfig()
        if venue is None:
            factory = venue_factory(self.config.venue)
            instruments = load_instruments(
                self.config.instruments, self.config.instruments_file, owner="orders"
            )
            venue = factory(self.config, instruments)
        self.venue: Venue = venue
        self.state = OrderEngineState()
        self._closed_approvals: set[int] = set()
        self._trade_symbols: set[str] = set()
        self._intervals = frozenset(self.config.bar_intervals)
        self.subscriptions = (
            "risk.approved.>", "risk.state", "md.trade.>", "md.bar.>", "order.submitted.>",
            "md.corporate_action.>",
        )  # fmt: skip

    # ----------------------------------------------------------- actor hooks

    def on_start(self, ctx: Context) -> None:
        """Reconcile the open orders with what the venue says of them (``Venue.status``):
        send again a sent one it does not know, publish what it did with the others
        while the engine was down, cancel open orders the engine does not know.

        An order the snapshot holds as not sent and the venue does not know is left to
        its record, which comes back after the engine's position and sends it. One the
        venue knows was sent after the snapshot was taken: it is marked sent, and what
        the venue did with it is published like any other's."""
        now = ctx.clock.now_ns()
        for order_id, record in sorted(self.state.orders.items()):  # (open ones only)
            status = self.venue.status(record.client_order_id)
            if status.state == "unknown":
                if record.sent:
                    ctx.log.warning("reconcile_send_unknown", order_id=order_id)
                    self._apply(self.venue.submit(record.order, now), ctx, None)
                continue
            record.sent = True
            missed = _missed_reports(record, status.reports)
            if missed:
                ctx.log.warning(
                    "reconcile_missed_reports", order_id=order_id, venue_state=status.state,
                    reports=[r.kind for r in missed],
                )  # fmt: skip
                self._apply(VenueResult(reports=missed), ctx, None)
        known = set(self.venue.open_order_ids())
        recorded = set(self.state.orders)
        for order_id in sorted(known - recorded):
            ctx.log.warning("reconcile_cancel_unknown", order_id=order_id)
            self._apply(self.venue.cancel(order_id, now, "reconcile: unknown order"), ctx, None)

    def on_event(self, event: Event, ctx: Context) -> None:
        payload = event.payload
        market = event.market
        kind = type(payload)
        if kind is Bar:
            if market is None or (self._intervals and payload.interval not in self._intervals):
                return
            if payload.adjusted:  # a split-adjusted copy: the venue trades raw prices
                return
            if not self.venue.watches(market, payload.symbol):
                return  # nothing open in the symbol: the bar cannot fill anything
            if f"{market}:{payload.symbol}" in self._trade_symbols:
                return
            data = fl.MarketData(
                ts_event=event.ts_event,
                start_ns=payload.start_ns,
                open=payload.open,
                high=payload.high,
                low=payload.low,
                close=payload.close,
                volume=payload.volume,
            )
            self._match(market, payload.symbol, data, ctx, event)
        elif kind is Trade:
            if market is None:
                return
            self._trade_symbols.add(f"{market}:{payload.symbol}")
            if self.venue.watches(market, payload.symbol):
                data = fl.MarketData.from_trade(event.ts_event, payload.price, payload.size)
                self._match(market, payload.symbol, data, ctx, event)
        elif kind is RiskDecision:
            self._on_decision(payload, event, ctx)
        elif kind is CorporateAction and payload.action == "split" and market is not None:
            self._cancel_symbol(market, payload, event, ctx)
        elif kind is OrderEvent:
            self._send(payload, event, ctx)
        elif kind is RiskState and payload.state == "HALTED":
            if event.source == self.config.risk_source:
                self._cancel_scope(payload, event, ctx)
            else:
                self.state.ignored_approvals += 1
                ctx.log.error("risk_state_ignored_not_from_risk", source=event.source, id=event.id)

    def on_timer(self, timer: Timer, ctx: Context) -> None:
        self._apply(self.venue.on_timer(timer.name, ctx.clock.now_ns()), ctx, None)

    def snapshot(self) -> msgspec.Struct:
        self.state.venue = self.venue.snapshot_state()
        self.state.trade_symbols = sorted(self._trade_symbols)
        self.state.closed_approvals = sorted(self._closed_approvals)
        return self.state

    def restore(self, state: bytes) -> None:
        self.state = msgspec.msgpack.decode(state, type=OrderEngineState)
        self.venue.restore_state(self.state.venue)
        self._trade_symbols = set(self.state.trade_symbols)
        self._closed_approvals = set(self.state.closed_approvals)

    # -------------------------------------------------------------- internals

    def _match(
        self, market: Market, symbol: str, data: fl.MarketData, ctx: Context, event: Event
    ) -> None:
        result = self.venue.on_market_data(market, symbol, data, ctx.clock.now_ns())
        if result.reports or result.timers:
            self._apply(result, ctx, event)

    def _on_decision(self, decision: RiskDecision, event: Event, ctx: Context) -> None:
        if event.source != self.config.risk_source or not decision.approved:
            if event.source != self.config.risk_source:
                self.state.ignored_approvals += 1
                ctx.log.error("approval_ignored_not_from_risk", source=event.source, id=event.id)
            return
        approved = decision.order
        if approved is None:
            return
        if approved.cancel_order_id is not None:
            self._cancel(approved.cancel_order_id, "canceled by strategy", ctx, event)
            return
        order_id, client_order_id = order_ids(event.id)
        if order_id in self.state.orders or event.record.source_seq in self._closed_approvals:
            ctx.log.warning("approval_duplicate", id=event.id, order_id=order_id)
            return
        order = VenueOrder(
            order_id=order_id,
            client_order_id=client_order_id,
            market=approved.market,
            symbol=approved.symbol,
            side=approved.side,
            order_type=approved.order_type,
            quantity=approved.quantity,
            time_in_force=approved.time_in_force,
            limit_price=approved.limit_price,
            stop_price=approved.stop_price,
        )
        record = OrderRecord(
            order_id=order_id,
            client_order_id=client_order_id,
            strategy_id=decision.strategy_id,
            approval_id=event.id,
            approval_seq=event.record.source_seq,
            correlation_id=event.correlation_id or event.id,
            order=order,
        )
        self.state.orders[order_id] = record
        self._publish(record, "submitted", ctx, event, None, "")  # sent by _send

    def _send(self, recorded: OrderEvent, event: Event, ctx: Context) -> None:
        """Hand an order to the venue once its ``submitted`` record is in the log.

        It is sent as of the record's ``ts_event`` (the approval's time), not the clock
        when the record came back: live that is a few milliseconds later, and a restart
        catching up on the log would regenerate other arrival times than the ones
        published (a divergence on every order). In a replay both are the step's time.
        """
        if event.source != ctx.actor_name:
            ctx.log.error("submitted_ignored_not_own", source=event.source, id=event.id)
            return
        record = self.state.orders.get(recorded.order_id)
        if record is None or record.sent:
            return  # canceled before it was sent, or sent already (a second delivery)
        record.sent = True
        self._apply(self.venue.submit(record.order, event.record.ts_event), ctx, event)

    def _cancel(self, order_id: str, reason: str, ctx: Context, cause: Event) -> None:
        """Cancel an order: at the venue once sent, else here (it is never sent). The
        cancel travels from the ``ts_event`` of ``cause`` (the decision or halt that
        asked for it), for the reason :meth:`_send` gives."""
        record = self.state.orders.get(order_id)
        if record is not None and not record.sent:
            report = VenueReport(order_id=order_id, kind="canceled", reason=reason)
            self._apply(VenueResult(reports=[report]), ctx, cause)
            return
        self._apply(self.venue.cancel(order_id, cause.record.ts_event, reason), ctx, cause)

    def _cancel_scope(self, state: RiskState, event: Event, ctx: Context) -> None:
        """Cancel the open orders of a HALTED scope (global, a market, a strategy)."""
        self._cancel_open(
            lambda record: (
                state.scope == "global"
                or (state.scope == "market" and record.order.market == state.key)
                or (state.scope == "strategy" and record.strategy_id == state.key)
            ),
            f"halted: {state.reason}" if state.reason else "halted",
            ctx,
            event,
        )

    def _cancel_symbol(
        self, market: Market, split: CorporateAction, event: Event, ctx: Context
    ) -> None:
        """Cancel the open orders of a symbol on its split's ex-date: their prices and
        quantities are on the scale before it (brokers cancel or adjust such orders;
        this engine cancels, and the strategy orders again at the new prices)."""
        self._cancel_open(
            lambda record: record.order.market == market and record.order.symbol == split.symbol,
            f"corporate action: split {split.ratio} on {split.ex_date}",
            ctx,
            event,
        )

    def _cancel_open(
        self, matches: Callable[[OrderRecord], bool], reason: str, ctx: Context, cause: Event
    ) -> None:
        """Cancel every open order ``matches`` picks, in order id order (:meth:`_cancel`)."""
        for order_id, record in sorted(self.state.orders.items()):  # (open ones only)
            if matches(record):
                self._cancel(order_id, reason, ctx, cause)

    def _apply(self, result: VenueResult, ctx: Context, cause: Event | None) -> None:
        for request in result.timers:
            try:
                ctx.clock.set_timer(request.name, at_ns=request.at_ns)
            except ClockError:
                # Due already (a restart after the arrival time): handle it now.
                self._apply(self.venue.on_timer(request.name, ctx.clock.now_ns()), ctx, cause)
        for report in result.reports:
            record = self.state.orders.get(report.order_id)
            if record is None:
                continue
            fill: Fill | None = None
            status: OrderStatus
            if report.kind == "fill" and report.fill is not None:
                f = report.fill
                record.fills += 1
                fill = Fill(
                    fill_id=f"{record.order_id}-f{record.fills}",
                    price=f.price,
                    quantity=f.quantity,
                    fee=f.fee,
                    currency=fl.CURRENCY[record.order.market],
                    liquidity=f.liquidity,
                    slippage_bps=f.slippage_bps,
                    ts_fill=f.ts_fill,
                    reference_price=f.reference_price,
                )
                if f.multiplier != 1.0:
                    # Left at its default otherwise: msgspec omits a default by identity,
                    # and a fill of multiplier 1 is then written as it always was.
                    fill = msgspec.structs.replace(fill, multiplier=f.multiplier)
                full = report.filled_quantity >= record.order.quantity
                status = "filled" if full else "partially_filled"
            elif report.kind == "accepted":
                status = "accepted"
            else:
                status = report.kind  # type: ignore[assignment]
            record.status = status
            record.filled_quantity = report.filled_quantity
            record.average_price = report.average_price
            if report.arrival_ns:
                record.arrival_ns = report.arrival_ns
            self._publish(record, status, ctx, cause, fill, report.reason)
            if status not in _OPEN:
                del self.state.orders[record.order_id]
                self._closed_approvals.add(record.approval_seq)

    def _publish(
        self,
        record: OrderRecord,
        status: OrderStatus,
        ctx: Context,
        cause: Event | None,
        fill: Fill | None,
        reason: str,
    ) -> None:
        order = record.order
        payload = OrderEvent(
            order_id=record.order_id,
            client_order_id=record.client_order_id,
            strategy_id=record.strategy_id,
            market=order.market,
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            quantity=order.quantity,
            status=status,
            time_in_force=order.time_in_force,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            filled_quantity=record.filled_quantity,
            average_price=record.average_price,
            approval_id=record.approval_id,
            reason=reason,
            fill=fill,
            arrival_ns=record.arrival_ns,
        )
        ctx.publish(
            f"order.{status}.{order.market}",
            payload,
            market=order.market,
            causation=cause,
            correlation_id=record.correlation_id,
        )


def _missed_reports(record: OrderRecord, reports: list[VenueReport]) -> list[VenueReport]:
    """The reports of the venue's history of an order that the engine has not applied:
    ``accepted`` unless the record is past ``submitted``, the fills after the first
    ``record.fills``, and anything closing it (the record is open)."""
    accepted_seen = record.status != "submitted"
    fills_seen = record.fills
    missed: list[VenueReport] = []
    for report in reports:
        if report.kind == "accepted" and accepted_seen:
            continue
        if report.kind == "fill" and fills_seen > 0:
            fills_seen -= 1
            continue
        missed.append(report)
    return missed
