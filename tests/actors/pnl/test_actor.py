"""Tests of the pnl actor's publish schedule: a timer only while a book waits for it."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.actors.orders.harness import MINUTE_NS, bar_records
from tickertape.actors.base import Context, Timer
from tickertape.actors.orders import OrderEngine, OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.pnl import PnlActor, PnlConfig
from tickertape.actors.risk import RiskActor
from tickertape.actors.runtime import InProcessHost, MemorySink
from tickertape.actors.strategy import Strategy, StrategyActor, StrategyConfig, StrategyContext
from tickertape.schemas import Record
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.scheduler import StepPlanner

T0 = 1_704_067_200_000_000_000
DAY_NS = 86_400_000_000_000
INTERVAL = 5 * MINUTE_NS


class BuyOnce(Strategy):
    """Buys 2 on the first bar, sells 1 on the fourth."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        self.n += 1
        if self.n == 1:
            ctx.submit_order(market, bar.symbol, "buy", 2.0)
        elif self.n == 4:
            ctx.submit_order(market, bar.symbol, "sell", 1.0)


class EveryInterval(PnlActor):
    """The schedule before the timer became lazy: armed at start, re-armed at each tick."""

    def on_start(self, ctx: Context) -> None:
        self._arm(ctx)

    def on_timer(self, timer: Timer, ctx: Context) -> None:
        super().on_timer(timer, ctx)
        self._arm(ctx)


def run(inputs: list[Record], pnl: PnlActor) -> tuple[list[Record], int]:
    """The chain over ``inputs``; the stored records and the number of steps run."""
    sink = MemorySink()
    start = inputs[0].ts_event
    host = InProcessHost(sink, clock=SimulatedClock(start))
    strategy = StrategyActor(StrategyConfig(strategy_id="s"), strategy=BuyOnce())
    zero = OrderEngineConfig(markets={"crypto": fl.ZERO_COST})
    for actor in (strategy, RiskActor(), OrderEngine(zero), pnl):
        host.add(actor)
    host.start()
    steps = host.run(StepPlanner(inputs, host.timers, start_ns=start, end_ns=inputs[-1].ts_event))
    host.stop()
    return sink.records, steps


def bars_at(times: list[int]) -> list[Record]:
    rows = [
        (t, 100.0 + i % 7, 101.0 + i % 7, 99.0, 100.5 + i % 5, 50.0) for i, t in enumerate(times)
    ]
    return bar_records(rows, "crypto", "ABC")


def test_a_quiet_month_costs_no_timer_steps() -> None:
    """Ten minutes of bars, thirty quiet days, one bar: a handful of timer steps, not one
    every interval of the gap (which the old schedule ran: 8,640 of them)."""
    times = [T0 + i * MINUTE_NS for i in range(1, 11)] + [T0 + 30 * DAY_NS]
    records, steps = run(bars_at(times), PnlActor(PnlConfig(update_interval_ns=INTERVAL)))
    assert steps < 30
    _, old_steps = run(bars_at(times), EveryInterval(PnlConfig(update_interval_ns=INTERVAL)))
    assert old_steps > 30 * DAY_NS // INTERVAL
    ticks = [r.ts_event for r in records if r.topic.startswith("pnl.update") and not r.causation_id]
    assert ticks
    assert all(t % INTERVAL == 0 for t in ticks)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gaps=st.lists(st.integers(min_value=1, max_value=40), min_size=4, max_size=30))
def test_the_updates_are_those_of_a_timer_firing_every_interval(gaps: list[int]) -> None:
    """Whatever the gaps between bars (in minutes, interval 5), the lazy schedule stores
    exactly the records of the every-interval schedule, byte for byte (fills and the
    interval updates of the books they open)."""
    times = []
    t = T0
    for gap in gaps:
        t += gap * MINUTE_NS
        times.append(t)
    times.append(t + 60 * MINUTE_NS)  # a last bar after a tick, so that one fires
    config = PnlConfig(update_interval_ns=INTERVAL)
    lazy, _ = run(bars_at(times), PnlActor(config))
    every, _ = run(bars_at(times), EveryInterval(config))
    assert [(r.id, r.topic, bytes(r.payload)) for r in lazy] == [
        (r.id, r.topic, bytes(r.payload)) for r in every
    ]
    assert any(r.topic.startswith("pnl.update") and not r.causation_id for r in lazy)
