"""The market-data actor: importers, sessions, corporate actions, bars, live feeds.

``tape actor marketdata`` resolves :data:`ACTOR_CLASS` with :data:`CONFIG_CLASS`.
"""

from tickertape.actors.marketdata.actor import MarketDataActor, MarketDataConfig, MarketDataState

ACTOR_CLASS = MarketDataActor
CONFIG_CLASS = MarketDataConfig

__all__ = [
    "ACTOR_CLASS",
    "CONFIG_CLASS",
    "MarketDataActor",
    "MarketDataConfig",
    "MarketDataState",
]
