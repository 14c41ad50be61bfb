"""Tests of the router's send path (tickertape.router.server): answers written by the appender, order of frames, backpressure on a client that does not read."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from tickertape.client import Client
from tickertape.eventlog import LogReader
from tickertape.router.protocol import Limits, Pub, encode_frame
from tickertape.router.server import Router

from .support import eventlog, eventually, free_port, kill, running_router, trade


def _pub(ref: int, first: int, n: int) -> bytes:
    return encode_frame(Pub(ref=ref, events=[trade("md", i) for i in range(first, first + n)]))


@asynccontextmanager
async def _slow_reader(router: Router) -> AsyncIterator[ClientConnection]:
    """A raw connection of identity ``md``, past its ``welcome``, with a 4 KiB receive
    buffer and a one-message queue: what it does not read soon fills the router's side."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", router.port))
    async with ws_connect(router.url, sock=sock, max_queue=1, max_size=None) as ws:
        await ws.send(json.dumps({"op": "hello", "ref": 0, "identity": "md"}))
        assert json.loads(await ws.recv())["op"] == "welcome"
        yield ws


async def _publish_all(ws: ClientConnection, batches: int, per_batch: int) -> None:
    """Send ``batches`` pubs of ``per_batch`` trades (refs 1.., source_seqs 1..)."""
    for b in range(batches):
        await ws.send(_pub(b + 1, b * per_batch + 1, per_batch))


async def test_a_subscribing_publisher_gets_its_events_before_its_puback(tmp_path: Path) -> None:
    """One connection publishing on a topic it subscribes to: events frames, then puback, each batch."""
    async with running_router(tmp_path) as router, ws_connect(router.url) as ws:
        await ws.send(json.dumps({"op": "hello", "ref": 0, "identity": "md"}))
        assert json.loads(await ws.recv())["op"] == "welcome"
        await ws.send(json.dumps({"op": "sub", "ref": "a", "patterns": ["md.>"]}))
        await ws.send(json.dumps({"op": "sub", "ref": "b", "patterns": ["md.trade.crypto.*"]}))
        ops = [json.loads(await ws.recv())["op"] for _ in range(4)]
        assert sorted(ops) == ["caught_up", "caught_up", "subscribed", "subscribed"]
        for ref, first in ((1, 1), (2, 11), (3, 21)):
            await ws.send(_pub(ref, first, 10))
            frames = [json.loads(await ws.recv()) for _ in range(3)]
            assert [f["op"] for f in frames] == ["events", "events", "puback"]
            assert sorted(f["sub"] for f in frames[:2]) == ["a", "b"]
            for f in frames[:2]:
                assert [e["gseq"] for e in f["events"]] == list(range(first, first + 10))
            assert frames[2]["ref"] == ref
            assert [r["gseq"] for r in frames[2]["results"]] == list(range(first, first + 10))


async def test_a_publisher_that_does_not_read_its_pubacks_is_held_back(tmp_path: Path) -> None:
    """The router stops taking pubs from a client that reads nothing: its queued answers stay
    bounded by the limits; once it reads, every puback arrives, in order, and all is stored."""
    limits = Limits(send_queue_frames=4, max_inflight_pubs=2)
    batches, per_batch = 400, 1000
    async with running_router(tmp_path, limits=limits) as router, _slow_reader(router) as ws:
        sender = asyncio.create_task(_publish_all(ws, batches, per_batch))
        # Nothing is read: the router's socket fills, then its queue, then it stops
        # taking pubs; the sender then blocks on its own socket.
        head = -1
        while True:
            await asyncio.sleep(0.5)
            now = router.namespaces["main"].head
            if now == head:
                break
            head = now
        assert not sender.done()
        assert head < batches * per_batch
        (conn,) = [c for c in router.connections.values() if c.identity == "md"]
        assert len(conn.out) <= limits.send_queue_frames + limits.max_inflight_pubs
        acks: list[dict[str, Any]] = []

        async def read_all() -> None:
            while len(acks) < batches:
                frame = json.loads(await ws.recv())
                assert frame["op"] == "puback"
                acks.append(frame)

        await asyncio.wait_for(asyncio.gather(sender, read_all()), 120)
        assert [a["ref"] for a in acks] == list(range(1, batches + 1))
        gseqs = [r["gseq"] for a in acks for r in a["results"]]
        assert gseqs == list(range(1, batches * per_batch + 1))
    stored = list(LogReader(tmp_path, "main").read([">"]))
    assert [r.source_seq for r in stored] == list(range(1, batches * per_batch + 1))


