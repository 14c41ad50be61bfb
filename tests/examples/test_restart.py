"""Restarting the trading actors from snapshots mid-run gives the same log as one run
(trading CME 6E in contracts, with the examples' instrument specifications)."""

from __future__ import annotations

import msgspec
import pytest
from examples.strategies.sma_cross import SmaCross, SmaCrossParams

from tests.actors.orders.harness import bar_records, load_6e_bars
from tickertape.actors.orders import OrderEngine, OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.orders.instruments import InstrumentSpec
from tickertape.actors.pnl import PnlActor, PnlConfig
from tickertape.actors.risk import RiskActor, RiskConfig, parse_limits
from tickertape.actors.runtime import InProcessHost, MemorySink
from tickertape.actors.strategy import StrategyActor, StrategyConfig
from tickertape.schemas import Record
from tickertape.snapshots.codec import Snapshot
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.scheduler import StepPlanner

SIXE = {"us": {"6E": InstrumentSpec(multiplier=125_000.0, tick_size=0.00005)}}
COSTS = OrderEngineConfig(
    markets={"us": fl.MarketFillConfig(fees=fl.FeeSchedule(per_unit=0.85), participation_rate=0.5)},
    instruments=SIXE,  # type: ignore[arg-type]
)
# 6E is booked fully funded here (no initial_margin), so the SMA's shorts need
# allow_short under check_cash.
LIMITS = parse_limits(
    "[global]\nmax_position = 3\nmax_orders_per_minute = 5\ncheck_cash = true\nallow_short = true\n"
)
CASH = {"us": 1_000_000.0}


def actors() -> list:
    strategy = StrategyActor(
        StrategyConfig(strategy_id="sma", subscriptions=["md.bar.1m.us.6EH4"]),
        strategy=SmaCross(SmaCrossParams(symbol="6EH4")),
    )
    return [
        strategy,
        RiskActor(RiskConfig(limits=LIMITS, initial_cash=CASH, instruments=SIXE)),  # type: ignore[arg-type]
        OrderEngine(COSTS),
        PnlActor(PnlConfig(update_interval_ns=15 * 60 * 10**9, initial_cash=CASH)),
    ]


def host_for(sink: MemorySink, start: int) -> InProcessHost:
    host = InProcessHost(sink, clock=SimulatedClock(start), seed=5)
    for actor in actors():
        host.add(actor)
    return host


def key(records: list[Record]) -> list[tuple[str, str, bytes]]:
    return [(r.id, r.topic, bytes(r.payload)) for r in records]


@pytest.mark.slow
def test_restart_from_snapshots_gives_the_same_outputs() -> None:
    """Stop every trading actor mid-run, restore them from snapshots: identical outputs."""
    inputs = bar_records(load_6e_bars()[:6000], "us", "6EH4")
    start, end = inputs[0].ts_event, inputs[-1].ts_event
    whole = MemorySink()
    host = host_for(whole, start)
    host.start()
    host.run(StepPlanner(inputs, host.timers, start_ns=start, end_ns=end))

    cut = inputs[2999].ts_event
    first, second = MemorySink(), MemorySink()
    host = host_for(first, start)
    host.start()
    host.run(StepPlanner(inputs[:3000], host.timers, start_ns=start, end_ns=cut))
    # Each actor's snapshot goes through msgpack, as the snapshot store writes it.
    snapshots = {
        name: msgspec.msgpack.decode(
            msgspec.msgpack.encode(host.take_snapshot(name, {})), type=Snapshot
        )
        for name in host.actor_names
    }
    second.records.extend(first.records)
    resumed = InProcessHost(second, clock=SimulatedClock(cut), seed=5)
    for actor in actors():
        resumed.add(actor)
    for name, snapshot in snapshots.items():
        resumed.restore(name, snapshot)
    resumed.start()
    resumed.run(StepPlanner(inputs[3000:], resumed.timers, start_ns=cut, end_ns=end))
    joined = first.records + second.records[len(first.records) :]
    assert len(whole.records) > 500
    approved = [r for r in whole.records if r.topic.startswith("risk.approved")]
    assert len(approved) > 100  # the strategy trades both ways through the run
    filled = [r for r in whole.records if r.topic.startswith("order.filled")]
    assert filled
    assert b'"multiplier":125000.0' in bytes(filled[0].payload)
    assert key(joined) == key(whole.records)
