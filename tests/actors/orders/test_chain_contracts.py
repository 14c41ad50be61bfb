"""A hand-computed round trip in CME 6E contracts (multiplier 125,000, tick 0.00005,
USD 2.47 per contract and side) through strategy → risk → orders → pnl → report."""

from __future__ import annotations

import pytest

from tests.actors.orders.harness import MINUTE_NS, bar_records, payloads, run_chain
from tickertape.actors.orders import OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.orders.instruments import InstrumentSpec
from tickertape.actors.pnl import PnlConfig
from tickertape.actors.pnl.report import build_report
from tickertape.actors.risk import RiskConfig
from tickertape.actors.risk.checks import Limits, LimitsFile
from tickertape.actors.strategy import Strategy, StrategyActor, StrategyConfig, StrategyContext
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar
from tickertape.schemas.pnl import PnlUpdate

T0 = 1_704_150_000_000_000_000  # 2024-01-01T23:00:00Z
M = 125_000.0

BARS = [
    # close time, open, high, low, close, volume (contracts)
    (T0 + 1 * MINUTE_NS, 1.1000, 1.1005, 1.0995, 1.1000, 10.0),
    (T0 + 2 * MINUTE_NS, 1.1000, 1.1010, 1.0995, 1.1000, 10.0),  # signal: long 2
    (T0 + 3 * MINUTE_NS, 1.1000, 1.1010, 1.0990, 1.1005, 2.0),  # 1 of 2 (cap 50 % of 2)
    (T0 + 4 * MINUTE_NS, 1.1010, 1.1025, 1.1005, 1.1020, 10.0),  # the other 1
    (T0 + 5 * MINUTE_NS, 1.1020, 1.1035, 1.1015, 1.1030, 10.0),  # signal: flat
    (T0 + 6 * MINUTE_NS, 1.1030, 1.1040, 1.1025, 1.1035, 10.0),  # sells 2
]

SIXE = InstrumentSpec(multiplier=M, tick_size=0.00005, fees=fl.FeeSchedule(per_unit=2.47))
CONFIG = fl.MarketFillConfig(
    latency=fl.LatencyModel(base_ns=50_000_000, jitter_ns=0),
    slippage=fl.SlippageModel(fixed_bps=1.0, impact_bps=0.0),
    participation_rate=0.5,
)
# By hand: 1 bp against the order, then to the tick grid against the order.
B1 = 1.10015  # 1.1000 × 1.0001 = 1.10011 → up to 1.10015
B2 = 1.10115  # 1.1010 × 1.0001 = 1.1011101 → up to 1.10115
S1 = 1.10285  # 1.1030 × 0.9999 = 1.1028897 → down to 1.10285
AVG = (B1 + B2) / 2  # 1.10065
FEES = 2.47 + 2.47 + 2 * 2.47  # 9.88
REALIZED = 2 * (S1 - AVG) * M  # 2 × 0.0022 × 125,000 = 550


class Scripted(Strategy):
    """Long 2 contracts on the 2nd bar, flat on the 5th."""

    def __init__(self) -> None:
        super().__init__()
        self.bars = 0

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        self.bars += 1
        if self.bars == 2:
            ctx.target_position(market, bar.symbol, 2.0, reason="enter")
        elif self.bars == 5:
            ctx.target_position(market, bar.symbol, 0.0, reason="exit")


def run(limits: Limits) -> list:
    strategy = StrategyActor(
        StrategyConfig(strategy_id="fx", subscriptions=["md.bar.>"]), strategy=Scripted()
    )
    instruments = {"us": {"6E": SIXE}}
    return run_chain(
        bar_records(BARS, "us", "6EH4"),
        [strategy],
        orders=OrderEngineConfig(markets={"us": CONFIG}, instruments=instruments),  # type: ignore[arg-type]
        risk=RiskConfig(
            limits=LimitsFile(global_=limits),
            initial_cash={"us": 1_000_000.0},
            instruments=instruments,  # type: ignore[arg-type]
        ),
        pnl=PnlConfig(initial_cash={"us": 1_000_000.0}),
    )


