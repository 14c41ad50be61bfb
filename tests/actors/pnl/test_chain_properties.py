"""Hypothesis properties of the whole chain: accounting identities, one mark per
instrument across books, the portfolio as the sum of its strategies, latency, trading
states."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.actors.orders.harness import MINUTE_NS, bar_records, payloads, run_chain
from tickertape.actors.base import Context, Event, Timer
from tickertape.actors.orders import OrderEngine, OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.orders.instruments import InstrumentSpec
from tickertape.actors.pnl import PnlActor, PnlConfig, accounting
from tickertape.actors.risk import RiskActor, RiskConfig
from tickertape.actors.runtime import InProcessHost, MemorySink
from tickertape.actors.strategy import Strategy, StrategyActor, StrategyConfig, StrategyContext
from tickertape.schemas import Envelope, Record, encode_payload, stamp
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar
from tickertape.schemas.pnl import Book
from tickertape.schemas.risk import RiskCommand
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.scheduler import StepPlanner

T0 = 1_704_067_200_000_000_000
LATENCY = 30_000_000


class Targets(Strategy):
    """Targets the n-th position of a list on the n-th bar (None: nothing)."""

    def __init__(self, targets: list[float | None]) -> None:
        super().__init__()
        self.targets = targets
        self.n = 0

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        if self.n < len(self.targets) and self.targets[self.n] is not None:
            ctx.target_position(market, bar.symbol, self.targets[self.n])  # type: ignore[arg-type]
        self.n += 1


def command(verb: str, ts: int, seq: int) -> Record:
    env = Envelope(
        id=f"operator:{seq}", topic="system.command.risk", type="risk.command", v=1, market=None,
        ts_event=ts, ts_init=ts, source="operator", source_seq=seq,
        payload=encode_payload(RiskCommand(command=verb)),  # type: ignore[arg-type]
    )  # fmt: skip
    return stamp(env, seq - 1, 0, ts)


bars_st = st.lists(
    st.tuples(
        st.floats(min_value=50.0, max_value=150.0),
        st.floats(min_value=0.0, max_value=3.0),
        st.floats(min_value=0.0, max_value=50.0),
    ),
    min_size=3,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bars=bars_st,
    targets=st.lists(
        st.one_of(st.none(), st.sampled_from([-2.0, -1.0, 0.0, 1.0, 2.0])), max_size=25
    ),
    commands=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=25), st.sampled_from(["halt", "reduce", "resume"])
        ),
        max_size=4,
        unique_by=lambda c: c[0],
    ),
    spec=st.sampled_from(
        [
            None,
            InstrumentSpec(
                multiplier=125_000.0, tick_size=0.25, fees=fl.FeeSchedule(per_unit=2.47)
            ),
            InstrumentSpec(multiplier=0.5),
        ]
    ),
)
def test_chain_invariants(
    bars: list[tuple[float, float, float]],
    targets: list[float | None],
    commands: list[tuple[int, str]],
    spec: InstrumentSpec | None,
) -> None:
    """Equity identity (with the contract multiplier), fees ≥ 0, fills after arrival, HALTED
    approves nothing, REDUCING never adds; without a specification and with multipliers
    125,000 (a tick grid, per-contract fees) and 0.5."""
    rows = [
        (T0 + (i + 1) * MINUTE_NS, o, o + spread, max(o - spread, 1.0), o, vol)
        for i, (o, spread, vol) in enumerate(bars)
    ]
    inputs = bar_records(rows, "crypto", "ABC")
    extra = [
        command(verb, T0 + i * MINUTE_NS, n + 1) for n, (i, verb) in enumerate(sorted(commands))
    ]
    merged = sorted(inputs + extra, key=lambda r: (r.ts_event, r.topic != "system.command.risk"))
    merged = [msgspec.structs.replace(r, gseq=i + 1) for i, r in enumerate(merged)]
    config = fl.MarketFillConfig(
        latency=fl.LatencyModel(base_ns=LATENCY, jitter_ns=LATENCY, seed=3), participation_rate=0.3
    )
    instruments = {} if spec is None else {"crypto": {"ABC": spec}}
    multiplier = 1.0 if spec is None else spec.multiplier
    out = run_chain(
        merged,
        [StrategyActor(StrategyConfig(strategy_id="p"), strategy=Targets(targets))],
        orders=OrderEngineConfig(markets={"crypto": config}, instruments=instruments),  # type: ignore[arg-type]
        risk=RiskConfig(instruments=instruments),  # type: ignore[arg-type]
        pnl=PnlConfig(update_interval_ns=MINUTE_NS),
    )
    # Accounting: every update satisfies the identity; fees are never negative.
    for _, update in payloads(out, "pnl.update."):
        for book in update.books:
            total = book.cash
            for p in book.positions:
                assert p.multiplier == multiplier
                total += p.quantity * p.mark * p.multiplier
            assert book.equity == total
            assert book.fees >= 0.0
    # Latency: no fill before the order reached the venue, ≥ LATENCY after submission.
    submitted: dict[str, int] = {}
    for record, order in payloads(out, "order."):
        if order.status == "submitted":
            submitted[order.order_id] = record.ts_event
        if order.fill is not None:
            assert order.fill.fee >= 0.0
            assert order.fill.multiplier == multiplier
            assert order.fill.ts_fill > order.arrival_ns >= submitted[order.order_id] + LATENCY
    # Trading states: walk the gate's decisions with the states it published.
    state = "ACTIVE"
    for record, payload in payloads(out, "risk."):
        if record.topic == "risk.state":
            state = payload.state
            continue
        if state == "HALTED":
            assert not payload.approved
        if state == "REDUCING" and payload.approved:
            projected = payload.inputs["projected_position"]
            after = payload.inputs["projected_after"]
            assert abs(after) <= abs(projected) + 1e-9


class CheckedPnl(PnlActor):
    """The pnl actor, checking its books after every event and timer: one mark per
    instrument in every book holding it, the portfolio the sum of its strategies, and
    the equity identity of every book as published."""

    def on_event(self, event: Event, ctx: Context) -> None:
        super().on_event(event, ctx)
        self.check()

    def on_timer(self, timer: Timer, ctx: Context) -> None:
        super().on_timer(timer, ctx)
        self.check()

    def check(self) -> None:
        ledgers = self.state.ledgers
        marks: dict[tuple[str, str], set[float]] = {}
        for ledger in ledgers.values():
            for symbol, held in ledger.positions.items():
                marks.setdefault((ledger.market, symbol), set()).add(held.mark)
        assert all(len(seen) == 1 for seen in marks.values()), marks
        for key, ledger in ledgers.items():
            book = accounting.to_book(ledger)
            assert book.equity == summed_equity(book), key
        for market in {ledger.market for ledger in ledgers.values()}:
            portfolio = ledgers[f"portfolio:{market}"]
            strategies = [
                ledger
                for key, ledger in sorted(ledgers.items())
                if ledger.market == market and not key.startswith("portfolio:")
            ]
            assert portfolio.initial_cash == sum(s.initial_cash for s in strategies)
            scale = 1e-9 * (portfolio.initial_cash + portfolio.traded_notional)
            total = sum(accounting.equity(s) for s in strategies)
            assert accounting.equity(portfolio) == pytest.approx(total, abs=scale)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bars=bars_st,
    first=st.lists(st.one_of(st.none(), st.sampled_from([-2.0, -1.0, 0.0, 1.0, 2.0])), max_size=25),
    second=st.lists(
        st.one_of(st.none(), st.sampled_from([-3.0, -1.0, 0.0, 1.0, 3.0])), max_size=25
    ),
    margined=st.booleans(),
)
def test_two_strategies_share_marks_and_add_up_to_the_portfolio(
    bars: list[tuple[float, float, float]],
    first: list[float | None],
    second: list[float | None],
    margined: bool,
) -> None:
    """Two strategies trading the same symbol with costs (slippage, fees, latency): after
    every event the pnl actor handles, every book holding the symbol has the same mark,
    the portfolio's equity is the sum of the strategies' and every book satisfies the
    equity identity; futures booked margined (initial margin per contract) or not."""
    rows = [
        (T0 + (i + 1) * MINUTE_NS, o, o + spread, max(o - spread, 1.0), o, vol)
        for i, (o, spread, vol) in enumerate(bars)
    ]
    inputs = bar_records(rows, "crypto", "ABC")
    spec = InstrumentSpec(
        multiplier=50.0,
        fees=fl.FeeSchedule(per_unit=2.47),
        initial_margin=2_000.0 if margined else None,
    )
    instruments = {"crypto": {"ABC": spec}}
    config = fl.MarketFillConfig(
        latency=fl.LatencyModel(base_ns=LATENCY, jitter_ns=LATENCY, seed=5), participation_rate=0.3
    )
    pnl = CheckedPnl(PnlConfig(update_interval_ns=MINUTE_NS, instruments=instruments))  # type: ignore[arg-type]
    sink = MemorySink()
    host = InProcessHost(sink, clock=SimulatedClock(inputs[0].ts_event), seed=1)
    for actor in (
        StrategyActor(StrategyConfig(strategy_id="p"), strategy=Targets(first)),
        StrategyActor(StrategyConfig(strategy_id="q"), strategy=Targets(second)),
        RiskActor(RiskConfig(instruments=instruments)),  # type: ignore[arg-type]
        OrderEngine(OrderEngineConfig(markets={"crypto": config}, instruments=instruments)),  # type: ignore[arg-type]
        pnl,
    ):
        host.add(actor)
    host.start()
    end = inputs[-1].ts_event + 2 * MINUTE_NS
    host.run(StepPlanner(inputs, host.timers, start_ns=inputs[0].ts_event, end_ns=end))
    host.stop()
    for _, update in payloads(sink.records, "pnl.update."):
        for book in update.books:
            for p in book.positions:
                assert (p.initial_margin > 0.0) == (margined and p.quantity != 0.0)


def summed_equity(book: Book) -> float:
    """Cash + Σ each position's value (margined: its unrealized PnL; else quantity ×
    mark × multiplier), summed in the published order as the pnl actor does."""
    total = book.cash
    for p in book.positions:
        total += p.unrealized if p.initial_margin else p.quantity * p.mark * p.multiplier
    return total