async def test_pubs_waiting_for_a_stopped_log_are_bounded_in_bytes(tmp_path: Path) -> None:
    """With the log process stopped (SIGSTOP), a publisher's pubs wait for it: the router
    holds at most ``max_inflight_bytes`` of their frames, fewer pubs than
    ``max_inflight_pubs``, and reads no more; after SIGCONT every pub is acknowledged in
    order and everything is stored once."""
    batches, per_batch = 300, 200  # 18 MB: more than the sockets' buffers hold
    frame_bytes = len(_pub(batches, (batches - 1) * per_batch + 1, per_batch))  # the largest
    limits = Limits(max_inflight_bytes=3 * frame_bytes, max_inflight_pubs=32)
    port = free_port()
    log = eventlog(port, tmp_path)
    try:
        async with (
            running_router(tmp_path, limits=limits, log_url=f"ws://127.0.0.1:{port}") as router,
            _slow_reader(router) as ws,
        ):
            (conn,) = [c for c in router.connections.values() if c.identity == "md"]
            await ws.send(_pub(1, 1, per_batch))  # the namespace is open before the stop
            acks = [json.loads(await ws.recv())]
            log.send_signal(signal.SIGSTOP)

            async def send_rest() -> None:
                for b in range(1, batches):
                    await ws.send(_pub(b + 1, b * per_batch + 1, per_batch))

            sender = asyncio.create_task(send_rest())
            await eventually(lambda: conn.inflight.pubs == 3)
            peak_pubs = peak_bytes = 0
            for _ in range(20):  # one second: the router takes nothing more
                peak_pubs = max(peak_pubs, conn.inflight.pubs)
                peak_bytes = max(peak_bytes, conn.inflight.bytes)
                await asyncio.sleep(0.05)
            assert peak_pubs == 3 < limits.max_inflight_pubs
            assert peak_bytes <= limits.max_inflight_bytes
            assert not sender.done()
            log.send_signal(signal.SIGCONT)
            while len(acks) < batches:
                acks.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            await asyncio.wait_for(sender, 30)
            assert [a["ref"] for a in acks] == list(range(1, batches + 1))
            gseqs = [r["gseq"] for a in acks for r in a["results"]]
            assert gseqs == list(range(1, batches * per_batch + 1))
            assert conn.inflight.pubs == conn.inflight.bytes == 0
    finally:
        log.send_signal(signal.SIGCONT)
        kill(log, signal.SIGTERM)
    stored = list(LogReader(tmp_path, "main").read([">"]))
    assert [r.source_seq for r in stored] == list(range(1, batches * per_batch + 1))


async def test_a_client_gone_with_frames_queued_leaves_the_others_served(tmp_path: Path) -> None:
    """A subscriber that stops reading and then vanishes: the router drops what it queued for
    it, and another subscriber still gets every event once."""
    limits = Limits(send_queue_frames=4)
    async with (
        running_router(tmp_path, limits=limits) as router,
        Client(router.url, "md") as pub,
        Client(router.url, "reader") as reader,
    ):
        sub = reader.subscribe(["md.>"], "now")
        await asyncio.wait_for(sub.caught_up.wait(), 10)
        async with ws_connect(router.url, max_queue=1, max_size=None) as ws:
            await ws.send(json.dumps({"op": "hello", "ref": 0, "identity": "stalled"}))
            await ws.recv()
            await ws.send(json.dumps({"op": "sub", "ref": "s", "patterns": ["md.>"]}))
            await ws.recv()
            for start in range(1, 20_001, 500):
                await pub.publish([trade("md", i) for i in range(start, start + 500)])
        got: list[int] = []
        async for batch in sub.batches():
            got += [r.gseq for r in batch]
            if len(got) >= 20_000:
                break
        assert got == list(range(1, 20_001))
        await eventually(lambda: len(router.connections) == 2)
        assert await pub.publish([trade("md", 20_001)])


