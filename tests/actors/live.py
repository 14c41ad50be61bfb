"""Running one actor live through a real router, stopped as a crash would leave it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from tickertape.actors.base import Actor
from tickertape.actors.runtime.remote import RemoteHost
from tickertape.client import Client
from tickertape.router.server import Router
from tickertape.snapshots import SnapshotPolicy


async def run_live_until(
    router: Router,
    data_dir: Path,
    actor: Actor,
    identity: str,
    check: Callable[[RemoteHost], bool],
) -> RemoteHost:
    """Host ``actor`` live as ``identity`` until ``check(host)`` (20 s at most); stop it
    without a snapshot, so that its next start catches up on everything. Stopping
    compares what is left to compare: ``host.divergences`` is complete on return."""
    async with Client(router.url, identity) as client:
        policy = SnapshotPolicy(every_events=None, every_ns=None, on_stop=False)
        host = RemoteHost(client, actor, identity, data_dir, policy=policy)
        task = asyncio.create_task(host.run(), name=identity)
        try:
            async with asyncio.timeout(20):
                while not (check(host) or task.done()):  # noqa: ASYNC110 (polling a test)
                    await asyncio.sleep(0.02)
        finally:
            host.stop()
            await task
        return host
