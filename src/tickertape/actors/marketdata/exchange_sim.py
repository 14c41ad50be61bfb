"""A local Binance spot exchange that replays a recorded capture (``tape exchange-sim``).

It serves, on one port:

- ``ws://HOST:PORT/stream?streams=a/b/c``: the combined stream, each frame's text
  exactly as Binance sent it in the capture, paced by the recorded receive times
  (divided by ``speed``). Playback starts when the first client connects (or at once
  with ``wait_for_client=False``) and runs on one clock for every client, as a real
  exchange does: a client connecting later misses what was already sent.
- ``http://HOST:PORT/api/v3/depth?symbol=BTCUSDT``: a REST depth snapshot of the
  book as of the last diff sent (the capture's snapshot updated with every diff
  played), in Binance's shape (``lastUpdateId``, ``bids``, ``asks``).
- ``http://HOST:PORT/api/v3/historicalTrades?symbol=BTCUSDT&fromId=N&limit=L``: the
  trades already played with id ≥ ``N`` (at most ``L``, default 500, ≤ 1000), ids
  ascending, in Binance's shape (``id``, ``price``, ``qty``, ``quoteQty``, ``time``,
  ``isBuyerMaker``, ``isBestMatch``). A trade missing from the capture is missing here.

With ``rebase_times`` the venue times of every frame (``E`` and ``T``, ms) are moved so
that the capture happens now: a frame's times become the wall-clock time at which it
is sent (recorded offsets divided by ``speed``), the rest of the text unchanged. The
live system (``tape up``) uses it, so that its clocks, the market data and paper
fills agree; without it the frames are byte for byte the recorded ones. ``tape
exchange-sim`` turns it on when the environment variable ``TAPE_SIM_REBASE_TIMES`` is
``1``.

A client whose bounded send queue fills is disconnected (code 1008), like a slow
consumer on the real exchange. Frames are merged from all capture files by receive
time; the capture format is ``<local_recv_ns> <json>`` per line (gzip or plain).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gzip
import os
import re
import signal
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tickertape.errors import ConfigError, ImportDataError

_log = structlog.get_logger("tickertape.exchange_sim")

QUEUE_LIMIT = 50_000
"""Frames queued per client before it is disconnected as too slow."""

MAX_TRADES_LIMIT = 1000
"""Most trades one ``historicalTrades`` answer holds (Binance's maximum)."""

_GOING_AWAY = "\x00going away"
"""Put in a client's queue (by identity) when the simulator stops."""

REBASE_ENV = "TAPE_SIM_REBASE_TIMES"
"""Set to ``1`` to make ``tape exchange-sim`` rebase the venue times to the wall clock."""

_VENUE_TIME = re.compile(rb'"([ET])":(\d+)')


class CaptureFrame:
    """One recorded frame: receive time, stream name, the exact text."""

    __slots__ = ("recv_ns", "stream", "text")

    def __init__(self, recv_ns: int, stream: str, text: str) -> None:
        self.recv_ns = recv_ns
        self.stream = stream
        self.text = text


def load_capture(paths: Sequence[str | Path]) -> tuple[list[CaptureFrame], dict[str, str]]:
    """Read capture files; return frames sorted by receive time and snapshots per symbol.

    Returns:
        (frames, snapshots): snapshots map an upper-case symbol (from the file name
        ``btcusdt_...``) to the first REST snapshot's text found for it.

    Raises:
        ImportDataError: a file cannot be read or a line is malformed.
    """
    frames: list[CaptureFrame] = []
    snapshots: dict[str, str] = {}
    for path in map(Path, paths):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImportDataError(
                path, None, f"cannot read capture: {exc.strerror or exc}"
            ) from None
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        symbol = path.name.split("_", 1)[0].upper()
        for lineno, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
            head, _, body = line.strip().partition(b" ")
            try:
                recv_ns = int(head)
                message = orjson.loads(body)
            except ValueError:
                raise ImportDataError(path, lineno, "not '<local_recv_ns> <json>'") from None
            text = body.decode("utf-8")
            if isinstance(message, dict) and "stream" in message:
                frames.append(CaptureFrame(recv_ns, str(message["stream"]), text))
            elif isinstance(message, dict) and "lastUpdateId" in message:
                snapshots.setdefault(symbol, text)
            else:
                raise ImportDataError(path, lineno, "neither a stream frame nor a depth snapshot")
    frames.sort(key=lambda f: f.recv_ns)
    return frames, snapshots


class _Book:
    def __init__(self, snapshot: str | None) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.last_update_id = 0
        if snapshot is not None:
            data = orjson.loads(snapshot)
            self.bids = dict(data["bids"])
            self.asks = dict(data["asks"])
            self.last_update_id = int(data["lastUpdateId"])

    def apply(self, diff: dict[str, object]) -> None:
        final = int(diff["u"])  # type: ignore[call-overload]
        if final <= self.last_update_id:
            return
        for side, levels in ((self.bids, diff["b"]), (self.asks, diff["a"])):
            for price, qty in levels:  # type: ignore[attr-defined]
                if float(qty) == 0.0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_update_id = final

    def snapshot(self, limit: int) -> bytes:
        bids = sorted(self.bids.items(), key=lambda kv: -float(kv[0]))[:limit]
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))[:limit]
        return orjson.dumps(
            {
                "lastUpdateId": self.last_update_id,
                "bids": [list(level) for level in bids],
                "asks": [list(level) for level in asks],
            }
        )


