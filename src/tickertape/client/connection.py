"""A router client that survives router restarts (docs/protocol.md).

:class:`Client` keeps one WebSocket to the router and re-establishes it with
exponential backoff whenever it drops. Across a reconnect:

- every unacknowledged ``pub`` (the *outbox*) is sent again, in its original order,
  with the same envelopes, so the same (``source``, ``source_seq``): the log stores
  each event once. The outbox is bounded in events; :meth:`Client.publish` waits for
  room (backpressure) and never drops.
- every subscription is re-opened from just after the last gseq it received, with its
  original time and offset conditions, and events at or below that gseq are dropped
  if the router sends them again: each event is yielded once, in gseq order.

Ordering rule behind the resend: the log treats a (source, source_seq) at or below
the last stored one as a duplicate, so batches must reach it in order. The client
therefore writes pubs under one lock, and resends the whole outbox before any new
pub after a reconnect; the router, for its part, drops a publisher's connection when
one of its appends fails, so no later batch of it is stored ahead of the failed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import ssl
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import structlog
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from tickertape import __version__
from tickertape.errors import AuthError, RouterError
from tickertape.router.protocol import (
    FATAL,
    RECORD_DECODER,
    RECORDS_FRAME_DECODER,
    RETRYABLE,
    SERVER_FRAME_DECODER,
    AckItem,
    CaughtUp,
    ClientFrame,
    Code,
    Commit,
    Committed,
    Error,
    EventsFrame,
    Fetch,
    FetchEnd,
    Hello,
    Lagging,
    Pub,
    PubAck,
    Ref,
    Start,
    StartAt,
    Stats,
    StatsReply,
    Sub,
    Subscribed,
    Unsub,
    Unsubscribed,
    Welcome,
    encode_frame,
)
from tickertape.schemas.envelope import Envelope, Record

log = structlog.get_logger("tickertape.client")

_ENVELOPE_DECODER = msgspec.json.Decoder(Envelope)
_EVENTS_PREFIX = b'{"op":"events"'
_NOT_RETRIED = frozenset({Code.STAGE_INCOMPLETE, Code.STAGE_UNKNOWN})
"""Retryable codes left to the caller: only publishing more makes them succeed."""

DEFAULT_OUTBOX_EVENTS = 100_000
"""Unacknowledged events a client keeps before :meth:`Client.publish` waits."""

RETRY_FIRST_S = 0.1
"""A ``sub`` or ``fetch`` refused with a retryable code is asked again after
RETRY_FIRST_S, doubling up to the client's ``max_backoff_s`` (the reconnect backoff's
ceiling) while refusals go on; reset by ``subscribed``. A project choice: soon enough
for a log process's restart (about a second), no busier than reconnects."""


class PublishRefusedError(RouterError):
    """Envelopes of a batch were refused.

    Refused by the router (schema, ACL, source...): nothing of the batch was stored,
    and its valid envelopes carry ``BATCH_REJECTED``. Refused by the log, one by one
    (``TS_REGRESSION``, ``DAY_SEALED``, ``TOPIC_DAMAGED``, ``INVALID_ENVELOPE``): the
    batch's other envelopes *were* stored, and their results carry ``offset`` and
    ``gseq`` (or ``duplicate``).

    Attributes:
        results: one :class:`AckItem` per envelope, in order; refused ones carry
            ``error``.
    """

    def __init__(self, ref: Ref, results: list[AckItem]) -> None:
        self.results = results
        bad = [r for r in results if r.error is not None and r.error != Code.BATCH_REJECTED]
        first = bad[0] if bad else next(r for r in results if r.error is not None)
        code = first.error or Code.INTERNAL
        super().__init__(
            code,
            f"{len(bad) or 1} envelope(s) refused; first {first.id}: {first.message}",
            str(ref),
        )


class _PendingPub:
    __slots__ = ("epoch", "frame", "future", "n")

    def __init__(self, frame: Pub, future: asyncio.Future[list[AckItem]]) -> None:
        self.frame = frame
        self.future = future
        self.n = len(frame.events)
        self.epoch = -1


