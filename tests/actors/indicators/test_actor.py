"""The indicator actor: TA-Lib values on published topics, exact restarts, price basis."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import msgspec
import pytest

from tickertape.actors.indicators import (
    ACTOR_CLASS,
    CONFIG_CLASS,
    IndicatorActor,
    IndicatorsConfig,
    IndicatorSpec,
    SeriesConfig,
)
from tickertape.actors.marketdata.adjustment import PriceBasisError
from tickertape.actors.marketdata.importers import parse_ohlcv_csv
from tickertape.errors import ConfigError
from tickertape.schemas import decode_payload, encode_payload
from tickertape.schemas.indicator import IndicatorBar, IndicatorValue

from ..marketdata.harness import FakeContext, make_event, run

DATA = Path(__file__).resolve().parents[3] / "data"
REFERENCE = (
    DATA / "indicator-reference" / "talib-computed" / "talib_ref_6EH4_1m_2024-01_first3000.csv"
)
CME = DATA / "cme-6eh4-1m-2024-01" / "6EH4.XCME_1min_bars_20240101_20240131.csv.gz"


@pytest.fixture(scope="module")
def bars() -> list:  # type: ignore[type-arg]
    (parsed,) = parse_ohlcv_csv(
        CME, market="us", symbol="6EH4", interval="1m", stamp="end"
    ).streams.values()
    return [
        make_event(e.topic, e.payload, e.market, e.ts_event, i)
        for i, e in enumerate(parsed[:3000], 1)
    ]


def _values(ctx: FakeContext, name: str) -> dict[int, dict[str, float]]:
    return {
        p.payload.bar_ts: p.payload.values
        for p in ctx.published
        if isinstance(p.payload, IndicatorValue) and p.payload.name == name
    }


def test_package_exposes_actor_and_config() -> None:
    """The runtime resolves the actor and its strict configuration from the package."""
    assert ACTOR_CLASS is IndicatorActor
    assert CONFIG_CLASS is IndicatorsConfig
    with pytest.raises(msgspec.ValidationError):
        msgspec.toml.decode(b'[[series]]\ninterval = "1m"\ncolour = "red"\n', type=IndicatorsConfig)


def test_published_values_match_talib_reference(bars: list) -> None:  # type: ignore[type-arg]
    """RSI, MACD, ADX and Bollinger published for 6EH4 equal TA-Lib's columns to 1e-9."""
    actor = IndicatorActor()
    ctx = FakeContext("indicators")
    run(actor, ctx, bars)
    topics = {p.topic for p in ctx.published}
    assert "indicator.rsi_14.v1.us.6EH4" in topics
    assert "indicator.macd_12_26_9.v1.us.6EH4" in topics
    rsi, macd = _values(ctx, "rsi_14"), _values(ctx, "macd_12_26_9")
    dmi, bb = _values(ctx, "dmi_14"), _values(ctx, "bbands_20_2")
    with REFERENCE.open(newline="") as f:
        rows = list(csv.DictReader(f))
    checks = 0
    for row, event in zip(rows, bars, strict=True):
        ts = event.ts_event
        pairs = [
            (row["RSI_14"], rsi.get(ts, {}).get("value")),
            (row["MACDHIST_12_26_9"], macd.get(ts, {}).get("hist")),
            (row["ADX_14"], dmi.get(ts, {}).get("adx")),
            (row["BB_LOWER_20_2"], bb.get(ts, {}).get("lower")),
        ]
        for expected, got in pairs:
            if expected == "":
                assert got is None
            else:
                assert got is not None
                assert math.isclose(got, float(expected), rel_tol=1e-9)
                checks += 1
    assert checks > 11_000


def test_restart_from_snapshot_continues_exactly(bars: list) -> None:  # type: ignore[type-arg]
    """Outputs after a msgpack snapshot/restore equal those of the uninterrupted run."""
    whole = IndicatorActor()
    whole_ctx = FakeContext("indicators")
    run(whole, whole_ctx, bars)
    first = IndicatorActor()
    ctx = FakeContext("indicators")
    run(first, ctx, bars[:1234])
    second = IndicatorActor()
    second.restore(msgspec.msgpack.encode(first.snapshot()))
    ctx2 = FakeContext("indicators")
    run(second, ctx2, bars[1234:])
    assert ctx.published + ctx2.published == whole_ctx.published


def test_adjusted_series_refuses_raw_bars(bars: list) -> None:  # type: ignore[type-arg]
    """A series configured for adjusted prices fails loudly on a raw bar."""
    config = IndicatorsConfig(series=[SeriesConfig(interval="1m", markets=["us"], adjusted=True)])
    actor = IndicatorActor(config)
    assert actor.subscriptions == ("md.bar.1m-adj.us.*",)
    with pytest.raises(PriceBasisError):
        run(actor, FakeContext("indicators"), bars[:1])


