"""Closing a client closes its WebSocket with a normal close handshake."""

from __future__ import annotations

from pathlib import Path

from websockets.protocol import State

from tickertape.client import Client
from tickertape.router.server import Router, RouterConfig


async def test_close_ends_the_websocket_with_a_normal_closure(tmp_path: Path) -> None:
    """Client.close() leaves its WebSocket CLOSED with close code 1000."""
    router = Router(RouterConfig(port=0, data_dir=str(tmp_path), health_interval_s=3600.0))
    await router.start()
    try:
        client = Client(router.url, "closer")
        await client.start()
        ws = client._ws
        assert ws is not None
        await client.close()
        assert ws.state is State.CLOSED
        assert ws.close_code == 1000
    finally:
        await router.close()
