"""The router (``tape router``): WebSocket server, log before fan-out (DESIGN §2, §6).

Flow of a published batch: a connection's reader decodes the frame
(:mod:`tickertape.router.protocol`), checks identity, ACL and schemas, and queues
the batch on its namespace's *appender*. The appender is one task per namespace: it
takes every queued batch at once, appends them to the log as one call (group commit
across connections), stamps the records with the offsets and gseqs the log assigned,
fans them out to live subscriptions in gseq order, and only then answers the
publishers' ``puback``. A subscriber therefore never sees an event the log has not
made durable, and the fan-out order is the gseq order. The appender writes the
frames itself (one write per connection and batch), with no task per batch.

Each connection has one bounded send queue, written to its socket as frames are
queued and, while the client reads too slowly for the socket to take them, by the
connection's writer task once it has room. The live fan-out never waits on it: when
it is full, the subscription is switched to reading the log by position
(:mod:`tickertape.router.subscriptions`), and rejoins the live feed once its cursor
reaches the head. A gap in the fanned-out gseqs (an append whose answer was lost with
a log restart) switches every live subscription of the namespace to the log in the
same way, so nothing is ever skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import ssl
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.protocol import State

from tickertape.errors import AuthError, DiskFullError, LogError, RouterError
from tickertape.eventlog.writer import AppendResult
from tickertape.router.auth import Authority, Grant, check_bind, may_publish, may_subscribe
from tickertape.router.fanout import LiveBatch
from tickertape.router.logservice import (
    EmbeddedLog,
    LogBackend,
    LogUnavailableError,
    RemoteLog,
    serve_until_failed,
)
from tickertape.router.protocol import (
    DEFAULT_NAMESPACE,
    EVENTS_TAIL,
    PROTOCOL_VERSION,
    RETRYABLE,
    Ack,
    AckItem,
    CaughtUp,
    ClientFrame,
    Code,
    Commit,
    Committed,
    Fetch,
    FetchEnd,
    FrameError,
    Hello,
    Lagging,
    Limits,
    Pub,
    PubAck,
    Ref,
    ServerFrame,
    Stats,
    StatsReply,
    StoredAck,
    Sub,
    Subscribed,
    Unsub,
    Unsubscribed,
    Welcome,
    decode_client_frame,
    encode_frame,
    encode_puback,
    error_frame,
    events_frame,
    events_head,
    text_frame_header,
    validate_namespace,
)
from tickertape.router.staging import StageBook
from tickertape.router.subscriptions import Subscription, SubState
from tickertape.router.validation import check_envelopes
from tickertape.schemas.envelope import Envelope, Record, stamp
from tickertape.schemas.registry import make_envelope
from tickertape.schemas.system import Divergence, Health, compare
from tickertape.topics import validate_topic

log = structlog.get_logger("tickertape.router")

_RECORD_ENCODER = msgspec.json.Encoder()
_MAX_MERGE_EVENTS = 10_000
"""Most events the appender merges from several ``pub`` frames into one log append (a
larger frame is appended alone). The appender waits for each append (its fsync)
before the next, so larger groups are what keeps a publisher's batches in flight
moving at full rate: with one subscriber at full rate, batches of 1 000 and 8 in
flight (benchmarks/bench_router.py, side by side on the shared machine), capping the
merge at 1 000 / 2 000 / 4 000 / 10 000 events gave 100 k / 104 k / 114 k / 123 k
events/s. Smaller groups lower the allocator's high-water mark (the memory row's RSS
growth over 1 M events: 17-19 MB with 1 000, 30-34 MB with 10 000; most of it the
log's duplicate window, see docs/protocol.md §13)."""
_WRITE_CHUNK = 64 * 1024
"""Bytes of frames a connection hands its transport per write (see _Connection.flush)."""


class RouterConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How to run a router.

    Attributes:
        host: interface to bind; loopback by default, anything else needs tokens.
        port: TCP port (0 picks a free one).
        data_dir: the data directory of the embedded log.
        namespace: the default namespace announced in ``welcome``.
        log_url: URL of a ``tape eventlog`` process; None runs the log embedded.
        token_file: the token/ACL TOML file; None runs open (loopback only).
        tls_cert: PEM certificate chain for ``wss://``; needs ``tls_key``.
        tls_key: PEM private key.
        limits: per-connection limits.
        health_interval_s: seconds between ``system.health.router`` messages.
        accept_unknown_types: let through envelopes whose (type, v) has no schema
            here (they are then checked only as envelopes).
        compression: enable permessage-deflate (off: it costs ~half the throughput).
        seal: the embedded log seals each day that is over while it runs
            (:class:`~tickertape.eventlog.sealing.Sealer`).
        retention: ``(pattern, max_age_days)`` rules the embedded log applies while it
            runs (:class:`~tickertape.router.logservice.EmbeddedLog`).
    """

    host: str = "127.0.0.1"
    port: int = 7400
    data_dir: str = "."
    namespace: str = DEFAULT_NAMESPACE
    log_url: str | None = None
    token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    limits: Limits = Limits()
    health_interval_s: float = 1.0
    accept_unknown_types: bool = False
    compression: bool = False
    seal: bool = True
    retention: tuple[tuple[str, int], ...] = ()


class _TokenBucket:
    __slots__ = ("burst", "level", "rate", "stamp")

    def __init__(self, rate: float, min_burst: float = 0.0) -> None:
        self.rate = rate
        self.burst = max(2.0 * rate, min_burst)
        self.level = self.burst
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, n: float) -> bool:
        """Take ``n`` tokens if there are that many; True when taken."""
        self._refill()
        if self.level < n:
            return False
        self.level -= n
        return True

    async def acquire(self, n: float, refill: float = 0.0) -> None:
        """After a failed :meth:`take`: wait until ``max(n, refill)`` tokens are there
        (at most the burst), then take ``n``."""
        await asyncio.sleep(self.wait_s(max(n, refill)))
        self._refill()
        self.level -= n  # slightly below 0 at worst (timer rounding): repaid by the next

    def wait_s(self, n: float) -> float:
        """Seconds until ``n`` tokens are available (0 when they are)."""
        missing = min(n, self.burst) - self.level
        return max(0.0, missing / self.rate)


class _InFlight:
    """A connection's ``pub`` batches awaiting the log: at most ``max_pubs`` of them and
    ``max_bytes`` bytes of their frames (as received). One batch is always let in when
    none is in flight, so a frame up to the frame limit passes whatever ``max_bytes``.

    Only the connection's reader takes slots (:meth:`acquire`); the appender gives
    them back (:meth:`release`).
    """

    def __init__(self, max_pubs: int, max_bytes: int) -> None:
        self.max_pubs = max_pubs
        self.max_bytes = max_bytes
        self.pubs = 0
        self.bytes = 0
        self._released = asyncio.Event()

    def _fits(self, size: int) -> bool:
        if self.pubs == 0:
            return True
        return self.pubs < self.max_pubs and self.bytes + size <= self.max_bytes

    async def acquire(self, size: int) -> None:
        """Wait until a batch of ``size`` bytes fits, then count it."""
        while not self._fits(size):
            self._released.clear()
            await self._released.wait()
        self.pubs += 1
        self.bytes += size

    def release(self, size: int) -> None:
        """A batch of ``size`` bytes was answered (or failed)."""
        self.pubs -= 1
        self.bytes -= size
        self._released.set()


@dataclass(slots=True)
class _Job:
    """A batch for the namespace's appender.

    ``pub`` and ``ephemeral`` jobs are answered by the appender itself, on ``conn``
    (a ``puback`` for ``ref`` when ``answer``); a ``commit`` job's caller awaits
    ``future``. ``size`` is the bytes of the ``pub`` frame, held against the
    connection's :class:`_InFlight` until the job is answered.
    """

    kind: str  # "pub" | "ephemeral" | "commit"
    envelopes: list[Envelope]
    conn: _Connection | None = None
    ref: Ref | None = None
    answer: bool = True
    future: asyncio.Future[list[AppendResult]] | None = None
    ts_log: int | None = None
    size: int = 0
    received_ns: int = 0  # perf_counter_ns when the pub frame was read (0: a commit)


@dataclass(eq=False, slots=True)
class _Counters:
    frames_in: int = 0
    frames_out: int = 0
    events_in: int = 0
    events_out: int = 0
    errors: int = 0
    dropped_ephemeral: int = 0


class _Namespace:
    """One namespace: its appender task, head and subscriptions."""

    def __init__(self, router: Router, name: str, head: int) -> None:
        self.router = router
        self.name = name
        self.head = head
        self.subs: dict[tuple[int, Ref], tuple[_Connection, Subscription]] = {}
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=1024)
        self.owners: dict[str, str] = {}
        self.appended = 0
        self.append_latency_ns: list[int] = []
        self.task = asyncio.create_task(self._run(), name=f"appender:{name}")

    async def owner(self, topic: str) -> str | None:
        if topic in self.owners:
            return self.owners[topic]
        source = await self.router.backend.topic_owner(self.name, topic)
        if source is not None:
            self.owners.setdefault(topic, source)
        return self.owners.get(topic)

    async def _run(self) -> None:
        while True:
            job = await self.queue.get()
            if job.kind == "ephemeral":
                touched = self.router.fan_out_ephemeral(self, job.envelopes)
                if job.conn is not None:
                    items = [AckItem(id=e.id) for e in job.envelopes] if job.answer else []
                    _answer(job, items, touched)
                _flush(touched)
                continue
            jobs = [job]
            if job.kind == "pub":
                total = len(job.envelopes)
                while not self.queue.empty():
                    nxt = self.queue._queue[0]  # type: ignore[attr-defined]
                    if nxt.kind != "pub" or total + len(nxt.envelopes) > _MAX_MERGE_EVENTS:
                        break
                    jobs.append(self.queue.get_nowait())
                    total += len(nxt.envelopes)
            await self._append(jobs)

    async def _append(self, jobs: list[_Job]) -> None:
        """Append the jobs as one batch, fan the records out, then answer every job.

        The publishers' ``puback`` frames are written to their connections here, after
        the fan-out, one write per connection (no task per batch); a failure is
        answered by :meth:`Router.job_failed`.
        """
        router = self.router
        dropped = [j for j in jobs if j.conn is not None and j.conn.failed]
        if dropped:
            # The publisher had an append fail: nothing after it may be stored before
            # it resends in order (the log treats lower source_seqs as duplicates).
            for j in dropped:
                router.job_failed(j, LogUnavailableError("an earlier batch failed"))
            jobs = [j for j in jobs if j not in dropped]
            if not jobs:
                return
        envelopes = [e for j in jobs for e in j.envelopes]
        ts_log = jobs[0].ts_log if jobs[0].ts_log is not None else time.time_ns()
        started = time.perf_counter_ns()
        try:
            results = await router.backend.append(self.name, envelopes, ts_log)
        except (LogUnavailableError, DiskFullError, RouterError) as exc:
            for j in jobs:
                if j.conn is not None:
                    j.conn.failed = True
                router.job_failed(j, exc)
            router.log_failed(self)
            return
        except LogError as exc:  # LogFatalError (a failed write or fsync), LogClosedError
            for j in jobs:
                if j.conn is not None:
                    j.conn.failed = True
                router.job_failed(j, LogUnavailableError(str(exc)))
            router.fatal(exc)
            return
        elapsed = time.perf_counter_ns() - started
        if len(self.append_latency_ns) >= 4096:
            del self.append_latency_ns[:2048]
        self.append_latency_ns.append(elapsed)
        # The log numbers the envelopes it stores in the order given (EventLog.append),
        # so the records come out in gseq order, each beside its pub frame's arrival.
        records: list[Record] = []
        received: list[int] = []
        for env, r, at in zip(envelopes, results, _received_per_envelope(jobs), strict=True):
            if r.error is None and not r.duplicate and r.gseq is not None and r.offset is not None:
                records.append(stamp(env, r.offset, r.gseq, ts_log))
                received.append(at)
        self.appended += len(records)
        touched = router.fan_out(self, records, received)
        pos = 0
        for j in jobs:
            n = len(j.envelopes)
            part = results[pos : pos + n]
            pos += n
            if j.future is not None:
                if not j.future.done():
                    j.future.set_result(part)
            elif j.conn is not None:
                _answer(j, _ack_items(part), touched)
        _flush(touched)


def _received_per_envelope(jobs: list[_Job]) -> list[int]:
    """When each envelope of ``jobs``, in order, reached the router (its job's
    ``received_ns``)."""
    return [job.received_ns for job in jobs for _ in job.envelopes]


def _answer(
    job: _Job, items: list[AckItem | StoredAck] | list[AckItem], touched: dict[int, _Connection]
) -> None:
    """Release a publisher's pub slot and queue its ``puback`` (when it asked for one and
    is still connected), noting the connection in ``touched`` for the caller's flush."""
    conn = job.conn
    assert conn is not None
    conn.inflight.release(job.size)
    if job.ref is not None and job.answer and not conn.closed:
        conn.push(encode_puback(job.ref, items))
        touched[conn.id] = conn


def _flush(touched: dict[int, _Connection]) -> None:
    """Hand each connection's queued frames to its socket (one write per connection)."""
    for conn in touched.values():
        conn.flush()


def _ack_items(results: Sequence[AppendResult]) -> list[AckItem | StoredAck]:
    """The ``puback`` results of a logged batch (stored, duplicate or refused per event)."""
    return [
        StoredAck(r.id, r.offset, r.gseq)
        if r.error is None and not r.duplicate and r.offset is not None and r.gseq is not None
        else AckItem(
            id=r.id,
            offset=r.offset,
            gseq=r.gseq,
            duplicate=r.duplicate,
            error=r.error,
            message=r.message,
        )
        for r in results
    ]


_Outgoing = bytes | tuple[bytes, bytes, int]
"""A queued frame: its bytes, or an ``events`` frame as (head, body, received_ns) (see
:func:`~tickertape.router.protocol.events_frame`). Bodies are shared by every
subscription taking the same events; a connection's copy is made only as it is sent.
``received_ns`` is the ``perf_counter_ns`` at which the router read the ``pub`` frame
of the body's first event, for a live delivery; 0 for one from the log or ephemeral."""

DELIVER_SAMPLES = 1024
"""Publish-to-deliver times a connection keeps for its health (the latest ones)."""


