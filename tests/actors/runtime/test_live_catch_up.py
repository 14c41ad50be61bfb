"""A live actor catching up on the log's history runs it on event time, so a restart
rebuilds the state the first run had: here a strategy's rate limit (10 intents a
minute) over bars a minute apart, hosted by the live remote host through a real
(embedded) router and event log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from tests.actors.live import run_live_until
from tests.actors.orders.harness import MINUTE_NS
from tickertape.actors.runtime.remote import RemoteHost
from tickertape.actors.strategy import Strategy, StrategyActor, StrategyConfig, StrategyContext
from tickertape.client import Client
from tickertape.eventlog import EventLog, LogReader
from tickertape.router.server import Router, RouterConfig
from tickertape.schemas import Envelope, decode_payload
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar
from tickertape.schemas.registry import make_envelope
from tickertape.schemas.strategy import Intent

N = 12


class Buyer(Strategy):
    """Asks to buy 1 on every bar."""

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        ctx.submit_order(market, bar.symbol, "buy", 1.0, reason=f"bar {bar.close:g}")


def _bar(close: float, end_ns: int, seq: int) -> Envelope:
    """A 1-minute bar of us:X ending at ``end_ns``, from the importer ``import.test``."""
    bar = Bar(
        symbol="X", interval="1m", start_ns=end_ns - MINUTE_NS,
        open=close, high=close, low=close, close=close, volume=10.0,
    )  # fmt: skip
    return make_envelope(
        bar, topic="md.bar.1m.us.X", source="import.test", source_seq=seq, ts_event=end_ns,
        market="us",
    )  # fmt: skip


def _intents(data_dir: Path) -> dict[int, str]:
    intents = {}
    for r in LogReader(data_dir, "main").read(["strategy.intent.>"]):
        intent = decode_payload(r.type, r.v, r.payload)
        assert isinstance(intent, Intent)
        intents[r.source_seq] = intent.reason
    return intents


async def _run_until(
    router: Router, data_dir: Path, check: Callable[[RemoteHost], bool]
) -> RemoteHost:
    """Run the strategy live until ``check(host)``; stop it without a snapshot (as a
    crash would leave it: the next start replays everything)."""
    config = StrategyConfig(strategy_id="s", max_intents_per_minute=10, subscriptions=["md.bar.>"])
    actor = StrategyActor(config, strategy=Buyer())
    return await run_live_until(router, data_dir, actor, "strategy.s", check)


async def test_a_restart_regenerates_the_history_on_event_time(tmp_path: Path) -> None:
    """Twelve bars of an hour ago, a minute apart, make twelve intents (on the machine's
    clock they all happened "now": two were dropped by the rate limit, the numbering
    shifted, and after a restart the next live intent reused a stored source_seq and was
    taken for a duplicate). A restart regenerates the same twelve (no divergence); a live
    bar then makes intent 13."""
    start = (time.time_ns() // MINUTE_NS - 60) * MINUTE_NS
    log = EventLog.open(tmp_path, "main")
    try:
        history = [_bar(100.0 + i, start + i * MINUTE_NS, i) for i in range(1, N + 1)]
        assert all(r.error is None for r in log.append(history, ts_log=1))
    finally:
        log.close()
    router = Router(RouterConfig(port=0, data_dir=str(tmp_path), health_interval_s=3600.0))
    await router.start()
    try:
        first = await _run_until(router, tmp_path, lambda h: h.position >= N)
        assert first.actor.state.dropped_intents == 0  # type: ignore[attr-defined]
        stored = _intents(tmp_path)
        assert stored == {i: f"bar {100 + i}" for i in range(1, N + 1)}

        again = asyncio.create_task(
            _run_until(router, tmp_path, lambda h: 13 in _intents(tmp_path)), name="again"
        )
        async with Client(router.url, "import.test") as feed:  # the bars' writer, live
            now = time.time_ns()
            await feed.publish([_bar(200.0, now, N + 1)])
        second = await again
        assert second.divergences == []
        assert second.actor.state.dropped_intents == 0  # type: ignore[attr-defined]
        intents = _intents(tmp_path)
        assert intents == {**stored, 13: "bar 200"}
    finally:
        await router.close()
