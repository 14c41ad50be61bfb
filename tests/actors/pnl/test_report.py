"""Tests of run reports: the pure figures, and ``tape report`` / ``tape halt`` on a real log."""

from __future__ import annotations

import math
import os
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from tests.actors.orders.harness import bar_records, payloads, run_chain
from tests.actors.orders.test_chain_scenario import BARS, CONFIG, Scripted
from tickertape.actors.orders import OrderEngine, OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.pnl import PnlActor, PnlConfig
from tickertape.actors.pnl.report import build_report, daily_values, sharpe_ratio
from tickertape.actors.risk import RiskActor, RiskConfig
from tickertape.actors.runtime import InProcessHost, LogSink
from tickertape.actors.strategy import Strategy, StrategyActor, StrategyConfig, StrategyContext
from tickertape.cli.main import cli
from tickertape.cli.trading_commands import read_report, write_equity_png
from tickertape.errors import ConfigError
from tickertape.eventlog import EventLog, LogReader
from tickertape.schemas import decode_payload, unstamp
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar
from tickertape.schemas.orders import Fill, OrderEvent, OrderStatus
from tickertape.schemas.pnl import Book, PnlUpdate
from tickertape.schemas.risk import RiskCommand
from tickertape.schemas.strategy import Side
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.scheduler import StepPlanner

T0 = 1_704_067_200_000_000_000
DAY = 86_400_000_000_000
HOUR = 3_600_000_000_000


def test_daily_values_close_each_utc_day_on_the_last_update() -> None:
    """A day's value is the last update at or before its end; a day without an update
    keeps the value before it; days before the first update hold the capital."""
    updates = [
        (T0 + 1 * HOUR, 105.0, 100.0),
        (T0 + 5 * HOUR, 110.0, 100.0),  # day 0 closes at 110, not 105
        (T0 + DAY + 2 * HOUR, 99.0, 100.0),
        (T0 + 3 * DAY + HOUR, 108.9, 100.0),  # day 2 has no update: 99 carried
    ]
    day0 = T0 // DAY
    assert daily_values(updates, 100.0, day0, day0 + 3) == [110.0, 99.0, 99.0, 108.9]
    assert daily_values(updates, 100.0, day0 - 1, day0 + 4) == [
        100.0, 110.0, 99.0, 99.0, 108.9, 108.9
    ]  # fmt: skip
    assert daily_values([], 100.0, day0, day0 + 1) == [100.0, 100.0]


