"""The RSI example: TA-Lib-equal RSI, bounded positions on real bars, loadable configs."""

from __future__ import annotations

import csv
import gzip
import tomllib
from datetime import datetime
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner
from examples.strategies.rsi_reversion import RsiReversion, RsiReversionParams

from tests.actors.orders.harness import (
    MINUTE_NS,
    REPO,
    bar_records,
    data_file,
    payloads,
    run_chain,
    system,
    write_6e_csv,
)
from tickertape.actors.orders import OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.risk import parse_limits
from tickertape.actors.strategy import StrategyActor, StrategyConfig, build_strategy
from tickertape.cli.main import cli
from tickertape.eventlog import LogReader
from tickertape.schemas.risk import RiskCommand

COMMAND_TOPIC = "system.command.risk"

T0 = 1_704_067_200_000_000_000
REFERENCE = "indicator-reference/talib-computed/talib_ref_6EH4_1m_2024-01_first3000.csv"


def test_rsi_equals_talib_reference() -> None:
    """The strategy's RSI(14) equals TA-Lib's on the 6E reference series (1e-9 relative)."""
    strategy = RsiReversion(RsiReversionParams(symbol="X"))
    checked = 0
    with open(data_file(REFERENCE), newline="") as f:
        for row in csv.DictReader(f):
            value = strategy.rsi(float(row["close"]))
            if row["RSI_14"]:
                assert value == pytest.approx(float(row["RSI_14"]), rel=1e-9)
                checked += 1
            else:
                assert value is None
    assert checked > 2900


@pytest.mark.parametrize("name", ["sma_cross", "rsi_reversion"])
def test_example_configs_load(name: str) -> None:
    """Each example TOML validates as a StrategyConfig and builds its strategy."""
    text = (REPO / "examples" / "strategies" / f"{name}.toml").read_bytes()
    config = msgspec.toml.decode(text, type=StrategyConfig)
    strategy = build_strategy(config)
    assert type(strategy).__module__ == f"examples.strategies.{name}"


def test_example_risk_limits_validate() -> None:
    """examples/risk.toml is a valid limits file: contract limits for us (6E, whose cash
    check is a margin check: examples/actors/risk.toml gives its initial margin), cash
    checks for the cash markets."""
    limits = parse_limits((REPO / "examples" / "risk.toml").read_text())
    assert limits.strategies["sma"].max_position == 5.0
    assert limits.strategies["rsi"].max_position == 2.0
    raw = tomllib.loads((REPO / "examples" / "risk.toml").read_text())
    assert raw["markets"]["crypto"]["check_cash"]
    assert raw["markets"]["kr"]["check_cash"]
    assert "check_cash" not in raw["global"]
    assert raw["markets"]["us"]["check_cash"]
    instruments = tomllib.loads((REPO / "examples" / "actors" / "risk.toml").read_text())
    assert instruments["instruments"]["us"]["6E"]["initial_margin"] > 0
    # An SMA flip (2 contracts of 125,000 EUR near 1.10 USD) fits the us order limit.
    assert limits.markets["us"].max_order_notional >= 2 * 1.12 * 125_000  # type: ignore[operator]


def btc_rows(n: int) -> list[tuple[int, float, float, float, float, float]]:
    rows = []
    with gzip.open(data_file("ftx-btc-perp-1m-2022-01/" + _ftx_name()), "rt", newline="") as f:
        for row in csv.DictReader(f):
            ts = datetime.fromisoformat(row["timestamp"] + "+00:00")
            rows.append(
                (int(ts.timestamp()) * 10**9, float(row["open"]), float(row["high"]),
                 float(row["low"]), float(row["close"]), float(row["volume"]))
            )  # fmt: skip
            if len(rows) == n:
                break
    return rows


def _ftx_name() -> str:
    root = data_file("ftx-btc-perp-1m-2022-01")
    return sorted(p.name for p in Path(root).iterdir() if p.name.endswith(".gz"))[0]


