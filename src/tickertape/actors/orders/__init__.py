"""The order engine (DESIGN §9): fill and cost logic in :mod:`.fill_logic`, venue
adapters in :mod:`.venue`, the actor in :mod:`.engine`.

``ACTOR_CLASS`` is the actor the runtime hosts (``tape actor orders``); ``CONFIG_CLASS``
its configuration.
"""

from tickertape.actors.orders.engine import OrderEngine, OrderEngineConfig, order_ids
from tickertape.actors.orders.venue import SimulatedVenue, Venue, VenueOrder, VenueReport

ACTOR_CLASS = OrderEngine
CONFIG_CLASS = OrderEngineConfig

__all__ = [
    "ACTOR_CLASS",
    "CONFIG_CLASS",
    "OrderEngine",
    "OrderEngineConfig",
    "SimulatedVenue",
    "Venue",
    "VenueOrder",
    "VenueReport",
    "order_ids",
]
