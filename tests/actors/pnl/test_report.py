"""Tests of run reports: the pure figures, and ``tape report`` / ``tape halt`` on a real log."""

from __future__ import annotations

import math
import os
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from tests.actors.orders.harness import bar_records, payloads
from tests.actors.orders.test_chain_scenario import BARS, CONFIG, Scripted
from tickertape.actors.orders import OrderEngine, OrderEngineConfig
from tickertape.actors.pnl import PnlActor, PnlConfig
from tickertape.actors.pnl.report import build_report, sharpe_ratio
from tickertape.actors.risk import RiskActor, RiskConfig
from tickertape.actors.runtime import InProcessHost, LogSink
from tickertape.actors.strategy import StrategyActor, StrategyConfig
from tickertape.cli.main import cli
from tickertape.cli.trading_commands import read_report, write_equity_png
from tickertape.errors import ConfigError
from tickertape.eventlog import EventLog, LogReader
from tickertape.schemas import decode_payload, unstamp
from tickertape.schemas.risk import RiskCommand
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.scheduler import StepPlanner

T0 = 1_704_067_200_000_000_000
DAY = 86_400_000_000_000


def test_sharpe_from_daily_closes() -> None:
    """Sharpe uses the last equity of each UTC day, ddof=1, √252 for us and √365 for crypto."""
    curve = [(T0 + 10, 101.0), (T0 + DAY + 5, 99.0), (T0 + DAY + 9, 102.0), (T0 + 2 * DAY, 103.0)]
    returns = [101 / 100 - 1, 102 / 101 - 1, 103 / 102 - 1]
    mean = sum(returns) / 3
    sd = math.sqrt(sum((r - mean) ** 2 for r in returns) / 2)
    assert sharpe_ratio(curve, 100.0, "us") == pytest.approx(mean / sd * math.sqrt(252))
    assert sharpe_ratio(curve, 100.0, "crypto") == pytest.approx(mean / sd * math.sqrt(365))
    assert sharpe_ratio(curve[:1], 100.0, "us") is None


def run_to_log(data_dir: Path, namespace: str) -> None:
    """The hand-computed scenario, stored in a real event log namespace."""
    with EventLog.open(data_dir, namespace) as log:
        inputs = bar_records(BARS, "crypto", "ABC")
        log.append([unstamp(r) for r in inputs])
        host = InProcessHost(LogSink(log), clock=SimulatedClock(inputs[0].ts_event))
        host.add(StrategyActor(StrategyConfig(strategy_id="demo"), strategy=Scripted()))
        host.add(RiskActor(RiskConfig(initial_cash={"crypto": 10_000.0})))
        host.add(OrderEngine(OrderEngineConfig(markets={"crypto": CONFIG})))
        host.add(PnlActor(PnlConfig(initial_cash={"crypto": 10_000.0})))
        host.start()
        host.run(
            StepPlanner(
                inputs, host.timers, start_ns=inputs[0].ts_event, end_ns=inputs[-1].ts_event
            )
        )
        host.stop()


def test_report_of_the_hand_computed_run(tmp_path: Path) -> None:
    """One round trip: 3 fills, a winning round trip, fees and turnover by hand."""
    run_to_log(tmp_path, "runs/r1")
    reader = LogReader(tmp_path, "runs/r1")
    records = list(reader.read(["pnl.update.>", "order.>"]))
    report = build_report(
        (r.topic, r.ts_event, decode_payload(r.type, r.v, r.payload)) for r in records
    )
    assert [(r.scope, r.market) for r in report.rows] == [
        ("demo", "crypto"),
        ("portfolio", "crypto"),
    ]
    row = report.rows[0]
    fees = 0.204408 + 0.1031236 + 0.314496
    assert row.trades == 3
    assert row.orders == 2
    assert row.round_trips == 1
    assert row.win_rate == 1.0
    assert row.fees == pytest.approx(fees)
    assert row.final_equity == pytest.approx(10_000.0 + 6.9644 - fees)
    assert row.total_return == pytest.approx((6.9644 - fees) / 10_000.0)
    assert row.pnl == pytest.approx(6.9644 - fees)
    assert (row.events, row.events_per_s) == (None, None)  # not a replay: no manifest
    assert row.turnover == pytest.approx((2 * 102.204 + 103.1236 + 3 * 104.832) / 10_000.0)
    assert row.sharpe is None  # a single day: no daily return series


def test_events_per_market_and_rate() -> None:
    """Events and events/s per market; a replayed market without a book gets a portfolio row."""
    report = build_report([], market_events={"crypto": 500, "us": 300}, wall_seconds=2.0)
    assert [(r.scope, r.market, r.events, r.events_per_s, r.orders) for r in report.rows] == [
        ("portfolio", "crypto", 500, 250.0, 0),
        ("portfolio", "us", 300, 150.0, 0),
    ]
    assert report.rows[1].currency == "USD"


