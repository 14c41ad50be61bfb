"""A hand-computed round trip through strategy → risk → orders → pnl, every number asserted."""

from __future__ import annotations

import pytest

from tests.actors.orders.harness import MINUTE_NS, bar_records, payloads, run_chain
from tickertape.actors.orders import OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.pnl import PnlConfig
from tickertape.actors.risk import RiskConfig
from tickertape.actors.strategy import Strategy, StrategyActor, StrategyConfig, StrategyContext
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar
from tickertape.schemas.orders import OrderEvent
from tickertape.schemas.pnl import PnlUpdate

T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
LATENCY_NS = 50_000_000

BARS = [
    # close time, open, high, low, close, volume
    (T0 + 1 * MINUTE_NS, 100.0, 101.0, 99.0, 100.0, 10.0),
    (T0 + 2 * MINUTE_NS, 100.0, 102.0, 99.0, 101.0, 10.0),  # signal: buy 3
    (T0 + 3 * MINUTE_NS, 102.0, 103.0, 101.0, 102.0, 4.0),  # partial fill 2 (cap 50 % of 4)
    (T0 + 4 * MINUTE_NS, 103.0, 104.0, 102.0, 103.0, 10.0),  # fills the last 1
    (T0 + 5 * MINUTE_NS, 104.0, 105.0, 103.0, 104.0, 10.0),  # signal: flat
    (T0 + 6 * MINUTE_NS, 105.0, 105.0, 104.0, 104.5, 10.0),  # sells 3
]

CONFIG = fl.MarketFillConfig(
    latency=fl.LatencyModel(base_ns=LATENCY_NS, jitter_ns=0),
    slippage=fl.SlippageModel(fixed_bps=10.0, impact_bps=20.0),
    fees=fl.FeeSchedule(maker_bps=10.0, taker_bps=10.0),
    participation_rate=0.5,
)


class Scripted(Strategy):
    """Buys 3 on the 2nd bar and goes flat on the 5th."""

    def __init__(self) -> None:
        super().__init__()
        self.bars = 0

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        self.bars += 1
        if self.bars == 2:
            ctx.submit_order(market, bar.symbol, "buy", 3.0, reason="enter")
        elif self.bars == 5:
            assert ctx.position(market, bar.symbol) == 3.0
            ctx.target_position(market, bar.symbol, 0.0, reason="exit")


@pytest.fixture(scope="module")
def outputs() -> list:
    strategy = StrategyActor(
        StrategyConfig(strategy_id="demo", subscriptions=["md.bar.>"]), strategy=Scripted()
    )
    return run_chain(
        bar_records(BARS, "crypto", "ABC"),
        [strategy],
        orders=OrderEngineConfig(markets={"crypto": CONFIG}),
        risk=RiskConfig(initial_cash={"crypto": 10_000.0}),
        pnl=PnlConfig(initial_cash={"crypto": 10_000.0}),
    )


def test_fills_prices_fees_and_times(outputs: list) -> None:
    """Two buy fills (partial, then the rest) and one sell fill, each price and fee by hand."""
    fills = [(r, p) for r, p in payloads(outputs, "order.") if p.fill is not None]
    assert [p.status for _, p in fills] == ["partially_filled", "filled", "filled"]
    (_, b1), (_, b2), (_, s1) = fills
    # Bar 3: cap 0.5 × 4 = 2; slippage 10 + 20 × 2/4 = 20 bps on the open 102.
    assert b1.fill.quantity == 2.0
    assert b1.fill.slippage_bps == pytest.approx(20.0)
    assert b1.fill.price == pytest.approx(102.0 * 1.002, rel=1e-12)  # 102.204
    assert b1.fill.fee == pytest.approx(2 * 102.204 * 0.001, rel=1e-12)  # 0.204408
    assert b1.fill.ts_fill == T0 + 3 * MINUTE_NS
    # Bar 4: the remaining 1 of a cap of 5; 10 + 20 × 1/10 = 12 bps on the open 103.
    assert b2.fill.quantity == 1.0
    assert b2.fill.price == pytest.approx(103.0 * 1.0012, rel=1e-12)  # 103.1236
    assert b2.fill.fee == pytest.approx(103.1236 * 0.001, rel=1e-12)
    assert b2.average_price == pytest.approx((2 * 102.204 + 103.1236) / 3, rel=1e-12)
    # Bar 6: sell 3 of a cap of 5; 10 + 20 × 3/10 = 16 bps below the open 105.
    assert s1.side == "sell"
    assert s1.fill.quantity == 3.0
    assert s1.fill.price == pytest.approx(105.0 * (1 - 0.0016), rel=1e-12)  # 104.832
    assert s1.fill.fee == pytest.approx(3 * 104.832 * 0.001, rel=1e-12)  # 0.314496
    for _, p in fills:
        assert p.fill.ts_fill > p.arrival_ns


