"""Where the router's event log lives: in its process, or as its own (``tape eventlog``).

The router talks to the log through :class:`LogBackend`, a small interface with two
implementations that behave the same:

- :class:`EmbeddedLog` (the default): one :class:`~tickertape.eventlog.AsyncEventLog`
  per namespace, opened lazily under one data directory, in the router's process.
- :class:`RemoteLog`: a WebSocket client of :class:`LogService`, the log running as
  its own process (``tape eventlog``). A router restart then does not restart the
  log; a log restart makes appends fail with :class:`LogUnavailableError`
  (retryable) until it is back.

The log-service protocol is internal (router ↔ log, same version on both sides):
JSON frames ``append``/``head``/``read``/``owner`` answered by ``appended``/``head``/
``records``/``owner`` or ``error``, each naming the request's ``ref``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec
import structlog
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import Server, ServerConnection, serve

from tickertape.errors import (
    CorruptRecordError,
    DiskFullError,
    LogClosedError,
    LogError,
    LogFatalError,
    RouterError,
)
from tickertape.eventlog import AppendResult, AsyncEventLog, LogReader
from tickertape.eventlog.layout import RUNS_PREFIX
from tickertape.router.protocol import Code, validate_namespace
from tickertape.schemas.envelope import Envelope, Record

log = structlog.get_logger("tickertape.router.logservice")

READ_CHUNK = 2_000
"""Records per history read call (one thread hop, one frame to the client)."""


class LogUnavailableError(LogError):
    """The event log cannot be reached or is restarting; nothing was acknowledged.

    Attributes:
        reason: what happened.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"event log unavailable: {reason}")


class HistoryCursor(Protocol):
    """Reads a namespace's records in gseq order, chunk by chunk."""

    async def next_chunk(self) -> list[Record]:
        """Return the next records (≤ :data:`READ_CHUNK`), or an empty list at the end.

        Raises:
            LogUnavailableError: the log cannot be reached (retry).
            RouterError: ``LOG_CORRUPT``, a damaged record (the message names the file,
                byte position and offset); the records before it came in earlier chunks.
        """
        ...

    def close(self) -> None:
        """Release the cursor."""
        ...


class LogBackend(Protocol):
    """What the router needs from the event log (see the module docstring)."""

    async def head(self, ns: str) -> int:
        """The namespace's last gseq (0 when empty); opens the namespace."""
        ...

    async def append(
        self, ns: str, envelopes: Sequence[Envelope], ts_log: int
    ) -> list[AppendResult]:
        """Append durably; one result per envelope.

        Raises:
            LogUnavailableError: the log is unreachable (retryable).
            DiskFullError: no space; nothing of the batch's last group was stored.
        """
        ...

    def history(
        self,
        ns: str,
        patterns: Sequence[str],
        from_gseq: int,
        to_gseq: int,
        min_ts: int | None = None,
    ) -> HistoryCursor:
        """A cursor over records matching ``patterns`` with from_gseq ≤ gseq ≤ to_gseq."""
        ...

    async def topic_owner(self, ns: str, topic: str) -> str | None:
        """The ``source`` of the last record stored on ``topic``, or None."""
        ...

    async def close(self) -> None:
        """Close every namespace."""
        ...


# --------------------------------------------------------------------------- embedded


def _take(it: Iterator[Record], n: int, to_gseq: int, out: list[Record]) -> None:
    """Append to ``out`` the next records, up to ``n`` of them or gseq ``to_gseq`` (``out``
    holds what was read when the reader raises)."""
    for rec in it:
        if rec.gseq > to_gseq:
            break
        out.append(rec)
        if len(out) >= n:
            break


class _ThreadCursor:
    """A LogReader iterator pulled one chunk per thread hop."""

    def __init__(self, make: Any, to_gseq: int) -> None:
        self._make = make
        self._it: Iterator[Record] | None = None
        self._to = to_gseq
        self._done = False
        self._error: Exception | None = None  # met after the records of the last chunk

    def _next(self) -> list[Record]:
        if self._it is None:
            self._it = self._make()
        out: list[Record] = []
        try:
            _take(self._it, READ_CHUNK, self._to, out)
        except LogError as exc:  # the records before the damage are delivered first
            error: Exception = exc
            if isinstance(exc, CorruptRecordError):  # as the remote log reports it
                error = RouterError(Code.LOG_CORRUPT, str(exc))
            if not out:
                raise error from None
            self._error = error
        if len(out) < READ_CHUNK:
            self._done = True
        return out

    async def next_chunk(self) -> list[Record]:
        if self._error is not None:
            raise self._error
        if self._done:
            return []
        return await asyncio.to_thread(self._next)

    def close(self) -> None:
        it, self._it = self._it, None
        close = getattr(it, "close", None)
        if close is not None:
            close()


