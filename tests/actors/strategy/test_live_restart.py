"""A live strategy restarted without a snapshot (as after SIGKILL) regenerates its
intents from the log on event time: its rate limit must drop the intents it dropped
live, so the window runs on the time of the events the intents answer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.actors.live import run_live_until
from tests.actors.strategy.test_actor import Buyer
from tickertape.actors.runtime.remote import RemoteHost
from tickertape.actors.strategy import StrategyActor, StrategyConfig
from tickertape.client import Client
from tickertape.eventlog import LogReader
from tickertape.router.server import Router, RouterConfig
from tickertape.schemas.market import Bar
from tickertape.schemas.registry import make_envelope

SECOND_NS = 1_000_000_000


def _intents(data_dir: Path) -> int:
    return sum(1 for _ in LogReader(data_dir, "main").read(["strategy.intent.s"]))


def _strategy() -> StrategyActor:
    """A strategy that buys 1 on every bar, at most one intent a minute."""
    config = StrategyConfig(strategy_id="s", subscriptions=["md.bar.>"], max_intents_per_minute=1)
    return StrategyActor(config, strategy=Buyer())


async def test_a_restarted_strategy_drops_the_intents_it_dropped_live(tmp_path: Path) -> None:
    """Live, three 1-minute bars closed 70 s apart arrive together (a feed catching up
    after a gap): one intent a minute allows all three, as their times are more than a
    minute apart. Restarted without a snapshot, the strategy answers the same bars the
    same way: nothing new published, no divergence. Before, the window ran on the
    clock: live, the three arrived within milliseconds and two were dropped; the
    restart, on event time, then published the two intents it had dropped."""
    router = Router(RouterConfig(port=0, data_dir=str(tmp_path), health_interval_s=3600.0))
    await router.start()
    hosts: list[RemoteHost] = []

    def three_intents(host: RemoteHost) -> bool:
        hosts[:] = [host]
        return _intents(tmp_path) == 3

    try:
        live = asyncio.create_task(
            run_live_until(router, tmp_path, _strategy(), "strategy.s", three_intents)
        )
        async with asyncio.timeout(20):
            while not hosts or hosts[0].time.catching_up:  # noqa: ASYNC110 (polling a test)
                await asyncio.sleep(0.02)
        closed = time.time_ns() - 150 * SECOND_NS
        bars = [
            make_envelope(
                Bar(symbol="ABC", interval="1m", open=10.0, high=10.0, low=10.0, close=10.0,
                    volume=1.0, start_ns=closed + i * 70 * SECOND_NS - 60 * SECOND_NS),
                topic="md.bar.1m.crypto.ABC", source="marketdata", source_seq=i + 1,
                ts_event=closed + i * 70 * SECOND_NS, market="crypto",
            )
            for i in range(3)
        ]  # fmt: skip
        async with Client(router.url, "marketdata") as md:
            await md.publish(bars)
        first = await live
        assert _intents(tmp_path) == 3

        again = await run_live_until(
            router, tmp_path, _strategy(), "strategy.s", lambda host: not host.time.catching_up
        )
        assert again.position == first.position
        assert again.divergences == []
        assert _intents(tmp_path) == 3
    finally:
        await router.close()
