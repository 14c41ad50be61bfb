"""The examples' actor configurations: they load, trade 6E in contracts, and agree."""

from __future__ import annotations

import tomllib

import pytest

from tests.actors.orders.harness import REPO, load_6e_bars
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.runtime.resolution import resolve_package

ACTORS = REPO / "examples" / "actors"


def test_orders_and_risk_configs_load_and_value_6e_in_contracts() -> None:
    """Both configurations build their actors; 6EH4 is 125,000 EUR per contract with a
    0.00005 tick, traded in whole contracts, in both, and the engine charges USD 2.47 per contract and side; other
    instruments keep multiplier 1 and their market's fees."""
    orders = resolve_package("orders", ACTORS / "orders.toml").actor
    risk = resolve_package("risk", ACTORS / "risk.toml").actor
    engine_spec = orders.venue.instruments.spec("us", "6EH4")  # type: ignore[attr-defined]
    gate_spec = risk.instruments.spec("us", "6EH4")  # type: ignore[attr-defined]
    assert (engine_spec.multiplier, engine_spec.tick_size, engine_spec.lot_size) == (125_000.0, 0.00005, 1.0)  # fmt: skip
    assert (gate_spec.multiplier, gate_spec.tick_size, gate_spec.lot_size) == (125_000.0, 0.00005, 1.0)  # fmt: skip
    assert engine_spec.fees is not None
    assert engine_spec.fees.fee("buy", 3.0, 1.1, "taker", 125_000.0) == pytest.approx(7.41)
    for market, symbol in (("us", "AAPL"), ("crypto", "BTCUSDT"), ("kr", "005930")):
        assert orders.venue.instruments.spec(market, symbol).multiplier == 1.0  # type: ignore[attr-defined]
        assert orders.venue.instruments.spec(market, symbol).fees is None  # type: ignore[attr-defined]
        assert risk.instruments.multiplier(market, symbol) == 1.0  # type: ignore[attr-defined]


def test_the_risk_config_repeats_the_engines_multipliers_and_ticks() -> None:
    """Every instrument of the engine's section is in the gate's, with the same multiplier,
    tick size and lot size (the gate values orders with them)."""
    orders = tomllib.loads((ACTORS / "orders.toml").read_text())["instruments"]
    risk = tomllib.loads((ACTORS / "risk.toml").read_text())["instruments"]
    assert sorted((m, k) for m in orders for k in orders[m]) == sorted(
        (m, k) for m in risk for k in risk[m]
    )
    for market, table in orders.items():
        for key, spec in table.items():
            theirs = risk[market][key]
            assert (spec["multiplier"], spec.get("tick_size"), spec.get("lot_size")) == (
                theirs["multiplier"],
                theirs.get("tick_size"),
                theirs.get("lot_size"),
            )


def test_the_bundled_6e_prices_are_on_the_configured_tick() -> None:
    """Every open, high, low and close of the bundled 6EH4 bars is a multiple of 0.00005
    (and many are not multiples of 0.0001): the tick size the examples configure."""
    rows = load_6e_bars()
    prices = [p for row in rows for p in row[1:5]]
    assert all(fl.on_tick(p, 0.00005) for p in prices)
    assert sum(not fl.on_tick(p, 0.0001) for p in prices) > len(prices) // 4