def _size(frame: _Outgoing) -> int:
    return (
        len(frame) if isinstance(frame, bytes) else len(frame[0]) + len(frame[1]) + len(EVENTS_TAIL)
    )


class _Connection:
    """One client connection: identity, grant, send queue, subscriptions.

    Outgoing frames wait in ``out`` (bounded by ``send_queue_frames`` and, with what
    the transport buffers while paused above its high-water mark, ``send_queue_bytes``)
    until :meth:`flush` hands them
    to the socket, several per write while the transport takes data (below its
    high-water mark): the frames one appended batch produces for a connection (its
    ``events`` frames, its ``puback``) cost one system call when they are small, and
    no task switch.
    When the transport is paused (the client reads slower than we write), the frames
    stay queued and the connection's writer task hands them over once it has
    drained; meanwhile the live fan-out finds the queue full and switches the
    connection's subscriptions to the log.

    This writes to the websockets connection's ``transport`` (frames built by
    :func:`~tickertape.router.protocol.text_frame_header`, or by its sans-I/O
    ``protocol`` when an extension such as compression is on), checks the protocol's
    state first, and waits on its flow control (``paused``, ``drain()``): attributes
    of websockets' asyncio ``Connection`` that ``send()`` itself uses. ``send()``
    makes one write, one copy of the payload and one pass through its async context
    manager per frame.
    """

    def __init__(self, router: Router, ws: ServerConnection, session: str) -> None:
        self.router = router
        self.ws = ws
        self.session = session
        self.id = id(self)
        self.identity: str | None = None
        self.grant: Grant | None = None
        limits = router.config.limits
        self.limits = limits
        self.out: deque[_Outgoing] = deque()
        self.queued_bytes = 0
        self.subs: dict[Ref, tuple[_Namespace, Subscription]] = {}
        self.fetches: dict[Ref, asyncio.Task[None]] = {}
        self.catchups: dict[Ref, asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.inflight = _InFlight(limits.max_inflight_pubs, limits.max_inflight_bytes)
        self.frames = _TokenBucket(limits.max_frames_per_s)
        # A burst holds at least one whole batch, so a batch the size limit admits
        # always gets through (after a wait).
        self.events = _TokenBucket(limits.max_events_per_s, limits.max_batch_events)
        self.counters = _Counters()
        # Health: when the frame being handled was read, the publish-to-deliver times
        # of the latest live deliveries, and the event rates over the last health tick.
        self.received_ns = 0
        self.deliver_ns: deque[int] = deque(maxlen=DELIVER_SAMPLES)
        self.rates = (0.0, 0.0)
        self._rates_mark = (time.perf_counter_ns(), 0, 0)
        self.closed = False
        self.failed = False
        self.room = asyncio.Event()
        self._stalled = asyncio.Event()
        # Whatever this connection waits on (room in its queue) ends when the peer is
        # gone, even while the reader is not reading (that is when it waits for room).
        ws.connection_lost_waiter.add_done_callback(self._lost)

    def _lost(self, _: object) -> None:
        self.closed = True
        self._drop_queued()

    async def send(self, frame: ServerFrame) -> None:
        await self.put(encode_frame(frame))

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` as a task of this connection (cancelled when it closes)."""
        task = asyncio.create_task(work, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _has_room(self, size: int) -> bool:
        if len(self.out) >= self.limits.send_queue_frames:
            return False
        held = self.queued_bytes
        if self.ws.paused:  # above its high-water mark: the writer wakes us once drained
            held += self.ws.transport.get_write_buffer_size()
        return not held or held + size <= self.limits.send_queue_bytes

    def push(self, frame: _Outgoing) -> None:
        """Queue a frame whatever the queue holds; the caller :meth:`flush` es.

        For the answers to requests this connection made (``puback``): they are
        bounded by ``max_inflight_pubs``, and the reader waits for room before
        taking another ``pub`` (:meth:`wait_room`).
        """
        self.out.append(frame)
        self.queued_bytes += _size(frame)

    def try_put(self, frame: _Outgoing) -> bool:
        """Queue a fan-out frame without waiting; False when the queue is full.

        The caller :meth:`flush` es once it queued everything of its batch.
        """
        if not self._has_room(_size(frame)):
            return False
        self.push(frame)
        return True

    async def wait_room(self, size: int = 0) -> None:
        """Wait until the queue has room for ``size`` more bytes and one more frame."""
        while not self._has_room(size) and not self.closed:
            self.room.clear()
            if self.ws.paused:
                self._stalled.set()
            await self.room.wait()

    async def put(self, frame: _Outgoing) -> None:
        """Queue a frame, waiting for room (frames and bytes), and send it."""
        await self.wait_room(_size(frame))
        self.push(frame)
        self.flush()

    async def send_error(self, code: Code | str, message: str, ref: Ref | None) -> None:
        self.counters.errors += 1
        self.router.counters.errors += 1
        log.warning(
            "request refused",
            session=self.session,
            identity=self.identity,
            code=str(code),
            ref=ref,
            reason=message[:500],
        )
        await self.send(error_frame(code, message, ref))

    def flush(self) -> None:
        """Hand every queued frame to the socket now, unless the transport is paused
        (then the writer task does once it drained). Frames queued on a closing
        connection are dropped: its subscriptions end with it."""
        if self._stalled.is_set():
            return
        ws = self.ws
        protocol, transport, out = ws.protocol, ws.transport, self.out
        # Without an extension (compression) a frame is a header and the payload: the
        # parts are handed over as they are, an events body shared by every
        # connection is not re-encoded for each (the transport joins the parts into
        # one write on 3.11: a copy per connection; on 3.12+ none).
        plain = not protocol.extensions
        sent = 0
        now = 0
        while out:
            if protocol.state is not State.OPEN or transport.is_closing():
                self._drop_queued()
                break
            if ws.paused:
                self._stalled.set()
                break
            # Frames up to _WRITE_CHUNK bytes per write: small ones share a system
            # call; big ones stop going to the transport as soon as it pauses, so it
            # never buffers more than its high-water mark and one chunk.
            parts: list[bytes] = []
            size = 0
            while out and size < _WRITE_CHUNK:
                frame = out.popleft()
                n = _size(frame)
                size += n
                self.queued_bytes -= n
                sent += 1
                if isinstance(frame, bytes):
                    if plain:
                        parts += (text_frame_header(n), frame)
                    else:
                        protocol.send_text(frame)
                    continue
                if frame[2]:  # a live delivery: its publish-to-deliver time
                    now = now or time.perf_counter_ns()
                    self.deliver_ns.append(now - frame[2])
                if plain:
                    parts += (text_frame_header(n), frame[0], frame[1], EVENTS_TAIL)
                else:
                    protocol.send_text(events_frame(frame[0], frame[1]))
            transport.writelines(parts if plain else protocol.data_to_send())
        if sent:
            self.counters.frames_out += sent
            self.room.set()

    def _drop_queued(self) -> None:
        self.out.clear()
        self.queued_bytes = 0
        self.room.set()

    async def writer(self) -> None:
        """Send what :meth:`flush` left queued because the transport was paused."""
        while True:
            await self._stalled.wait()
            with contextlib.suppress(OSError):  # the connection was lost: flush drops
                await self.ws.drain()
            self._stalled.clear()
            self.room.set()
            self.flush()

    async def drained(self) -> None:
        """Wait until every queued frame was handed to the socket."""
        while self.out:
            self.room.clear()
            await self.room.wait()

    def tick_rates(self) -> None:
        """Measure the events in and out per second since the last tick (the health
        loop's), reported by :meth:`health` until the next one."""
        now = time.perf_counter_ns()
        then, events_in, events_out = self._rates_mark
        c = self.counters
        if now > then:
            seconds = (now - then) / 1e9
            self.rates = (
                (c.events_in - events_in) / seconds,
                (c.events_out - events_out) / seconds,
            )
        self._rates_mark = (now, c.events_in, c.events_out)

    def health(self) -> dict[str, Any]:
        subs = []
        for ref, (ns, sub) in sorted(self.subs.items(), key=lambda kv: str(kv[0])):
            subs.append(
                {
                    "sub": ref,
                    "ns": ns.name,
                    "patterns": list(sub.patterns),
                    "state": sub.state.value,
                    "cursor": sub.cursor,
                    "lag": max(0, ns.head - sub.cursor),
                    "acked_gseq": sub.acked_gseq,
                    "delivered": sub.delivered,
                    "switches_to_log": sub.switches_to_log,
                }
            )
        c = self.counters
        latest = list(self.deliver_ns)
        return {
            "session": self.session,
            "identity": self.identity,
            "peer": _peer(self.ws),
            "queue_depth": len(self.out),
            "queue_capacity": self.limits.send_queue_frames,
            "queue_bytes": self.queued_bytes,
            "inflight_pubs": self.inflight.pubs,
            "inflight_bytes": self.inflight.bytes,
            "frames_in": c.frames_in,
            "frames_out": c.frames_out,
            "events_in": c.events_in,
            "events_out": c.events_out,
            "events_in_per_s": round(self.rates[0], 1),
            "events_out_per_s": round(self.rates[1], 1),
            "deliver_p50_ms": _percentile(latest, 0.50) / 1e6 if latest else None,
            "deliver_p99_ms": _percentile(latest, 0.99) / 1e6 if latest else None,
            "errors": c.errors,
            "subscriptions": subs,
        }


def _peer(ws: ServerConnection) -> str:
    addr = ws.remote_address
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


def _namespace_metrics(ns: _Namespace) -> dict[str, Any]:
    subs = [sub for _conn, sub in ns.subs.values()]
    latencies = ns.append_latency_ns
    return {
        "head_gseq": ns.head,
        "appended": ns.appended,
        "append_p50_ms": _percentile(latencies, 0.50) / 1e6,
        "append_p99_ms": _percentile(latencies, 0.99) / 1e6,
        "subscriptions": len(subs),
        "live": sum(1 for sub in subs if sub.state is SubState.LIVE),
        "history": sum(1 for sub in subs if sub.state is not SubState.LIVE),
        "max_lag": max((max(0, ns.head - sub.cursor) for sub in subs), default=0),
    }


def _percentile(values: Sequence[int], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


class Router:
    """The router: accepts connections, validates, logs, fans out.

    Args:
        config: how to run it.
        backend: the log backend; built from ``config`` (embedded or remote) when None.

    Raises:
        ConfigError: (from :meth:`start`) non-loopback bind without a token file, an
            invalid token file, or TLS half configured.
    """

    def __init__(self, config: RouterConfig, backend: LogBackend | None = None) -> None:
        self.config = config
        self.authority = Authority.from_file(config.token_file)
        check_bind(config.host, self.authority)
        if backend is None:
            backend = (
                RemoteLog(config.log_url)
                if config.log_url
                else EmbeddedLog(config.data_dir, seal=config.seal, retention=config.retention)
            )
        self.backend: LogBackend = backend
        self.namespaces: dict[str, _Namespace] = {}
        self._ns_lock = asyncio.Lock()
        self.connections: dict[int, _Connection] = {}
        self.stages = StageBook()
        self.counters = _Counters()
        self._sessions = itertools.count(1)
        self._health_seq = itertools.count(1)
        self._server: Server | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._log_watch: asyncio.Task[None] | None = None
        self._fatal: asyncio.Future[LogError] | None = None  # set by fatal(); in start()
        self._started_ns = time.time_ns()
        self.boot = secrets.token_hex(8)
        """This process's id, announced in ``welcome`` (staged events do not survive it)."""

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``ws://`` or ``wss://`` URL of the bound socket."""
        scheme = "wss" if self.config.tls_cert else "ws"
        return f"{scheme}://{self.config.host}:{self.port}"

    def _ssl_context(self) -> ssl.SSLContext | None:
        cert, key = self.config.tls_cert, self.config.tls_key
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            from tickertape.errors import ConfigError

            raise ConfigError("TLS needs both --tls-cert and --tls-key")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        return ctx

    async def start(self) -> None:
        """Open the default namespace (retrying while a remote log is down) and listen."""
        self._fatal = asyncio.get_running_loop().create_future()
        while True:
            try:
                await self.namespace(self.config.namespace)
                break
            except LogUnavailableError as exc:
                log.warning("event log not reachable yet; retrying", reason=exc.reason)
                await asyncio.sleep(0.5)
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            ssl=self._ssl_context(),
            max_size=self.config.limits.max_frame_bytes,
            compression="deflate" if self.config.compression else None,
            ping_interval=20,
            ping_timeout=20,
            max_queue=4,
        )
        self._health_task = asyncio.create_task(self._health_loop(), name="router-health")
        log.info(
            "router listening",
            url=self.url,
            namespace=self.config.namespace,
            log=self.config.log_url or f"embedded:{self.config.data_dir}",
            auth="open" if self.authority.is_open else "tokens",
        )

    async def serve_forever(self) -> None:
        """Serve until cancelled, or until the embedded log fails for good.

        Raises:
            LogFatalError: a write or fsync of the embedded log failed (DESIGN §5: the
                process must exit; recovery at the next start decides what is valid).
                The publishers of the failed batches were answered LOG_UNAVAILABLE and
                disconnected: they resend to the restarted router.
        """
        assert self._server is not None
        assert self._fatal is not None
        await serve_until_failed(self._server, self._fatal, "router")

    def fatal(self, exc: LogError) -> None:
        """The log failed for good: make :meth:`serve_forever` raise ``exc``."""
        if self._fatal is not None and not self._fatal.done():
            log.critical("event log failed; the router stops", error=str(exc))
            self._fatal.set_result(exc)

    async def close(self) -> None:
        """Stop accepting, close connections and the log backend."""
        for task in (self._health_task, self._log_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for ns in self.namespaces.values():
            ns.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ns.task
        await self.backend.close()

    async def namespace(self, name: str) -> _Namespace:
        """Return the namespace, opening it (and its log) on first use.

        Raises:
            LogUnavailableError: the log could not be reached.
        """
        ns = self.namespaces.get(name)
        if ns is not None:
            return ns
        async with self._ns_lock:
            ns = self.namespaces.get(name)
            if ns is None:
                head = await self.backend.head(name)
                ns = _Namespace(self, name, head)
                self.namespaces[name] = ns
        return ns

    # ------------------------------------------------------------------ fan-out

    def fan_out(
        self, ns: _Namespace, records: list[Record], received: Sequence[int] = ()
    ) -> dict[int, _Connection]:
        """Deliver freshly appended records to live subscriptions (never waits).

        The records' JSON is encoded once per distinct selection and frame
        (:class:`~tickertape.router.fanout.LiveBatch`), not once per subscription.
        ``received`` gives, per record, when the router read its ``pub`` frame
        (``perf_counter_ns``), for the connections' publish-to-deliver times (none
        measured without it).

        Returns:
            The connections given frames (by id), queued, not yet written: the caller
            adds the publishers' pubacks and flushes each once, so a publishing
            subscriber gets its events and its puback in one write, events first.
        """
        if not records:
            return {}
        if records[0].gseq != ns.head + 1:
            log.warning("gseq gap in fan-out; live subscriptions read the log", ns=ns.name)
            self._all_to_log(ns)
        ns.head = max(ns.head, records[-1].gseq)
        batch = LiveBatch(records, self.config.limits.events_per_frame)
        touched: dict[int, _Connection] = {}
        for conn, sub in list(ns.subs.values()):
            if sub.state is not SubState.LIVE:
                continue
            before = sub.cursor
            selection = sub.select_batch(batch)
            picked = selection[1]
            if not picked:
                continue
            head = events_head(sub.ref)
            last_ok = before
            sent = 0
            for body in batch.bodies(selection):
                first = received[picked[sent]] if received else 0
                if not conn.try_put((head, body.body, first)):
                    sub.delivered -= len(picked) - sent
                    sub.cursor = last_ok
                    self._to_log(conn, ns, sub)
                    break
                last_ok = body.last_gseq
                sent += body.count
            if sent:
                touched[conn.id] = conn
            conn.counters.events_out += sent
            self.counters.events_out += sent
        return touched

    def fan_out_ephemeral(
        self, ns: _Namespace, envelopes: list[Envelope]
    ) -> dict[int, _Connection]:
        """Deliver ephemeral envelopes to live subscriptions; dropped when a queue is full.

        Returns:
            The connections given frames (by id), queued, not yet written, as
            :meth:`fan_out` returns them.
        """
        bodies: dict[tuple[int, ...], bytes] = {}
        touched: dict[int, _Connection] = {}
        for conn, sub in list(ns.subs.values()):
            if sub.state is not SubState.LIVE:
                continue
            picked = tuple(i for i, e in enumerate(envelopes) if sub.matches(e.topic))
            if not picked:
                continue
            body = bodies.get(picked)
            if body is None:
                body = bodies[picked] = _RECORD_ENCODER.encode([envelopes[i] for i in picked])
            if conn.try_put((events_head(sub.ref, ephemeral=True), body, 0)):
                touched[conn.id] = conn
            else:
                conn.counters.dropped_ephemeral += len(picked)
                self.counters.dropped_ephemeral += len(picked)
        return touched

    def job_failed(self, job: _Job, exc: Exception) -> None:
        """Answer a job whose append failed: a commit's caller gets ``exc``; a publisher
        gets an error and its connection is closed (it resends its outbox in order)."""
        if job.future is not None:
            if not job.future.done():
                job.future.set_exception(exc)
            return
        conn = job.conn
        if conn is None:
            return
        conn.inflight.release(job.size)
        if conn.closed:
            return
        code: str = Code.LOG_UNAVAILABLE
        reason = "event log unavailable; resend"
        if isinstance(exc, DiskFullError):
            code, reason = Code.DISK_FULL, "disk full; resend later"
        elif isinstance(exc, RouterError):
            code = exc.code

        async def refuse() -> None:
            await conn.send_error(code, str(exc), job.ref)
            await self._flush_and_close(conn, 1013, reason)

        conn.spawn(refuse(), f"refuse:{conn.session}:{job.ref}")

    def _to_log(self, conn: _Connection, ns: _Namespace, sub: Subscription) -> None:
        if sub.state is not SubState.LIVE or conn.closed:
            return
        sub.to_log()
        log.info(
            "subscriber behind; reading from the log",
            session=conn.session,
            identity=conn.identity,
            sub=sub.ref,
            gseq=sub.cursor,
        )
        self._start_catch_up(conn, ns, sub, lagging=True)

    def _all_to_log(self, ns: _Namespace) -> None:
        for conn, sub in list(ns.subs.values()):
            self._to_log(conn, ns, sub)

    def log_failed(self, ns: _Namespace) -> None:
        """An append's outcome is unknown: find out the head again once the log is back."""
        if self._log_watch is None or self._log_watch.done():
            self._log_watch = asyncio.create_task(self._rehead(ns), name=f"rehead:{ns.name}")

    async def _rehead(self, ns: _Namespace) -> None:
        while True:
            try:
                head = await self.backend.head(ns.name)
            except LogUnavailableError:
                await asyncio.sleep(0.2)
                continue
            if head > ns.head:
                log.info("log head moved while unreachable", ns=ns.name, head=head, was=ns.head)
                ns.head = head
                self._all_to_log(ns)
            return

    def _start_catch_up(
        self, conn: _Connection, ns: _Namespace, sub: Subscription, *, lagging: bool
    ) -> None:
        task = asyncio.create_task(
            self._catch_up(conn, ns, sub, lagging=lagging),
            name=f"catch-up:{conn.session}:{sub.ref}",
        )
        conn.catchups[sub.ref] = task

    async def _catch_up(
        self, conn: _Connection, ns: _Namespace, sub: Subscription, *, lagging: bool
    ) -> None:
        if lagging:
            await conn.send(Lagging(sub=sub.ref, gseq=sub.cursor))
        announced = False
        per_frame = self.config.limits.events_per_frame
        head = events_head(sub.ref)
        while True:
            target = ns.head
            if sub.cursor >= target:
                if not announced:
                    await conn.send(CaughtUp(sub=sub.ref, gseq=sub.cursor))
                    announced = True
                    continue
                sub.go_live()
                return
            cursor = self.backend.history(ns.name, sub.patterns, sub.cursor + 1, target, sub.min_ts)
            try:
                while chunk := await cursor.next_chunk():
                    picked = sub.select(chunk)
                    for start in range(0, len(picked), per_frame):
                        part = [chunk[i] for i in picked[start : start + per_frame]]
                        await conn.put((head, _RECORD_ENCODER.encode(part), 0))
                        conn.counters.events_out += len(part)
                        self.counters.events_out += len(part)
            except LogUnavailableError:
                await asyncio.sleep(0.2)
                continue
            except RouterError as exc:
                conn.subs.pop(sub.ref, None)
                ns.subs.pop((conn.id, sub.ref), None)
                conn.catchups.pop(sub.ref, None)
                await self._history_failed(conn, sub.ref, exc)
                return
            finally:
                cursor.close()
            sub.cursor = max(sub.cursor, target)

    async def _history_failed(self, conn: _Connection, ref: Ref, exc: RouterError) -> None:
        """End a subscription or fetch whose history read hit a damaged record (or
        another refusal of the log): ``error`` with LOG_CORRUPT and the log's message
        (file, byte position, offset); the client's iterator then raises it."""
        log.error("history read failed", session=conn.session, ref=ref, reason=exc.message)
        await conn.send_error(exc.code, exc.message, ref)

    # ------------------------------------------------------------------ connections

    async def _handle(self, ws: ServerConnection) -> None:
        conn = _Connection(self, ws, f"s{next(self._sessions)}")
        self.connections[conn.id] = conn
        writer = asyncio.create_task(conn.writer(), name=f"writer:{conn.session}")
        log.info("connection opened", session=conn.session, peer=_peer(ws))
        try:
            await self._read_loop(conn)
        except websockets.ConnectionClosed:
            pass
        finally:
            conn.closed = True
            await self._drop(conn, writer)
            log.info("connection closed", session=conn.session, identity=conn.identity)

    async def _drop(self, conn: _Connection, writer: asyncio.Task[None]) -> None:
        self.connections.pop(conn.id, None)
        for ref, (ns, _sub) in list(conn.subs.items()):
            ns.subs.pop((conn.id, ref), None)
        tasks = [writer, *conn.catchups.values(), *conn.fetches.values(), *conn.tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task

    async def _read_loop(self, conn: _Connection) -> None:
        ws = conn.ws
        # The hello deadline holds until a hello is accepted, not only for the first frame.
        deadline = time.monotonic() + conn.limits.hello_timeout_s
        while True:
            try:
                if conn.grant is None:
                    left = max(0.0, deadline - time.monotonic())
                    message = await asyncio.wait_for(ws.recv(decode=False), left)
                else:
                    message = await ws.recv(decode=False)
                conn.received_ns = time.perf_counter_ns()
            except TimeoutError:
                await conn.send_error(Code.NOT_AUTHENTICATED, "no hello in time", None)
                await self._flush_and_close(conn, 1008, "no hello")
                return
            conn.counters.frames_in += 1
            self.counters.frames_in += 1
            if not conn.frames.take(1):
                # Above max_frames_per_s nothing is dropped: reading waits until the
                # budget refilled for 50 ms of frames, then handles the frame.
                await self._slow_down(conn, conn.frames, 1, "frames", 0.05 * conn.frames.rate)
            if not await self._on_frame(conn, message):
                return

    async def _slow_down(
        self, conn: _Connection, bucket: _TokenBucket, n: int, unit: str, refill: float = 0.0
    ) -> None:
        """Hold a connection over its rate limit: one ``RATE_LIMITED`` notice (ref null),
        then no reading from it (TCP pushes back on the sender) until ``bucket`` has
        ``n`` tokens (and ``refill``: see :meth:`_TokenBucket.acquire`); they are taken.
        Nothing is refused or dropped."""
        await conn.send_error(
            Code.RATE_LIMITED, f"more than {bucket.rate:g} {unit}/s; reading slowed down", None
        )
        await bucket.acquire(n, refill=refill)

    async def _flush_and_close(self, conn: _Connection, code: int, reason: str) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.drained(), 2.0)
        await conn.ws.close(code, reason)

    async def _on_frame(self, conn: _Connection, message: bytes | str) -> bool:
        try:
            frame = decode_client_frame(message)
        except FrameError as exc:
            await conn.send_error(exc.code, exc.message, exc.frame_ref)
            return True
        try:
            match frame:
                case Hello():
                    return await self._on_hello(conn, frame)
                case _ if conn.grant is None:
                    await conn.send_error(Code.NOT_AUTHENTICATED, "send hello first", frame.ref)
                case Pub():
                    await self._on_pub(conn, frame, len(message))
                case Sub():
                    await self._on_sub(conn, frame)
                case Unsub():
                    await self._on_unsub(conn, frame)
                case Fetch():
                    await self._on_fetch(conn, frame)
                case Ack():
                    entry = conn.subs.get(frame.sub)
                    if entry is None:
                        await conn.send_error(
                            Code.UNKNOWN_SUBSCRIPTION, f"no subscription {frame.sub!r}", frame.ref
                        )
                    else:
                        entry[1].acked_gseq = max(entry[1].acked_gseq, frame.gseq)
                case Commit():
                    await self._on_commit(conn, frame)
                case Stats():
                    await conn.send(StatsReply(ref=frame.ref, health=self.health()))
        except RouterError as exc:
            return await self._refuse(conn, frame, exc.code, exc.message)
        except LogUnavailableError as exc:
            return await self._refuse(conn, frame, Code.LOG_UNAVAILABLE, str(exc))
        except Exception as exc:  # a bug must not take the router down; it is logged
            log.exception(
                "request failed unexpectedly", session=conn.session, op=type(frame).__name__
            )
            message = f"internal error: {type(exc).__name__}: {exc}"
            return await self._refuse(conn, frame, Code.INTERNAL, message)
        return True

    async def _refuse(self, conn: _Connection, frame: ClientFrame, code: str, message: str) -> bool:
        """Answer a request that failed with an ``error`` frame of ``code`` and ``message``;
        return False to stop reading.

        A logged, unstaged ``pub`` that failed with a retryable code closes the connection
        (1013), as a failed append does (:meth:`job_failed`): its later pubs, already
        sent, must not be stored ahead of it (the log would take its resend as
        duplicates), so the reader stops here and the client reconnects and resends
        its outbox in order.
        """
        await conn.send_error(code, message, frame.ref)
        if (
            isinstance(frame, Pub)
            and not frame.ephemeral
            and frame.stage is None
            and code in RETRYABLE
        ):
            await self._flush_and_close(conn, 1013, "publication failed; resend in order")
            return False
        return True

    async def _on_hello(self, conn: _Connection, frame: Hello) -> bool:
        if conn.grant is not None:
            await conn.send_error(
                Code.ALREADY_AUTHENTICATED, "hello was already accepted", frame.ref
            )
            return True
        try:
            grant = self.authority.authenticate(frame.identity, frame.token)
        except AuthError as exc:
            await conn.send_error(Code.AUTH_FAILED, str(exc), frame.ref)
            await self._flush_and_close(conn, 1008, "authentication failed")
            return False
        conn.identity = frame.identity
        conn.grant = grant
        ns = await self.namespace(self.config.namespace)
        await conn.send(
            Welcome(
                ref=frame.ref,
                session=conn.session,
                identity=frame.identity,
                namespace=self.config.namespace,
                server_time_ns=time.time_ns(),
                head_gseq=ns.head,
                version=PROTOCOL_VERSION,
                limits=conn.limits,
                boot=self.boot,
            )
        )
        log.info(
            "authenticated", session=conn.session, identity=frame.identity, client=frame.client
        )
        return True

    def _ns_name(self, ns: str | None, ref: Ref) -> str:
        name = self.config.namespace if ns is None else ns
        problem = validate_namespace(name)
        if problem is not None:
            raise RouterError(Code.BAD_NAMESPACE, problem, str(ref))
        return name

    async def _validate(
        self, conn: _Connection, ns: _Namespace, frame: Pub
    ) -> list[AckItem] | None:
        """Per-envelope problems, or None when every envelope is acceptable.

        Topic checks (name, ACL, single writer) run once per distinct topic of the
        batch; source, id and payload checks once per envelope.
        """
        identity = conn.identity
        grant = conn.grant
        assert identity is not None
        assert grant is not None
        topic_problems: dict[str, tuple[str, str] | None] = {}
        for topic in {env.topic for env in frame.events}:
            topic_problems[topic] = await self._check_topic(
                topic, identity, grant, ns, frame.ephemeral
            )
        if not frame.ephemeral:
            # Single writer: checked once every owner is loaded, with no await between
            # this and the claim below (another batch may claim a topic during the
            # lookups, each of which awaits the log).
            for topic, problem in topic_problems.items():
                owner = ns.owners.get(topic)
                if problem is None and owner is not None and owner != identity:
                    topic_problems[topic] = (
                        Code.TOPIC_OWNED,
                        f"topic {topic!r} is written by {owner!r}; one writer per topic",
                    )
        problems = check_envelopes(
            frame.events,
            identity,
            topic_problems,
            accept_unknown=self.config.accept_unknown_types,
        )
        if problems is None:
            if not frame.ephemeral:
                for topic in topic_problems:
                    ns.owners.setdefault(topic, identity)
            return None
        return [
            AckItem(id=env.id, error=p[0], message=p[1])
            if p is not None
            else AckItem(
                id=env.id,
                error=Code.BATCH_REJECTED,
                message="another envelope of the batch was refused; nothing was stored",
            )
            for env, p in zip(frame.events, problems, strict=True)
        ]

    async def _check_topic(
        self, topic: str, identity: str, grant: Grant, ns: _Namespace, ephemeral: bool
    ) -> tuple[str, str] | None:
        problem = validate_topic(topic)
        if problem is not None:
            return (Code.INVALID_TOPIC, problem)
        if not may_publish(grant, topic):
            return (Code.FORBIDDEN, f"identity {identity!r} may not publish on {topic!r}")
        if not ephemeral:
            await ns.owner(topic)  # loads ns.owners; compared in _validate after every await
        return None

    async def _on_pub(self, conn: _Connection, frame: Pub, size: int) -> None:
        limits = conn.limits
        if len(frame.events) > limits.max_batch_events:
            raise RouterError(
                Code.BATCH_TOO_LARGE,
                f"{len(frame.events)} envelopes > max_batch_events {limits.max_batch_events}",
            )
        if not conn.events.take(len(frame.events)):
            # Above max_events_per_s the batch waits for its budget: refusing it would
            # let the connection's later pubs be stored ahead of it. The burst holds a
            # whole batch, so the wait ends.
            await self._slow_down(conn, conn.events, len(frame.events), "events")
        ns = await self.namespace(self._ns_name(frame.ns, frame.ref))
        refused = await self._validate(conn, ns, frame)
        if refused is not None:
            conn.counters.errors += 1
            self.counters.errors += 1
            first = next(r for r in refused if r.error != Code.BATCH_REJECTED)
            log.warning(
                "batch refused",
                session=conn.session,
                identity=conn.identity,
                ref=frame.ref,
                code=first.error,
                reason=(first.message or "")[:500],
            )
            await conn.send(PubAck(ref=frame.ref, results=refused))
            return
        conn.counters.events_in += len(frame.events)
        self.counters.events_in += len(frame.events)
        if frame.stage is not None:
            self.stages.add(ns.name, frame.stage, frame.events)
            await conn.send(
                PubAck(ref=frame.ref, results=[AckItem(id=e.id, staged=True) for e in frame.events])
            )
            return
        kind = "ephemeral" if frame.ephemeral else "pub"
        # Backpressure: the appender answers this batch on the connection's queue
        # without waiting, so take no more while the client does not read its answers.
        await conn.wait_room()
        await conn.inflight.acquire(size)
        answer = frame.ack or not frame.ephemeral
        try:
            job = _Job(
                kind,
                list(frame.events),
                conn,
                frame.ref,
                answer,
                size=size,
                received_ns=conn.received_ns,
            )
            await ns.queue.put(job)
        except BaseException:
            conn.inflight.release(size)
            raise

    @staticmethod
    def _check_reading(conn: _Connection, ref: Ref, patterns: Sequence[str], verb: str) -> None:
        """Refuse a new ``sub``/``fetch``: a ref in use, too many, or patterns outside the ACL.

        Raises:
            RouterError: DUPLICATE_SUBSCRIPTION, TOO_MANY_SUBSCRIPTIONS or FORBIDDEN.
        """
        grant = conn.grant
        assert grant is not None
        if ref in conn.subs or ref in conn.fetches:
            raise RouterError(Code.DUPLICATE_SUBSCRIPTION, f"subscription {ref!r} is open")
        if len(conn.subs) + len(conn.fetches) >= conn.limits.max_subscriptions:
            raise RouterError(
                Code.TOO_MANY_SUBSCRIPTIONS,
                f"at most {conn.limits.max_subscriptions} subscriptions per connection",
            )
        for pattern in patterns:
            if not may_subscribe(grant, pattern):
                raise RouterError(
                    Code.FORBIDDEN, f"identity {conn.identity!r} may not {verb} {pattern!r}"
                )

    async def _on_sub(self, conn: _Connection, frame: Sub) -> None:
        self._check_reading(conn, frame.ref, frame.patterns, "subscribe to")
        ns = await self.namespace(self._ns_name(frame.ns, frame.ref))
        sub = Subscription(frame.ref, ns.name, frame.patterns, frame.start, ns.head)
        conn.subs[frame.ref] = (ns, sub)
        ns.subs[(conn.id, frame.ref)] = (conn, sub)
        await conn.send(
            Subscribed(ref=frame.ref, ns=ns.name, from_gseq=sub.from_gseq, head_gseq=ns.head)
        )
        self._start_catch_up(conn, ns, sub, lagging=False)

    async def _on_unsub(self, conn: _Connection, frame: Unsub) -> None:
        entry = conn.subs.pop(frame.sub, None)
        fetch = conn.fetches.pop(frame.sub, None)
        if entry is None and fetch is None:
            raise RouterError(Code.UNKNOWN_SUBSCRIPTION, f"no subscription {frame.sub!r}")
        if entry is not None:
            ns, _sub = entry
            ns.subs.pop((conn.id, frame.sub), None)
            task = conn.catchups.pop(frame.sub, None)
            if task is not None:
                task.cancel()
        if fetch is not None:
            fetch.cancel()
        await conn.send(Unsubscribed(ref=frame.ref, sub=frame.sub))

    async def _on_fetch(self, conn: _Connection, frame: Fetch) -> None:
        self._check_reading(conn, frame.ref, frame.patterns, "fetch")
        ns = await self.namespace(self._ns_name(frame.ns, frame.ref))
        sub = Subscription(frame.ref, ns.name, frame.patterns, frame.start, ns.head)
        to_gseq = min(ns.head, frame.to_gseq) if frame.to_gseq is not None else ns.head
        task = asyncio.create_task(
            self._fetch(conn, ns, sub, to_gseq, frame.limit),
            name=f"fetch:{conn.session}:{frame.ref}",
        )
        conn.fetches[frame.ref] = task

    async def _fetch(
        self, conn: _Connection, ns: _Namespace, sub: Subscription, to_gseq: int, limit: int | None
    ) -> None:
        sent = 0
        last = sub.cursor
        per_frame = self.config.limits.events_per_frame
        head = events_head(sub.ref)
        try:
            while sub.cursor < to_gseq and (limit is None or sent < limit):
                cursor = self.backend.history(
                    ns.name, sub.patterns, sub.cursor + 1, to_gseq, sub.min_ts
                )
                try:
                    while (limit is None or sent < limit) and (chunk := await cursor.next_chunk()):
                        picked = sub.select(chunk)
                        if limit is not None and sent + len(picked) > limit:
                            picked = picked[: limit - sent]
                            if picked:
                                sub.cursor = chunk[picked[-1]].gseq
                        for start in range(0, len(picked), per_frame):
                            part = [chunk[i] for i in picked[start : start + per_frame]]
                            await conn.put((head, _RECORD_ENCODER.encode(part), 0))
                            sent += len(part)
                            last = part[-1].gseq
                except LogUnavailableError:
                    await asyncio.sleep(0.2)
                    continue
                except RouterError as exc:
                    await self._history_failed(conn, sub.ref, exc)
                    return
                finally:
                    cursor.close()
                if limit is None or sent < limit:
                    sub.cursor = max(sub.cursor, to_gseq)
            await conn.send(FetchEnd(ref=sub.ref, count=sent, last_gseq=last))
        finally:
            conn.fetches.pop(sub.ref, None)

    async def _on_commit(self, conn: _Connection, frame: Commit) -> None:
        grant = conn.grant
        assert grant is not None
        if not grant.commit:
            raise RouterError(Code.FORBIDDEN, f"identity {conn.identity!r} may not commit")
        ns = await self.namespace(self._ns_name(frame.ns, frame.ref))
        envelopes = self.stages.take(ns.name, frame.stage, dict(frame.expect))
        if not envelopes:
            await conn.send(
                Committed(ref=frame.ref, stage=frame.stage, first_gseq=0, last_gseq=0, count=0)
            )
            return
        future: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
        await ns.queue.put(_Job("commit", envelopes, future=future, ts_log=frame.ts_log))
        try:
            results = await future
        except (LogUnavailableError, DiskFullError):
            self.stages.restore(ns.name, frame.stage, envelopes)
            raise
        failed = [r for r in results if r.error is not None]
        if failed:
            raise RouterError(
                failed[0].error or Code.INTERNAL,
                f"{len(failed)} staged events refused by the log: {failed[0].message}",
            )
        gseqs = [r.gseq for r in results if r.gseq is not None]
        divergences = await self._compare_duplicates(ns.name, envelopes, results)
        for d in divergences:
            log.error("commit_divergence", stage=frame.stage, id=d.id, fields=d.fields)
        await conn.send(
            Committed(
                ref=frame.ref,
                stage=frame.stage,
                first_gseq=min(gseqs) if gseqs else 0,
                last_gseq=max(gseqs) if gseqs else 0,
                count=len(results),
                divergences=divergences,
            )
        )

    async def _compare_duplicates(
        self, ns: str, envelopes: list[Envelope], results: list[AppendResult]
    ) -> list[Divergence]:
        """The staged events the log found stored already (same ``source``,
        ``source_seq``) whose stored twin differs (:func:`compare`), in the log's order.

        A commit applied before a crash and retried after finds its events stored; the
        stagers' second copies are regenerated outputs, so a difference means an actor
        that is not deterministic. The twins are read from the log between the
        duplicates' first and last gseq; a duplicate the log gave no position for
        (older than its in-memory window, under another topic) is not compared.
        """
        twins: dict[tuple[str, int], Envelope] = {}
        gseqs: list[int] = []
        for env, r in zip(envelopes, results, strict=True):
            if r.duplicate and r.gseq is not None:
                twins[(env.source, env.source_seq)] = env
                gseqs.append(r.gseq)
        if not twins:
            return []
        found: list[Divergence] = []
        cursor = self.backend.history(ns, [">"], min(gseqs), max(gseqs))
        try:
            while twins and (chunk := await cursor.next_chunk()):
                for rec in chunk:
                    key = (rec.source, rec.source_seq)
                    if key in twins and (d := compare(twins.pop(key), rec)) is not None:
                        found.append(d)
        finally:
            cursor.close()
        return found

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        """A snapshot of the router's health (the ``system.health`` payload, as a dict).

        Returns:
            ``component``, ``head_gseq`` (default namespace), ``connections`` (one dict
            per connection: identity, queue depth, counters, and per subscription its
            namespace, state, cursor and ``lag`` = head − cursor in gseqs), ``metrics``
            (totals, uptime in seconds, staged events, and the append latency p50/p99
            in ms over the last appends of the default namespace), ``namespaces``
            (namespace → head gseq) and ``namespace_metrics`` (namespace → its head,
            events appended through this router, append latency p50/p99 in ms,
            subscriptions live and reading the log, and the largest lag), for every
            namespace the router serves.
        """
        default = self.namespaces.get(self.config.namespace)
        connections = [conn.health() for conn in self.connections.values()]
        result: dict[str, Any] = msgspec.to_builtins(self._health_payload(default, connections))
        result["namespaces"] = {name: ns.head for name, ns in sorted(self.namespaces.items())}
        result["namespace_metrics"] = {
            name: _namespace_metrics(ns) for name, ns in sorted(self.namespaces.items())
        }
        return result

    def _health_payload(self, ns: _Namespace | None, connections: list[dict[str, Any]]) -> Health:
        """The health as seen from ``ns``: its head and append latency, every connection."""
        latencies = ns.append_latency_ns if ns else []
        c = self.counters
        metrics = {
            "uptime_s": (time.time_ns() - self._started_ns) / 1e9,
            "connections": float(len(self.connections)),
            "namespaces": float(len(self.namespaces)),
            "frames_in": float(c.frames_in),
            "events_in": float(c.events_in),
            "events_out": float(c.events_out),
            "errors": float(c.errors),
            "dropped_ephemeral": float(c.dropped_ephemeral),
            "staged_events": float(self.stages.staged_events),
            "staged_bytes": float(self.stages.staged_bytes),
            "append_p50_ms": _percentile(latencies, 0.50) / 1e6,
            "append_p99_ms": _percentile(latencies, 0.99) / 1e6,
        }
        return Health(
            component="router",
            head_gseq=ns.head if ns else 0,
            connections=connections,
            metrics=metrics,
        )

    async def _health_loop(self) -> None:
        """Publish ``system.health.router`` to the live subscribers of every namespace.

        Each namespace gets its own view: its head and its append latency (the
        connections and totals are the router's). Each tick also drops the stages left
        idle (:meth:`StageBook.expire`).
        """
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            if dropped := self.stages.expire():
                log.warning("stages expired", events=dropped, idle_s=self.stages.idle_s)
            for conn in self.connections.values():
                conn.tick_rates()
            targets = [ns for ns in list(self.namespaces.values()) if ns.subs]
            if not targets:
                continue
            connections = [conn.health() for conn in self.connections.values()]
            now = time.time_ns()
            for ns in targets:
                env = make_envelope(
                    self._health_payload(ns, connections),
                    topic="system.health.router",
                    source="router",
                    source_seq=next(self._health_seq),
                    ts_event=now,
                )
                _flush(self.fan_out_ephemeral(ns, [env]))
