"""Remote inspection through the router: what ``tape tail/stats/append --router`` call.

Each function opens its own :class:`~tickertape.client.Client`, so it survives router
restarts the same way (reconnect, resume by gseq, resend the outbox).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable
from typing import Any

import msgspec

from tickertape.client.connection import Client
from tickertape.router.protocol import AckItem, Start, StartAt
from tickertape.schemas.envelope import Envelope, Record

DEFAULT_BATCH = 1_000
"""Envelopes per ``pub`` frame sent by :func:`append_remote`."""


class AppendSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`append_remote` did.

    Attributes:
        sent: envelopes read and published.
        stored: newly stored by the log.
        duplicates: already stored (same source, source_seq): not stored again.
        first_gseq: the smallest gseq stored or found (0 when none).
        last_gseq: the largest (0 when none).
        batches: ``pub`` frames acknowledged.
    """

    sent: int
    stored: int
    duplicates: int
    first_gseq: int
    last_gseq: int
    batches: int


def _start(start: str | int | None) -> Start:
    if start is None or start == "now":
        return "now"
    if start == "beginning":
        return "beginning"
    if isinstance(start, int):
        return StartAt(gseq=max(1, start))
    raise ValueError(f"start must be 'now', 'beginning' or a gseq, not {start!r}")


async def tail_remote(
    url: str,
    patterns: Iterable[str],
    start: Start | str | int | None = "beginning",
    follow: bool = False,
    limit: int | None = None,
    identity: str = "tail",
    token: str | None = None,
    *,
    ns: str | None = None,
    **options: Any,
) -> AsyncIterator[Record]:
    """Yield stored events through the router, in gseq order, each once.

    Args:
        url: the router's URL.
        patterns: topic patterns (``[">"]`` for everything).
        start: ``"now"``, ``"beginning"``, a gseq (int, inclusive) or a :class:`StartAt`
            (``StartAt(time=ns)`` for a time).
        follow: keep yielding live events after the history (until cancelled);
            otherwise stop at the head as of the connection.
        limit: stop after this many events.
        identity: identity to connect as (needs subscribe rights on ``patterns``).
        token: its token.
        ns: namespace.
        **options: passed to :class:`Client` (``ssl_context``...).

    Raises:
        RouterError: the router refused the subscription (``FORBIDDEN``, ``BAD_PATTERN``).
        AuthError: the identity or token was refused.
    """
    begin = start if isinstance(start, StartAt) else _start(start)
    pats = list(patterns) or [">"]
    async with Client(url, identity, token, **options) as client:
        if follow:
            stream = client.subscribe(pats, begin, ns=ns)
        else:
            stream = client.fetch(pats, begin, ns=ns, limit=limit)
        try:
            count = itertools.count(1)
            async for item in stream:
                if isinstance(item, Record):
                    yield item
                    if limit is not None and next(count) >= limit:
                        return
        finally:
            await stream.close()


async def stats_remote(
    url: str, identity: str = "stats", token: str | None = None, **options: Any
) -> dict[str, Any]:
    """Return the router's health snapshot (``component``, ``head_gseq``,
    ``connections`` with per-subscription ``lag``, ``metrics``, ``namespaces``).

    Raises:
        AuthError: the identity or token was refused.
        TimeoutError: the router could not be reached in time.
    """
    async with Client(url, identity, token, **options) as client:
        return await client.stats()


async def append_remote(
    url: str,
    identity: str,
    token: str | None,
    envelopes: Iterable[Envelope],
    *,
    batch: int = DEFAULT_BATCH,
    ns: str | None = None,
    **options: Any,
) -> AppendSummary:
    """Publish envelopes durably through the router and wait for every acknowledgement.

    Batches are pipelined (up to the client's outbox) and resent across router
    restarts with the same (source, source_seq), so running it again on the same
    input stores nothing twice.

    Args:
        url: the router's URL.
        identity: the publishing identity (must equal every envelope's ``source``).
        token: its token.
        envelopes: the envelopes, in source_seq order per source.
        batch: envelopes per ``pub`` frame.
        ns: namespace.
        **options: passed to :class:`Client`.

    Returns:
        An :class:`AppendSummary`.

    Raises:
        PublishRefusedError: the router refused envelopes (nothing of that batch stored;
            earlier batches were).
    """
    import asyncio

    results: list[list[AckItem]] = []
    async with Client(url, identity, token, **options) as client:
        pending: list[asyncio.Task[list[AckItem]]] = []
        chunk: list[Envelope] = []
        window = max(1, client._outbox_cap // max(1, batch))

        async def flush_some(keep: int) -> None:
            while len(pending) > keep:
                results.append(await pending.pop(0))

        try:
            for env in envelopes:
                chunk.append(env)
                if len(chunk) >= batch:
                    pending.append(
                        asyncio.create_task(client.publish(chunk, ns=ns), name="append-remote")
                    )
                    chunk = []
                    await flush_some(window)
            if chunk:
                pending.append(
                    asyncio.create_task(client.publish(chunk, ns=ns), name="append-remote")
                )
            await flush_some(0)
        finally:
            for task in pending:
                task.cancel()
    items = [item for r in results for item in r]
    gseqs = [i.gseq for i in items if i.gseq is not None]
    return AppendSummary(
        sent=len(items),
        stored=sum(1 for i in items if not i.duplicate and i.gseq is not None),
        duplicates=sum(1 for i in items if i.duplicate),
        first_gseq=min(gseqs, default=0),
        last_gseq=max(gseqs, default=0),
        batches=len(results),
    )