def test_lifecycle_and_latency(outputs: list) -> None:
    """Each order is submitted at the signal, accepted 50 ms later, then filled."""
    events = payloads(outputs, "order.")
    first = [(r, p) for r, p in events if p.order_id == events[0][1].order_id]
    assert [p.status for _, p in first] == ["submitted", "accepted", "partially_filled", "filled"]
    assert first[0][0].ts_event == T0 + 2 * MINUTE_NS
    assert first[1][0].ts_event == T0 + 2 * MINUTE_NS + LATENCY_NS
    assert first[1][1].arrival_ns == T0 + 2 * MINUTE_NS + LATENCY_NS
    assert first[0][1].order_id == "ord-risk-1"
    assert first[0][1].client_order_id == "tt-risk-1"
    assert first[0][0].topic == "order.submitted.crypto"


def test_final_books(outputs: list) -> None:
    """Realized PnL, fees, cash and equity of the strategy and portfolio books."""
    updates = [(r, p) for r, p in payloads(outputs, "pnl.update.") if isinstance(p, PnlUpdate)]
    last = {r.topic: p.books[0] for r, p in updates}
    book = last["pnl.update.demo"]
    avg = (2 * 102.204 + 103.1236) / 3
    fees = 0.204408 + 0.1031236 + 0.314496
    cash = 10_000.0 - 2 * 102.204 - 1 * 103.1236 + 3 * 104.832 - fees
    assert book.realized == pytest.approx(3 * (104.832 - avg), rel=1e-9)  # 6.9644
    assert book.fees == pytest.approx(fees, rel=1e-12)
    assert book.cash == pytest.approx(cash, rel=1e-12)
    assert book.equity == pytest.approx(cash, rel=1e-12)
    assert book.equity == pytest.approx(10_000.0 + 6.9644 - fees, rel=1e-9)
    assert book.positions[0].quantity == 0.0
    assert book.fills == 3
    assert book.traded_notional == pytest.approx(2 * 102.204 + 103.1236 + 3 * 104.832, rel=1e-12)
    portfolio = last["pnl.update.portfolio"]
    assert portfolio.equity == pytest.approx(book.equity, rel=1e-12)
    assert portfolio.initial_cash == 10_000.0


def test_every_update_satisfies_the_equity_identity(outputs: list) -> None:
    """equity = cash + Σ quantity × mark in every published book."""
    for _, update in payloads(outputs, "pnl.update."):
        for book in update.books:
            total = book.cash
            for p in book.positions:
                total += p.quantity * p.mark
            assert book.equity == total
            assert book.fees >= 0.0


def test_risk_decisions_carry_their_inputs(outputs: list) -> None:
    """Both intents were approved with the figures the checks used."""
    decisions = [p for _, p in payloads(outputs, "risk.")]
    assert [d.approved for d in decisions] == [True, True]
    assert decisions[0].inputs["price"] == 101.0
    assert decisions[1].order.side == "sell"
    assert decisions[1].order.quantity == 3.0
    assert all(isinstance(p, OrderEvent) for _, p in payloads(outputs, "order."))
