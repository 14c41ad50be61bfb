"""Strategy intents (``strategy.intent.{strategy_id}``): what a strategy wants, never an order."""

from __future__ import annotations

from typing import Literal

import msgspec

from tickertape.schemas.envelope import Market
from tickertape.schemas.registry import register

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop"]
TimeInForce = Literal["GTC", "IOC", "DAY"]


def is_strategy_id(text: str) -> bool:
    """True for a strategy id: non-empty, of letters, digits, ``_`` and ``-`` only (it
    names the identity ``strategy.<id>`` and the topics ``strategy.intent.<id>``)."""
    return text.replace("_", "").replace("-", "").isalnum()


@register("strategy.intent", 1)
class Intent(msgspec.Struct, frozen=True, kw_only=True):
    """A strategy's request, for the risk gate to approve or reject.

    Exactly one of ``quantity`` (with ``side``) or ``target_position`` is set for
    ``action="order"``; ``action="cancel"`` names ``cancel_order_id``.

    Attributes:
        strategy_id: the strategy.
        intent_id: unique within the strategy, deterministic.
        action: ``"order"`` or ``"cancel"``.
        market, symbol: the instrument.
        side: ``"buy"`` or ``"sell"`` when ``quantity`` is given.
        quantity: units (shares, contracts, coins), > 0.
        target_position: desired signed position, instead of side+quantity.
        order_type: ``"market"``, ``"limit"`` or ``"stop"``.
        limit_price, stop_price: required for limit and stop orders.
        time_in_force: ``"GTC"``, ``"IOC"`` or ``"DAY"``.
        reason: free text, for the audit trail.
    """

    strategy_id: str
    intent_id: str
    market: Market
    symbol: str
    action: Literal["order", "cancel"] = "order"
    side: Side | None = None
    quantity: float | None = None
    target_position: float | None = None
    order_type: OrderType = "market"
    limit_price: float | None = None
    stop_price: float | None = None
    time_in_force: TimeInForce = "GTC"
    cancel_order_id: str | None = None
    reason: str = ""
