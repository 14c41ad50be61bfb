"""Clock drift monitoring for live mode (pure: reports in, alerts out).

Live actors report their clock every second (``system.clock.actor.<name>``). The
time authority compares each report with its own clock and raises a
``system.clock.drift`` event (:class:`~tickertape.schemas.system.ClockDrift`) when
the difference exceeds the bound (default 250 ms, issue 4). The risk gate halts new
orders on a drift alert.

To avoid a flood, an actor that stays beyond the bound is alerted again at most
every ``repeat_ns``; coming back within the bound re-arms the alert at once.
"""

from __future__ import annotations

from tickertape.schemas.system import ClockDrift

DEFAULT_BOUND_NS = 250_000_000
"""250 ms: the issue's default drift bound."""


class DriftMonitor:
    """Decides when an actor's reported clock deserves a drift alert.

    Args:
        bound_ns: the allowed |actor clock − authority clock|, ns.
        repeat_ns: minimum authority time between two alerts for one actor, ns.
    """

    def __init__(self, bound_ns: int = DEFAULT_BOUND_NS, repeat_ns: int = 10_000_000_000) -> None:
        if bound_ns <= 0:
            raise ValueError(f"bound_ns must be > 0, got {bound_ns}")
        self.bound_ns = bound_ns
        self.repeat_ns = repeat_ns
        self._last_alert: dict[str, int] = {}

    def report(self, actor: str, actor_ns: int, authority_ns: int) -> ClockDrift | None:
        """Return the alert to publish for this report, or None.

        ``drift_ns`` is ``actor_ns − authority_ns`` (positive: the actor is ahead).
        """
        drift = actor_ns - authority_ns
        if abs(drift) <= self.bound_ns:
            self._last_alert.pop(actor, None)
            return None
        last = self._last_alert.get(actor)
        if last is not None and authority_ns - last < self.repeat_ns:
            return None
        self._last_alert[actor] = authority_ns
        return ClockDrift(
            actor=actor,
            actor_ns=actor_ns,
            authority_ns=authority_ns,
            drift_ns=drift,
            bound_ns=self.bound_ns,
        )
