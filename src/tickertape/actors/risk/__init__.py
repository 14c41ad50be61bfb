"""The risk gate (DESIGN §9): pure checks in :mod:`.checks`, the actor in :mod:`.actor`.

``ACTOR_CLASS`` is the actor the runtime hosts (``tape actor risk``); ``CONFIG_CLASS``
its configuration.
"""

from tickertape.actors.risk.actor import RiskActor, RiskConfig, load_limits
from tickertape.actors.risk.checks import (
    REASON_CODES,
    Decision,
    Limits,
    LimitsFile,
    RiskView,
    TradingStates,
    decide,
    effective_limits,
    effective_state,
    parse_limits,
)

ACTOR_CLASS = RiskActor
CONFIG_CLASS = RiskConfig

__all__ = [
    "ACTOR_CLASS",
    "CONFIG_CLASS",
    "REASON_CODES",
    "Decision",
    "Limits",
    "LimitsFile",
    "RiskActor",
    "RiskConfig",
    "RiskView",
    "TradingStates",
    "decide",
    "effective_limits",
    "effective_state",
    "load_limits",
    "parse_limits",
]
