"""Hypothesis properties of the whole chain: accounting identities, latency, trading states."""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.actors.orders.harness import MINUTE_NS, bar_records, payloads, run_chain
from tickertape.actors.orders import OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.orders.instruments import InstrumentSpec
from tickertape.actors.pnl import PnlConfig
from tickertape.actors.risk import RiskConfig
from tickertape.actors.strategy import Strategy, StrategyActor, StrategyConfig, StrategyContext
from tickertape.schemas import Envelope, Record, encode_payload, stamp
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar
from tickertape.schemas.risk import RiskCommand

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