@pytest.fixture(scope="module")
def outputs() -> list:
    return run(Limits(max_order_notional=300_000.0, check_cash=True))


def test_fills_are_on_the_tick_with_per_contract_fees(outputs: list) -> None:
    """A partial fill of 1, the other 1, then a sell of 2: tick prices and fees by hand."""
    fills = [p for _, p in payloads(outputs, "order.") if p.fill is not None]
    assert [(p.status, p.side, p.fill.quantity) for p in fills] == [
        ("partially_filled", "buy", 1.0),
        ("filled", "buy", 1.0),
        ("filled", "sell", 2.0),
    ]
    assert [p.fill.price for p in fills] == [B1, B2, S1]
    assert [p.fill.fee for p in fills] == [pytest.approx(2.47), pytest.approx(2.47), 4.94]
    assert [p.fill.multiplier for p in fills] == [M, M, M]
    assert fills[0].fill.slippage_bps == pytest.approx((B1 - 1.1) / 1.1 * 1e4)
    assert fills[1].average_price == pytest.approx(AVG)


def test_books_in_contract_value(outputs: list) -> None:
    """Cash pays 125,000 × price per contract; marks, realized PnL and equity likewise."""
    updates = [(r, p) for r, p in payloads(outputs, "pnl.update.") if isinstance(p, PnlUpdate)]
    books = [(r.ts_event, p.books[0]) for r, p in updates if r.topic == "pnl.update.fx"]
    # After the second buy fill (bar 4): 2 contracts at AVG, marked at the market's
    # price, bar 4's close (the fill's price is bar 4's open plus slippage).
    _, long2 = next((t, b) for t, b in books if b.fills == 2)
    assert long2.cash == pytest.approx(1_000_000.0 - (B1 + B2) * M - 2 * 2.47)
    assert long2.positions[0].quantity == 2.0
    assert long2.positions[0].multiplier == M
    assert long2.positions[0].mark == 1.1020
    assert long2.equity == pytest.approx(long2.cash + 2 * 1.1020 * M)
    assert long2.unrealized == pytest.approx(2 * (1.1020 - AVG) * M)  # 337.5
    final = books[-1][1]
    assert final.realized == pytest.approx(REALIZED)  # 550.0
    assert final.fees == pytest.approx(FEES)
    assert final.equity == pytest.approx(1_000_000.0 + REALIZED - FEES)  # 1,000,540.12
    assert final.cash == pytest.approx(final.equity)
    assert final.traded_notional == pytest.approx((B1 + B2 + 2 * S1) * M)
    for _, book in books:
        total = book.cash
        for p in book.positions:
            total += p.quantity * p.mark * p.multiplier
        assert book.equity == total


def test_the_gate_values_orders_in_contracts(outputs: list) -> None:
    """The entry (2 × 1.1 × 125,000 = 275,000) passes a 300,000 notional limit and the
    cash check; the decision records the multiplier. A 250,000 limit refuses it."""
    decisions = [p for _, p in payloads(outputs, "risk.")]
    assert [d.approved for d in decisions] == [True, True]
    assert decisions[0].inputs["multiplier"] == M
    assert decisions[0].inputs["notional"] == pytest.approx(275_000.0)
    refused = [p for _, p in payloads(run(Limits(max_order_notional=250_000.0)), "risk.")]
    assert refused[0].reason_code == "MAX_ORDER_NOTIONAL"


def test_report_counts_the_round_trip_in_contract_value(outputs: list) -> None:
    """One winning round trip of USD 550 − 9.88; turnover is contract value / initial cash."""
    report = build_report((r.topic, r.ts_event, p) for r, p in payloads(outputs, ""))
    row = next(r for r in report.rows if r.scope == "fx")
    assert (row.trades, row.round_trips, row.win_rate) == (3, 1, 1.0)
    assert row.pnl == pytest.approx(REALIZED - FEES)
    assert row.fees == pytest.approx(FEES)
    assert row.turnover == pytest.approx((B1 + B2 + 2 * S1) * M / 1_000_000.0)