def test_daily_values_count_a_late_strategy_cash_as_idle_from_the_start() -> None:
    """A portfolio whose initial cash grows from 100 to 200 when a second strategy first
    fills on day 1: day 0's value is its equity 99 plus the idle 100, 199, not 99."""
    updates = [(T0 + HOUR, 99.0, 100.0), (T0 + DAY + HOUR, 196.0, 200.0)]
    assert daily_values(updates, 200.0, T0 // DAY, T0 // DAY + 1) == [199.0, 196.0]


def test_daily_values_refuse_bad_input() -> None:
    """Updates out of order, outside the window, or an empty window: a clear error."""
    day0 = T0 // DAY
    with pytest.raises(ValueError, match=r"update 1 has ts_event .* < "):
        daily_values([(T0 + 2, 1.0, 1.0), (T0 + 1, 1.0, 1.0)], 1.0, day0, day0)
    with pytest.raises(ValueError, match=r"update 0 .* outside the window"):
        daily_values([(T0 + DAY, 1.0, 1.0)], 1.0, day0, day0)
    with pytest.raises(ValueError, match="empty window"):
        daily_values([], 1.0, day0, day0 - 1)


def test_sharpe_of_a_known_series() -> None:
    """Capital 100, closes 110, 99, 108.9: returns +10 %, −10 %, +10 %; mean 1/30;
    deviations 2/30, −4/30, 2/30, sample variance (4 + 16 + 4) / 900 / 2 = 1/75, so
    mean / sd = (1/30) × √75 = √3 / 6, and × √365 = √(365/12) ≈ 5.5151 (× √252 = √21)."""
    assert sharpe_ratio([110.0, 99.0, 108.9], 100.0) == pytest.approx(math.sqrt(365 / 12))
    assert sharpe_ratio([110.0, 99.0, 108.9], 100.0, 252) == pytest.approx(math.sqrt(21))


def test_sharpe_is_none_when_undefined() -> None:
    """One return, a flat book (zero variance) or a wiped-out book give no ratio; a
    non-positive capital or period count is an error."""
    assert sharpe_ratio([110.0], 100.0) is None
    assert sharpe_ratio([100.0, 100.0, 100.0], 100.0) is None
    assert sharpe_ratio([50.0, 0.0, 10.0], 100.0) is None  # a return on 0 is undefined
    assert sharpe_ratio([50.0, -1.0], 100.0) is None  # wiped out at the last close too
    with pytest.raises(ValueError, match="capital must be > 0"):
        sharpe_ratio([1.0, 2.0], 0.0)
    with pytest.raises(ValueError, match="periods_per_year must be > 0"):
        sharpe_ratio([1.0, 2.0], 1.0, 0)


def _book(market: Market, equity: float, initial_cash: float) -> Book:
    return Book(
        market=market, currency="USD", cash=equity, realized=0.0, unrealized=0.0, fees=0.0,
        equity=equity, high_water_mark=initial_cash, drawdown=0.0, max_drawdown=0.0,
        initial_cash=initial_cash,
    )  # fmt: skip


def _update(ts: int, scope: str | None, equity: float, initial_cash: float) -> tuple:
    book = _book("us", equity, initial_cash)
    return (f"pnl.update.{scope or 'portfolio'}", ts, PnlUpdate(strategy_id=scope, books=[book]))


def _by_hand(returns: list[float]) -> float:
    mean = sum(returns) / len(returns)
    variance = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    return mean / math.sqrt(variance) * math.sqrt(365)


def test_the_portfolio_of_two_losing_strategies_has_a_losing_sharpe() -> None:
    """Two strategies of USD 100 lose steadily over days 0..3 (day 2 a weekend): a
    closes 99, 98, −, 97; b first fills on day 1 and closes 98, −, 96. The portfolio
    book's initial cash grows from 100 to 200 on day 1, so its published equity goes
    99 → 196 → 193; on its capital of 200 it is worth 199, 196, 196, 193. Returns:
    a −1/100, −1/99, 0, −1/98 (Sharpe ≈ −28.65); b 0, −2/100, 0, −2/98 (≈ −16.54);
    portfolio −1/200, −3/199, 0, −3/196 (≈ −22.22). The old definition (returns of
    the published equity from 200: −50.5 %, +98 %, −1.5 %, × √252) gave +3.21."""
    events = [
        _update(T0 + HOUR, "a", 99.0, 100.0),
        _update(T0 + HOUR, None, 99.0, 100.0),
        _update(T0 + DAY + HOUR, "a", 98.0, 100.0),
        _update(T0 + DAY + HOUR, "b", 98.0, 100.0),
        _update(T0 + DAY + HOUR, None, 196.0, 200.0),
        _update(T0 + 3 * DAY + HOUR, "a", 97.0, 100.0),
        _update(T0 + 3 * DAY + HOUR, "b", 96.0, 100.0),
        _update(T0 + 3 * DAY + HOUR, None, 193.0, 200.0),
    ]
    rows = {r.scope: r for r in build_report(events).rows}
    assert rows["a"].sharpe == pytest.approx(_by_hand([-1 / 100, -1 / 99, 0.0, -1 / 98]))
    assert rows["b"].sharpe == pytest.approx(_by_hand([0.0, -2 / 100, 0.0, -2 / 98]))
    assert rows["portfolio"].sharpe == pytest.approx(_by_hand([-1 / 200, -3 / 199, 0.0, -3 / 196]))
    assert rows["a"].sharpe == pytest.approx(-28.6536, abs=1e-4)
    assert rows["b"].sharpe == pytest.approx(-16.5437, abs=1e-4)
    assert rows["portfolio"].sharpe == pytest.approx(-22.2163, abs=1e-4)
    assert rows["portfolio"].total_return == pytest.approx(193 / 200 - 1)


def _order(strategy: str, side: Side, status: OrderStatus, price: float, n: int) -> tuple:
    fill = None
    if status == "filled":
        fill = Fill(
            fill_id=f"{strategy}-{n}", price=price, quantity=1.0, fee=0.0, currency="USD",
            liquidity="taker", slippage_bps=0.0, ts_fill=T0 + n,
        )  # fmt: skip
    order = OrderEvent(
        order_id=f"{strategy}-{n}", client_order_id=f"{strategy}-{n}", strategy_id=strategy,
        market="us", symbol="XYZ", side=side, order_type="market", quantity=1.0,
        status=status, fill=fill,
    )  # fmt: skip
    return (f"order.{status}.us", T0 + n, order)


def test_portfolio_round_trips_are_those_of_its_strategies() -> None:
    """a buys at 10 and sells at 11 (a won round trip), b buys at 10 and sells at 9 (a
    lost one) while a is still long: the portfolio's net position goes 1, 2, 1, 0, one
    flat-to-flat cycle, but its row counts the strategies' two round trips, one won."""
    events = []
    for n, (strategy, side, price) in enumerate(
        [("a", "buy", 10.0), ("b", "buy", 10.0), ("a", "sell", 11.0), ("b", "sell", 9.0)]
    ):
        events += [_order(strategy, side, "submitted", price, 2 * n),
                   _order(strategy, side, "filled", price, 2 * n + 1)]  # fmt: skip
    rows = {r.scope: r for r in build_report(events).rows}
    assert [(rows[s].round_trips, rows[s].win_rate) for s in ("a", "b", "portfolio")] == [
        (1, 1.0),
        (1, 0.0),
        (2, 0.5),
    ]
    assert rows["portfolio"].orders == 4


class TwoLegs(Strategy):
    """Buys 10 on its ``buy_on``-th bar and sells them on its ``sell_on``-th bar."""

    def __init__(self, buy_on: int, sell_on: int) -> None:
        super().__init__()
        self.bars = 0
        self.buy_on = buy_on
        self.sell_on = sell_on

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        self.bars += 1
        if self.bars == self.buy_on:
            ctx.submit_order(market, bar.symbol, "buy", 10.0)
        elif self.bars == self.sell_on:
            ctx.submit_order(market, bar.symbol, "sell", 10.0)


def test_a_replayed_portfolio_is_worth_the_sum_of_its_strategies_each_day() -> None:
    """Two strategies through the real chain over four days (day 2 without bars), the
    second first filling on day 1: each day the portfolio's value is the sum of the
    strategies', its Sharpe is that of the sum, and every row's daily returns compound
    to its total return. Every fill is followed by a bar the same day, whose marks are
    published (a fill marks its symbol at the fill price in its own books only, so the
    other strategy's book differs from the portfolio until the next bar marks them
    all); the last bar of day 3 is not published (the run ends before the next tick)."""
    rows = []
    for day, prices in (
        (0, (100.0, 99.0, 98.0)),
        (1, (97.0, 98.0, 96.0)),
        (3, (95.0, 97.0, 94.0, 93.0)),
    ):
        for i, close in enumerate(prices):
            ts = T0 + day * DAY + (i + 1) * HOUR
            rows.append((ts, close + 0.5, close + 1.0, close - 1.0, close, 1_000.0))
    strategies = [
        StrategyActor(StrategyConfig(strategy_id="a"), strategy=TwoLegs(buy_on=1, sell_on=7)),
        StrategyActor(StrategyConfig(strategy_id="b"), strategy=TwoLegs(buy_on=4, sell_on=99)),
    ]
    cash = {"crypto": 10_000.0}
    outputs = run_chain(
        bar_records(rows, "crypto", "ABC"),
        strategies,
        orders=OrderEngineConfig(markets={"crypto": fl.ZERO_COST}),
        risk=RiskConfig(initial_cash=cash),
        pnl=PnlConfig(initial_cash=cash),
    )
    report = build_report((r.topic, r.ts_event, p) for r, p in payloads(outputs, ""))
    by_scope = {r.scope: r for r in report.rows}
    assert [r.scope for r in report.rows] == ["a", "b", "portfolio"]
    curves = {scope: _updates(outputs, scope) for scope in ("a", "b", "portfolio")}
    assert curves["portfolio"][0][2] == 10_000.0  # b had not traded yet: the book had 10,000
    first = min(c[0][0] for c in curves.values()) // DAY
    last = max(c[-1][0] for c in curves.values()) // DAY
    assert (first, last) == (T0 // DAY, T0 // DAY + 3)
    values = {s: daily_values(c, by_scope[s].initial_cash, first, last) for s, c in curves.items()}
    summed = [x + y for x, y in zip(values["a"], values["b"], strict=True)]
    assert values["portfolio"] == pytest.approx(summed, rel=1e-12)
    assert by_scope["portfolio"].initial_cash == 20_000.0
    assert by_scope["portfolio"].sharpe == pytest.approx(sharpe_ratio(summed, 20_000.0))
    for scope, row in by_scope.items():
        assert row.sharpe is not None
        assert values[scope][-1] / row.initial_cash == pytest.approx(1.0 + row.total_return)
    assert by_scope["a"].sharpe < 0.0
    assert by_scope["b"].sharpe < 0.0
    assert by_scope["portfolio"].sharpe < 0.0


def _updates(outputs: list, scope: str) -> list[tuple[int, float, float]]:
    return [
        (r.ts_event, p.books[0].equity, p.books[0].initial_cash)
        for r, p in payloads(outputs, f"pnl.update.{scope}")
    ]


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
