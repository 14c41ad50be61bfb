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
exchange-sim --rebase-times`` turns it on (or the environment variable
``TAPE_SIM_REBASE_TIMES=1``).

With a state file (:class:`PlaybackState`, ``tape exchange-sim --state-file FILE``) a
restarted simulator continues the capture after the last frame it played instead of
from its beginning, as a real exchange goes on while its clients are away: the file
records how many frames were played and, for each run, how their times were rebased.
On start the frames already played are applied again silently (the book behind the
REST depth snapshots, and the trades ``historicalTrades`` serves, with the times they
were served with), and playback resumes at the next frame when the first client
connects. The file is written atomically (temporary file, fsync, rename, fsync of the
directory) every second of playback and on a clean stop, so after a crash (SIGKILL) at
most the last second of frames is played again (a client drops repeated trade ids).

A client whose bounded send queue fills is disconnected (code 1008), like a slow
consumer on the real exchange. Frames are merged from all capture files by receive
time; the capture format is ``<local_recv_ns> <json>`` per line (gzip or plain).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gzip
import re
import signal
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgspec
import orjson
import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tickertape.errors import ConfigError, ImportDataError
from tickertape.eventlog.layout import write_durably

_log = structlog.get_logger("tickertape.exchange_sim")

QUEUE_LIMIT = 50_000
"""Frames queued per client before it is disconnected as too slow."""

MAX_TRADES_LIMIT = 1000
"""Most trades one ``historicalTrades`` answer holds (Binance's maximum)."""

_GOING_AWAY = "\x00going away"
"""Put in a client's queue (by identity) when the simulator stops."""

REBASE_ENV = "TAPE_SIM_REBASE_TIMES"
"""The environment variable behind ``tape exchange-sim --rebase-times`` (``1``: on)."""

STATE_EVERY_S = 1.0
"""Seconds of playback between two writes of the state file."""

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


class CaptureFile(msgspec.Struct, frozen=True):
    """A capture file as a state file names it: its file name and size in bytes."""

    name: str
    size: int


class PlayedRun(msgspec.Struct, frozen=True, kw_only=True):
    """How one run of the simulator stamped the frames it played.

    Attributes:
        first_frame: index (in the merged capture) of the run's first frame.
        rebased: whether the run rebased the venue times (the fields below apply).
        wall_origin_ms: wall-clock time (ms since the epoch) the run's first frame maps to.
        origin_ms: the recorded time (ms, receive time + skew) that maps to it.
        speed: the run's pacing factor.
    """

    first_frame: int
    rebased: bool
    wall_origin_ms: int = 0
    origin_ms: int = 0
    speed: float = 1.0


class PlaybackState(msgspec.Struct, frozen=True, kw_only=True):
    """What a restarted simulator needs to continue a capture (the state file, JSON).

    Attributes:
        version: the file format's version (1).
        captures: the capture files, in the order given; a state only resumes the
            same captures.
        played: frames of the merged capture already played (the next one to play).
        runs: one entry per run that played frames, in order.
    """

    version: int = 1
    captures: list[CaptureFile]
    played: int = 0
    runs: list[PlayedRun] = msgspec.field(default_factory=list)


def capture_files(paths: Sequence[str | Path]) -> list[CaptureFile]:
    """Name and size of each capture file (what a state file is checked against).

    Raises:
        ImportDataError: a file cannot be read.
    """
    out = []
    for path in map(Path, paths):
        try:
            out.append(CaptureFile(name=path.name, size=path.stat().st_size))
        except OSError as exc:
            raise ImportDataError(
                path, None, f"cannot read capture: {exc.strerror or exc}"
            ) from None
    return out


def load_state(path: str | Path, captures: list[CaptureFile]) -> PlaybackState:
    """Read a state file; a missing file is a fresh state (nothing played).

    Raises:
        ConfigError: the file cannot be read, is not a valid state, or was written for
            other capture files (delete it to play the capture from its beginning).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return PlaybackState(captures=captures)
    except OSError as exc:
        raise ConfigError(f"cannot read the state file: {exc.strerror or exc}", path) from None
    try:
        state = msgspec.json.decode(data, type=PlaybackState)
    except msgspec.DecodeError as exc:
        raise ConfigError(
            f"not a valid exchange-simulator state ({exc}); delete it to start the capture "
            "from its beginning",
            path,
        ) from None
    if state.version != 1:
        raise ConfigError(f"state file version {state.version} is not supported (1)", path)
    if state.captures != captures:
        had = ", ".join(f"{c.name} ({c.size} bytes)" for c in state.captures)
        now = ", ".join(f"{c.name} ({c.size} bytes)" for c in captures)
        raise ConfigError(
            f"written for the captures {had}, not {now}: pass the same --capture files in "
            "the same order, another --state-file, or delete it to start over",
            path,
        )
    return state


def save_state(path: str | Path, state: PlaybackState) -> None:
    """Write ``state`` atomically: a temporary file, fsync, rename, fsync of the folder.

    Raises:
        OSError: the file cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, msgspec.json.encode(state) + b"\n")


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


