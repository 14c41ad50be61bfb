"""The indicators actor: TA-Lib-exact indicators per symbol and bar interval.

For each configured series (interval, markets, symbols, raw or adjusted prices) it
subscribes to ``md.bar.{interval}[-adj].{market}.{symbol}``, feeds every bar to the
series' calculators (:mod:`tickertape.actors.indicators.calculators`, O(1) each) and
publishes one :class:`~tickertape.schemas.indicator.IndicatorValue` per indicator and
bar once warmed up, on ``indicator.{name}.v1.{market}.{symbol}``, with ``ts_event`` =
the bar's close time. Names carry the parameters:

=========================  ===========================================  ==================
name                       values                                       first bar (n = period)
=========================  ===========================================  ==================
``sma_{n}``                ``value``                                    n
``ema_{n}``                ``value``                                    n
``rsi_{n}``                ``value`` (0–100, Wilder)                    n + 1
``macd_{f}_{s}_{g}``       ``macd``, ``signal``, ``hist``               s + g − 1
``trange``                 ``value``                                    2
``atr_{n}``                ``value`` (Wilder)                           n + 1
``dmi_{n}``                ``plus_di``, ``minus_di``, ``dx``, ``adx``   n + 1 (adx: 2n)
``bbands_{n}_{k}``         ``upper``, ``middle``, ``lower``             n
=========================  ===========================================  ==================

A series configured with ``publish = "per_bar"`` publishes instead one
:class:`~tickertape.schemas.indicator.IndicatorBar` per bar, with every indicator that
has a value on it (keyed by name), on ``indicator.bar.v1.{market}.{symbol}``: one
event per bar rather than one per indicator (the per-indicator topics are the
default, and what strategies read through ``on_indicator``).

A series expects raw or adjusted prices; a bar of the other kind raises
:class:`~tickertape.actors.marketdata.adjustment.PriceBasisError`. One symbol has one
interval per actor (the topic does not name the interval; the payload does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec

from tickertape.actors.base import Actor, Context, Event
from tickertape.actors.indicators.calculators import (
    Atr,
    AtrState,
    Bollinger,
    BollingerState,
    CalculatorState,
    Dmi,
    DmiState,
    Ema,
    EmaState,
    Macd,
    MacdState,
    Rsi,
    RsiState,
    Sma,
    SmaState,
    TrueRange,
    TrueRangeState,
)
from tickertape.actors.marketdata.adjustment import require_basis
from tickertape.errors import ConfigError
from tickertape.schemas.envelope import Market
from tickertape.schemas.indicator import IndicatorBar, IndicatorValue
from tickertape.schemas.market import Bar

IndicatorKind = Literal["sma", "ema", "rsi", "macd", "trange", "atr", "dmi", "bbands"]


class IndicatorSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One indicator of a series.

    Attributes:
        kind: which indicator.
        period: window for sma, ema, rsi, atr, dmi, bbands.
        fast, slow, signal: MACD periods.
        num_std: Bollinger band width in standard deviations.
    """

    kind: IndicatorKind
    period: int = 14
    fast: int = 12
    slow: int = 26
    signal: int = 9
    num_std: float = 2.0

    @property
    def name(self) -> str:
        """The topic token, e.g. ``rsi_14``, ``macd_12_26_9``, ``bbands_20_2``."""
        if self.kind == "trange":
            return "trange"
        if self.kind == "macd":
            return f"macd_{self.fast}_{self.slow}_{self.signal}"
        if self.kind == "bbands":
            k = int(self.num_std) if self.num_std == int(self.num_std) else self.num_std
            return f"bbands_{self.period}_{str(k).replace('.', '_')}"
        return f"{self.kind}_{self.period}"

    @property
    def params(self) -> dict[str, float]:
        """The parameters as published."""
        if self.kind == "trange":
            return {}
        if self.kind == "macd":
            return {"fast": self.fast, "slow": self.slow, "signal": self.signal}
        if self.kind == "bbands":
            return {"period": self.period, "num_std": self.num_std}
        return {"period": self.period}


DEFAULT_INDICATORS: tuple[IndicatorSpec, ...] = (
    IndicatorSpec(kind="sma", period=10),
    IndicatorSpec(kind="sma", period=20),
    IndicatorSpec(kind="ema", period=10),
    IndicatorSpec(kind="ema", period=20),
    IndicatorSpec(kind="rsi", period=14),
    IndicatorSpec(kind="macd"),
    IndicatorSpec(kind="trange"),
    IndicatorSpec(kind="atr", period=14),
    IndicatorSpec(kind="dmi", period=14),
    IndicatorSpec(kind="bbands", period=20, num_std=2.0),
)
"""The full set: the columns of the TA-Lib reference files."""


class SeriesConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which bars a set of indicators runs on.

    Attributes:
        interval: bar interval (``1m``, ``1d``...).
        markets: markets to cover.
        symbols: symbols to cover; empty means every symbol of those markets.
        adjusted: consume adjusted bars (``{interval}-adj`` topics) instead of raw.
        indicators: what to compute; their names (:attr:`IndicatorSpec.name`) must
            differ.
        publish: ``"per_indicator"`` (default): one ``IndicatorValue`` per indicator
            and bar on ``indicator.{name}.v1.{market}.{symbol}``; ``"per_bar"``: one
            ``IndicatorBar`` per bar with all of them, on
            ``indicator.bar.v1.{market}.{symbol}``.
    """

    interval: str = "1m"
    markets: list[Market] = msgspec.field(default_factory=lambda: ["crypto", "us", "kr"])
    symbols: list[str] = msgspec.field(default_factory=list)
    adjusted: bool = False
    indicators: list[IndicatorSpec] = msgspec.field(
        default_factory=lambda: list(DEFAULT_INDICATORS)
    )
    publish: Literal["per_indicator", "per_bar"] = "per_indicator"


class IndicatorsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of :class:`IndicatorActor` (``[indicators]`` in TOML).

    A symbol listed explicitly in a series takes that series over one covering its
    whole market.
    """

    series: list[SeriesConfig] = msgspec.field(default_factory=lambda: [SeriesConfig()])


class SeriesState(msgspec.Struct, frozen=True):
    """One (market, symbol) series: its config index and calculator states."""

    market: str
    symbol: str
    series_index: int
    calculators: list[CalculatorState]


class IndicatorsState(msgspec.Struct, frozen=True):
    """Snapshot of :class:`IndicatorActor`, series sorted by (market, symbol)."""

    series: list[SeriesState]


Calculator = Sma | Ema | Rsi | Macd | TrueRange | Atr | Dmi | Bollinger


def _build(spec: IndicatorSpec) -> Calculator:
    match spec.kind:
        case "sma":
            return Sma(spec.period)
        case "ema":
            return Ema(spec.period)
        case "rsi":
            return Rsi(spec.period)
        case "macd":
            return Macd(spec.fast, spec.slow, spec.signal)
        case "trange":
            return TrueRange()
        case "atr":
            return Atr(spec.period)
        case "dmi":
            return Dmi(spec.period)
        case "bbands":
            return Bollinger(spec.period, spec.num_std)
    raise ConfigError(f"unknown indicator kind {spec.kind!r}")


def _from_state(state: CalculatorState) -> Calculator:
    match state:
        case SmaState():
            return Sma.from_state(state)
        case EmaState():
            return Ema.from_state(state)
        case RsiState():
            return Rsi.from_state(state)
        case MacdState():
            return Macd.from_state(state)
        case TrueRangeState():
            return TrueRange.from_state(state)
        case AtrState():
            return Atr.from_state(state)
        case DmiState():
            return Dmi.from_state(state)
        case BollingerState():
            return Bollinger.from_state(state)


_with_values = msgspec.structs.replace  # a new payload from a template (the template is kept)


UpdateBar = Callable[[float, float, float], dict[str, float] | None]
"""A calculator's bound ``update_bar``: (high, low, close) -> the bar's values or None."""


class _Series:
    """One (market, symbol) series: its calculators and what each publishes.

    Everything that does not change from bar to bar is built once here, not per bar:
    :attr:`plan` holds, in publishing order, each calculator's bound ``update_bar``
    (which returns the bar's values as published), its topic and its payload template
    (every field but the bar's values and time); :attr:`named` the same methods with
    the indicators' names, and :attr:`bar_template` the payload template, for
    ``per_bar`` series.
    """

    __slots__ = (
        "_calculators",
        "adjusted",
        "bar_template",
        "bar_topic",
        "index",
        "interval",
        "market",
        "named",
        "names",
        "params",
        "per_bar",
        "plan",
        "spec",
        "symbol",
        "templates",
        "topics",
    )

    def __init__(self, market: str, symbol: str, index: int, spec: SeriesConfig) -> None:
        self.market = market
        self.symbol = symbol
        self.index = index
        self.spec = spec
        self.interval = spec.interval
        self.adjusted = spec.adjusted
        self.per_bar = spec.publish == "per_bar"
        self.names = [i.name for i in spec.indicators]
        self.params = [i.params for i in spec.indicators]
        self.topics = [f"indicator.{name}.v1.{market}.{symbol}" for name in self.names]
        self.bar_topic = f"indicator.bar.v1.{market}.{symbol}"
        # A bar of another interval or price basis never reaches a series, so these
        # fields are the same for every payload it publishes.
        self.templates = [
            IndicatorValue(
                symbol=symbol,
                name=name,
                interval=spec.interval,
                params=params,
                values={},
                bar_ts=0,
                adjusted=spec.adjusted,
            )
            for name, params in zip(self.names, self.params, strict=True)
        ]
        self.bar_template = IndicatorBar(
            symbol=symbol,
            interval=spec.interval,
            params=dict(zip(self.names, self.params, strict=True)),
            values={},
            bar_ts=0,
            adjusted=spec.adjusted,
        )
        self.calculators = [_build(i) for i in spec.indicators]

    @property
    def calculators(self) -> list[Calculator]:
        return self._calculators

    @calculators.setter
    def calculators(self, value: list[Calculator]) -> None:
        self._calculators = value
        self.plan: list[tuple[UpdateBar, str, IndicatorValue]] = [
            (c.update_bar, topic, template)
            for c, topic, template in zip(value, self.topics, self.templates, strict=True)
        ]
        self.named: list[tuple[UpdateBar, str]] = [
            (c.update_bar, name) for c, name in zip(value, self.names, strict=True)
        ]


