"""The indicators actor: TA-Lib-exact incremental indicators on bars.

``tape actor indicators`` resolves :data:`ACTOR_CLASS` with :data:`CONFIG_CLASS`.
"""

from tickertape.actors.indicators.actor import (
    DEFAULT_INDICATORS,
    IndicatorActor,
    IndicatorsConfig,
    IndicatorSpec,
    SeriesConfig,
)

ACTOR_CLASS = IndicatorActor
CONFIG_CLASS = IndicatorsConfig

__all__ = [
    "ACTOR_CLASS",
    "CONFIG_CLASS",
    "DEFAULT_INDICATORS",
    "IndicatorActor",
    "IndicatorSpec",
    "IndicatorsConfig",
    "SeriesConfig",
]
