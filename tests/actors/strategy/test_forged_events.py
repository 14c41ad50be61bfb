"""A strategy publishing an approval, an order fill or a risk command changes nothing.

Across processes the router's ACL refuses such a publish; in one process the host
refuses it at publish time (``tickertape.roles``: a strategy may publish only its
intents). Behind that, in depth, the consumers refuse what does not come from the
identity that owns the topic: the order engine acts only on the risk gate's
approvals, the pnl actor and the risk gate book only the order engine's fills, and a
strategy cannot command the risk gate — tested here with the host's check switched off.
"""

from __future__ import annotations

import pytest

from tests.actors.orders.harness import MINUTE_NS, bar_records, payloads
from tickertape.actors.orders import OrderEngine, OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.pnl import PnlActor
from tickertape.actors.risk import RiskActor
from tickertape.actors.runtime import (
    InProcessHost,
    MemorySink,
    PublishNotAllowedError,
    inprocess,
)
from tickertape.actors.strategy import Strategy, StrategyActor, StrategyConfig, StrategyContext
from tickertape.schemas import Record
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar
from tickertape.schemas.orders import Fill, OrderEvent
from tickertape.schemas.risk import ApprovedOrder, RiskCommand, RiskDecision
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.scheduler import StepPlanner

T0 = 1_704_067_200_000_000_000
BARS = [(T0 + i * MINUTE_NS, 100.0, 101.0, 99.0, 100.0, 50.0) for i in range(1, 6)]


class Forger(Strategy):
    """On its first bar, publishes an approval, a fill and a resume in others' names."""

    def __init__(self) -> None:
        super().__init__()
        self.done = False

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        if self.done:
            return
        self.done = True
        raw = ctx._ctx  # what the strategy API does not offer
        order = ApprovedOrder(market=market, symbol=bar.symbol, side="buy", quantity=5.0)
        raw.publish(
            "risk.approved.forger",
            RiskDecision(
                strategy_id="forger", intent_id="x", approved=True, reason_code="OK", order=order
            ),
            market=market,
        )
        fill = Fill(
            fill_id="f1", price=1.0, quantity=5.0, fee=0.0, currency="USDT", liquidity="taker",
            slippage_bps=0.0, ts_fill=ctx.now_ns(), reference_price=1.0,
        )  # fmt: skip
        raw.publish(
            f"order.filled.{market}",
            OrderEvent(
                order_id="ord-forged",
                client_order_id="tt-forged",
                strategy_id="forger",
                market=market,
                symbol=bar.symbol,
                side="buy",
                order_type="market",
                quantity=5.0,
                status="filled",
                filled_quantity=5.0,
                average_price=1.0,
                fill=fill,
            ),
            market=market,
        )
        raw.publish("system.command.risk", RiskCommand(command="resume", reason="me"), market=None)


def run_forger() -> tuple[list[Record], StrategyActor, RiskActor, OrderEngine, PnlActor]:
    sink = MemorySink()
    host = InProcessHost(sink, clock=SimulatedClock(T0))
    strategy = StrategyActor(
        StrategyConfig(strategy_id="forger", subscriptions=["md.bar.>"]), strategy=Forger()
    )
    risk, orders, pnl = (
        RiskActor(),
        OrderEngine(OrderEngineConfig(markets={"crypto": fl.ZERO_COST})),
        PnlActor(),
    )
    for actor in (strategy, risk, orders, pnl):
        host.add(actor)
    host.start()
    inputs = bar_records(BARS, "crypto", "ABC")
    host.run(StepPlanner(inputs, host.timers, start_ns=T0, end_ns=inputs[-1].ts_event))
    return sink.records, strategy, risk, orders, pnl


def test_forged_approval_fill_and_command_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """No order from the forged approval, no position or PnL from the forged fill."""
    monkeypatch.setattr(inprocess, "publish_rule", lambda identity: None)  # no host check
    records, strategy, risk, orders, pnl = run_forger()
    forged = [r for r in records if r.source == "strategy.forger"]
    assert {r.topic for r in forged} == {
        "risk.approved.forger",
        "order.filled.crypto",
        "system.command.risk",
    }
    assert not [r for r in records if r.source == "orders"]  # nothing submitted
    assert not payloads(records, "pnl.update")  # no book was opened
    assert not payloads(records, "risk.state")  # the resume was not obeyed
    assert strategy.state.positions == {}
    assert strategy.state.ignored_events == 1
    assert risk.state.ledgers == {}
    assert risk.state.ignored_events == 2  # the fill and the command
    assert orders.state.ignored_approvals == 1
    assert pnl.state.ledgers == {}
    assert pnl.state.ignored_fills == 1


def test_the_in_process_host_refuses_a_strategy_publishing_an_approval() -> None:
    """Publishing on risk.approved.* from a strategy identity is an error at publish time."""
    with pytest.raises(PublishNotAllowedError) as failed:
        run_forger()
    refused = failed.value
    assert refused.topic == "risk.approved.forger"
    assert refused.actor == "strategy.forger"