class IndicatorActor(Actor):
    """Computes indicators on bars and publishes them on versioned topics.

    Args:
        config: the configuration; defaults (the full set on ``1m`` bars of every
            market) when None.

    Raises:
        ConfigError: invalid indicator parameters, an indicator listed twice in a
            series, or one symbol (or one whole market) configured in two series.
    """

    name = "indicators"
    state_version = 1

    def __init__(self, config: IndicatorsConfig | None = None) -> None:
        self.config = config or IndicatorsConfig()
        subscriptions: list[str] = []
        self._explicit: dict[tuple[str, str], int] = {}
        self._by_market: dict[str, int] = {}
        for index, series in enumerate(self.config.series):
            names: set[str] = set()
            for spec in series.indicators:
                _build(spec)  # validates the parameters now
                if spec.name in names:
                    raise ConfigError(f"series {index}: indicator {spec.name} is listed twice")
                names.add(spec.name)
            token = f"{series.interval}-adj" if series.adjusted else series.interval
            for market in series.markets:
                if series.symbols:
                    for symbol in series.symbols:
                        if (market, symbol) in self._explicit:
                            raise ConfigError(f"{market}.{symbol} is configured twice")
                        self._explicit[(market, symbol)] = index
                        subscriptions.append(f"md.bar.{token}.{market}.{symbol}")
                else:
                    if market in self._by_market:
                        raise ConfigError(f"market {market} is configured twice")
                    self._by_market[market] = index
                    subscriptions.append(f"md.bar.{token}.{market}.*")
        self.subscriptions = tuple(dict.fromkeys(subscriptions))
        self._series: dict[tuple[str, str], _Series] = {}

    def _new_series(self, market: str, symbol: str, interval: str) -> _Series | None:
        """The series a first bar of (market, symbol) starts, or None when none is configured."""
        key = (market, symbol)
        index = self._explicit.get(key, self._by_market.get(market))
        if index is None or self.config.series[index].interval != interval:
            return None
        series = self._series[key] = _Series(market, symbol, index, self.config.series[index])
        return series

    def on_event(self, event: Event, ctx: Context) -> None:
        """Feed a bar of a configured series to its calculators and publish the values."""
        bar = event.payload
        if not isinstance(bar, Bar):
            return
        record = event.record  # its fields directly: Event's properties cost a call each
        market = record.market
        if market is None:
            return
        series = self._series.get((market, bar.symbol)) or self._new_series(
            market, bar.symbol, bar.interval
        )
        if series is None or bar.interval != series.interval:
            return
        require_basis(bar, series.adjusted, event.topic)
        ts = record.ts_event
        high = bar.high
        low = bar.low
        close = bar.close
        publish = ctx.publish
        # The actor's hot path: each calculator returns the bar's values as published,
        # so one loop computes and publishes (ten outputs per bar for the full set), or
        # gathers them into the series' one event for the bar.
        if series.per_bar:
            outputs: dict[str, dict[str, float]] = {}
            for update_bar, name in series.named:
                values = update_bar(high, low, close)
                if values is not None:
                    outputs[name] = values
            if outputs:
                publish(
                    series.bar_topic,
                    _with_values(series.bar_template, values=outputs, bar_ts=ts),
                    market=market,
                    ts_event=ts,
                    causation=event,
                )
            return
        for update_bar, topic, template in series.plan:
            values = update_bar(high, low, close)
            if values is not None:
                publish(
                    topic,
                    _with_values(template, values=values, bar_ts=ts),
                    market=market,
                    ts_event=ts,
                    causation=event,
                )

    def snapshot(self) -> IndicatorsState:
        """Return every series' calculator states (sorted: deterministic bytes)."""
        return IndicatorsState(
            series=[
                SeriesState(
                    market=s.market,
                    symbol=s.symbol,
                    series_index=s.index,
                    calculators=[c.state() for c in s.calculators],
                )
                for _, s in sorted(self._series.items())
            ]
        )

    def restore(self, state: bytes) -> None:
        """Restore from the msgpack bytes of an :class:`IndicatorsState`.

        Raises:
            ConfigError: the snapshot's series do not fit the current configuration.
        """
        decoded = msgspec.msgpack.decode(state, type=IndicatorsState)
        self._series.clear()
        for saved in decoded.series:
            if saved.series_index >= len(self.config.series):
                raise ConfigError(f"snapshot series {saved.series_index} is not configured")
            series = _Series(
                saved.market,
                saved.symbol,
                saved.series_index,
                self.config.series[saved.series_index],
            )
            if len(saved.calculators) != len(series.calculators):
                raise ConfigError(f"snapshot of {saved.market}.{saved.symbol} has other indicators")
            series.calculators = [_from_state(c) for c in saved.calculators]
            self._series[(saved.market, saved.symbol)] = series
