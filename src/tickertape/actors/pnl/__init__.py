"""The pnl actor (DESIGN §9): accounts in :mod:`.accounting`, the actor in :mod:`.actor`,
run reports in :mod:`.report`.

``ACTOR_CLASS`` is the actor the runtime hosts (``tape actor pnl``); ``CONFIG_CLASS``
its configuration.
"""

from tickertape.actors.pnl.actor import PORTFOLIO, PnlActor, PnlConfig

ACTOR_CLASS = PnlActor
CONFIG_CLASS = PnlConfig

__all__ = ["ACTOR_CLASS", "CONFIG_CLASS", "PORTFOLIO", "PnlActor", "PnlConfig"]
