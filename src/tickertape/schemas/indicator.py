"""Indicator payloads (``indicator.{name}.v{n}.{market}.{symbol}``).

Both are Structs with ``gc=False``: they hold only strings, numbers and dicts of
them, so they can be part of no reference cycle, and the garbage collector need not
track the ten the indicators actor builds per bar.
"""

from __future__ import annotations

import msgspec

from tickertape.schemas.registry import register


@register("indicator.value", 1)
class IndicatorValue(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One indicator output for one bar (``indicator.{name}.v1.{market}.{symbol}``).

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


@register("indicator.bar", 1)
class IndicatorBar(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Every indicator output of one series for one bar (``indicator.bar.v1.{market}.{symbol}``).

    Published instead of one :class:`IndicatorValue` per indicator when a series is
    configured with ``publish = "per_bar"``.

    Attributes:
        symbol: the instrument.
        interval: the bar interval it was computed on (``1m``, ``1d``...).
        params: every configured indicator's parameters by name, e.g.
            ``{"rsi_14": {"period": 14}, "trange": {}}``.
        values: the outputs by indicator name, each as :attr:`IndicatorValue.values`
            would hold them, e.g. ``{"rsi_14": {"value": 52.3}, "macd_12_26_9":
            {"macd": ..., "signal": ..., "hist": ...}}``; an indicator still warming
            up on this bar is absent.
        bar_ts: ``ts_event`` (close time, ns) of the bar it was computed from.
        adjusted: whether the input bars were adjusted prices.
    """

    symbol: str
    interval: str
    params: dict[str, dict[str, float]]
    values: dict[str, dict[str, float]]
    bar_ts: int
    adjusted: bool = False