def test_the_rsi_config_runs_on_the_bundled_6e_bars(tmp_path: Path) -> None:
    """``tape replay`` of rsi_reversion.toml as shipped, with examples/risk.toml's limits and
    the examples' risk and orders configurations: it trades 6E contracts (125,000 EUR,
    USD 2.47 per contract and side, prices on the 0.00005 tick)."""
    runner = CliRunner()
    bars = write_6e_csv(tmp_path / "6e.csv", "2024-01-03 00:00:00")
    imported = runner.invoke(
        cli,
        ["import", "ohlcv-csv", str(bars), "--market", "us", "--symbol", "6EH4",
         "--interval", "1m", "--stamp", "end", "--data-dir", str(tmp_path)],
    )  # fmt: skip
    assert imported.exit_code == 0, imported.output
    risk = tmp_path / "risk.toml"
    risk.write_text(
        f'limits_file = "{REPO / "examples" / "risk.toml"}"\n'
        + (REPO / "examples" / "actors" / "risk.toml").read_text()
    )
    orders = REPO / "examples" / "actors" / "orders.toml"
    config = REPO / "examples" / "strategies" / "rsi_reversion.toml"
    actors = (
        f"examples.strategies.rsi_reversion:RsiReversion@{config},risk@{risk},orders@{orders},pnl"
    )
    replayed = runner.invoke(
        cli,
        ["replay", "--from", "2024-01-01", "--actors", actors, "--run-id", "rsi", "-q",
         "--data-dir", str(tmp_path)],
    )  # fmt: skip
    assert replayed.exit_code == 0, replayed.output
    records = list(LogReader(tmp_path, "runs/rsi").read(["order.>", "risk.>"]))
    assert not [r for r in records if r.topic.startswith("risk.rejected")]
    position = 0.0
    fills = 0
    for _, order in payloads(records, "order."):
        if order.fill is not None:
            fills += 1
            position += order.fill.quantity if order.side == "buy" else -order.fill.quantity
            assert abs(position) <= 1.0 + 1e-12
            assert order.fill.multiplier == 125_000.0
            assert order.fill.fee == pytest.approx(2.47 * order.fill.quantity)
            assert fl.on_tick(order.fill.price, 0.00005)
    assert fills >= 10
    decisions = [p for _, p in payloads(records, "risk.approved")]
    assert all(d.inputs["multiplier"] == 125_000.0 for d in decisions if d.order.quantity)


def test_rsi_positions_stay_within_quantity_on_btc() -> None:
    """On real BTC-PERP bars the strategy trades and never holds more than its quantity."""
    config = StrategyConfig(
        strategy_id="rsi",
        strategy="examples.strategies.rsi_reversion:RsiReversion",
        subscriptions=["md.bar.1m.crypto.BTC-PERP"],
        params={"symbol": "BTC-PERP", "quantity": 0.01},
    )
    outputs = run_chain(
        bar_records(btc_rows(3000), "crypto", "BTC-PERP"),
        [StrategyActor(config)],
        orders=OrderEngineConfig(markets={"crypto": fl.MarketFillConfig()}),
    )
    position = 0.0
    fills = 0
    for _, order in payloads(outputs, "order."):
        if order.fill is not None:
            fills += 1
            position += order.fill.quantity if order.side == "buy" else -order.fill.quantity
            assert abs(position) <= 0.01 + 1e-12
            assert order.fill.fee > 0.0
    assert fills > 10


def test_an_exit_dropped_by_the_kill_switch_is_asked_again_after_resume() -> None:
    """A halt drops the exit signal (RSI back above 50); the strategy keeps its long
    target, so the next bar after the resume asks for the exit again and the book ends
    flat (it stayed long when the dropped target was remembered)."""
    closes = [100, 99, 98, 97, 97, 97, 98, 99] + [99, 99.2] * 6
    rows = [
        (T0 + (i + 1) * MINUTE_NS, c, c + 0.05, c - 0.05, c, 50.0) for i, c in enumerate(closes)
    ]
    halt = system(
        RiskCommand(command="halt", reason="ops"),
        COMMAND_TOPIC,
        T0 + 6 * MINUTE_NS + 1_000_000_000,
        1,
        "cli",
    )  # after bar 6
    resume = system(
        RiskCommand(command="resume", reason="ops"),
        COMMAND_TOPIC,
        T0 + 8 * MINUTE_NS + 1_000_000_000,
        2,
        "cli",
    )  # after bar 8
    inputs = sorted([*bar_records(rows, "us", "X"), halt, resume], key=lambda r: r.ts_event)
    strategy = RsiReversion(RsiReversionParams(symbol="X", period=3, overbought=99.0, quantity=1.0))
    actor = StrategyActor(StrategyConfig(strategy_id="s"), strategy=strategy)
    out = run_chain(inputs, [actor])
    targets = [
        ((r.ts_event - T0) // MINUTE_NS, p.target_position)
        for r, p in payloads(out, "strategy.intent")
    ]
    assert targets == [(4, 1.0), (9, 0.0)]
    assert actor.state.dropped_intents == 2  # the exits of bars 7 and 8, while halted
    assert actor.state.positions == {"us:X": 0.0}
    assert strategy.s.target == 0.0
