"""Closing a subscription while the router is gone returns at once: an actor stopping
after its router (`honcho start` stops them together) used to wait 5 s per
subscription for an unsubscribe that could not be sent, past honcho's kill delay."""

from __future__ import annotations

import time
from pathlib import Path

from tests.router.support import eventually, free_port, kill, tape, wait_port
from tickertape.client import Client


async def test_a_subscription_closes_at_once_without_a_router(tmp_path: Path) -> None:
    port = free_port()
    router = tape("router", "--port", str(port), "--data-dir", str(tmp_path))
    try:
        wait_port(port)
        async with Client(f"ws://127.0.0.1:{port}", "reader") as client:
            sub = client.subscribe(["md.>"], "now")
            await sub.caught_up.wait()
            kill(router)
            await eventually(lambda: not client.connected)
            started = time.monotonic()
            await sub.close()
            assert time.monotonic() - started < 1.0
    finally:
        kill(router)
