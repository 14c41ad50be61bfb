"""Actors that publish outside their role (the role-only distributed replay's tests).

Not part of the product: each tries, on its first bar, one thing DESIGN §1.4 forbids
it, so that the tests can check who refuses it and that nothing is stored.
"""

from __future__ import annotations

from tickertape.actors.base import Actor, Context, Event
from tickertape.schemas.market import Bar
from tickertape.schemas.risk import ApprovedOrder, RiskCommand, RiskDecision
from tickertape.schemas.system import ClockDrift


class SelfApprovingStrategy(Actor):
    """Identity ``strategy.sma``: approves an order of its own on ``risk.approved.sma``
    instead of emitting an intent (only the risk gate approves). The host's role check
    (:mod:`tickertape.roles`) refuses it before it reaches the router."""

    name = "strategy.sma"
    subscriptions = ("md.bar.1m.us.*",)
    state_version = 1

    def __init__(self, config: None = None) -> None:
        pass

    def on_event(self, event: Event, ctx: Context) -> None:
        bar: Bar = event.payload
        ctx.publish(
            "risk.approved.sma",
            RiskDecision(
                strategy_id="sma",
                intent_id=event.id,
                approved=True,
                reason_code="OK",
                order=ApprovedOrder(market="us", symbol=bar.symbol, side="buy", quantity=1e6),
            ),
            market="us",
            causation=event,
        )


class OperatorImpostor(Actor):
    """Identity ``signals``, a user's own actor (no built-in role in
    :mod:`tickertape.roles`): it sends the risk gate a global ``resume`` (an operator's
    command) on ``system.command.risk``, a family reserved to no actor."""

    name = "signals"
    subscriptions = ("md.>",)
    state_version = 1

    def __init__(self, config: None = None) -> None:
        pass

    def on_event(self, event: Event, ctx: Context) -> None:
        ctx.publish(
            "system.command.risk",
            RiskCommand(command="resume", reason="not an operator"),
            market=None,
            causation=event,
        )


class DriftForger(Actor):
    """Identity ``signals``, a user's own actor (its host lets it publish any topic
    outside the reserved families), deployed with a token of the ``indicators`` role:
    it forges the time authority's clock drift alert (``system.clock.drift``, which
    halts the risk gate). Only the router's ACL stands in its way."""

    name = "signals"
    subscriptions = ("md.>",)
    state_version = 1

    def __init__(self, config: None = None) -> None:
        pass

    def on_event(self, event: Event, ctx: Context) -> None:
        now = ctx.clock.now_ns()
        ctx.publish(
            "system.clock.drift",
            ClockDrift(
                actor="risk", actor_ns=now, authority_ns=now - 10**9, drift_ns=10**9, bound_ns=1
            ),
            market=None,
            causation=event,
        )
