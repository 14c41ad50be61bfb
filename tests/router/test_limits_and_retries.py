"""Rate limits delay a connection, never drop or reorder its pubs; a pub that fails with
a retryable error closes the connection, so the outbox is resent in order; the hello
deadline holds until a hello is accepted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import connect as ws_connect

from tickertape.client import Client
from tickertape.eventlog import LogReader
from tickertape.router.protocol import Limits

from .support import eventlog, eventually, free_port, kill, running_router, trade


def _stored(data: Path) -> list[int]:
    return [r.source_seq for r in LogReader(data, "main").read([">"])]


async def test_pubs_above_the_event_rate_wait_and_are_stored_in_order(tmp_path: Path) -> None:
    """Three pubs sent together, the second over the events/s budget: it waits for its
    budget instead of being refused, so the third is not stored ahead of it (the log
    would then have taken the second's resend for duplicates: 1,000 events lost)."""
    limits = Limits(max_events_per_s=1000, max_batch_events=2000)  # burst 2,000
    async with running_router(tmp_path, limits=limits) as router, Client(router.url, "md") as c:
        batches = [(1, 1500), (1501, 2500), (2501, 2600)]
        acks = await asyncio.wait_for(
            asyncio.gather(
                *(c.publish([trade("md", i) for i in range(a, b + 1)]) for a, b in batches)
            ),
            20,
        )
        assert not any(item.duplicate or item.error for ack in acks for item in ack)
    assert _stored(tmp_path) == list(range(1, 2601))


async def test_a_batch_larger_than_twice_the_event_rate_gets_through(tmp_path: Path) -> None:
    """The burst holds at least one whole batch of max_batch_events: a 3,000-event pub
    at 500 events/s is let through (it was refused as rate-limited for ever)."""
    limits = Limits(max_events_per_s=500, max_batch_events=3000)
    async with running_router(tmp_path, limits=limits) as router, Client(router.url, "md") as c:
        await asyncio.wait_for(c.publish([trade("md", 1)]), 10)
        await asyncio.wait_for(c.publish([trade("md", i) for i in range(2, 3002)]), 10)
    assert _stored(tmp_path) == list(range(1, 3002))


async def test_frames_above_the_frame_rate_are_delayed_not_dropped(tmp_path: Path) -> None:
    """64 frames at 20 frames/s (burst 40): every request is answered, in order, after
    a notice with a null ref (a dropped frame could not be told to the client: its
    publish waited for ever, and a later resend was lost as a duplicate)."""
    limits = Limits(max_frames_per_s=20)
    async with running_router(tmp_path, limits=limits) as router, ws_connect(router.url) as ws:
        await ws.send(json.dumps({"op": "hello", "ref": 0, "identity": "x"}))
        for i in range(1, 64):
            await ws.send(json.dumps({"op": "stats", "ref": i}))
        replies: list[dict[str, Any]] = []
        while len([r for r in replies if r["op"] != "error"]) < 64:
            replies.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    answers = [r["ref"] for r in replies if r["op"] != "error"]
    assert answers == list(range(64))
    notices = [r for r in replies if r["op"] == "error"]
    assert notices
    assert all(r["code"] == "RATE_LIMITED" and r["ref"] is None for r in notices)


async def test_a_pub_failing_while_the_log_restarts_closes_the_connection(
    tmp_path: Path,
) -> None:
    """With the log as its own process, killed: a pub on a new topic fails looking up
    the topic's owner (LOG_UNAVAILABLE). The router closes the connection, so the
    client resends that pub before the next one once the log is back: both stored, in
    order (the connection stayed open: the publish waited for ever, the next pub was
    stored, and the resend later was taken for a duplicate)."""
    port = free_port()
    log = eventlog(port, tmp_path, tmp_path / "eventlog.log")
    try:
        url = f"ws://127.0.0.1:{port}"
        async with running_router(tmp_path, log_url=url) as router, Client(router.url, "md") as c:
            await c.publish([trade("md", 1, topic="md.trade.crypto.A")])
            kill(log)
            second = asyncio.create_task(c.publish([trade("md", 2, topic="md.trade.crypto.B")]))
            await asyncio.sleep(1.0)
            log = eventlog(port, tmp_path, tmp_path / "eventlog.log")
            third = await asyncio.wait_for(
                c.publish([trade("md", 3, topic="md.trade.crypto.A")]), 30
            )
            assert (await asyncio.wait_for(second, 10))[0].gseq == 2
            assert third[0].gseq == 3
    finally:
        kill(log)
    assert _stored(tmp_path) == [1, 2, 3]


async def test_a_staged_pub_failing_while_the_log_restarts_is_resent_in_place(
    tmp_path: Path,
) -> None:
    """A staged pub refused LOG_UNAVAILABLE (the log restarting) keeps its connection
    open (its commit checks the counts): the client resends it in place and it is
    staged once the log is back (it waited for a reconnect that never came)."""
    port = free_port()
    log = eventlog(port, tmp_path, tmp_path / "eventlog.log")
    try:
        url = f"ws://127.0.0.1:{port}"
        async with running_router(tmp_path, log_url=url) as router, Client(router.url, "md") as c:
            await c.publish([trade("md", 1, topic="md.trade.crypto.A")])
            kill(log)
            staged = asyncio.create_task(
                c.publish([trade("md", 2, topic="md.trade.crypto.B")], stage="s1")
            )
            await asyncio.sleep(1.0)
            assert not staged.done()
            log = eventlog(port, tmp_path, tmp_path / "eventlog.log")
            [ack] = await asyncio.wait_for(staged, 10)
            assert ack.error is None
            assert c.reconnects == 0
    finally:
        kill(log)


async def test_the_hello_deadline_holds_until_a_hello_is_accepted(tmp_path: Path) -> None:
    """A connection whose first frame is not a hello is answered NOT_AUTHENTICATED and
    closed at the hello deadline (it stayed open, unauthenticated, for ever)."""
    async with running_router(tmp_path, limits=Limits(hello_timeout_s=0.5)) as router:
        async with ws_connect(router.url) as ws:
            await ws.send(json.dumps({"op": "stats", "ref": 1}))
            assert json.loads(await ws.recv())["code"] == "NOT_AUTHENTICATED"
            closed = None
            try:
                while True:
                    json.loads(await asyncio.wait_for(ws.recv(), 5))
            except websockets.ConnectionClosed as exc:
                closed = exc.rcvd.code if exc.rcvd else None
            assert closed == 1008
        await eventually(lambda: not router.connections)


async def test_two_identities_racing_for_new_topics_never_both_write_one(tmp_path: Path) -> None:
    """Batches of new topics from two identities, sent together, sharing one topic: the
    owner lookups await the log, and both batches passed the check before either claimed
    the topic (7 of 30 topics ended with two writers)."""
    async with (
        running_router(tmp_path) as router,
        Client(router.url, "alice") as alice,
        Client(router.url, "bob") as bob,
    ):
        for k in range(30):
            batch = [
                trade("alice", 4 * k + j + 1, topic=f"md.trade.crypto.K{k}x{j}") for j in range(4)
            ]
            shared = [trade("bob", k + 1, topic=f"md.trade.crypto.K{k}x3")]
            await asyncio.gather(alice.publish(batch), bob.publish(shared), return_exceptions=True)
    writers: dict[str, set[str]] = {}
    for record in LogReader(tmp_path, "main").read([">"]):
        writers.setdefault(record.topic, set()).add(record.source)
    assert all(len(sources) == 1 for sources in writers.values())
    assert {f"md.trade.crypto.K{k}x3" for k in range(30)} <= set(writers)  # one of them won
