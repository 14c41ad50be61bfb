"""A live risk gate restarted without a snapshot (as after SIGKILL) regenerates its
decisions from the log on event time: they must be the ones it published live, so a
decision is made as of its intent's time, not the clock when the gate got to it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.actors.live import run_live_until
from tickertape.actors.risk import RiskActor
from tickertape.client import Client
from tickertape.eventlog import LogReader
from tickertape.router.server import Router, RouterConfig
from tickertape.schemas import decode_payload
from tickertape.schemas.market import Trade
from tickertape.schemas.registry import make_envelope
from tickertape.schemas.risk import RiskDecision
from tickertape.schemas.strategy import Intent


def _decisions(data_dir: Path) -> list[RiskDecision]:
    records = LogReader(data_dir, "main").read(["risk.approved.>", "risk.rejected.>"])
    return [decode_payload(r.type, r.v, r.payload) for r in records]  # type: ignore[misc]


async def test_a_restarted_gate_regenerates_its_live_decisions_without_divergence(
    tmp_path: Path,
) -> None:
    """Live: a trade, then (0.3 s later) an intent; the decision's data age is the time
    between them. Restarted without a snapshot, the gate decides the intent again with
    the same figures: no divergence (the data age was the clock's before: it differed
    by the milliseconds the live gate took to get to the intent)."""
    router = Router(RouterConfig(port=0, data_dir=str(tmp_path), health_interval_s=3600.0))
    await router.start()
    try:
        traded = time.time_ns()
        async with Client(router.url, "marketdata") as md:
            trade = Trade(symbol="ABC", price=10.0, size=1.0, side="buy", trade_id="t1")
            await md.publish([
                make_envelope(
                    trade, topic="md.trade.crypto.ABC", source="marketdata", source_seq=1,
                    ts_event=traded, market="crypto",
                )
            ])  # fmt: skip
        gate = asyncio.create_task(
            run_live_until(
                router, tmp_path, RiskActor(), "risk", lambda _: len(_decisions(tmp_path)) == 1
            )
        )
        await asyncio.sleep(0.3)
        decided = time.time_ns()
        async with Client(router.url, "strategy.s") as strategy:
            intent = Intent(
                strategy_id="s", intent_id="s-1", market="crypto", symbol="ABC", side="buy",
                quantity=1.0,
            )  # fmt: skip
            await strategy.publish([
                make_envelope(
                    intent, topic="strategy.intent.s", source="strategy.s", source_seq=1,
                    ts_event=decided, market="crypto",
                )
            ])  # fmt: skip
        first = await gate
        [live] = _decisions(tmp_path)
        assert live.inputs["data_age_ms"] == (decided - traded) / 1e6

        again = await run_live_until(
            router, tmp_path, RiskActor(), "risk", lambda host: not host.time.catching_up
        )
        assert again.position == first.position
        assert again.divergences == []
        assert _decisions(tmp_path) == [live]
    finally:
        await router.close()
