"""Risk gate payloads: decisions (``risk.approved.*``, ``risk.rejected.*``) and state (``risk.state``)."""

from __future__ import annotations

from typing import Literal

import msgspec

from tickertape.schemas.envelope import Market
from tickertape.schemas.registry import register
from tickertape.schemas.strategy import OrderType, Side, TimeInForce

TradingState = Literal["ACTIVE", "REDUCING", "HALTED"]


class ApprovedOrder(msgspec.Struct, frozen=True, kw_only=True):
    """The order the risk gate approved: what the order engine will send, exactly."""

    market: Market
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType = "market"
    limit_price: float | None = None
    stop_price: float | None = None
    time_in_force: TimeInForce = "GTC"
    cancel_order_id: str | None = None


@register("risk.decision", 1)
class RiskDecision(msgspec.Struct, frozen=True, kw_only=True):
    """The risk gate's decision on one intent, with the inputs it used (the audit trail).

    Attributes:
        strategy_id, intent_id: the intent decided.
        approved: True on ``risk.approved.*``, False on ``risk.rejected.*``.
        reason_code: a stable code (``OK``, ``HALTED``, ``MAX_NOTIONAL``...; see
            :mod:`tickertape.actors.risk`).
        reason: human-readable detail.
        order: the approved order, None when rejected.
        inputs: the figures the checks used (price, position, exposure...).
    """

    strategy_id: str
    intent_id: str
    approved: bool
    reason_code: str
    reason: str = ""
    order: ApprovedOrder | None = None
    inputs: dict[str, float] = msgspec.field(default_factory=dict)


@register("risk.state", 1)
class RiskState(msgspec.Struct, frozen=True, kw_only=True):
    """A trading-state change of a scope (the kill switch).

    Attributes:
        scope: ``"global"``, ``"market"`` or ``"strategy"``.
        key: the market or strategy id; None for global.
        state: ``ACTIVE``, ``REDUCING`` or ``HALTED``.
        reason: why (a manual halt's text, ``DRAWDOWN``, ``CLOCK_DRIFT``...).
    """

    scope: Literal["global", "market", "strategy"]
    key: str | None
    state: TradingState
    reason: str = ""


@register("risk.command", 1)
class RiskCommand(msgspec.Struct, frozen=True, kw_only=True):
    """A manual halt or resume (``tape halt`` / ``tape resume``), on ``system.command.risk``."""

    command: Literal["halt", "resume", "reduce"]
    scope: Literal["global", "market", "strategy"] = "global"
    key: str | None = None
    reason: str = ""