def test_report_of_a_replay_counts_events_orders_and_rate(tmp_path: Path) -> None:
    """A ``tape replay``'s report: the market's input events, orders, fills, and events/s."""
    with EventLog.open(tmp_path, "main") as log:
        log.append([unstamp(r) for r in bar_records(BARS, "crypto", "ABC")])
        us = [unstamp(r) for r in bar_records(BARS[:2], "us", "XYZ")]
        log.append([msgspec.structs.replace(e, source="us", id=f"us:{e.source_seq}") for e in us])
    strategy = tmp_path / "demo.toml"
    strategy.write_text('strategy_id = "demo"\nsubscriptions = ["md.bar.*.crypto.>"]\n')
    cash = tmp_path / "cash.toml"
    cash.write_text("[initial_cash]\ncrypto = 10_000.0\n")
    orders = tmp_path / "orders.toml"
    orders.write_text(
        "[markets.crypto]\nparticipation_rate = 0.5\n[markets.crypto.latency]\n"
        "base_ns = 50_000_000\njitter_ns = 0\n[markets.crypto.slippage]\nfixed_bps = 10.0\n"
        "impact_bps = 20.0\n[markets.crypto.fees]\nmaker_bps = 10.0\ntaker_bps = 10.0\n"
    )
    actors = (
        f"tests.actors.orders.test_chain_scenario:Scripted@{strategy},risk@{cash},"
        f"orders@{orders},pnl@{cash}"
    )
    result = CliRunner().invoke(
        cli,
        ["replay", "--from", "2024-01-01", "--actors", actors, "--run-id", "r3", "-q",
         "--data-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    root = tmp_path / "logs" / "runs" / "r3"
    for topic, mtime in (("system.run_manifest", 1_000.0), ("system.run_summary", 1_004.0)):
        (day,) = (root / topic).glob("*.jsonl")
        os.utime(day, (mtime, mtime))
    report = read_report(str(tmp_path), "runs/r3")
    figures = [
        (r.scope, r.market, r.events, r.events_per_s, r.orders, r.trades) for r in report.rows
    ]
    assert figures == [
        ("demo", "crypto", 6, 1.5, 2, 3),
        ("portfolio", "crypto", 6, 1.5, 2, 3),
        ("portfolio", "us", 2, 0.5, 0, 0),
    ]
    assert report.rows[0].pnl == pytest.approx(6.9644 - (0.204408 + 0.1031236 + 0.314496))


def test_tape_report_prints_a_table_and_writes_a_png(tmp_path: Path) -> None:
    """``tape report RUN`` prints the figures and writes the equity curve PNG."""
    run_to_log(tmp_path, "runs/r2")
    png = tmp_path / "out.png"
    result = CliRunner().invoke(
        cli,
        ["report", "r2", "--data-dir", str(tmp_path), "--png", str(png)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "portfolio" in result.output
    assert "demo" in result.output
    for column in ("events/s", "orders", "fills", "fees", "PnL", "max dd"):
        assert column in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tape_halt_appends_a_risk_command(tmp_path: Path) -> None:
    """``tape halt`` without a router appends a RiskCommand to the local log."""
    runner = CliRunner()
    result = runner.invoke(
        cli, ["halt", "--reason", "fat finger", "--market", "kr", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["resume", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    records = list(LogReader(tmp_path, "main").read(["system.command.risk"]))
    commands = [decode_payload(r.type, r.v, r.payload) for r in records]
    assert commands == [
        RiskCommand(command="halt", scope="market", key="kr", reason="fat finger"),
        RiskCommand(command="resume", scope="global", key=None, reason=""),
    ]
    assert records[0].source == "operator"
    assert runner.invoke(cli, ["halt", "--data-dir", str(tmp_path)]).exit_code != 0  # no reason


def test_report_of_an_empty_namespace_is_an_error(tmp_path: Path) -> None:
    """A run without pnl updates gives a clear error."""
    result = CliRunner().invoke(cli, ["report", "nothing", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert payloads([], "x") == []


def test_no_equity_png_without_curves(tmp_path: Path) -> None:
    """A report with no book update (nothing filled) has no curve to plot: a clear error."""
    report = build_report([], market_events={"us": 10}, wall_seconds=1.0)
    with pytest.raises(ConfigError, match="no equity curve"):
        write_equity_png(report, tmp_path / "x.png", "run")
    assert not (tmp_path / "x.png").exists()
