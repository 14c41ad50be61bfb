"""A client written from docs/protocol.md alone, with bare `websockets` (no tickertape.client).

It publishes, subscribes across the history-to-live seam and reconnects with a resume
position, as a client in another language would.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import connect

from .support import running_router


def _envelope(seq: int) -> dict[str, Any]:
    ts = 1_700_000_000_000_000_000 + seq
    return {
        "id": f"bare:{seq}",
        "topic": "md.trade.us.AAPL",
        "type": "md.trade",
        "v": 1,
        "market": "us",
        "ts_event": ts,
        "ts_init": ts,
        "source": "bare",
        "source_seq": seq,
        "causation_id": None,
        "correlation_id": None,
        "payload": {
            "symbol": "AAPL",
            "price": 190.5,
            "size": 10.0,
            "side": "sell",
            "trade_id": str(seq),
        },
    }


async def _session(url: str, identity: str) -> Any:
    ws = await connect(url)
    await ws.send(json.dumps({"op": "hello", "ref": "h", "identity": identity}))
    welcome = json.loads(await ws.recv())
    assert welcome["op"] == "welcome"
    assert welcome["ref"] == "h"
    assert welcome["namespace"] == "main"
    assert welcome["limits"]["max_batch_events"] >= 1
    return ws


async def _read_events(ws: Any, sub: str, until_gseq: int) -> tuple[list[int], bool]:
    gseqs: list[int] = []
    caught_up = False
    # History may reach until_gseq before the router says caught_up: read both.
    while not gseqs or gseqs[-1] < until_gseq or not caught_up:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["op"] == "events" and frame["sub"] == sub:
            gseqs += [e["gseq"] for e in frame["events"]]
        elif frame["op"] == "caught_up":
            caught_up = True
    return gseqs, caught_up


async def test_bare_websockets_client_publishes_subscribes_and_resumes(tmp_path: Path) -> None:
    """Publish, subscribe from the beginning, drop the connection, resume from last gseq + 1."""
    async with running_router(tmp_path) as router:
        pub = await _session(router.url, "bare")
        await pub.send(
            json.dumps({"op": "pub", "ref": 1, "events": [_envelope(i) for i in range(1, 101)]})
        )
        ack = json.loads(await pub.recv())
        assert ack["op"] == "puback"
        assert [r["gseq"] for r in ack["results"]] == list(range(1, 101))
        assert ack["results"][0]["offset"] == 0

        sub = await _session(router.url, "reader")
        await sub.send(
            json.dumps(
                {"op": "sub", "ref": "s", "patterns": ["md.trade.us.*"], "start": "beginning"}
            )
        )
        subscribed = json.loads(await sub.recv())
        assert subscribed["op"] == "subscribed"
        await pub.send(
            json.dumps({"op": "pub", "ref": 2, "events": [_envelope(i) for i in range(101, 151)]})
        )
        gseqs, caught_up = await _read_events(sub, "s", 150)
        assert gseqs == list(range(1, 151))
        assert caught_up
        await sub.close()

        await pub.send(
            json.dumps({"op": "pub", "ref": 3, "events": [_envelope(i) for i in range(151, 201)]})
        )
        assert json.loads(await pub.recv())["ref"] == 2
        assert json.loads(await pub.recv())["ref"] == 3
        again = await _session(router.url, "reader")
        await again.send(
            json.dumps(
                {
                    "op": "sub",
                    "ref": "s",
                    "patterns": ["md.trade.us.*"],
                    "start": {"gseq": gseqs[-1] + 1},
                }
            )
        )
        resumed, _ = await _read_events(again, "s", 200)
        assert resumed == list(range(151, 201))

        await again.send(
            json.dumps(
                {"op": "fetch", "ref": "f", "patterns": [">"], "start": {"gseq": 10}, "to_gseq": 12}
            )
        )
        fetched: list[int] = []
        while True:
            frame = json.loads(await asyncio.wait_for(again.recv(), 10))
            if frame["op"] == "events" and frame["sub"] == "f":
                fetched += [e["gseq"] for e in frame["events"]]
            if frame["op"] == "fetch_end":
                assert frame["count"] == 3
                break
        assert fetched == [10, 11, 12]
        await pub.send(
            json.dumps({"op": "pub", "ref": 4, "events": [{**_envelope(201), "source": "mallory"}]})
        )
        refused = json.loads(await pub.recv())
        assert refused["results"][0]["error"] == "SOURCE_MISMATCH"
        for ws in (pub, again):
            await ws.close()
        assert isinstance(websockets.__version__, str)
