"""Tests of the risk gate actor: halts, drawdown and drift, forged intents, audit trail."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tests.actors.orders.harness import MINUTE_NS, bar_records, payloads, run_chain, system
from tickertape.actors.orders import OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.risk import RiskConfig, parse_limits
from tickertape.actors.risk.actor import RiskActor
from tickertape.actors.strategy import Strategy, StrategyActor, StrategyConfig, StrategyContext
from tickertape.errors import ConfigError
from tickertape.schemas import Record
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar
from tickertape.schemas.risk import RiskCommand
from tickertape.schemas.strategy import Intent
from tickertape.schemas.system import ClockDrift

T0 = 1_704_067_200_000_000_000
ZERO = OrderEngineConfig(markets={"crypto": fl.ZERO_COST})


class EveryBar(Strategy):
    """Targets +1 on odd bars and -1 on even bars."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        self.n += 1
        ctx.target_position(market, bar.symbol, 1.0 if self.n % 2 else -1.0)


def strategy(sid: str = "s", **kw: object) -> StrategyActor:
    return StrategyActor(StrategyConfig(strategy_id=sid, **kw), strategy=EveryBar())  # type: ignore[arg-type]


def bars(n: int, start_price: float = 100.0, step: float = 0.0) -> list[Record]:
    rows = [
        (T0 + i * MINUTE_NS, start_price + i * step, start_price + i * step + 1,
         start_price + i * step - 1, start_price + i * step, 100.0)
        for i in range(1, n + 1)
    ]  # fmt: skip
    return bar_records(rows, "crypto", "ABC")


def merged(*groups: list[Record]) -> list[Record]:
    records = sorted((r for g in groups for r in g), key=lambda r: (r.ts_event, r.gseq))
    return [msgspec.structs.replace(r, gseq=i + 1) for i, r in enumerate(records)]


def test_halt_stops_approvals_within_the_same_step() -> None:
    """A halt command at a bar's time rejects the intent that bar causes, in the same step."""
    halt = system(
        RiskCommand(command="halt", reason="ops"), "system.command.risk", T0 + 3 * MINUTE_NS, 1
    )
    out = run_chain(merged(bars(5), [halt]), [strategy()], orders=ZERO)
    decisions = [
        (r.ts_event, p.reason_code) for r, p in payloads(out, "risk.") if r.topic != "risk.state"
    ]
    assert decisions[:2] == [(T0 + MINUTE_NS, "OK"), (T0 + 2 * MINUTE_NS, "OK")]
    assert decisions[2:] == [
        (T0 + 3 * MINUTE_NS, "HALTED")
    ]  # later ones: the strategy's own switch
    states = [p for _, p in payloads(out, "risk.state")]
    assert [(s.scope, s.state, s.reason) for s in states] == [("global", "HALTED", "ops")]


def test_resume_reopens_trading() -> None:
    """After a resume, intents are approved again."""
    halt = system(RiskCommand(command="halt"), "system.command.risk", T0 + 2 * MINUTE_NS, 1)
    resume = system(RiskCommand(command="resume"), "system.command.risk", T0 + 4 * MINUTE_NS, 2)
    out = run_chain(merged(bars(6), [halt, resume]), [strategy()], orders=ZERO)
    codes = [p.reason_code for r, p in payloads(out, "risk.") if r.topic != "risk.state"]
    # bar 3: dropped by the strategy's kill switch; bar 4: the resume reaches the
    # strategy one wave after its bar; bar 5 targets the +1 already held; bar 6: approved.
    assert codes == ["OK", "HALTED", "NO_CHANGE", "OK"]


def test_clock_drift_halts_everything() -> None:
    """A clock drift alert halts globally with reason CLOCK_DRIFT."""
    drift = system(
        ClockDrift(actor="strategy.s", actor_ns=0, authority_ns=1, drift_ns=300_000_000, bound_ns=250_000_000),
        "system.clock_drift", T0 + 2 * MINUTE_NS, 1, source="clock",
    )  # fmt: skip
    out = run_chain(merged(bars(3), [drift]), [strategy()], orders=ZERO)
    states = [p for _, p in payloads(out, "risk.state")]
    assert [(s.scope, s.state, s.reason) for s in states] == [("global", "HALTED", "CLOCK_DRIFT")]
    codes = [p.reason_code for r, p in payloads(out, "risk.") if r.topic != "risk.state"]
    assert codes == ["OK", "HALTED"]


