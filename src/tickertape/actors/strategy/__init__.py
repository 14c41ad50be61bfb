"""The strategy actor and the base class of user strategies (DESIGN §9).

``ACTOR_CLASS`` is the actor the runtime hosts (``tape actor strategy``);
``CONFIG_CLASS`` its configuration. User code subclasses :class:`Strategy`.
"""

from tickertape.actors.strategy.actor import (
    OpenOrder,
    Strategy,
    StrategyActor,
    StrategyConfig,
    StrategyContext,
    build_strategy,
    load_strategy_class,
)

ACTOR_CLASS = StrategyActor
CONFIG_CLASS = StrategyConfig

__all__ = [
    "ACTOR_CLASS",
    "CONFIG_CLASS",
    "OpenOrder",
    "Strategy",
    "StrategyActor",
    "StrategyConfig",
    "StrategyContext",
    "build_strategy",
    "load_strategy_class",
]
