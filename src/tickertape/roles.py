"""The built-in identities' roles: which topics each may publish.

DESIGN.md §1.4: strategies emit intents only, only the risk gate approves, only the
order engine reports orders. The router enforces this for connections through its
ACL (docs/protocol.md); the in-process host enforces the same table on each actor's
``ctx.publish`` (:class:`tickertape.actors.runtime.errors.PublishNotAllowedError`), so a
backtest cannot do what the live system would refuse.

Every identity may also publish its own ``system.alert.<identity>``, its clock
reports ``system.clock.actor.<identity>`` and its time queries
``system.clock.query.<identity>``. An identity without a built-in role (a user's own
actor) may publish anything outside the :data:`RESERVED` families.
"""

from __future__ import annotations

from tickertape.topics import covers, matches_any, overlaps

ROLE_PUBLISH: dict[str, tuple[str, ...]] = {
    "marketdata": ("md.>", "raw.>"),
    "indicators": ("indicator.>",),
    "risk": ("risk.>",),
    "orders": ("order.>",),
    "pnl": ("pnl.>",),
}
"""Topic patterns each built-in identity publishes (``strategy.<id>`` is below)."""

STRATEGY_PREFIX = "strategy."


def own_system_topics(identity: str) -> tuple[str, ...]:
    """The ``system.*`` topics every identity may publish about itself."""
    return (
        f"system.alert.{identity}",
        f"system.clock.actor.{identity}",
        f"system.clock.query.{identity}",
    )


RESERVED: tuple[str, ...] = (
    "md.>",
    "raw.>",
    "strategy.intent.>",
    "risk.>",
    "order.>",
    "pnl.>",
    "system.command.>",
)
"""Families no identity outside its built-in role may publish: market truth, the
decision chain, and the operator's commands (``system.command.risk``: ``tape halt``,
``tape resume``, ``tape reduce``, which the risk gate obeys from any source but a
strategy; through a router only the ``operator`` role may send them, and no actor
publishes them). A user's own actor (no built-in role) may publish anything else."""


class PublishRule:
    """What one identity may publish.

    Attributes:
        identity: the identity.
        allowed: the patterns it may publish, or None for any topic not reserved.
    """

    __slots__ = ("allowed", "identity")

    def __init__(self, identity: str, allowed: tuple[str, ...] | None) -> None:
        self.identity = identity
        self.allowed = allowed

    def permits(self, topic: str) -> bool:
        """True when ``identity`` may publish on ``topic``."""
        if self.allowed is not None:
            return matches_any(self.allowed, topic)
        return not matches_any(RESERVED, topic)

    def describe(self) -> str:
        """The rule in words, for error messages."""
        if self.allowed is not None:
            return ", ".join(self.allowed)
        return "any topic outside " + ", ".join(RESERVED)


def publish_patterns(identity: str) -> tuple[str, ...] | None:
    """The topic patterns ``identity`` may publish, or None for an identity without a
    built-in role (a user's own actor: anything but :data:`RESERVED`).

    ``strategy.<id>`` may publish only its intents, ``strategy.intent.<id>`` (and
    below); the others as :data:`ROLE_PUBLISH` says.
    """
    if identity.startswith(STRATEGY_PREFIX):
        strategy_id = identity[len(STRATEGY_PREFIX) :]
        own = (f"strategy.intent.{strategy_id}", f"strategy.intent.{strategy_id}.>")
        return (*own, *own_system_topics(identity))
    role = ROLE_PUBLISH.get(identity)
    if role is None:
        return None
    return (*role, *own_system_topics(identity))


def may_publish_into(identity: str, pattern: str) -> bool:
    """True when ``identity`` may publish some topic matching subscription ``pattern``.

    Conservative for an identity without a built-in role: it may publish into every
    pattern that no single :data:`RESERVED` pattern covers. The distributed replay
    uses this to find actors whose outputs cannot reach one another.
    """
    allowed = publish_patterns(identity)
    if allowed is None:
        return not any(covers(reserved, pattern) for reserved in RESERVED)
    return any(overlaps(p, pattern) for p in allowed)


def publish_rule(identity: str) -> PublishRule:
    """The :class:`PublishRule` of ``identity``."""
    return PublishRule(identity, publish_patterns(identity))


__all__ = [
    "RESERVED",
    "ROLE_PUBLISH",
    "PublishRule",
    "may_publish_into",
    "own_system_topics",
    "publish_patterns",
    "publish_rule",
]