class ExchangeSimulator:
    """Replays a capture over WebSocket and REST, paced by its recorded times.

    Args:
        frames: the capture's frames, sorted by receive time.
        snapshots: the initial REST snapshot per symbol.
        speed: pacing factor (2.0 plays twice as fast as recorded); > 0.
        wait_for_client: start playback only when the first client connects.
        rebase_times: move the venue times to the wall clock (module docstring).

    Raises:
        ConfigError: ``speed`` ≤ 0.
    """

    def __init__(
        self,
        frames: list[CaptureFrame],
        snapshots: dict[str, str],
        *,
        speed: float = 1.0,
        wait_for_client: bool = True,
        rebase_times: bool = False,
    ) -> None:
        if not speed > 0:
            raise ConfigError(f"speed must be > 0, got {speed!r}")
        self.frames = frames
        self.speed = speed
        self.wait_for_client = wait_for_client
        self.rebase_times = rebase_times
        self._books = {s: _Book(text) for s, text in snapshots.items()}
        self._trade_ids: dict[str, list[int]] = {}
        self._trades: dict[str, list[bytes]] = {}
        self._clients: dict[ServerConnection, tuple[frozenset[str], asyncio.Queue[str | None]]] = {}
        self._first_client = asyncio.Event()
        self.sent = 0
        self.finished = asyncio.Event()

    async def serve(self, host: str = "127.0.0.1", port: int = 9443) -> Server:
        """Start listening; playback runs in a named task. Returns the server."""
        server = await serve(
            self._handle, host, port, process_request=self._http, compression=None, max_queue=16
        )
        self._playback = asyncio.create_task(self._play(), name="exchange-sim-playback")
        return server

    async def close(self) -> None:
        """Stop the playback and end every client's stream (close code 1001)."""
        playback = getattr(self, "_playback", None)
        if playback is not None:
            playback.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await playback
        for _, queue in list(self._clients.values()):
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(_GOING_AWAY)
        self._clients.clear()

    def _book(self, symbol: str) -> _Book:
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = _Book(None)
        return book

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path not in ("/api/v3/depth", "/api/v3/historicalTrades"):
            return None
        query = parse_qs(url.query)
        symbol = query.get("symbol", [""])[0].upper()
        if symbol not in self._books:
            return connection.respond(
                HTTPStatus.BAD_REQUEST, '{"code":-1121,"msg":"Invalid symbol."}'
            )
        try:
            if url.path == "/api/v3/depth":
                body = self._book(symbol).snapshot(int(query.get("limit", ["1000"])[0]))
            else:
                limit = int(query.get("limit", ["500"])[0])
                from_id = int(query["fromId"][0]) if "fromId" in query else None
                if not 0 < limit <= MAX_TRADES_LIMIT:
                    raise ValueError(limit)
                body = self._historical_trades(symbol, from_id, limit)
        except (ValueError, KeyError):
            return connection.respond(
                HTTPStatus.BAD_REQUEST,
                '{"code":-1100,"msg":"Illegal characters found in a parameter."}',
            )
        headers = Headers(
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return Response(HTTPStatus.OK.value, "OK", headers, body)

    def _historical_trades(self, symbol: str, from_id: int | None, limit: int) -> bytes:
        ids = self._trade_ids.get(symbol, [])
        start = max(len(ids) - limit, 0) if from_id is None else bisect.bisect_left(ids, from_id)
        items = self._trades.get(symbol, [])[start : start + limit]
        return b"[" + b",".join(items) + b"]"

    def _record_trade(self, symbol: str, data: dict[str, object]) -> None:
        price, qty = str(data["p"]), str(data["q"])
        trade = {
            "id": data["t"],
            "price": price,
            "qty": qty,
            "quoteQty": f"{float(price) * float(qty):.8f}",
            "time": data["T"],
            "isBuyerMaker": data["m"],
            "isBestMatch": data.get("M", True),
        }
        self._trade_ids.setdefault(symbol, []).append(int(data["t"]))  # type: ignore[call-overload]
        self._trades.setdefault(symbol, []).append(orjson.dumps(trade))

    async def _handle(self, connection: ServerConnection) -> None:
        url = urlsplit(connection.request.path if connection.request else "/")
        streams = parse_qs(url.query).get("streams", [""])[0]
        wanted = frozenset(s for s in streams.split("/") if s)
        queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_LIMIT + 1)  # + the sentinel
        self._clients[connection] = (wanted, queue)
        self._first_client.set()
        watcher = asyncio.create_task(
            self._end_on_close(connection, queue), name="exchange-sim-client-watcher"
        )
        try:
            while True:
                text = await queue.get()
                if text is None:
                    await connection.close(1008, "client too slow")
                    return
                if text is _GOING_AWAY:
                    await connection.close(1001, "exchange simulator stopping")
                    return
                await connection.send(text)
        finally:
            watcher.cancel()
            self._clients.pop(connection, None)

    async def _end_on_close(
        self, connection: ServerConnection, queue: asyncio.Queue[str | None]
    ) -> None:
        # A client that goes away while its queue is empty would leave the handler
        # waiting for a frame forever (and the server's shutdown waiting for it).
        await connection.wait_closed()
        self._clients.pop(connection, None)
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(_GOING_AWAY)

    async def _play(self) -> None:
        if self.wait_for_client:
            await self._first_client.wait()
        if not self.frames:
            self.finished.set()
            return
        origin = self.frames[0].recv_ns
        skew_ms = self._skew_ms() if self.rebase_times else 0
        start = time.monotonic()
        rebase = self._rebaser(origin, skew_ms) if self.rebase_times else None
        loop_sleep = asyncio.sleep
        for frame in self.frames:
            due = start + (frame.recv_ns - origin) / 1e9 / self.speed
            delay = due - time.monotonic()
            if delay > 0.0005:
                await loop_sleep(delay)
            text = frame.text if rebase is None else rebase(frame.text)
            symbol = frame.stream.split("@", 1)[0].upper()
            if "@depth" in frame.stream:
                self._book(symbol).apply(orjson.loads(text)["data"])
            elif frame.stream.endswith("@trade"):
                self._record_trade(symbol, orjson.loads(text)["data"])
            for connection, (wanted, queue) in list(self._clients.items()):
                if frame.stream not in wanted:
                    continue
                if queue.qsize() >= QUEUE_LIMIT:
                    self._clients.pop(connection, None)
                    queue.put_nowait(None)  # the reserved slot: tells the handler to close
                    _log.warning("client_too_slow", remote=str(connection.remote_address))
                else:
                    queue.put_nowait(text)
            self.sent += 1
        self.finished.set()
        _log.info("playback_finished", frames=self.sent)

    def _skew_ms(self) -> int:
        # The recorder's clock and the exchange's differ (about 1.27 s in the bundled
        # capture, plus network jitter): the largest (venue time − receive time) of the
        # capture is taken as the offset, so that a rebased time is never after the
        # wall-clock time at which its frame is sent (no market data from the future).
        return max(
            (
                int(match.group(2)) - frame.recv_ns // 1_000_000
                for frame in self.frames
                for match in _VENUE_TIME.finditer(frame.text.encode())
            ),
            default=0,
        )

    def _rebaser(self, origin_recv_ns: int, skew_ms: int) -> Callable[[str], str]:
        # Called right after the playback's monotonic origin is taken: both origins
        # describe the same instant.
        wall_origin_ms = time.time_ns() // 1_000_000
        origin_ms = origin_recv_ns // 1_000_000 + skew_ms
        speed = self.speed

        def shift(match: re.Match[bytes]) -> bytes:
            moved = wall_origin_ms + int((int(match.group(2)) - origin_ms) / speed)
            return b'"' + match.group(1) + b'":' + str(moved).encode()

        return lambda text: _VENUE_TIME.sub(shift, text.encode()).decode()


async def run_simulator(
    paths: Sequence[str | Path],
    *,
    host: str = "127.0.0.1",
    port: int = 9443,
    speed: float = 1.0,
    ready: asyncio.Event | None = None,
    rebase_times: bool | None = None,
) -> None:
    """Load the capture, serve it until SIGINT, SIGTERM or cancellation (the CLI's entry
    point).

    ``rebase_times`` None reads the environment variable :data:`REBASE_ENV`.
    """
    if rebase_times is None:
        rebase_times = os.environ.get(REBASE_ENV, "").lower() in ("1", "true", "yes")
    frames, snapshots = load_capture(paths)
    simulator = ExchangeSimulator(frames, snapshots, speed=speed, rebase_times=rebase_times)
    server = await simulator.serve(host, port)
    _log.info(
        "exchange_sim_listening",
        host=host,
        port=port,
        frames=len(frames),
        speed=speed,
        rebase_times=rebase_times,
    )
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with server:
            await stop.wait()
            await simulator.close()
    finally:
        await simulator.close()
        _log.info("exchange_sim_stopped", frames_sent=simulator.sent)