def test_per_symbol_configuration_and_names() -> None:
    """An explicit symbol gets its own indicators; names carry their parameters."""
    config = IndicatorsConfig(
        series=[
            SeriesConfig(interval="1m", markets=["us"]),
            SeriesConfig(
                interval="1d",
                markets=["us"],
                symbols=["AAPL"],
                indicators=[
                    IndicatorSpec(kind="sma", period=50),
                    IndicatorSpec(kind="bbands", period=20, num_std=2.5),
                ],
            ),
        ]
    )
    actor = IndicatorActor(config)
    assert actor.subscriptions == ("md.bar.1m.us.*", "md.bar.1d.us.AAPL")
    assert [s.name for s in config.series[1].indicators] == ["sma_50", "bbands_20_2_5"]
    with pytest.raises(ConfigError):
        IndicatorActor(
            IndicatorsConfig(
                series=[SeriesConfig(indicators=[IndicatorSpec(kind="rsi", period=1)])]
            )
        )


def test_bars_outside_the_configuration_publish_nothing(bars: list) -> None:  # type: ignore[type-arg]
    """Another market, another interval or an unlisted symbol yields no output."""
    config = IndicatorsConfig(series=[SeriesConfig(interval="1m", markets=["us"], symbols=["X"])])
    actor = IndicatorActor(config)
    ctx = FakeContext("indicators")
    other_interval = [
        make_event(
            e.topic.replace("1m", "5m"),
            msgspec.structs.replace(e.payload, symbol="X", interval="5m"),
            "us",
            e.ts_event,
            e.gseq,
        )
        for e in bars[:50]
    ]
    other_market = [
        make_event(e.topic, e.payload, "crypto", e.ts_event, e.gseq) for e in bars[50:100]
    ]
    run(actor, ctx, [*bars[:100], *other_interval, *other_market])
    assert ctx.published == []
    assert actor.snapshot().series == []


PER_BAR = IndicatorsConfig(series=[SeriesConfig(publish="per_bar")])


def test_per_bar_event_carries_every_value_of_the_bar(bars: list) -> None:  # type: ignore[type-arg]
    """``publish = "per_bar"``: one IndicatorBar per bar holding exactly the per-indicator values."""
    per_indicator = FakeContext("indicators")
    run(IndicatorActor(), per_indicator, bars)
    expected: dict[int, dict[str, dict[str, float]]] = {}
    for p in per_indicator.published:
        expected.setdefault(p.ts_event, {})[p.payload.name] = p.payload.values
    ctx = FakeContext("indicators")
    run(IndicatorActor(PER_BAR), ctx, bars)
    assert {p.topic for p in ctx.published} == {"indicator.bar.v1.us.6EH4"}
    assert all(isinstance(p.payload, IndicatorBar) for p in ctx.published)
    assert [p.ts_event for p in ctx.published] == sorted(expected)  # none while all warm up
    assert {p.ts_event: p.payload.values for p in ctx.published} == expected
    first, last = ctx.published[0].payload, ctx.published[-1].payload
    assert list(first.values) == ["trange"]  # the only indicator with a value on bar 2
    assert list(last.values) == [s.name for s in SeriesConfig().indicators]  # config order
    assert last.params["macd_12_26_9"] == {"fast": 12, "slow": 26, "signal": 9}
    assert last.bar_ts == bars[-1].ts_event
    assert (last.symbol, last.interval, last.adjusted) == ("6EH4", "1m", False)
    assert decode_payload("indicator.bar", 1, encode_payload(last)) == last


def test_per_bar_restart_from_snapshot_continues_exactly(bars: list) -> None:  # type: ignore[type-arg]
    """A per-bar series restored from a snapshot publishes what the uninterrupted run did."""
    whole = FakeContext("indicators")
    run(IndicatorActor(PER_BAR), whole, bars)
    first = IndicatorActor(PER_BAR)
    ctx = FakeContext("indicators")
    run(first, ctx, bars[:777])
    second = IndicatorActor(PER_BAR)
    second.restore(msgspec.msgpack.encode(first.snapshot()))
    ctx2 = FakeContext("indicators")
    run(second, ctx2, bars[777:])
    assert ctx.published + ctx2.published == whole.published


def test_indicator_listed_twice_is_refused() -> None:
    """Two indicators with one name in a series would share a topic (or a key): ConfigError."""
    twice = [IndicatorSpec(kind="sma", period=10), IndicatorSpec(kind="sma", period=10)]
    with pytest.raises(ConfigError, match="sma_10 is listed twice"):
        IndicatorActor(IndicatorsConfig(series=[SeriesConfig(indicators=twice)]))