def _rebaser(run: PlayedRun) -> Callable[[str], str]:
    """The text of a frame with its venue times (``E``, ``T``) moved as ``run`` did."""
    wall_origin_ms, origin_ms, speed = run.wall_origin_ms, run.origin_ms, run.speed

    def shift(match: re.Match[bytes]) -> bytes:
        moved = wall_origin_ms + int((int(match.group(2)) - origin_ms) / speed)
        return b'"' + match.group(1) + b'":' + str(moved).encode()

    return lambda text: _VENUE_TIME.sub(shift, text.encode()).decode()


class ExchangeSimulator:
    """Replays a capture over WebSocket and REST, paced by its recorded times.

    Args:
        frames: the capture's frames, sorted by receive time.
        snapshots: the initial REST snapshot per symbol.
        speed: pacing factor (2.0 plays twice as fast as recorded); > 0.
        wait_for_client: start playback only when the first client connects.
        rebase_times: move the venue times to the wall clock (module docstring).
        state: continue after the frames this state says were played (module
            docstring); None plays from the first frame.
        state_path: where to keep the state (every :data:`STATE_EVERY_S` seconds of
            playback, at the end of the capture and on :meth:`close`); None: nowhere.

    Raises:
        ConfigError: ``speed`` ≤ 0, or ``state`` says more frames were played than the
            capture holds.
    """

    def __init__(
        self,
        frames: list[CaptureFrame],
        snapshots: dict[str, str],
        *,
        speed: float = 1.0,
        wait_for_client: bool = True,
        rebase_times: bool = False,
        state: PlaybackState | None = None,
        state_path: str | Path | None = None,
    ) -> None:
        if not speed > 0:
            raise ConfigError(f"speed must be > 0, got {speed!r}")
        if state is not None and not 0 <= state.played <= len(frames):
            raise ConfigError(
                f"the state says {state.played} frames were played; the capture has {len(frames)}",
                state_path,
            )
        self.frames = frames
        self.speed = speed
        self.wait_for_client = wait_for_client
        self.rebase_times = rebase_times
        self._books = {s: _Book(text) for s, text in snapshots.items()}
        self._trade_ids: dict[str, list[int]] = {}
        self._trades: dict[str, list[bytes]] = {}
        self._clients: dict[ServerConnection, tuple[frozenset[str], asyncio.Queue[str | None]]] = {}
        self._first_client = asyncio.Event()
        self._state = state
        self._state_path = None if state_path is None else Path(state_path)
        self._run: PlayedRun | None = None
        self.first_frame = 0
        """Index of the first frame this run plays (frames before it were played before)."""
        self.sent = 0
        """Frames played by this run."""
        self.finished = asyncio.Event()
        if state is not None:
            self._apply_played(state)

    @property
    def played(self) -> int:
        """Frames of the capture played so far, by this run and the ones before it."""
        return self.first_frame + self.sent

    def state(self) -> PlaybackState | None:
        """The state to save now (None without a state to continue)."""
        if self._state is None:
            return None
        runs = list(self._state.runs)
        if self._run is not None and self.sent:
            runs.append(self._run)
        return msgspec.structs.replace(self._state, played=self.played, runs=runs)

    def save_state(self) -> None:
        """Write :meth:`state` to the state path, if there is one (atomically).

        Raises:
            OSError: the file cannot be written.
        """
        state = self.state()
        if self._state_path is not None and state is not None:
            save_state(self._state_path, state)

    def _apply_played(self, state: PlaybackState) -> None:
        # The frames earlier runs played: into the book and the trade history, with
        # the times each run served them with; nothing is sent.
        runs = sorted(state.runs, key=lambda r: r.first_frame)
        bounds = [r.first_frame for r in runs]
        rebasers: dict[int, Callable[[str], str] | None] = {}
        for index in range(state.played):
            frame = self.frames[index]
            if not frame.stream.endswith("@trade") and "@depth" not in frame.stream:
                continue
            at = bisect.bisect_right(bounds, index) - 1
            if at not in rebasers:
                run = runs[at] if at >= 0 else None
                rebasers[at] = _rebaser(run) if run is not None and run.rebased else None
            rebase = rebasers[at]
            self._apply(frame, frame.text if rebase is None else rebase(frame.text))
        self.first_frame = state.played

    def _apply(self, frame: CaptureFrame, text: str) -> None:
        symbol = frame.stream.split("@", 1)[0].upper()
        if "@depth" in frame.stream:
            self._book(symbol).apply(orjson.loads(text)["data"])
        elif frame.stream.endswith("@trade"):
            self._record_trade(symbol, orjson.loads(text)["data"])

    async def serve(self, host: str = "127.0.0.1", port: int = 9443) -> Server:
        """Start listening; playback runs in a named task. Returns the server."""
        server = await serve(
            self._handle, host, port, process_request=self._http, compression=None, max_queue=16
        )
        self._playback = asyncio.create_task(self._play(), name="exchange-sim-playback")
        return server

    async def close(self) -> None:
        """Stop the playback, save the state (when kept) and end every client's stream
        (close code 1001).

        Raises:
            OSError: the state file cannot be written.
        """
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
        self.save_state()

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
        first = self.first_frame
        if first >= len(self.frames):
            self.finished.set()
            _log.info("playback_finished", frames=0, played=self.played)
            return
        origin = self.frames[first].recv_ns
        skew_ms = self._skew_ms() if self.rebase_times else 0
        start = time.monotonic()
        if self.rebase_times:
            # Taken right after the monotonic origin: both describe the same instant.
            self._run = PlayedRun(
                first_frame=first,
                rebased=True,
                wall_origin_ms=time.time_ns() // 1_000_000,
                origin_ms=origin // 1_000_000 + skew_ms,
                speed=self.speed,
            )
            rebase: Callable[[str], str] | None = _rebaser(self._run)
        else:
            self._run = PlayedRun(first_frame=first, rebased=False)
            rebase = None
        if first:
            _log.info("playback_resumed", frame=first, frames=len(self.frames))
        saved = start
        loop_sleep = asyncio.sleep
        for index in range(first, len(self.frames)):
            frame = self.frames[index]
            due = start + (frame.recv_ns - origin) / 1e9 / self.speed
            delay = due - time.monotonic()
            if delay > 0.0005:
                await loop_sleep(delay)
            text = frame.text if rebase is None else rebase(frame.text)
            self._apply(frame, text)
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
            if self._state_path is not None and time.monotonic() - saved >= STATE_EVERY_S:
                self._save_quietly()
                saved = time.monotonic()
        self._save_quietly()
        self.finished.set()
        _log.info("playback_finished", frames=self.sent, played=self.played)

    def _save_quietly(self) -> None:
        # During playback a state that cannot be written is reported, not fatal: the
        # venue goes on, and a restart repeats more frames (clients drop repeated ids).
        try:
            self.save_state()
        except OSError as exc:
            _log.error("state_not_saved", path=str(self._state_path), error=str(exc))

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