class EmbeddedLog:
    """The event log in the router's process: one AsyncEventLog per namespace.

    Args:
        data_dir: the data directory (``<data-dir>/logs/<namespace>/...``).
        seal: seal each namespace's days that are over while it runs
            (``AsyncEventLog.open(seal=True)``).
        retention: ``(pattern, max_age_days)`` rules applied while it runs to each
            namespace but replay runs' (``runs/...``, whose days are their inputs'
            dates, long past): ``AsyncEventLog.open(retention=...)``.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        seal: bool = True,
        retention: Sequence[tuple[str, int]] = (),
    ) -> None:
        self._data_dir = Path(data_dir)
        self._seal = seal
        self._retention = tuple(retention)
        self._logs: dict[str, AsyncEventLog] = {}
        self._opening: dict[str, asyncio.Lock] = {}

    async def _open(self, ns: str) -> AsyncEventLog:
        alog = self._logs.get(ns)
        if alog is not None:
            return alog
        lock = self._opening.setdefault(ns, asyncio.Lock())
        async with lock:
            alog = self._logs.get(ns)
            if alog is None:
                # Payloads were decoded from the publishers' JSON frames: one JSON value each.
                alog = await AsyncEventLog.open(
                    self._data_dir, ns, check_payloads=False, seal=self._seal,
                    retention=() if ns.startswith(RUNS_PREFIX) else self._retention,
                )  # fmt: skip
                self._logs[ns] = alog
        return alog

    async def head(self, ns: str) -> int:
        alog = await self._open(ns)
        return int(alog.head_gseq)

    async def append(
        self, ns: str, envelopes: Sequence[Envelope], ts_log: int
    ) -> list[AppendResult]:
        alog = await self._open(ns)
        return await alog.append(envelopes, ts_log=ts_log)

    def history(
        self,
        ns: str,
        patterns: Sequence[str],
        from_gseq: int,
        to_gseq: int,
        min_ts: int | None = None,
    ) -> HistoryCursor:
        data_dir = self._data_dir

        def make() -> Iterator[Record]:

            reader = LogReader(data_dir, ns)  # one per cursor: its caches are not shared
            if min_ts is not None and from_gseq <= 1:
                return iter(reader.read_from_time(list(patterns), min_ts))
            return iter(reader.read(list(patterns), from_gseq, to_gseq))

        return _ThreadCursor(make, to_gseq)

    async def topic_owner(self, ns: str, topic: str) -> str | None:
        alog = await self._open(ns)

        def last_source(event_log: Any) -> str | None:
            next_offset = event_log.next_offsets().get(topic, 0)
            if next_offset == 0:
                return None
            for rec in event_log.read_topic(topic, next_offset - 1):
                return str(rec.source)
            return None

        source = await alog.run_sync(last_source)
        return None if source is None else str(source)

    async def close(self) -> None:
        logs, self._logs = self._logs, {}
        for alog in logs.values():
            await alog.close()


# --------------------------------------------------------------------------- remote


class _LogRequest(msgspec.Struct, frozen=True, kw_only=True, tag_field="op"):
    ref: int
    ns: str


class _AppendReq(_LogRequest, tag="append", frozen=True):
    events: list[Envelope]
    ts_log: int


class _HeadReq(_LogRequest, tag="head", frozen=True):
    pass


class _ReadReq(_LogRequest, tag="read", frozen=True):
    patterns: list[str]
    from_gseq: int
    to_gseq: int
    min_ts: int | None = None
    limit: int = READ_CHUNK


class _OwnerReq(_LogRequest, tag="owner", frozen=True):
    topic: str


class _LogReply(msgspec.Struct, frozen=True, kw_only=True, tag_field="op"):
    ref: int


class _AppendedReply(_LogReply, tag="appended", frozen=True):
    results: list[AppendResult]


class _HeadReply(_LogReply, tag="head", frozen=True):
    head: int


class _RecordsReply(_LogReply, tag="records", frozen=True):
    records: list[Record]


class _OwnerReply(_LogReply, tag="owner", frozen=True):
    source: str | None


class _ErrorReply(_LogReply, tag="error", frozen=True):
    code: str
    message: str


_REQ_DECODER = msgspec.json.Decoder(_AppendReq | _HeadReq | _ReadReq | _OwnerReq)
_REPLY_DECODER = msgspec.json.Decoder(
    _AppendedReply | _HeadReply | _RecordsReply | _OwnerReply | _ErrorReply
)
_ENCODER = msgspec.json.Encoder()


async def serve_until_failed(server: Server, failed: asyncio.Future[LogError], name: str) -> None:
    """Serve ``server`` until cancelled, or until ``failed`` gets the log's failure.

    Raises:
        LogError: the error ``failed`` was given (the process must exit).
    """
    serving = asyncio.create_task(server.serve_forever(), name=f"{name}-serve")
    try:
        waiting: list[asyncio.Future[Any]] = [serving, failed]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    if failed.done():
        raise failed.result()


class LogService:
    """The event log as its own process (``tape eventlog``): a WebSocket server.

    Serves one router (or several read-only users) over the internal log protocol.
    Binds loopback by default; it trusts its clients, so put it beside the router.

    Args:
        data_dir: the data directory.
        host: interface to bind.
        port: TCP port (0 picks a free one; see :attr:`port`).
        seal: seal the days that are over while it runs (:class:`EmbeddedLog`).
        retention: retention rules applied while it runs (:class:`EmbeddedLog`).
    """

    def __init__(
        self,
        data_dir: str | Path,
        host: str = "127.0.0.1",
        port: int = 7401,
        *,
        seal: bool = True,
        retention: Sequence[tuple[str, int]] = (),
    ) -> None:
        self._log = EmbeddedLog(data_dir, seal=seal, retention=retention)
        self._host = host
        self._port = port
        self._fatal: asyncio.Future[LogError] | None = None  # set by fatal(); in start()
        self._server: Server | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Open the default namespace and start listening."""
        self._fatal = asyncio.get_running_loop().create_future()
        await self._log.head("main")
        self._server = await serve(
            self._handle, self._host, self._port, max_size=None, compression=None
        )
        log.info("eventlog listening", host=self._host, port=self.port)

    async def serve_forever(self) -> None:
        """Serve until cancelled, or until the log fails for good.

        Raises:
            LogFatalError: a write or fsync failed (DESIGN §5: the process exits, and
                recovery at the next start decides what is valid); the request that
                met it was answered LOG_UNAVAILABLE, so the router retries.
        """
        assert self._server is not None
        assert self._fatal is not None
        await serve_until_failed(self._server, self._fatal, "eventlog")

    def fatal(self, exc: LogError) -> None:
        """The log failed for good: make :meth:`serve_forever` raise ``exc``."""
        if self._fatal is not None and not self._fatal.done():
            log.critical("event log failed; the log service stops", error=str(exc))
            self._fatal.set_result(exc)

    async def close(self) -> None:
        """Stop listening and close the log."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._log.close()

    async def _handle(self, ws: ServerConnection) -> None:
        cursors: dict[tuple[Any, ...], HistoryCursor] = {}
        try:
            async for message in ws:
                req = _REQ_DECODER.decode(message)
                reply = await self._answer(req, cursors)
                await ws.send(_ENCODER.encode(reply), text=True)
        except websockets.ConnectionClosed:
            pass
        finally:
            for cursor in cursors.values():
                cursor.close()

    async def _answer(
        self,
        req: _AppendReq | _HeadReq | _ReadReq | _OwnerReq,
        cursors: dict[tuple[Any, ...], HistoryCursor],
    ) -> _LogReply:
        problem = validate_namespace(req.ns)
        if problem is not None:
            return _ErrorReply(ref=req.ref, code=Code.BAD_NAMESPACE, message=problem)
        try:
            match req:
                case _AppendReq():
                    results = await self._log.append(req.ns, req.events, req.ts_log)
                    return _AppendedReply(ref=req.ref, results=results)
                case _HeadReq():
                    return _HeadReply(ref=req.ref, head=await self._log.head(req.ns))
                case _ReadReq():
                    await self._log.head(req.ns)
                    key = (req.ns, tuple(req.patterns), req.to_gseq, req.min_ts)
                    cursor = cursors.pop(key, None)
                    if cursor is None or getattr(cursor, "next_from", None) != req.from_gseq:
                        if cursor is not None:
                            cursor.close()
                        cursor = self._log.history(
                            req.ns, req.patterns, req.from_gseq, req.to_gseq, req.min_ts
                        )
                    records = await cursor.next_chunk()
                    if records:
                        cursor.next_from = records[-1].gseq + 1  # type: ignore[attr-defined]
                        if len(cursors) < 64:
                            cursors[key] = cursor
                    return _RecordsReply(ref=req.ref, records=records)
                case _OwnerReq():
                    source = await self._log.topic_owner(req.ns, req.topic)
                    return _OwnerReply(ref=req.ref, source=source)
        except DiskFullError as exc:
            return _ErrorReply(ref=req.ref, code=Code.DISK_FULL, message=str(exc))
        except RouterError as exc:  # LOG_CORRUPT from a history read
            log.error("history read refused", code=exc.code, error=exc.message)
            return _ErrorReply(ref=req.ref, code=exc.code, message=exc.message)
        except (LogFatalError, LogClosedError) as exc:
            self.fatal(exc)
            return _ErrorReply(ref=req.ref, code=Code.LOG_UNAVAILABLE, message=str(exc))
        except LogError as exc:
            log.error("eventlog request failed", op=type(req).__name__, error=str(exc))
            return _ErrorReply(ref=req.ref, code=Code.LOG_UNAVAILABLE, message=str(exc))


class _RemoteCursor:
    def __init__(
        self,
        remote: RemoteLog,
        ns: str,
        patterns: Sequence[str],
        from_gseq: int,
        to_gseq: int,
        min_ts: int | None,
    ) -> None:
        self._remote = remote
        self._ns = ns
        self._patterns = list(patterns)
        self._from = from_gseq
        self._to = to_gseq
        self._min_ts = min_ts
        self._done = from_gseq > to_gseq

    async def next_chunk(self) -> list[Record]:
        if self._done:
            return []
        reply = await self._remote.request(
            lambda ref: _ReadReq(
                ref=ref,
                ns=self._ns,
                patterns=self._patterns,
                from_gseq=self._from,
                to_gseq=self._to,
                min_ts=self._min_ts,
            )
        )
        assert isinstance(reply, _RecordsReply)
        records = [r for r in reply.records if r.gseq <= self._to]
        if len(reply.records) < READ_CHUNK or not records:
            self._done = True
        if records:
            self._from = records[-1].gseq + 1
            self._min_ts = None if self._from > 1 else self._min_ts
        return records

    def close(self) -> None:
        self._done = True


class RemoteLog:
    """A client of :class:`LogService` (``tape eventlog``), reconnecting by itself.

    Args:
        url: the log service's URL, e.g. ``ws://127.0.0.1:7401``.
        timeout_s: how long one request may take before it fails as unavailable.
    """

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._ws: ClientConnection | None = None
        self._refs = itertools.count(1)
        self._pending: dict[int, asyncio.Future[_LogReply]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.reconnects = 0

    async def _connection(self) -> ClientConnection:
        if self._ws is not None:
            return self._ws
        async with self._lock:
            if self._ws is None:
                try:
                    ws = await ws_connect(self._url, max_size=None, compression=None)
                except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
                    raise LogUnavailableError(f"cannot connect to {self._url}: {exc}") from None
                self._ws = ws
                self.reconnects += 1
                self._reader = asyncio.create_task(self._read(ws), name="remote-log-reader")
            return self._ws

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                reply = _REPLY_DECODER.decode(message)
                fut = self._pending.pop(reply.ref, None)
                if fut is not None and not fut.done():
                    fut.set_result(reply)
        except websockets.ConnectionClosed:
            pass
        finally:
            self._ws = None
            pending, self._pending = self._pending, {}
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(LogUnavailableError("connection to the log was lost"))

    async def request(self, build: Any) -> _LogReply:
        """Send one request built by ``build(ref)`` and await its reply.

        Raises:
            LogUnavailableError: not connected, connection lost, timeout, or the log
                answered ``LOG_UNAVAILABLE``.
            DiskFullError: the log answered ``DISK_FULL``.
        """
        ws = await self._connection()
        ref = next(self._refs)
        fut: asyncio.Future[_LogReply] = asyncio.get_running_loop().create_future()
        self._pending[ref] = fut
        try:
            await ws.send(_ENCODER.encode(build(ref)), text=True)
            reply = await asyncio.wait_for(fut, self._timeout_s)
        except websockets.ConnectionClosed:
            raise LogUnavailableError("connection to the log was lost") from None
        except TimeoutError:
            raise LogUnavailableError(f"no answer within {self._timeout_s} s") from None
        finally:
            self._pending.pop(ref, None)
        if isinstance(reply, _ErrorReply):
            if reply.code == Code.DISK_FULL:
                raise DiskFullError(reply.message)
            if reply.code == Code.LOG_CORRUPT:
                raise RouterError(Code.LOG_CORRUPT, reply.message)
            raise LogUnavailableError(reply.message)
        return reply

    async def head(self, ns: str) -> int:
        reply = await self.request(lambda ref: _HeadReq(ref=ref, ns=ns))
        assert isinstance(reply, _HeadReply)
        return reply.head

    async def append(
        self, ns: str, envelopes: Sequence[Envelope], ts_log: int
    ) -> list[AppendResult]:
        reply = await self.request(
            lambda ref: _AppendReq(ref=ref, ns=ns, events=list(envelopes), ts_log=ts_log)
        )
        assert isinstance(reply, _AppendedReply)
        return reply.results

    def history(
        self,
        ns: str,
        patterns: Sequence[str],
        from_gseq: int,
        to_gseq: int,
        min_ts: int | None = None,
    ) -> HistoryCursor:
        return _RemoteCursor(self, ns, patterns, from_gseq, to_gseq, min_ts)

    async def topic_owner(self, ns: str, topic: str) -> str | None:
        reply = await self.request(lambda ref: _OwnerReq(ref=ref, ns=ns, topic=topic))
        assert isinstance(reply, _OwnerReply)
        return reply.source

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
