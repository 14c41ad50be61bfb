"""Per-connection health: event rates over the last health tick and the router's
publish-to-deliver times of live deliveries (none for deliveries read from the log)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rich.console import Console

from tests.router.support import running_router, trade
from tickertape.client import Client
from tickertape.client.inspect import print_stats, stats_remote


def _connection(stats: dict[str, Any], identity: str) -> dict[str, Any]:
    [conn] = [c for c in stats["connections"] if c["identity"] == identity]
    return conn


async def test_health_reports_rates_and_publish_to_deliver_times(tmp_path: Path) -> None:
    """A publisher sends 10 events every 20 ms; a live subscriber takes them. Within a
    few health ticks the publisher's connection shows events in per second and the
    subscriber's events out per second and publish-to-deliver p50/p99 (read to written,
    inside the router: more than 0, less than a second). A subscriber that read the
    same events from the log, after they were published, has no such times."""
    async with running_router(tmp_path) as router:
        async with (
            Client(router.url, "md") as md,
            Client(router.url, "live") as live,
            Client(router.url, "late") as late,
        ):
            stream = live.subscribe(["md.>"], start="now")
            await asyncio.sleep(0.3)  # the subscription is live before the first event
            seq = 0

            async def publish() -> None:
                nonlocal seq
                while True:
                    await md.publish([trade("md", seq + i) for i in range(1, 11)])
                    seq += 10
                    await asyncio.sleep(0.02)

            async def drain() -> None:
                async for _ in stream:
                    pass

            tasks = [asyncio.create_task(publish()), asyncio.create_task(drain())]
            try:
                async with asyncio.timeout(20):
                    while True:
                        stats = await stats_remote(router.url)
                        sub, pub = _connection(stats, "live"), _connection(stats, "md")
                        if sub["events_out_per_s"] > 0 and pub["events_in_per_s"] > 0:
                            break
                        await asyncio.sleep(0.1)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            assert sub["events_out"] > 0
            assert 0 < sub["deliver_p50_ms"] <= sub["deliver_p99_ms"] < 1000
            assert pub["deliver_p50_ms"] is None  # it subscribes to nothing

            stored = (await stats_remote(router.url))["head_gseq"]
            assert stored >= seq
            history = late.subscribe(["md.>"], start="beginning")
            for _ in range(stored):
                await asyncio.wait_for(anext(history), 10)
            stats = await stats_remote(router.url)
            assert _connection(stats, "late")["events_out"] == stored
            assert _connection(stats, "late")["deliver_p50_ms"] is None
        console = Console(record=True, width=250)
        print_stats(stats, console)
        text = console.export_text()
        assert "deliver p50/p99 ms" in text
        assert "in/s" in text
