"""The Binance spot live adapter: WebSocket combined stream, reconnects, snapshots.

:class:`BinanceLiveAdapter` connects to a combined-stream URL (Binance's, or the
local :mod:`~tickertape.actors.marketdata.exchange_sim`), feeds every frame to a
:class:`~tickertape.actors.marketdata.binance_feed.BinanceFeed`, fetches REST depth
snapshots whenever a book needs one (at start, after a depth gap, after every
reconnect), and hands the resulting events to an async ``sink`` in order. The
connection is retried with capped exponential backoff (``initial_backoff_s`` doubling
to ``max_backoff_s``, reset after a successful connection); permessage-deflate is off.

This is an I/O shell (it may read the wall clock: ``recv_ns`` is the local arrival
time); all decisions are in the pure feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence

import structlog
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tickertape.actors.marketdata.binance_feed import BinanceFeed
from tickertape.actors.marketdata.importers import ParsedEvent

_log = structlog.get_logger("tickertape.binance")

Sink = Callable[[list[ParsedEvent]], Awaitable[None]]

STREAM_KINDS: tuple[str, ...] = ("trade", "bookTicker", "depth@100ms")


def combined_stream_url(
    base: str, symbols: Sequence[str], kinds: Sequence[str] = STREAM_KINDS
) -> str:
    """Return ``{base}/stream?streams=btcusdt@trade/...`` for the symbols and stream kinds."""
    streams = "/".join(f"{s.lower()}@{k}" for s in symbols for k in kinds)
    return f"{base.rstrip('/')}/stream?streams={streams}"


class BinanceLiveAdapter:
    """Follows Binance spot streams for some symbols, with resync and reconnects.

    Args:
        ws_base: WebSocket base URL, e.g. ``wss://stream.binance.com:9443``.
        rest_base: REST base URL for depth snapshots, e.g. ``https://api.binance.com``.
        symbols: symbols to follow (``BTCUSDT``...).
        sink: awaited with each batch of events, in order (it may apply backpressure).
        initial_backoff_s, max_backoff_s: reconnect delays.
        snapshot_limit: depth levels requested in snapshots.
    """

    def __init__(
        self,
        ws_base: str,
        rest_base: str,
        symbols: Sequence[str],
        sink: Sink,
        *,
        initial_backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        snapshot_limit: int = 1000,
    ) -> None:
        self.url = combined_stream_url(ws_base, symbols)
        self.rest_base = rest_base.rstrip("/")
        self.feed = BinanceFeed(symbols)
        self.sink = sink
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.snapshot_limit = snapshot_limit
        self.connections = 0
        self.connected = asyncio.Event()
        self._outbox: list[ParsedEvent] = []
        self._sink_lock = asyncio.Lock()

    async def _deliver(self, events: list[ParsedEvent]) -> None:
        # Events are queued in the order the feed produced them, then handed to the
        # sink by whoever holds the lock: the sink sees production order.
        self._outbox.extend(events)
        async with self._sink_lock:
            if self._outbox:
                batch = self._outbox
                self._outbox = []
                await self.sink(batch)

    def _fetch_snapshot(self, symbol: str) -> str:
        url = f"{self.rest_base}/api/v3/depth?symbol={symbol}&limit={self.snapshot_limit}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body: bytes = response.read()
        return body.decode("utf-8")

    async def _resync(self) -> None:
        for symbol in self.feed.needs_snapshot():
            try:
                text = await asyncio.to_thread(self._fetch_snapshot, symbol)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                _log.warning("snapshot_failed", symbol=symbol, error=str(exc))
                continue
            events = self.feed.on_snapshot(symbol, text, time.time_ns())
            if events:
                await self._deliver(events)

    async def run(self) -> None:
        """Follow the streams until cancelled (cancellation is clean)."""
        backoff = self.initial_backoff_s
        while True:
            try:
                async with connect(
                    self.url, compression=None, max_size=2**24, open_timeout=10
                ) as ws:
                    self.connections += 1
                    self.feed.on_reconnect()
                    self.connected.set()
                    backoff = self.initial_backoff_s
                    _log.info("connected", url=self.url, connections=self.connections)
                    resync: asyncio.Task[None] | None = None
                    try:
                        async for message in ws:
                            text = message if isinstance(message, str) else message.decode("utf-8")
                            events = self.feed.on_message(text, time.time_ns())
                            if events:
                                await self._deliver(events)
                            if (resync is None or resync.done()) and self.feed.needs_snapshot():
                                if resync is not None:
                                    resync.result()
                                resync = asyncio.create_task(self._resync(), name="binance-resync")
                    finally:
                        if resync is not None and not resync.done():
                            resync.cancel()
                            with contextlib.suppress(asyncio.CancelledError):
                                await resync
            except (ConnectionClosed, InvalidHandshake, InvalidURI, OSError, TimeoutError) as exc:
                _log.warning(
                    "disconnected", error=str(exc) or type(exc).__name__, retry_in_s=backoff
                )
            self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)
