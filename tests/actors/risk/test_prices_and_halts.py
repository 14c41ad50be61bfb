"""The gate prices orders from raw market data only, an operator's resume after a
drawdown halt holds, limits and capital must be finite, and a kill-switch command
names a real scope."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from tests.actors.orders.harness import MINUTE_NS, payloads, run_chain, system
from tests.actors.risk.test_actor import T0, ZERO, bars, merged
from tickertape.actors.orders import OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.pnl import PnlConfig
from tickertape.actors.risk import RiskConfig, parse_limits
from tickertape.actors.risk.actor import RiskActor
from tickertape.actors.strategy import Strategy, StrategyActor, StrategyConfig, StrategyContext
from tickertape.errors import ConfigError
from tickertape.schemas import Envelope, Record, encode_payload, stamp
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar
from tickertape.schemas.risk import RiskCommand, RiskDecision, RiskState
from tickertape.schemas.strategy import Intent

DAY = 86_400_000_000_000


def daily_bar(topic: str, close: float, adjusted: bool, seq: int) -> Record:
    ts = T0 + DAY
    bar = Bar(symbol="XYZ", interval=topic.split(".")[2], open=close, high=close, low=close,
              close=close, volume=1e6, start_ns=ts - DAY, adjusted=adjusted)  # fmt: skip
    env = Envelope(id=f"marketdata:{seq}", topic=topic, type="md.bar", v=1, market="us",
                   ts_event=ts, ts_init=ts, source="marketdata", source_seq=seq,
                   payload=encode_payload(bar))  # fmt: skip
    return stamp(env, seq - 1, seq, ts)


def test_a_split_adjusted_bar_is_not_a_price() -> None:
    """After a 1:10 reverse split the raw close is 500 and its forward-adjusted copy
    (``md.bar.1d-adj``) 50: a buy of 100 is worth 50,000 at the venue, over the
    10,000 limit, and is refused even though the adjusted copy came last."""
    records = [
        daily_bar("md.bar.1d.us.XYZ", 500.0, False, 1),
        daily_bar("md.bar.1d-adj.us.XYZ", 50.0, True, 2),
    ]
    intent = Intent(strategy_id="s", intent_id="s-1", market="us", symbol="XYZ", side="buy",
                    quantity=100.0)  # fmt: skip
    rec = system(intent, "strategy.intent.s", T0 + DAY + 1, 1, source="strategy.s")
    records.append(msgspec.structs.replace(rec, gseq=3))
    limits = parse_limits("[markets.us]\nmax_order_notional = 10000\ncheck_cash = true\n")
    out = run_chain(records, [], orders=OrderEngineConfig(markets={"us": fl.ZERO_COST}),
                    risk=RiskConfig(limits=limits, initial_cash={"us": 10_000.0}))  # fmt: skip
    decisions = [(r.topic, p.reason_code, p.inputs.get("price")) for r, p in payloads(out, "risk.")
                 if isinstance(p, RiskDecision)]  # fmt: skip
    assert decisions == [("risk.rejected.s", "MAX_ORDER_NOTIONAL", 500.0)]


class BuyThenFlat(Strategy):
    """Long 10 on the first four bars, then flat."""

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        n = (bar.start_ns - T0) // MINUTE_NS + 1
        ctx.target_position(market, bar.symbol, 10.0 if n < 5 else 0.0)


def test_a_resume_after_a_drawdown_halt_lets_the_strategy_close() -> None:
    """Prices fall, the strategy's drawdown passes its limit and it is halted; the
    operator resumes it to close out: the next pnl updates (still in breach) do not
    halt it again, and its closing sell is approved and filled."""
    limits = parse_limits("[strategies.s]\nmax_drawdown = 0.0001\n")
    resume = system(RiskCommand(command="resume", scope="strategy", key="s", reason="close out"),
                    "system.command.risk", T0 + 4 * MINUTE_NS + 1, 1)  # fmt: skip
    out = run_chain(
        merged(bars(8, start_price=100.0, step=-1.0), [resume]),
        [StrategyActor(StrategyConfig(strategy_id="s"), strategy=BuyThenFlat())],
        orders=ZERO,
        risk=RiskConfig(limits=limits, initial_cash={"crypto": 10_000.0}),
        pnl=PnlConfig(initial_cash={"crypto": 10_000.0}, update_interval_ns=MINUTE_NS),
    )
    states = [
        (p.state, p.reason) for _, p in payloads(out, "risk.state") if isinstance(p, RiskState)
    ]
    assert states == [("HALTED", "DRAWDOWN"), ("ACTIVE", "close out")]
    sells = [(p.side, p.filled_quantity) for r, p in payloads(out, "order.filled")]
    assert sells[-1] == ("sell", 10.0)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_limit_that_is_not_a_finite_number_is_refused(value: str) -> None:
    """TOML has nan and inf: either would switch a limit off (every comparison false),
    even a tighter one of another scope."""
    with pytest.raises(ConfigError, match="max_position must be a finite number > 0"):
        parse_limits(f"[global]\nmax_position = {value}\n")


def test_initial_cash_that_is_not_a_finite_number_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"initial_cash\.us must be a finite number"):
        RiskActor(RiskConfig(initial_cash={"us": float("nan")}))


@pytest.mark.parametrize("strategy", ["", "a b", "s.t"])
def test_a_kill_switch_for_no_strategy_is_refused(tmp_path: Path, strategy: str) -> None:
    """``tape halt --strategy ''`` used to print "halt strategy global: published" while
    the gate refused the command: nothing halted. Now it exits 2 and stores nothing."""
    tape = str(Path(sys.executable).with_name("tape"))
    proc = subprocess.run(
        [tape, "halt", "--reason", "x", "--strategy", strategy, "--data-dir", str(tmp_path)],
        capture_output=True,
    )
    assert proc.returncode == 2
    assert b"is not a strategy id" in proc.stderr
    assert not (tmp_path / "logs").exists()
