"""Remote inspection through the router: what ``tape tail/stats/append --router`` call.

Each function opens its own :class:`~tickertape.client.Client`, so it survives router
restarts the same way (reconnect, resume by gseq, resend the outbox).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable
from pathlib import Path
from typing import Any

import msgspec

from tickertape.client.connection import Client, PublishRefusedError, RemoteSubscription
from tickertape.errors import ConfigError
from tickertape.iterutils import batched
from tickertape.router.protocol import Code, Start, StartAt
from tickertape.schemas.envelope import Envelope, Record

DEFAULT_BATCH = 1_000
"""Envelopes per ``pub`` frame sent by :func:`append_remote`."""

HEAD_POLL_S = 0.5
"""``tail_remote(follow=True, end=<gseq>)`` asks the router for the namespace's head
after this many seconds without an event (the followed topics may have none past the
bound)."""


class AppendSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`append_remote` did.

    Also readable as a mapping (``summary["appended"]``) for callers that treat it
    as a dict.

    Attributes:
        sent: envelopes read and published.
        appended: newly stored by the log.
        duplicates: already stored (same source, source_seq): not stored again.
        refused: one line per refused envelope: ``"<id>: <CODE>: <message>"``.
        first_gseq: the smallest gseq stored or found (0 when none).
        last_gseq: the largest (0 when none).
        batches: ``pub`` frames acknowledged.
    """

    sent: int
    appended: int
    duplicates: int
    refused: list[str]
    first_gseq: int
    last_gseq: int
    batches: int

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style access to a field."""
        return getattr(self, key, default)


def read_token(token: str | None, token_file: str | Path | None) -> str | None:
    """The token given, or the one held by ``token_file``; None when neither is given.

    A token file holds one token (what ``tape token create`` prints), surrounding
    whitespace and a final newline ignored. ``token`` wins when both are given.

    Raises:
        ConfigError: the token file is missing, unreadable, not UTF-8, empty, or holds
            more than one line (for instance the router's ``tokens.toml``, which keeps
            only hashes).
    """
    if token is not None or token_file is None:
        return token
    path = Path(token_file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("token file not found", path) from None
    except IsADirectoryError:
        raise ConfigError("token file is a directory, not a file", path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read token file: {exc.strerror or exc}", path) from None
    except UnicodeDecodeError:
        raise ConfigError("token file is not UTF-8 text", path) from None
    secret = text.strip()
    if not secret:
        raise ConfigError(
            "token file is empty: it should hold the token `tape token create` printed", path
        )
    if len(secret.split()) > 1:
        raise ConfigError(
            "token file holds more than one word: it should hold only the token "
            "`tape token create` printed (not the router's tokens.toml)",
            path,
        )
    return secret


def _start(start: Any, follow: bool) -> Start:
    if isinstance(start, StartAt) or start in ("now", "beginning"):
        return start  # type: ignore[no-any-return]
    if start is None:
        return "now" if follow else "beginning"
    if isinstance(start, int):
        return StartAt(gseq=max(1, start))
    gseq = getattr(start, "gseq", None)
    ts_ns = getattr(start, "ts_ns", None)
    if gseq is not None or ts_ns is not None:
        return StartAt(gseq=None if gseq is None else max(1, gseq), time=ts_ns)
    raise ValueError(f"start must be 'now', 'beginning', a gseq or a position, not {start!r}")


async def tail_remote(
    url: str,
    patterns: Iterable[str],
    start: Any = None,
    follow: bool = False,
    limit: int | None = None,
    identity: str = "inspector",
    token: str | None = None,
    *,
    end: Any = None,
    token_file: str | Path | None = None,
    namespace: str | None = None,
    **options: Any,
) -> AsyncGenerator[Record, None]:
    """Yield stored events through the router, in gseq order, each once.

    Args:
        url: the router's URL.
        patterns: topic patterns (everything when empty).
        start: ``"now"``, ``"beginning"``, a gseq (int, inclusive), a :class:`StartAt`,
            or any object with ``gseq`` / ``ts_ns`` attributes (the CLI's position).
            None means the beginning, or now with ``follow``.
        follow: keep yielding live events after the history (until cancelled or
            ``end``: see :func:`_follow_ended`); otherwise stop at the head as of the
            request.
        limit: stop after this many events.
        identity: identity to connect as (needs subscribe rights on ``patterns``).
        token: its token (or ``token_file``: a file holding it).
        end: an object with ``gseq`` (inclusive) or ``ts_ns`` (exclusive) bounding
            the events, or None.
        token_file: file holding the token.
        namespace: namespace (the router's default when None).
        **options: passed to :class:`Client` (``ssl_context``...).

    Raises:
        RouterError: the router refused the subscription (``FORBIDDEN``, ``BAD_PATTERN``).
        AuthError: the identity or token was refused.
    """
    begin = _start(start, follow)
    pats = list(patterns) or [">"]
    end_gseq = getattr(end, "gseq", None)
    end_ts = getattr(end, "ts_ns", None)
    secret = read_token(token, token_file)
    async with Client(url, identity, secret, **options) as client:
        if not follow:
            stream: RemoteSubscription | AsyncGenerator[Record, None] = client.fetch(
                pats, begin, ns=namespace, to_gseq=end_gseq
            )
        elif end_gseq is None:
            stream = client.subscribe(pats, begin, ns=namespace)
        else:
            stream = _follow_to_gseq(client, pats, begin, namespace, end_gseq)
        try:
            count = 0
            async for item in stream:
                if not isinstance(item, Record):
                    continue
                if follow and end is not None and _follow_ended(item, end_gseq, end_ts):
                    return
                if end_ts is not None and item.ts_event >= end_ts:
                    continue
                yield item
                count += 1
                if limit is not None and count >= limit:
                    return
        finally:
            if isinstance(stream, RemoteSubscription):
                await stream.close()
            else:
                await stream.aclose()


async def _follow_to_gseq(
    client: Client, patterns: list[str], begin: Start, namespace: str | None, end_gseq: int
) -> AsyncGenerator[Record, None]:
    """Follow ``patterns`` up to gseq ``end_gseq`` (inclusive), then end.

    Live events end the following once one is past the bound. When none comes for
    :data:`HEAD_POLL_S`, the router is asked for the namespace's head: once it has
    reached the bound, every event up to it is in the log, and the rest are read by a
    bounded fetch from the last one yielded (the followed topics may have no event past
    the bound, which would keep a live subscription waiting for ever).
    """
    sub = client.subscribe(patterns, begin, ns=namespace)
    last = 0
    try:
        while True:
            try:
                item = await asyncio.wait_for(anext(sub), HEAD_POLL_S)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if sub.from_gseq is not None and await _head(client, namespace) >= end_gseq:
                    break
                continue
            if isinstance(item, Record):
                if item.gseq > end_gseq:
                    return
                last = item.gseq
                yield item
                if last == end_gseq:
                    return
        first = last + 1 if last else (sub.from_gseq or 1)
        rest = _fetch_from(client, patterns, begin, namespace, first, end_gseq)
    finally:
        await sub.close()
    try:
        async for item in rest:
            if isinstance(item, Record):
                yield item
    finally:
        await rest.close()


def _fetch_from(
    client: Client,
    patterns: list[str],
    begin: Start,
    namespace: str | None,
    first: int,
    end_gseq: int,
) -> RemoteSubscription:
    """A fetch of gseqs ``first..end_gseq`` under ``begin``'s time and offset conditions."""
    if isinstance(begin, StartAt):
        start = msgspec.structs.replace(begin, gseq=max(first, begin.gseq or 1))
    else:
        start = StartAt(gseq=first)
    return client.fetch(patterns, start, ns=namespace, to_gseq=end_gseq)


async def _head(client: Client, namespace: str | None) -> int:
    """The router's head gseq of ``namespace`` (its default namespace when None)."""
    stats = await client.stats()
    name = namespace
    if name is None:
        assert client.welcome is not None
        name = client.welcome.namespace
    head: int = stats.get("namespaces", {}).get(name, 0)
    return head


async def stats_remote(
    url: str,
    identity: str = "inspector",
    token: str | None = None,
    *,
    token_file: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Return the router's health snapshot.

    Returns:
        ``component``, ``head_gseq``, ``connections`` (per connection: identity, queue
        depth, counters, and per subscription its state, cursor and ``lag`` in gseqs),
        ``metrics`` (totals, append latency p50/p99 in ms...) and ``namespaces``
        (name → head gseq).

    Raises:
        AuthError: the identity or token was refused.
        TimeoutError: the router could not be reached in time.
    """
    options.setdefault("connect_timeout_s", 10.0)
    async with Client(url, identity, read_token(token, token_file), **options) as client:
        return await client.stats()


def print_stats(stats: dict[str, Any], console: Any = None) -> None:
    """Print a health snapshot from :func:`stats_remote` as rich tables."""
    from rich.console import Console
    from rich.table import Table

    out = console or Console()
    metrics = stats.get("metrics", {})
    head = Table(title=f"router: head gseq {stats.get('head_gseq', 0)}", show_header=True)
    head.add_column("metric")
    head.add_column("value", justify="right")
    for key in sorted(metrics):
        value = metrics[key]
        head.add_row(
            key,
            f"{value:,.3f}"
            if isinstance(value, float) and not value.is_integer()
            else f"{int(value):,}",
        )
    per_namespace = stats.get("namespace_metrics")
    if per_namespace is None:  # a router before per-namespace health
        for name, gseq in sorted(stats.get("namespaces", {}).items()):
            head.add_row(f"namespace {name}", f"{gseq:,}")
    out.print(head)
    if per_namespace:
        spaces = Table(title="namespaces", show_header=True)
        columns = ("namespace", "head gseq", "appended", "append p50 ms", "append p99 ms",
                   "subscriptions", "live", "reading the log", "max lag")  # fmt: skip
        for col in columns:
            spaces.add_column(col, justify="left" if col == "namespace" else "right")
        for name, m in sorted(per_namespace.items()):
            spaces.add_row(
                name,
                f"{m.get('head_gseq', 0):,}",
                f"{m.get('appended', 0):,}",
                f"{m.get('append_p50_ms', 0.0):.3f}",
                f"{m.get('append_p99_ms', 0.0):.3f}",
                str(m.get("subscriptions", 0)),
                str(m.get("live", 0)),
                str(m.get("history", 0)),
                f"{m.get('max_lag', 0):,}",
            )
        out.print(spaces)
    conns = Table(title="connections", show_header=True)
    headers = ("session", "identity", "queue", "events in", "events out", "in/s", "out/s",
               "deliver p50/p99 ms", "errors", "namespace", "subscription", "state", "lag")  # fmt: skip
    text = ("session", "identity", "namespace", "subscription", "state")
    for col in headers:
        conns.add_column(col, justify="left" if col in text else "right")
    for c in stats.get("connections", []):
        subs = c.get("subscriptions") or [{}]
        for i, sub in enumerate(subs):
            first = i == 0
            conns.add_row(
                c.get("session", "") if first else "",
                c.get("identity") or "" if first else "",
                f"{c.get('queue_depth', 0)}/{c.get('queue_capacity', 0)}" if first else "",
                f"{c.get('events_in', 0):,}" if first else "",
                f"{c.get('events_out', 0):,}" if first else "",
                f"{c.get('events_in_per_s', 0):,.0f}" if first else "",
                f"{c.get('events_out_per_s', 0):,.0f}" if first else "",
                _deliver(c) if first else "",
                str(c.get("errors", 0)) if first else "",
                sub.get("ns", ""),
                ",".join(sub.get("patterns", [])),
                sub.get("state", ""),
                f"{sub['lag']:,}" if "lag" in sub else "",
            )
    out.print(conns)


def _deliver(connection: dict[str, Any]) -> str:
    """A connection's publish-to-deliver p50/p99 in ms, or "-" with no live delivery."""
    p50, p99 = connection.get("deliver_p50_ms"), connection.get("deliver_p99_ms")
    return "-" if p50 is None or p99 is None else f"{p50:.2f}/{p99:.2f}"


async def append_remote(
    url: str,
    identity: str,
    token: str | None = None,
    envelopes: Iterable[Envelope] = (),
    *,
    token_file: str | Path | None = None,
    namespace: str | None = None,
    batch: int = DEFAULT_BATCH,
    **options: Any,
) -> AppendSummary:
    """Publish envelopes durably through the router and wait for every acknowledgement.

    Batches are sent one at a time (a refused envelope is reported and its batch
    resent without it, which needs the batches after it not yet stored) and resent
    across router restarts with the same (source, source_seq), so running it again on
    the same input stores nothing twice.

    Args:
        url: the router's URL.
        identity: the publishing identity (must equal every envelope's ``source``).
        token: its token (or ``token_file``).
        envelopes: the envelopes, in source_seq order per source.
        token_file: file holding the token.
        namespace: namespace (the router's default when None).
        batch: envelopes per ``pub`` frame.
        **options: passed to :class:`Client`.

    Returns:
        An :class:`AppendSummary`.

    Raises:
        AuthError: the identity or token was refused.
        RouterError: a non-retryable error for a whole batch.
    """
    sent = appended = duplicates = batches = 0
    refused: list[str] = []
    first = last = 0
    secret = read_token(token, token_file)
    async with Client(url, identity, secret, **options) as client:
        for chunk in batched(envelopes, batch):
            sent += len(chunk)
            todo = chunk
            while todo:
                try:
                    items = await client.publish(todo, ns=namespace)
                    todo = []
                except PublishRefusedError as exc:
                    # The router refused the batch (the valid ones are BATCH_REJECTED:
                    # sent again without the refused), or the log refused events one by
                    # one and stored the others (counted below, not sent again).
                    again = {r.id for r in exc.results if r.error == Code.BATCH_REJECTED}
                    items = [r for r in exc.results if r.error != Code.BATCH_REJECTED]
                    todo = [e for e in todo if e.id in again]
                if not todo:
                    batches += 1
                for item in items:
                    if item.error is not None:
                        refused.append(f"{item.id}: {item.error}: {item.message}")
                    elif item.duplicate:
                        duplicates += 1
                    else:
                        appended += 1
                    if item.gseq is not None:
                        first = item.gseq if first == 0 else min(first, item.gseq)
                        last = max(last, item.gseq)
    return AppendSummary(
        sent=sent,
        appended=appended,
        duplicates=duplicates,
        refused=refused,
        first_gseq=first,
        last_gseq=last,
        batches=batches,
    )


def _follow_ended(record: Record, to_gseq: int | None, to_ns: int | None) -> bool:
    """Whether following ends before ``record``: its gseq is past ``to_gseq``
    (inclusive bound), or it is stamped at or after ``to_ns`` (exclusive bound, ns).

    Live events arrive in gseq order, not in time order across topics: a time bound
    ends the following at the first record at or after it, without waiting for
    topics still behind it.
    """
    if to_gseq is not None and record.gseq > to_gseq:
        return True
    return to_ns is not None and record.ts_event >= to_ns