async def run_simulator(
    paths: Sequence[str | Path],
    *,
    host: str = "127.0.0.1",
    port: int = 9443,
    speed: float = 1.0,
    ready: asyncio.Event | None = None,
    rebase_times: bool = False,
    state_file: str | Path | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Load the capture and serve it until ``stop`` is set (the CLI's entry point).

    Without ``stop``, SIGINT and SIGTERM stop it (their handlers are installed before
    the capture is loaded). With ``state_file`` the playback continues where the last
    run that used the file stopped (module docstring). Cancellation is clean too.

    Raises:
        ImportDataError: a capture file cannot be read or is malformed.
        ConfigError: the state file is unreadable, invalid or for other captures.
        OSError: the port cannot be bound, or the state file cannot be written on stop.
    """
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
    state = None if state_file is None else load_state(state_file, capture_files(paths))
    frames, snapshots = load_capture(paths)
    simulator = ExchangeSimulator(
        frames,
        snapshots,
        speed=speed,
        rebase_times=rebase_times,
        state=state,
        state_path=state_file,
    )
    if stop.is_set():  # stopped while loading: nothing was served
        return
    server = await simulator.serve(host, port)
    port = server.sockets[0].getsockname()[1]  # the one bound, for --port 0
    _log.info(
        "exchange_sim_listening",
        host=host,
        port=port,
        frames=len(frames),
        first_frame=simulator.first_frame,
        speed=speed,
        rebase_times=rebase_times,
    )
    if ready is not None:
        ready.set()
    try:
        async with server:
            await stop.wait()
            await simulator.close()
    finally:
        await simulator.close()
        _log.info(
            "exchange_sim_stopped", frames_sent=simulator.sent, frames_played=simulator.played
        )
