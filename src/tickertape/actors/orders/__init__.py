"""The order engine (DESIGN §9): fill and cost logic in :mod:`.fill_logic`, venue
adapters in :mod:`.venue`, the actor in :mod:`.engine`.

``ACTOR_CLASS`` is the actor the runtime hosts (``tape actor orders``); ``CONFIG_CLASS``
its configuration. A venue adapter implements :class:`Venue`; the engine takes it as
``OrderEngine(config, venue=...)`` or builds it from ``config.venue`` (a name of
:data:`VENUES` or ``package.module:factory``).
"""

from tickertape.actors.orders.engine import (
    VENUES,
    OrderEngine,
    OrderEngineConfig,
    VenueFactory,
    order_ids,
    venue_factory,
)
from tickertape.actors.orders.venue import (
    SimulatedVenue,
    Venue,
    VenueOrder,
    VenueOrderStatus,
    VenueReport,
    VenueResult,
)

ACTOR_CLASS = OrderEngine
CONFIG_CLASS = OrderEngineConfig

__all__ = [
    "ACTOR_CLASS",
    "CONFIG_CLASS",
    "VENUES",
    "OrderEngine",
    "OrderEngineConfig",
    "SimulatedVenue",
    "Venue",
    "VenueFactory",
    "VenueOrder",
    "VenueOrderStatus",
    "VenueReport",
    "VenueResult",
    "order_ids",
    "venue_factory",
]