def test_without_the_halt_a_clock_drift_refuses_orders_until_a_global_resume() -> None:
    """``halt_on_clock_drift = false``: the alert changes no trading state, and every
    order after it is refused with CLOCK_DRIFT (EveryBar flips +1/−1: none reduces)
    until a global resume (before the fix the alert was ignored: approved)."""
    drift = system(
        ClockDrift(actor="strategy.s", actor_ns=0, authority_ns=1, drift_ns=300_000_000, bound_ns=250_000_000),
        "system.clock_drift", T0 + 2 * MINUTE_NS, 1, source="clock",
    )  # fmt: skip
    resume = system(RiskCommand(command="resume"), "system.command.risk", T0 + 4 * MINUTE_NS, 2)
    out = run_chain(
        merged(bars(6), [drift, resume]),
        [strategy()],
        orders=ZERO,
        risk=RiskConfig(halt_on_clock_drift=False),
    )
    decisions = [
        ((r.ts_event - T0) // MINUTE_NS, p.reason_code)
        for r, p in payloads(out, "risk.")
        if r.topic != "risk.state"
    ]
    # bar 3 targets the +1 bar 1 bought: no order; the resume comes at bar 4
    assert decisions == [(1, "OK"), (2, "CLOCK_DRIFT"), (3, "NO_CHANGE"), (4, "OK"), (5, "OK"), (6, "OK")]  # fmt: skip
    states = [p for _, p in payloads(out, "risk.state")]
    assert [(s.scope, s.state) for s in states] == [("global", "ACTIVE")]  # the resume only


def test_drawdown_breach_halts_the_strategy() -> None:
    """A strategy book whose drawdown reaches max_drawdown is halted automatically."""
    limits = parse_limits("[strategies.s]\nmax_drawdown = 0.0001\n")

    class BuyOnce(Strategy):
        def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
            ctx.target_position(market, bar.symbol, 10.0)

    falling = bars(6, start_price=100.0, step=-1.0)
    out = run_chain(
        falling,
        [StrategyActor(StrategyConfig(strategy_id="s"), strategy=BuyOnce())],
        orders=ZERO,
        risk=RiskConfig(limits=limits, initial_cash={"crypto": 10_000.0}),
        pnl=__import__("tickertape.actors.pnl", fromlist=["PnlConfig"]).PnlConfig(
            initial_cash={"crypto": 10_000.0}, update_interval_ns=MINUTE_NS
        ),
    )
    states = [p for _, p in payloads(out, "risk.state")]
    assert [(s.scope, s.key, s.state, s.reason) for s in states] == [
        ("strategy", "s", "HALTED", "DRAWDOWN")
    ]


def test_forged_intent_source_is_rejected() -> None:
    """An intent whose envelope source is not strategy.{strategy_id} is rejected."""
    intent = Intent(
        strategy_id="s", intent_id="s-1", market="crypto", symbol="ABC", side="buy", quantity=1.0
    )
    forged = system(intent, "strategy.intent.s", T0 + MINUTE_NS, 1, source="strategy.other")
    out = run_chain(merged(bars(2), [forged]), [], orders=ZERO)
    decisions = [p for _, p in payloads(out, "risk.rejected")]
    assert len(decisions) == 1
    assert decisions[0].reason_code == "INVALID_INTENT"
    assert "strategy.other" in decisions[0].reason
    assert not payloads(out, "order.")


def test_limits_file_is_validated_at_start(tmp_path: Path) -> None:
    """A limits file with an unknown key stops the actor from being built."""
    path = tmp_path / "risk.toml"
    path.write_text("[global]\nmax_notional = 5\n")
    with pytest.raises(ConfigError, match="max_notional"):
        RiskActor(RiskConfig(limits_file=str(path)))
    with pytest.raises(ConfigError, match="cannot read"):
        RiskActor(RiskConfig(limits_file=str(tmp_path / "missing.toml")))


def test_strategy_rate_limit_and_kill_switch() -> None:
    """Intents over the per-minute limit are dropped; a strategy halt stops order intents."""
    out = run_chain(merged(bars(4)), [strategy(max_intents_per_minute=1)], orders=ZERO)
    assert len(payloads(out, "strategy.intent.")) == 4  # one per minute: within the limit
    halt = system(
        RiskCommand(command="halt", scope="strategy", key="s"),
        "system.command.risk",
        T0 + 2 * MINUTE_NS,
        1,
    )
    out = run_chain(merged(bars(4), [halt]), [strategy()], orders=ZERO)
    intents = [r.ts_event for r, _ in payloads(out, "strategy.intent.")]
    # The halt reaches the strategy one wave after the risk gate: the bar-2 intent is
    # still emitted (and rejected by the gate), later ones are not emitted at all.
    assert intents == [T0 + MINUTE_NS, T0 + 2 * MINUTE_NS]
