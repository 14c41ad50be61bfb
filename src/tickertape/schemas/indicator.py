"""Indicator payloads (``indicator.{name}.v{n}.{market}.{symbol}``)."""

from __future__ import annotations

import msgspec

from tickertape.schemas.registry import register


@register("indicator.value", 1)
class IndicatorValue(msgspec.Struct, frozen=True, kw_only=True):
    """One indicator output for one bar.

    Attributes:
        symbol: the instrument.
        name: indicator name with its parameters, e.g. ``rsi_14``, ``macd_12_26_9``.
        interval: the bar interval it was computed on (``1m``, ``1d``...).
        params: the parameters, e.g. ``{"period": 14}``.
        values: the output(s), e.g. ``{"value": 52.3}`` or
            ``{"macd": ..., "signal": ..., "hist": ...}``.
        bar_ts: ``ts_event`` (close time, ns) of the bar it was computed from.
        adjusted: whether the input bars were adjusted prices.
    """

    symbol: str
    name: str
    interval: str
    params: dict[str, float]
    values: dict[str, float]
    bar_ts: int
    adjusted: bool = False