class RemoteSubscription:
    """An async iterator over the events of one subscription (or fetch).

    Yields :class:`Record` in gseq order, each once; with ``include_ephemeral`` it
    also yields ephemeral :class:`Envelope` values as they arrive. Created by
    :meth:`Client.subscribe` or :meth:`Client.fetch`; ends (``StopAsyncIteration``)
    after a fetch's end or :meth:`close`; raises :class:`RouterError` when the router
    refuses the subscription. :meth:`batches` yields the same events a frame at a
    time (cheaper per event).

    Each subscription buffers at most ``queue_frames`` frames. When its consumer falls
    that far behind, the subscription *overflows*: it stops taking frames (the
    connection's reader never waits for it, so the other subscriptions of the client
    keep flowing), unsubscribes, and once the consumer has drained half of its buffer
    it subscribes again from just after the last event it buffered, with its original
    time and offset conditions. The router serves the gap from the log, so nothing is
    lost or repeated. Ephemeral envelopes arriving while the buffer is full are
    dropped (they are best effort; counted in ``dropped_ephemeral``).

    Attributes:
        ref: the subscription's current ref on the wire (a new one after an overflow).
        caught_up: set once the subscription has delivered all history and is live.
        caught_up_gseq: the gseq of the last event received before the first
            ``caught_up`` (or the start position's, without history): the events up to
            it are the history the router had when the subscription started, those
            after it came live (None before the first ``caught_up``).
        last_gseq: the gseq of the last event received (the resume position).
        lagging_count: times the router switched it to reading the log.
        overflows: times its own buffer filled and it resubscribed.
        dropped_ephemeral: ephemeral envelopes dropped because the buffer was full.
        retry_delay: seconds before asking again after the next retryable refusal
            (:data:`RETRY_FIRST_S`, doubling up to the client's ``max_backoff_s``).
    """

    def __init__(
        self,
        client: Client,
        ref: int,
        frame: Sub | Fetch,
        *,
        include_ephemeral: bool,
        queue_frames: int,
    ) -> None:
        self._client = client
        self.ref: Ref = ref
        self._frame = frame
        self._capacity = max(1, queue_frames)
        self._frames: deque[list[Record] | list[Envelope]] = deque()
        self._end: BaseException | None = None
        self._ending = False
        self._ready = asyncio.Event()
        self._finished = asyncio.Event()
        self._buffer: list[Record] | list[Envelope] = []
        self._pos = 0
        self._include_ephemeral = include_ephemeral
        self._ended = False
        self._overflowed = False
        self._received = 0
        self.caught_up = asyncio.Event()
        self.caught_up_gseq: int | None = None
        self.from_gseq: int | None = None
        self.last_gseq = 0
        self.lagging_count = 0
        self.overflows = 0
        self.dropped_ephemeral = 0
        self.fetch_end: FetchEnd | None = None
        self.is_fetch = isinstance(frame, Fetch)
        self.sent_epoch = -1
        self.retry_delay = RETRY_FIRST_S
        start = frame.start
        if isinstance(start, StartAt):
            self._time, self._offsets = start.time, start.offsets
            self.last_gseq = (start.gseq or 1) - 1
        else:
            self._time, self._offsets = None, None

    def _resume_frame(self) -> ClientFrame:
        frame = self._frame
        if self.last_gseq > 0:
            start: Start = StartAt(gseq=self.last_gseq + 1, time=self._time, offsets=self._offsets)
        elif self.from_gseq is not None:
            start = StartAt(gseq=self.from_gseq, time=self._time, offsets=self._offsets)
        else:
            start = frame.start
        if isinstance(frame, Fetch) and frame.limit is not None:
            limit = max(0, frame.limit - self._received)
            return msgspec.structs.replace(frame, ref=self.ref, start=start, limit=limit)
        return msgspec.structs.replace(frame, ref=self.ref, start=start)

    def _on_records(self, records: list[Record]) -> None:
        """Buffer a frame of records (never waits: overflows instead)."""
        if self._overflowed or not records:
            return
        last = self.last_gseq
        if records[0].gseq <= last:
            records = [r for r in records if r.gseq > last]
            if not records:
                return
        if len(self._frames) >= self._capacity:
            self._overflow()
            return
        self.last_gseq = records[-1].gseq
        self._received += len(records)
        self._frames.append(records)
        self._ready.set()

    def _on_ephemeral(self, envelopes: list[Envelope]) -> None:
        if not self._include_ephemeral or not envelopes:
            return
        if len(self._frames) >= self._capacity:
            self.dropped_ephemeral += len(envelopes)
            return
        self._frames.append(envelopes)
        self._ready.set()

    def _overflow(self) -> None:
        self._overflowed = True
        self.overflows += 1
        log.info(
            "subscription buffer full; resubscribing once drained",
            sub=self.ref,
            gseq=self.last_gseq,
        )
        self._client._forget(self)

    def _maybe_resubscribe(self) -> None:
        if self._overflowed and not self._ending and len(self._frames) <= self._capacity // 2:
            self._overflowed = False
            self._client._resubscribe(self)

    def _finish(self, error: BaseException | None = None) -> None:
        if self._ending:
            return
        self._ending = True
        self._end = error
        self._ready.set()
        self._finished.set()

    async def _next_frame(self) -> list[Record] | list[Envelope] | None:
        """The next buffered frame; None at the end. Raises the subscription's error."""
        while not self._frames:
            if self._ending:
                self._ended = True
                if self._end is not None:
                    raise self._end
                return None
            self._ready.clear()
            await self._ready.wait()
        frame = self._frames.popleft()
        self._maybe_resubscribe()
        return frame

    async def established(self) -> bool:
        """Wait until the subscription is caught up (True) or ended (False: the router
        refused it, for instance a pattern outside the identity's ACL; iterating raises
        that error)."""
        if self.caught_up.is_set():
            return True
        caught_up = asyncio.ensure_future(self.caught_up.wait())
        finished = asyncio.ensure_future(self._finished.wait())
        try:
            await asyncio.wait({caught_up, finished}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            caught_up.cancel()
            finished.cancel()
        return self.caught_up.is_set()

    def __aiter__(self) -> AsyncIterator[Record | Envelope]:
        return self

    async def __anext__(self) -> Record | Envelope:
        buffer = self._buffer
        pos = self._pos
        if pos < len(buffer):
            self._pos = pos + 1
            return buffer[pos]
        while True:
            if self._ended:
                raise StopAsyncIteration
            frame = await self._next_frame()
            if frame is None:
                raise StopAsyncIteration
            if frame:
                self._buffer, self._pos = frame, 1
                return frame[0]

    async def batches(self) -> AsyncIterator[list[Record] | list[Envelope]]:
        """Yield the events a frame at a time (lists in gseq order; ephemeral ones apart).

        Same events, order and end as iterating the subscription itself; do not mix the
        two on one subscription.
        """
        if self._pos < len(self._buffer):
            rest = self._buffer[self._pos :]
            self._buffer, self._pos = [], 0
            yield rest
        while not self._ended:
            frame = await self._next_frame()
            if frame is None:
                return
            if frame:
                yield frame

    async def ack(self, gseq: int) -> None:
        """Report progress (shown as ``acked_gseq`` in the router's health)."""
        await self._client._send_request(
            lambda ref: msgspec.json.encode(
                {"op": "ack", "ref": ref, "sub": self.ref, "gseq": gseq}
            )
        )

    async def close(self) -> None:
        """Unsubscribe; iteration ends after the events already received. Without a
        session (the router is gone) there is nothing to unsubscribe from: the router
        forgets a connection's subscriptions with it, so this returns at once."""
        self._finish()
        self._client._overflowed.pop(self.ref, None)
        if self._client._subs.pop(self.ref, None) is not None and self._client.connected:
            with contextlib.suppress(RouterError, websockets.ConnectionClosed, OSError):
                await self._client._request(lambda ref: Unsub(ref=ref, sub=self.ref), timeout=5.0)


class Client:
    """A connection to the router that reconnects by itself.

    Use as ``async with Client(url, identity, token) as client:`` or
    ``client = await connect(...)`` / ``await client.close()``.

    Args:
        url: ``ws://host:port`` or ``wss://host:port``.
        identity: the identity to authenticate as (and the ``source`` of its events).
        token: the identity's token (None for a router without a token file).
        ssl_context: TLS settings for ``wss://`` (e.g. a context trusting a private CA);
            None uses the system's trust store (or the file named by ``SSL_CERT_FILE``).
        outbox_events: unacknowledged events kept before publishing waits.
        max_backoff_s: ceiling of the reconnect backoff (starts at 0.05 s, doubles,
            with jitter).
        connect_timeout_s: how long :meth:`start` waits for the first ``welcome``.
    """

    def __init__(
        self,
        url: str,
        identity: str,
        token: str | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        outbox_events: int = DEFAULT_OUTBOX_EVENTS,
        max_backoff_s: float = 2.0,
        connect_timeout_s: float = 30.0,
    ) -> None:
        self.url = url
        self.identity = identity
        self._token = token
        if ssl_context is None and url.startswith("wss://"):
            ssl_context = ssl.create_default_context()
        self._ssl = ssl_context
        self._outbox_cap = outbox_events
        self._outbox_n = 0
        self._outbox_changed = asyncio.Condition()
        self._max_backoff_s = max_backoff_s
        self._connect_timeout_s = connect_timeout_s
        self._refs = itertools.count(1)
        self._pending: dict[Ref, _PendingPub] = {}
        self.refused_unconfirmed = 0
        """Events of unconfirmed publications (:meth:`send_ephemeral`) the router refused."""
        self._subs: dict[Ref, RemoteSubscription] = {}
        self._overflowed: dict[Ref, RemoteSubscription] = {}
        self._requests: dict[Ref, asyncio.Future[Any]] = {}
        self._ws: ClientConnection | None = None
        self._epoch = 0
        self._send_lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._fatal: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.welcome: Welcome | None = None
        self.reconnects = 0

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect and wait for the first ``welcome``.

        Raises:
            AuthError: the router refused the identity or token.
            TimeoutError: no connection within ``connect_timeout_s``.
        """
        self._task = asyncio.create_task(self._run(), name=f"client:{self.identity}")
        waiter = asyncio.create_task(self._connected.wait(), name="client-wait-welcome")
        done, _ = await asyncio.wait(
            {waiter, self._task}, timeout=self._connect_timeout_s, return_when="FIRST_COMPLETED"
        )
        if waiter not in done:
            waiter.cancel()
            if self._fatal is not None:
                await self.close()
                raise self._fatal
            await self.close()
            raise TimeoutError(f"no connection to {self.url} within {self._connect_timeout_s} s")

    async def close(self) -> None:
        """Close the connection; pending publishes fail with ``RouterError``."""
        self._closing = True
        # Take the socket before stopping the session task: its cleanup forgets it.
        ws, self._ws = self._ws, None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if ws is not None:
            await ws.close()
        err = RouterError(Code.INTERNAL, "client closed")
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(err)
        for fut in self._requests.values():
            if not fut.done():
                fut.set_exception(err)
        for sub in list(self._subs.values()):
            sub._finish()
        for sub in list(self._overflowed.values()):
            sub._finish()

    @property
    def connected(self) -> bool:
        """True while a session with the router is established."""
        return self._connected.is_set()

    async def _run(self) -> None:
        backoff = 0.05
        while not self._closing:
            try:
                # ssl=None is refused for a wss:// URL: pass a context only when one
                # was given, so wss:// uses the library's default (verified) TLS.
                tls: dict[str, Any] = {} if self._ssl is None else {"ssl": self._ssl}
                ws = await ws_connect(
                    self.url,
                    **tls,
                    max_size=None,
                    compression=None,
                    open_timeout=10,
                    ping_interval=20,
                    ping_timeout=20,
                )
            except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
                log.debug("connect failed", url=self.url, error=str(exc))
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(self._max_backoff_s, backoff * 2)
                continue
            try:
                await self._session(ws)
                backoff = 0.05
            except AuthError as exc:
                self._fatal = exc
                await ws.close()
                return
            except (websockets.ConnectionClosed, OSError):
                pass
            finally:
                self._ws = None
                self._connected.clear()
                for fut in list(self._requests.values()):
                    if not fut.done():
                        fut.set_exception(websockets.ConnectionClosedError(None, None))
            if not self._closing:
                self.reconnects += 1
                log.info("connection lost; reconnecting", url=self.url)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(self._max_backoff_s, backoff * 2)

    async def _session(self, ws: ClientConnection) -> None:
        hello = Hello(
            ref=0, identity=self.identity, token=self._token, client=f"tickertape/{__version__}"
        )
        await ws.send(encode_frame(hello), text=True)
        first = SERVER_FRAME_DECODER.decode(await ws.recv(decode=False))
        if isinstance(first, Error):
            if first.code == Code.AUTH_FAILED:
                raise AuthError(first.message)
            raise RouterError(first.code, first.message)
        if not isinstance(first, Welcome):
            raise RouterError(Code.BAD_FRAME, f"expected welcome, got {type(first).__name__}")
        self.welcome = first
        async with self._send_lock:
            self._epoch += 1
            self._ws = ws
            for sub in list(self._subs.values()):
                sub.sent_epoch = self._epoch
                await ws.send(encode_frame(sub._resume_frame()), text=True)
            for pending in list(self._pending.values()):
                pending.epoch = self._epoch
                await ws.send(encode_frame(pending.frame), text=True)
        self._connected.set()
        while True:
            message = await ws.recv(decode=False)
            if message.startswith(_EVENTS_PREFIX):
                try:
                    # One call decodes a whole frame of records (the common frame).
                    records = RECORDS_FRAME_DECODER.decode(message)
                except msgspec.ValidationError:
                    pass  # ephemeral envelopes have no log fields
                else:
                    target = self._subs.get(records.sub)
                    if target is not None:
                        target._on_records(records.events)
                    continue
            await self._dispatch(SERVER_FRAME_DECODER.decode(message))

    async def _dispatch(self, frame: Any) -> None:
        match frame:
            case EventsFrame():
                sub = self._subs.get(frame.sub)
                if sub is not None:
                    if frame.ephemeral:
                        sub._on_ephemeral([_ENVELOPE_DECODER.decode(raw) for raw in frame.events])
                    else:
                        sub._on_records([RECORD_DECODER.decode(raw) for raw in frame.events])
            case PubAck():
                pending = self._pending.get(frame.ref)
                if pending is None:
                    refused = [r for r in frame.results if r.error is not None]
                    if refused:  # an unconfirmed publication (send_ephemeral)
                        self.refused_unconfirmed += len(refused)
                        log.error(
                            "unconfirmed publication refused",
                            ref=frame.ref,
                            code=refused[0].error,
                            reason=(refused[0].message or "")[:500],
                        )
                elif not pending.future.done():
                    if any(r.error is not None for r in frame.results):
                        pending.future.set_exception(PublishRefusedError(frame.ref, frame.results))
                    else:
                        pending.future.set_result(frame.results)
            case Subscribed():
                sub = self._subs.get(frame.ref)
                if sub is not None:
                    sub.retry_delay = RETRY_FIRST_S
                    if sub.from_gseq is None:
                        sub.from_gseq = frame.from_gseq
            case CaughtUp():
                sub = self._subs.get(frame.sub)
                if sub is not None:
                    if sub.caught_up_gseq is None:
                        sub.caught_up_gseq = sub.last_gseq
                    sub.caught_up.set()
            case Lagging():
                sub = self._subs.get(frame.sub)
                if sub is not None:
                    sub.lagging_count += 1
            case FetchEnd():
                sub = self._subs.pop(frame.ref, None)
                if sub is not None:
                    sub.fetch_end = frame
                    sub._finish()
            case Error():
                await self._on_error(frame)
            case Committed() | StatsReply() | Unsubscribed():
                fut = self._requests.pop(frame.ref, None)
                if fut is not None and not fut.done():
                    fut.set_result(frame)
            case _:
                log.debug("unexpected frame", frame=type(frame).__name__)

    async def _on_error(self, frame: Error) -> None:
        ref = frame.ref
        err = RouterError(frame.code, frame.message, None if ref is None else str(ref))
        if ref is None:
            log.warning("router error", code=frame.code, message=frame.message)
            return
        pending = self._pending.get(ref)
        if pending is not None:
            if frame.code in RETRYABLE:
                # The router closes the connection after a retryable failure of a logged
                # pub (before reading any later pub of it): the outbox is resent in order
                # on reconnect. A resend in place could follow later pubs already
                # stored, and the log would take it for duplicates. A staged pub keeps
                # the connection open (server._refuse) and is resent in place: its
                # commit checks the counts.
                if pending.frame.stage is not None:
                    asyncio.get_running_loop().call_later(0.2, self._resend_soon, ref)
                return
            if not pending.future.done():
                pending.future.set_exception(err)
            return
        sub = self._subs.pop(ref, None)
        if sub is not None:
            if frame.code in RETRYABLE and not self._closing:
                # The log is restarting (LOG_UNAVAILABLE) or the router failed
                # (INTERNAL): asked again later from just after the last event, as after
                # a reconnect; the iterator only sees the events. Meanwhile it waits
                # between refs, as an overflowed one does (close() ends it).
                delay = sub.retry_delay
                sub.retry_delay = min(self._max_backoff_s, 2 * delay)
                log.warning(
                    "subscription refused; retrying", sub=ref, code=frame.code, delay_s=delay
                )
                self._overflowed[ref] = sub
                asyncio.get_running_loop().call_later(delay, self._resubscribe, sub)
                return
            sub._finish(err)
            return
        fut = self._requests.pop(ref, None)
        if fut is not None and not fut.done():
            fut.set_exception(err)
            return
        if frame.code in FATAL:
            log.error("router closed the session", code=frame.code, message=frame.message)

    def _resend_soon(self, ref: Ref) -> None:
        pending = self._pending.get(ref)
        if pending is None or self._closing:
            return
        task = asyncio.create_task(self._send_pending(pending, force=True), name=f"resend:{ref}")
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _send_pending(self, pending: _PendingPub, *, force: bool = False) -> None:
        async with self._send_lock:
            ws = self._ws
            if ws is None or (pending.epoch == self._epoch and not force):
                return
            pending.epoch = self._epoch
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(encode_frame(pending.frame), text=True)

    # ------------------------------------------------------------------ publishing

    async def publish(
        self,
        envelopes: Sequence[Envelope],
        *,
        ns: str | None = None,
        stage: str | None = None,
        ephemeral: bool = False,
    ) -> list[AckItem]:
        """Publish one batch and wait until the log has made it durable.

        The batch stays in the outbox until acknowledged and is resent after any
        reconnect. Waits while the outbox is full. Cancelling the wait withdraws the
        batch from the outbox (it may or may not have been stored).

        Args:
            envelopes: the batch (at most the router's ``max_batch_events``).
            ns: namespace (the router's default when None).
            stage: hold the batch under this stage id until :meth:`commit`.
            ephemeral: fan out to live subscribers only, never logged.

        Returns:
            One :class:`AckItem` per envelope, in order: offset and gseq (or
            ``duplicate``), ``staged``, or nothing for ephemeral envelopes.

        Raises:
            PublishRefusedError: the router refused envelopes (schema, ACL, source...).
            RouterError: a non-retryable error for the whole batch.
        """
        if not envelopes:
            return []
        n = len(envelopes)
        async with self._outbox_changed:
            await self._outbox_changed.wait_for(
                lambda: self._outbox_n == 0 or self._outbox_n + n <= self._outbox_cap
            )
            self._outbox_n += n
        ref = next(self._refs)
        frame = Pub(ref=ref, events=list(envelopes), ns=ns, stage=stage, ephemeral=ephemeral)
        future: asyncio.Future[list[AckItem]] = asyncio.get_running_loop().create_future()
        pending = _PendingPub(frame, future)
        self._pending[ref] = pending
        try:
            await self._send_pending(pending)
            return await future
        finally:
            self._pending.pop(ref, None)
            async with self._outbox_changed:
                self._outbox_n -= n
                self._outbox_changed.notify_all()

    async def send_ephemeral(self, envelopes: Sequence[Envelope], *, ns: str | None = None) -> bool:
        """Send an ephemeral batch without waiting for, or asking for, an acknowledgement.

        For control messages whose receiver answers them (the distributed replay's
        announcements and ``done`` reports, docs/protocol.md §8): the router fans the
        batch out to live subscribers and answers only a refusal, which this client
        logs (``unconfirmed publication refused``) and counts in
        :attr:`refused_unconfirmed`. The batch is not kept for a resend: while
        disconnected it is dropped, as ephemeral events are best effort anyway.

        Returns:
            True when the frame was handed to the connection, False when disconnected.
        """
        if not envelopes:
            return True
        frame = Pub(ref=next(self._refs), events=list(envelopes), ns=ns, ephemeral=True, ack=False)
        async with self._send_lock:
            ws = self._ws
            if ws is None:
                return False
            try:
                await ws.send(encode_frame(frame), text=True)
            except websockets.ConnectionClosed:
                return False
        return True

    @property
    def outbox_events(self) -> int:
        """Events published but not yet acknowledged."""
        return self._outbox_n

    async def commit(
        self, stage: str, expect: dict[str, int], ts_log: int, *, ns: str | None = None
    ) -> Committed:
        """Append the events staged under ``stage`` as one batch (distributed replay).

        Raises:
            RouterError: ``STAGE_INCOMPLETE`` (retryable: counts differ), ``STAGE_UNKNOWN``
                (nothing staged under ``stage``, e.g. after a router restart: the stagers
                must publish again), ``FORBIDDEN``.
        """
        reply = await self._request(
            lambda ref: Commit(ref=ref, stage=stage, expect=expect, ts_log=ts_log, ns=ns)
        )
        assert isinstance(reply, Committed)
        return reply

    async def stats(self) -> dict[str, Any]:
        """The router's health snapshot (see :meth:`Router.health`)."""
        reply = await self._request(lambda ref: Stats(ref=ref))
        assert isinstance(reply, StatsReply)
        return reply.health

    async def _send_request(self, build: Any) -> None:
        await self._connected.wait()
        ref = next(self._refs)
        async with self._send_lock:
            ws = self._ws
            if ws is None:
                raise websockets.ConnectionClosedError(None, None)
            data = build(ref)
            await ws.send(data if isinstance(data, bytes) else encode_frame(data), text=True)

    async def _request(self, build: Any, timeout: float = 60.0) -> Any:  # noqa: ASYNC109
        while True:
            await asyncio.wait_for(self._connected.wait(), timeout)
            ref = next(self._refs)
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._requests[ref] = fut
            try:
                async with self._send_lock:
                    ws = self._ws
                    if ws is None:
                        continue
                    await ws.send(encode_frame(build(ref)), text=True)
                return await asyncio.wait_for(fut, timeout)
            except websockets.ConnectionClosed:
                continue
            except RouterError as exc:
                if exc.code in RETRYABLE and exc.code not in _NOT_RETRIED:
                    await asyncio.sleep(0.2)
                    continue
                raise
            finally:
                self._requests.pop(ref, None)

    # ------------------------------------------------------------------ subscribing

    def subscribe(
        self,
        patterns: Sequence[str],
        start: Start = "now",
        *,
        ns: str | None = None,
        include_ephemeral: bool = False,
        queue_frames: int = 16,
    ) -> RemoteSubscription:
        """Open a subscription; iterate the returned object for its events.

        Args:
            patterns: NATS-style topic patterns.
            start: ``"now"``, ``"beginning"`` or a :class:`StartAt`.
            ns: namespace (the router's default when None).
            include_ephemeral: also yield ephemeral envelopes.
            queue_frames: frames buffered in the client before it stops reading
                (the router then switches this connection's subscriptions to the log).

        Returns:
            The subscription (an async iterator of :class:`Record`).
        """
        ref = next(self._refs)
        frame = Sub(ref=ref, patterns=list(patterns), start=start, ns=ns)
        sub = RemoteSubscription(
            self, ref, frame, include_ephemeral=include_ephemeral, queue_frames=queue_frames
        )
        self._subs[ref] = sub
        self._send_soon(sub)
        return sub

    def fetch(
        self,
        patterns: Sequence[str],
        start: Start = "beginning",
        *,
        to_gseq: int | None = None,
        limit: int | None = None,
        ns: str | None = None,
        queue_frames: int = 16,
    ) -> RemoteSubscription:
        """Stream a bounded range of history (ends after the range).

        Args:
            patterns: topic patterns.
            start: where to start.
            to_gseq: last gseq included (the head at the time of the request when None;
                after an overflow of the buffer, the head when it is requested again).
            limit: most events.
            ns: namespace.
            queue_frames: frames buffered before the fetch overflows (see
                :class:`RemoteSubscription`).
        """
        ref = next(self._refs)
        frame = Fetch(
            ref=ref, patterns=list(patterns), start=start, to_gseq=to_gseq, limit=limit, ns=ns
        )
        sub = RemoteSubscription(
            self, ref, frame, include_ephemeral=False, queue_frames=queue_frames
        )
        self._subs[ref] = sub
        self._send_soon(sub)
        return sub

    def _forget(self, sub: RemoteSubscription) -> None:
        """Stop routing frames to ``sub`` (its buffer overflowed) and unsubscribe it."""
        ref = sub.ref
        if self._subs.pop(ref, None) is None:
            return
        self._overflowed[ref] = sub

        async def unsubscribe() -> None:
            async with self._send_lock:
                ws = self._ws
                if ws is None or sub.sent_epoch != self._epoch:
                    return  # not open on this connection
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send(encode_frame(Unsub(ref=next(self._refs), sub=ref)), text=True)

        task = asyncio.create_task(unsubscribe(), name=f"unsub:{ref}")
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def _resubscribe(self, sub: RemoteSubscription) -> None:
        """Open ``sub`` again under a new ref, from just after its last event (unless it
        or the client was closed meanwhile)."""
        self._overflowed.pop(sub.ref, None)
        if self._closing or sub._ending:
            return
        sub.ref = next(self._refs)
        sub.sent_epoch = -1
        self._subs[sub.ref] = sub
        self._send_soon(sub)

    def _send_soon(self, sub: RemoteSubscription) -> None:
        async def send() -> None:
            async with self._send_lock:
                ws = self._ws
                if ws is None or sub.sent_epoch == self._epoch:
                    return  # sent with the resubscriptions on connect
                sub.sent_epoch = self._epoch
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send(encode_frame(sub._resume_frame()), text=True)

        task = asyncio.create_task(send(), name=f"send:{sub.ref}")
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)


async def connect(
    url: str,
    identity: str,
    token: str | None = None,
    **options: Any,
) -> Client:
    """Connect to the router and return a started :class:`Client`.

    Args:
        url: ``ws://`` or ``wss://`` URL of the router.
        identity: the identity to authenticate as.
        token: its token (None for an open router).
        **options: passed to :class:`Client`.

    Raises:
        AuthError: the identity or token was refused.
        TimeoutError: no connection in time.
    """
    client = Client(url, identity, token, **options)
    await client.start()
    return client
