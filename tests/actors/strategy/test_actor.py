"""Tests of the strategy actor: loading by path, context views, intents only, snapshots."""

from __future__ import annotations

import msgspec
import pytest

from tests.actors.orders.harness import MINUTE_NS, bar_records, payloads, run_chain
from tickertape.actors.orders import OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.strategy import (
    Strategy,
    StrategyActor,
    StrategyConfig,
    StrategyContext,
    build_strategy,
    load_strategy_class,
)
from tickertape.errors import ConfigError
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar
from tickertape.schemas.orders import OrderEvent

T0 = 1_704_067_200_000_000_000


def test_load_by_module_path() -> None:
    """package.module:Class loads a Strategy subclass; anything else is a ConfigError."""
    cls = load_strategy_class("examples.strategies.sma_cross:SmaCross")
    assert issubclass(cls, Strategy)
    for bad in (
        "examples.strategies.sma_cross",
        "no.such.module:X",
        "tickertape.errors:ConfigError",
    ):
        with pytest.raises(ConfigError):
            load_strategy_class(bad)
    with pytest.raises(ConfigError, match="no strategy class"):
        build_strategy(StrategyConfig())


def test_config_refuses_unknown_keys() -> None:
    """The strategy configuration forbids unknown fields."""
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.toml.decode(b'strategy_id = "x"\nsymbol = "y"\n', type=StrategyConfig)
    with pytest.raises(ConfigError):
        StrategyActor(StrategyConfig(strategy_id="bad id"), strategy=Strategy())


class Observer(Strategy):
    """Buys 2 limit below the market on bar 1, cancels on bar 3, records its views."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.views: list[tuple[float, int]] = []
        self.fills: list[OrderEvent] = []

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        self.n += 1
        self.views.append(
            (ctx.position(market, bar.symbol), len(ctx.open_orders(market, bar.symbol)))
        )
        assert ctx.last_price(market, bar.symbol) == bar.close
        assert ctx.now_ns() == T0 + self.n * MINUTE_NS
        if self.n == 1:
            ctx.submit_order(market, bar.symbol, "buy", 2.0, order_type="limit", limit_price=50.0)
            ctx.submit_order(market, bar.symbol, "buy", 1.0)
        elif self.n == 3:
            for order in ctx.open_orders(market, bar.symbol):
                ctx.cancel_order(order.order_id, reason="stale")

    def on_fill(self, order: OrderEvent, ctx: StrategyContext) -> None:
        self.fills.append(order)


def test_context_tracks_positions_and_open_orders_from_events() -> None:
    """Positions come from fills and open orders from lifecycle events; cancels go out."""
    observer = Observer()
    rows = [(T0 + i * MINUTE_NS, 100.0, 101.0, 99.0, 100.0, 100.0) for i in range(1, 6)]
    out = run_chain(
        bar_records(rows, "crypto", "ABC"),
        [StrategyActor(StrategyConfig(strategy_id="obs"), strategy=observer)],
        orders=OrderEngineConfig(markets={"crypto": fl.ZERO_COST}),
    )
    # bar 2: both orders open (the market order fills on bar 2, one wave later)
    assert observer.views == [(0.0, 0), (0.0, 2), (1.0, 1), (1.0, 0), (1.0, 0)]
    assert [f.fill.quantity for f in observer.fills] == [1.0]
    intents = [p for _, p in payloads(out, "strategy.intent.obs")]
    assert [i.action for i in intents] == ["order", "order", "cancel"]
    assert [i.intent_id for i in intents] == ["obs-1", "obs-2", "obs-3"]
    assert {r.topic.split(".")[0] for r, _ in payloads(out, "") if r.source == "strategy.obs"} == {
        "strategy"
    }
    statuses = [p.status for _, p in payloads(out, "order.") if p.order_type == "limit"]
    assert statuses == ["submitted", "accepted", "canceled"]


def test_snapshot_round_trip() -> None:
    """The actor's state survives a msgpack snapshot and restore."""
    actor = StrategyActor(StrategyConfig(strategy_id="a"), strategy=Strategy())
    actor.state.positions["crypto:ABC"] = 3.0
    actor.state.intent_seq = 7
    data = msgspec.msgpack.encode(actor.snapshot())
    other = StrategyActor(StrategyConfig(strategy_id="a"), strategy=Strategy())
    other.restore(data)
    assert other.state.positions == {"crypto:ABC": 3.0}
    assert other.state.intent_seq == 7


class Buyer(Strategy):
    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        ctx.submit_order(market, bar.symbol, "buy", 1.0)


@pytest.mark.parametrize(("before", "after"), [(True, False), (False, True)])
def test_enabled_follows_the_config_at_start_not_the_snapshot(before: bool, after: bool) -> None:
    """`enabled = false` (the config's kill switch) holds after a restore from a snapshot
    taken while enabled, and `enabled = true` lifts it after one taken while disabled."""
    rows = [(T0 + i * MINUTE_NS, 100.0, 101.0, 99.0, 100.0, 50.0) for i in range(1, 3)]
    first = StrategyActor(StrategyConfig(strategy_id="s", enabled=before), strategy=Buyer())
    run_chain(bar_records(rows, "crypto", "ABC"), [first])
    data = msgspec.msgpack.encode(first.snapshot())
    second = StrategyActor(StrategyConfig(strategy_id="s", enabled=after), strategy=Buyer())
    second.restore(data)
    later = [(T0 + i * MINUTE_NS, 100.0, 101.0, 99.0, 100.0, 50.0) for i in range(3, 5)]
    out = run_chain(bar_records(later, "crypto", "ABC"), [second])
    intents = [p for _, p in payloads(out, "strategy.intent.s")]
    assert len(intents) == (2 if after else 0)
    assert second.state.halted_scopes == ([] if after else ["config"])


class IndicatorRecorder(Strategy):
    """Records every on_indicator call and what ctx.indicator answers during it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Market, str, str, dict[str, float], dict[str, float] | None]] = []

    def on_indicator(
        self, market: Market, name: str, symbol: str, values: dict[str, float], ctx: StrategyContext
    ) -> None:
        self.calls.append((market, name, symbol, values, ctx.indicator(name, market, symbol)))


@pytest.mark.parametrize("publish", ["per_indicator", "per_bar"])
def test_indicators_reach_the_strategy_alike_per_indicator_or_per_bar(publish: str) -> None:
    """A series published per bar (one indicator.bar event) makes the same on_indicator
    calls, in the same order, with the same ctx.indicator views, as the ten
    indicator.value events of the default mode (per_bar used to reach no strategy)."""
    from tests.actors.orders.harness import load_6e_bars
    from tickertape.actors.indicators.actor import IndicatorActor, IndicatorsConfig, SeriesConfig

    inputs = bar_records(load_6e_bars()[:200], "us", "6EH4")

    def calls(mode: str) -> list[tuple[Market, str, str, dict[str, float], object]]:
        recorder = IndicatorRecorder()
        config = StrategyConfig(strategy_id="rec", subscriptions=["indicator.>"])
        indicators = IndicatorActor(IndicatorsConfig(series=[SeriesConfig(publish=mode)]))
        run_chain(inputs, [indicators, StrategyActor(config, strategy=recorder)])
        return recorder.calls  # type: ignore[return-value]

    expected = calls("per_indicator")
    assert len(expected) > 1000
    assert {c[1] for c in expected} >= {"sma_20", "rsi_14", "macd_12_26_9", "dmi_14"}
    assert all(c[3] == c[4] for c in expected)
    assert calls(publish) == expected
