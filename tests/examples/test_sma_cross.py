"""The SMA example through the whole chain equals a tiny independent loop on CME 6E bars."""

from __future__ import annotations

import pytest
from examples.strategies.sma_cross import SmaCross, SmaCrossParams

from tests.actors.orders.harness import bar_records, load_6e_bars, payloads, run_chain
from tickertape.actors.orders import OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.strategy import StrategyActor, StrategyConfig, build_strategy
from tickertape.errors import ConfigError


def reference_fills(
    rows: list, fast: int = 10, slow: int = 30
) -> list[tuple[int, str, float, float]]:
    """Bare loop: SMA(fast/slow) of closes, cross → target ±1, fill at the next bar's open."""
    closes: list[float] = []
    previous = None
    position = 0.0
    target = None
    fills = []
    for ts, o, _h, _l, c, _v in rows:
        if target is not None and target != position:
            qty = target - position
            fills.append((ts, "buy" if qty > 0 else "sell", abs(qty), o))
            position = target
        target = None
        closes.append(c)
        if len(closes) < slow:
            continue
        f = sum(closes[-fast:]) / fast
        s = sum(closes[-slow:]) / slow
        diff = f - s
        if previous is not None:
            if previous <= 0.0 < diff:
                target = 1.0
            elif previous >= 0.0 > diff:
                target = -1.0
        previous = diff
    return fills


@pytest.mark.slow
def test_zero_cost_chain_matches_the_bare_loop() -> None:
    """Zero costs and next-bar-open fills: the chain's fills equal the loop's, fill for fill."""
    rows = load_6e_bars()
    expected = reference_fills(rows)
    config = StrategyConfig(
        strategy_id="sma",
        strategy="examples.strategies.sma_cross:SmaCross",
        subscriptions=["md.bar.1m.us.6EH4"],
        params={"symbol": "6EH4"},
    )
    outputs = run_chain(
        bar_records(rows, "us", "6EH4"),
        [StrategyActor(config)],
        orders=OrderEngineConfig(markets={"us": fl.ZERO_COST}),
    )
    got = [
        (p.fill.ts_fill, p.side, p.fill.quantity, p.fill.price)
        for _, p in payloads(outputs, "order.")
        if p.fill is not None
    ]
    assert len(expected) > 100
    assert got == expected


def test_params_are_validated() -> None:
    """Unknown params and fast ≥ slow are configuration errors."""
    with pytest.raises(ConfigError, match="unknown field"):
        build_strategy(StrategyConfig(params={"symbol": "X", "fastt": 3}), SmaCross)
    with pytest.raises(ConfigError, match="fast < slow"):
        SmaCross(SmaCrossParams(symbol="X", fast=30, slow=10))
