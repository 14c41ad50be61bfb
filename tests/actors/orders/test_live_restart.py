"""A live order engine restarted without a snapshot (as after SIGKILL) regenerates its
history from the log on event time: what it regenerates must be what it published live,
where its clock was the machine's. The times an order and a cancel travel from are
therefore the times of the records that caused them, not the clock when they were
handled (live, a few milliseconds later; catching up, the record's time)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.actors.live import run_live_until
from tests.actors.orders.harness import payloads
from tests.actors.orders.test_engine import BUY
from tickertape.actors.orders import OrderEngine, OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.runtime.remote import RemoteHost
from tickertape.client import Client
from tickertape.eventlog import LogReader
from tickertape.router.server import Router, RouterConfig
from tickertape.schemas.orders import OrderEvent
from tickertape.schemas.registry import make_envelope
from tickertape.schemas.risk import ApprovedOrder, RiskDecision

# No market data reaches the venue here: the market order rests until it is canceled.
CONFIG = OrderEngineConfig(
    markets={"crypto": fl.MarketFillConfig(latency=fl.LatencyModel(base_ns=50_000_000))}
)


def _order_events(data_dir: Path) -> list[OrderEvent]:
    events = payloads(list(LogReader(data_dir, "main").read(["order.>"])), "order.")
    return [p for _, p in events if isinstance(p, OrderEvent)]


def _run_until(
    router: Router, data_dir: Path, check: Callable[[RemoteHost], bool]
) -> Awaitable[RemoteHost]:
    return run_live_until(router, data_dir, OrderEngine(CONFIG), "orders", check)


async def test_a_restarted_engine_regenerates_its_live_orders_without_divergence(
    tmp_path: Path,
) -> None:
    """Live: an order is approved, accepted after its latency, then canceled by the
    strategy. Restarted without a snapshot, the engine regenerates all of it from the
    log: the same arrival times, no divergence, nothing published twice."""
    router = Router(RouterConfig(port=0, data_dir=str(tmp_path), health_interval_s=3600.0))
    await router.start()

    async def decide(seq: int, order: ApprovedOrder) -> None:
        decision = RiskDecision(
            strategy_id="s", intent_id=f"s-{seq}", approved=True, reason_code="OK", order=order
        )
        async with Client(router.url, "risk") as risk:
            await risk.publish([
                make_envelope(
                    decision, topic="risk.approved.s", source="risk", source_seq=seq,
                    ts_event=time.time_ns(), market="crypto",
                )
            ])  # fmt: skip

    try:
        engine = asyncio.create_task(
            _run_until(router, tmp_path, lambda _: len(_order_events(tmp_path)) == 3),
        )  # fmt: skip
        await decide(1, BUY)
        async with asyncio.timeout(20):
            while [e.status for e in _order_events(tmp_path)] != ["submitted", "accepted"]:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await decide(2, ApprovedOrder(
            market="crypto", symbol="ABC", side="buy", quantity=0.0,
            cancel_order_id=_order_events(tmp_path)[0].order_id,
        ))  # fmt: skip
        first = await engine
        assert first.divergences == []
        live = _order_events(tmp_path)
        assert [e.status for e in live] == ["submitted", "accepted", "canceled"]
        assert live[1].arrival_ns > 0

        again = await _run_until(router, tmp_path, lambda host: not host.time.catching_up)
        assert again.position == first.position  # it caught up on all of it
        assert again.divergences == []
        assert _order_events(tmp_path) == live
    finally:
        await router.close()
