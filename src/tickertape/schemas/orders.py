"""Order lifecycle payloads (``order.{event}.{market}``)."""

from __future__ import annotations

from typing import Literal

import msgspec

from tickertape.schemas.envelope import Market
from tickertape.schemas.registry import register
from tickertape.schemas.strategy import OrderType, Side, TimeInForce

OrderStatus = Literal[
    "submitted", "accepted", "rejected", "partially_filled", "filled", "canceled", "expired"
]


class Fill(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One execution.

    Fields left at their default are not written (``omit_defaults``; msgspec tests
    a default by identity, so a producer leaves ``multiplier`` unset for 1): a fill
    of an instrument without a specification is written as before ``multiplier``
    existed, and readers of either form decode both.

    Attributes:
        fill_id: deterministic, unique per order.
        price: execution price including slippage, in the market's currency per unit
            of the underlying.
        quantity: contracts (shares, coins) filled (> 0).
        fee: fee charged, ≥ 0, in ``currency`` (taxes included).
        liquidity: ``"maker"`` or ``"taker"``.
        slippage_bps: slippage applied versus the reference price, ≥ 0.
        ts_fill: venue time of the fill, ns (never earlier than the order's arrival
            at the venue).
        reference_price: the market price the fill was taken against, before slippage.
        multiplier: units of the underlying per contract (1 for shares and coins,
            125,000 for a CME 6E contract); the fill's notional is
            ``quantity × price × multiplier`` and the PnL books use it.
    """

    fill_id: str
    price: float
    quantity: float
    fee: float
    currency: str
    liquidity: Literal["maker", "taker"]
    slippage_bps: float
    ts_fill: int
    reference_price: float = 0.0
    multiplier: float = 1.0


@register("order.event", 1)
class OrderEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A state of an order's lifecycle; ``fill`` is set on (partial) fills.

    Attributes:
        order_id: deterministic id derived from the approval.
        client_order_id: the id sent to the venue (idempotency on the venue side).
        status: the new status.
        filled_quantity: cumulative quantity filled.
        average_price: volume-weighted fill price so far (0.0 before any fill).
        approval_id: ``id`` of the risk approval that allowed it.
        arrival_ns: when the order reaches (reached) the venue: submission time plus
            the modeled latency (0 when unknown).
    """

    order_id: str
    client_order_id: str
    strategy_id: str
    market: Market
    symbol: str
    side: Side
    order_type: OrderType
    quantity: float
    status: OrderStatus
    time_in_force: TimeInForce = "GTC"
    limit_price: float | None = None
    stop_price: float | None = None
    filled_quantity: float = 0.0
    average_price: float = 0.0
    approval_id: str | None = None
    reason: str = ""
    fill: Fill | None = None
    arrival_ns: int = 0
