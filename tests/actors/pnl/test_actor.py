"""Tests of the pnl actor: the publish schedule (a timer only while a book waits for it),
one mark per instrument across books, and the portfolio's capital."""

from __future__ import annotations

import msgspec
import pytest
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
from tickertape.schemas import Envelope, Record, decode_payload, encode_payload, stamp
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar
from tickertape.schemas.orders import Fill, OrderEvent
from tickertape.schemas.pnl import Book
from tickertape.schemas.strategy import Side
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


# ------------------------------------------------------------------ marks and books


def fill_record(
    seq: int, ts: int, strategy_id: str, side: Side, quantity: float, price: float
) -> Record:
    """A stored ``order.filled.crypto`` record of the order engine: ``strategy_id`` filled
    ``quantity`` ABC at ``price``, no fee."""
    order = OrderEvent(
        order_id=f"o{seq}", client_order_id=f"c{seq}", strategy_id=strategy_id,
        market="crypto", symbol="ABC", side=side, order_type="market",
        quantity=quantity, status="filled", filled_quantity=quantity, average_price=price,
        fill=Fill(
            fill_id=f"f{seq}", price=price, quantity=quantity, fee=0.0, currency="USDT",
            liquidity="taker", slippage_bps=0.0, ts_fill=ts,
        ),
    )  # fmt: skip
    env = Envelope(
        id=f"orders:{seq}", topic="order.filled.crypto", type="order.event", v=1,
        market="crypto", ts_event=ts, ts_init=ts, source="orders", source_seq=seq,
        payload=encode_payload(order),
    )  # fmt: skip
    return stamp(env, seq - 1, 0, ts)


def run_pnl(inputs: list[Record], pnl: PnlActor, end_ns: int) -> list[Record]:
    """The pnl actor alone over ``inputs`` (gseq renumbered in order) until ``end_ns``."""
    inputs = [msgspec.structs.replace(r, gseq=i + 1) for i, r in enumerate(inputs)]
    sink = MemorySink()
    host = InProcessHost(sink, clock=SimulatedClock(inputs[0].ts_event))
    host.add(pnl)
    host.start()
    host.run(StepPlanner(inputs, host.timers, start_ns=inputs[0].ts_event, end_ns=end_ns))
    host.stop()
    return sink.records


def latest_books(records: list[Record]) -> dict[str, Book]:
    """The last published book of each scope (``a``, ``b``, ``portfolio``)."""
    books = {}
    for record in records:
        if record.topic.startswith("pnl.update."):
            update = decode_payload(record.type, record.v, record.payload)
            books[record.topic.rpartition(".")[2]] = update.books[0]
    return books


def test_a_fill_marks_its_books_at_the_market_price() -> None:
    """Strategy a holds 1 ABC marked at the 110 close; strategy b then buys 1 at 120, a
    fill price off the market (slippage). ABC's mark stays the market's 110 in every
    book: b's and the portfolio's are marked at it, a's is not re-marked (no update of a
    after b's fill), and the portfolio's equity is the sum of its strategies'. Before,
    the fill's price re-marked every book at 120: b's slippage raised a's equity by 10
    (see test_review_defects.py for a false high-water mark it made)."""
    bars = bar_records([(T0 + MINUTE_NS, 100.0, 100.0, 100.0, 100.0, 1.0),
                        (T0 + 3 * MINUTE_NS, 110.0, 110.0, 110.0, 110.0, 1.0)], "crypto", "ABC")  # fmt: skip
    inputs = [
        bars[0],
        fill_record(1, T0 + 2 * MINUTE_NS, "a", "buy", 1.0, 100.0),
        bars[1],
        fill_record(2, T0 + 6 * MINUTE_NS, "b", "buy", 1.0, 120.0),
    ]
    pnl = PnlActor(PnlConfig(update_interval_ns=INTERVAL))
    records = run_pnl(inputs, pnl, end_ns=T0 + 10 * MINUTE_NS)
    marks = {key: ledger.positions["ABC"].mark for key, ledger in pnl.state.ledgers.items()}
    assert marks == {"a:crypto": 110.0, "b:crypto": 110.0, "portfolio:crypto": 110.0}
    books = latest_books(records)
    assert [p.mark for p in books["a"].positions] == [110.0]
    assert books["a"].equity == 100_000.0 - 100.0 + 110.0
    assert books["b"].equity == 100_000.0 - 120.0 + 110.0
    assert books["portfolio"].equity == books["a"].equity + books["b"].equity
    # a's last update is the tick after the 110 close, none after b's fill.
    ticks = [r.ts_event for r in records if r.topic == "pnl.update.a" and not r.causation_id]
    assert ticks[-1] == T0 + 5 * MINUTE_NS


def test_a_strategy_joining_the_portfolio_is_neither_a_gain_nor_a_new_base() -> None:
    """Strategy a buys 1,000 ABC at 100 and marks down to 90 (portfolio: capital 100,000,
    high-water mark 100,000, equity 90,000, drawdown 10 %). Strategy b then fills for
    the first time, at the mark, fee 0: the portfolio's capital, cash, equity and
    high-water mark all rise by b's 100,000, so the jump is no new peak; the drawdown in
    progress keeps its 10,000 and is measured against the base that includes b's cash
    (10,000 / 200,000 = 5 %); the largest drawdown seen stays 10 %."""
    bars = bar_records([(T0 + 3 * MINUTE_NS, 90.0, 90.0, 90.0, 90.0, 1.0)], "crypto", "ABC")
    inputs = [
        fill_record(1, T0 + 2 * MINUTE_NS, "a", "buy", 1_000.0, 100.0),
        bars[0],
        fill_record(2, T0 + 6 * MINUTE_NS, "b", "sell", 1.0, 90.0),
    ]
    pnl = PnlActor(PnlConfig(update_interval_ns=INTERVAL))
    records = run_pnl(inputs, pnl, end_ns=T0 + 10 * MINUTE_NS)
    updates = [
        decode_payload(r.type, r.v, r.payload).books[0]
        for r in records
        if r.topic == "pnl.update.portfolio"
    ]
    before, joined = updates[-2], updates[-1]  # the tick after the 90 mark; b's fill
    assert (before.initial_cash, before.high_water_mark, before.equity) == (
        100_000.0, 100_000.0, 90_000.0,
    )  # fmt: skip
    assert before.drawdown == pytest.approx(0.10)
    assert joined.initial_cash == 200_000.0
    assert joined.equity == 190_000.0
    assert joined.high_water_mark == 200_000.0
    assert joined.drawdown == pytest.approx(10_000.0 / 200_000.0)
    assert joined.max_drawdown == pytest.approx(0.10)
    # The portfolio is the sum of its strategies, figure by figure.
    books = latest_books(records)
    assert joined.equity == books["a"].equity + books["b"].equity
    assert joined.high_water_mark == books["a"].high_water_mark + books["b"].high_water_mark