async def test_compressed_connections_get_their_frames_through_the_extension(
    tmp_path: Path,
) -> None:
    """With compression on, a subscriber that negotiated permessage-deflate decodes every
    frame (the router builds them through websockets' protocol, not by header)."""
    async with (
        running_router(tmp_path, compression=True) as router,
        Client(router.url, "md") as pub,
        ws_connect(router.url, compression="deflate") as ws,
    ):
        assert ws.protocol.extensions  # negotiated
        await ws.send(json.dumps({"op": "hello", "ref": 0, "identity": "reader"}))
        assert json.loads(await ws.recv())["op"] == "welcome"
        await ws.send(json.dumps({"op": "sub", "ref": "s", "patterns": ["md.>"]}))
        assert [json.loads(await ws.recv())["op"] for _ in range(2)] == ["subscribed", "caught_up"]
        for start in range(1, 301, 100):
            await pub.publish([trade("md", i) for i in range(start, start + 100)])
        gseqs: list[int] = []
        while len(gseqs) < 300:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert frame["op"] == "events"
            gseqs += [e["gseq"] for e in frame["events"]]
        assert gseqs == list(range(1, 301))


@pytest.mark.parametrize("ephemeral", [False, True], ids=["logged", "ephemeral"])
async def test_a_publishing_subscriber_gets_a_batch_in_one_write(
    tmp_path: Path, ephemeral: bool
) -> None:
    """A connection that publishes what it subscribes to gets each batch's events and
    its puback in one socket write, logged or ephemeral (there were two: the fan-out
    flushed, then the puback was flushed on its own)."""
    async with running_router(tmp_path) as router, Client(router.url, "md") as client:
        sub = client.subscribe(["md.>"], "now", include_ephemeral=ephemeral)
        await sub.caught_up.wait()
        (conn,) = router.connections.values()
        writes: list[int] = []
        transport = conn.ws.transport
        original = transport.writelines

        def counting(parts: Any) -> None:
            writes.append(1)
            original(parts)

        transport.writelines = counting  # type: ignore[method-assign]
        for k in range(5):
            batch = [trade("md", i) for i in range(k * 10 + 1, k * 10 + 11)]
            await client.publish(batch, ephemeral=ephemeral)
        assert len(writes) == 5


async def test_a_publisher_held_back_by_its_socket_buffer_resumes_once_it_reads(
    tmp_path: Path,
) -> None:
    """With a send queue smaller than what the socket buffer can hold below its
    high-water mark, a publisher that reads nothing for a while, then everything,
    gets every puback: the router used to wait for room that only the socket buffer
    held, and nothing woke it once that drained (it stopped reading the connection)."""
    batches, per = 6_000, 20
    limits = Limits(send_queue_bytes=1024)
    async with running_router(tmp_path, limits=limits) as router, _slow_reader(router) as ws:
        sender = asyncio.create_task(_publish_all(ws, batches, per), name="sender")
        await asyncio.sleep(3.0)  # read nothing: the router's buffers fill
        acks = 0

        async def read_all() -> None:
            nonlocal acks
            while acks < batches:
                acks += json.loads(await ws.recv())["op"] == "puback"

        try:
            async with asyncio.timeout(30):
                await asyncio.gather(sender, read_all())
        except TimeoutError:
            sender.cancel()
            for conn in router.connections.values():  # it stopped reading us: end it
                conn.ws.transport.abort()
            ws.transport.abort()
        assert acks == batches
