"""Asking the live time authority for its time over the router.

A process publishes a :class:`~tickertape.schemas.system.ClockQuery` on
``system.clock.query.<identity>`` (ephemeral); ``tape clock --mode live`` answers with a
:class:`~tickertape.schemas.system.ClockReply` on ``system.clock.reply.<identity>``.
The offset is estimated as in Cristian's algorithm (F. Cristian, "Probabilistic clock
synchronization", Distributed Computing 3, 1989): the authority's time is taken to be
``authority_ns`` at the midpoint of the round trip, so

    offset = authority_ns + rtt / 2 − t_received,     error ≤ rtt / 2.

Several queries are made and the one with the smallest round trip is kept (its error
bound is the tightest).
"""

from __future__ import annotations

import asyncio
import secrets
import time

import msgspec

from tickertape.client import Client, RemoteSubscription
from tickertape.errors import TickertapeError
from tickertape.schemas.envelope import Envelope
from tickertape.schemas.registry import decode_payload, make_envelope
from tickertape.schemas.system import ClockQuery, ClockReply

QUERY_PREFIX = "system.clock.query."
REPLY_PREFIX = "system.clock.reply."


class TimeQueryError(TickertapeError):
    """No time authority answered in time."""


class TimeSample(msgspec.Struct, frozen=True, kw_only=True):
    """One answered query.

    Attributes:
        authority_ns: the authority's clock when it answered, ns since the epoch.
        rtt_ns: the round trip seen by the asker, ns.
        offset_ns: authority time minus the asker's clock, ns (positive: the asker is
            behind); its error is at most ``rtt_ns / 2``.
    """

    authority_ns: int
    rtt_ns: int
    offset_ns: int


async def query_time(
    client: Client,
    *,
    namespace: str = "main",
    samples: int = 5,
    timeout_s: float = 2.0,
) -> TimeSample:
    """Ask the live time authority for its time; return the sample with the smallest rtt.

    Args:
        client: a started client; its identity names the query topics.
        namespace: the namespace the authority serves.
        samples: queries sent one after another (≥ 1).
        timeout_s: how long to wait for each answer.

    Raises:
        TimeQueryError: no answer to any query within ``timeout_s``.
    """
    identity = client.identity
    replies = client.subscribe(
        [REPLY_PREFIX + identity], "now", ns=namespace, include_ephemeral=True, queue_frames=64
    )
    best: TimeSample | None = None
    try:
        await replies.caught_up.wait()
        for n in range(max(1, samples)):
            query_id = secrets.token_hex(8)
            sent = time.time_ns()
            query = make_envelope(
                ClockQuery(query_id=query_id, sent_ns=sent),
                topic=QUERY_PREFIX + identity,
                source=identity,
                source_seq=sent + n,
                ts_event=sent,
            )
            await client.publish([query], ns=namespace, ephemeral=True)
            try:
                reply = await asyncio.wait_for(_reply_to(replies, query_id), timeout_s)
            except TimeoutError:
                continue
            received = time.time_ns()
            rtt = received - sent
            sample = TimeSample(
                authority_ns=reply.authority_ns,
                rtt_ns=rtt,
                offset_ns=reply.authority_ns + rtt // 2 - received,
            )
            if best is None or sample.rtt_ns < best.rtt_ns:
                best = sample
    finally:
        await replies.close()
    if best is None:
        raise TimeQueryError(
            f"no time authority answered on {namespace!r} within {timeout_s:g} s "
            "(is `tape clock --mode live` running?)"
        )
    return best


async def _reply_to(replies: RemoteSubscription, query_id: str) -> ClockReply:
    async for item in replies:
        if isinstance(item, Envelope):
            reply = decode_payload(item.type, item.v, item.payload)
            if isinstance(reply, ClockReply) and reply.query_id == query_id:
                return reply
    raise TimeQueryError("the reply subscription ended")


__all__ = ["QUERY_PREFIX", "REPLY_PREFIX", "TimeQueryError", "TimeSample", "query_time"]
