"""The Binance spot live adapter: WebSocket combined stream, reconnects, snapshots.

:class:`BinanceLiveAdapter` connects to a combined-stream URL (Binance's, or the
local :mod:`~tickertape.actors.marketdata.exchange_sim`), feeds every frame to a
:class:`~tickertape.actors.marketdata.binance_feed.BinanceFeed`, fetches REST depth
snapshots whenever a book needs one (at start, after a depth gap, after every
reconnect), fetches missing trades from ``historicalTrades`` when trade ids jump (after
a restart or a reconnect, the trades sent while it was away), and hands the resulting
events to an async ``sink`` in order. The connection is retried with capped
exponential backoff (``initial_backoff_s`` doubling to ``max_backoff_s``, reset after a
successful connection); permessage-deflate is off.

:class:`LiveMarketDataHost` is the live market-data process (``tape feed``): the
adapter's events, the bars of :class:`~tickertape.actors.marketdata.actor.LiveBars`
and the time gaps of its trade and quote topics that go silent
(:class:`~tickertape.actors.marketdata.sessions.SilenceWatch`), published through the
router under one identity, restartable without publishing anything twice.

This is an I/O shell (it may read the wall clock: ``recv_ns`` is the local arrival
time, ``ts_init`` the publication time, silences count on the machine's clock); all
decisions are in the pure feed, bars and silence watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import msgspec
import structlog
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tickertape.actors.marketdata.actor import (
    LIVE_STATE_VERSION,
    LiveBars,
    LiveFeedConfig,
    LiveMarketDataState,
)
from tickertape.actors.marketdata.binance_feed import BinanceFeed
from tickertape.actors.marketdata.importers import ParsedEvent
from tickertape.actors.marketdata.sessions import (
    GapTimes,
    MarketHours,
    SilenceWatch,
    StreamSilenceState,
    gap_topic,
    topic_market_symbol,
)
from tickertape.client import Client, StartAt
from tickertape.schemas.envelope import Envelope, Record
from tickertape.schemas.market import Gap, Quote, Trade
from tickertape.schemas.registry import decode_payload, make_envelope
from tickertape.snapshots.codec import Snapshot
from tickertape.snapshots.store import SnapshotStore, snapshot_dir
from tickertape.timeauthority.clock import LiveClock

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
        rest_base: REST base URL for depth snapshots and trade backfills, e.g.
            ``https://api.binance.com``.
        symbols: symbols to follow (``BTCUSDT``...).
        sink: awaited with each batch of events, in order (it may apply backpressure).
        initial_backoff_s, max_backoff_s: reconnect delays.
        snapshot_limit: depth levels requested in snapshots.
        feed: the feed to continue (e.g. restored with ``BinanceFeed.from_state``);
            a fresh one with trade backfill when None.
        backfill_limit: trades asked per ``historicalTrades`` request (Binance: ≤ 1000).
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
        feed: BinanceFeed | None = None,
        backfill_limit: int = 1000,
    ) -> None:
        self.url = combined_stream_url(ws_base, symbols)
        self.rest_base = rest_base.rstrip("/")
        self.feed = feed if feed is not None else BinanceFeed(symbols, backfill_trades=True)
        self.sink = sink
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.snapshot_limit = snapshot_limit
        self.backfill_limit = backfill_limit
        self.connections = 0
        self.connected = asyncio.Event()
        self._outbox: list[ParsedEvent] = []
        self._sink_lock = asyncio.Lock()

    @property
    def undelivered(self) -> int:
        """Events the feed produced that the sink has not been handed yet."""
        return len(self._outbox)

    def take_undelivered(self) -> list[ParsedEvent]:
        """Return (and forget) the events not handed to the sink: after :meth:`run` was
        cancelled, the caller delivers them itself so that nothing the feed counted as
        seen is lost."""
        out, self._outbox = self._outbox, []
        return out

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

    def _fetch_trades(self, symbol: str, from_id: int) -> str:
        url = (
            f"{self.rest_base}/api/v3/historicalTrades?symbol={symbol}"
            f"&fromId={from_id}&limit={self.backfill_limit}"
        )
        with urllib.request.urlopen(url, timeout=10) as response:
            body: bytes = response.read()
        return body.decode("utf-8")

    async def _backfill(self, symbol: str) -> None:
        # Cancelled with its connection: the feed keeps holding the trades and the next
        # connection starts again from the first id still wanted.
        while True:
            wanted = self.feed.backfills().get(symbol)
            if wanted is None or wanted[0] >= wanted[1]:
                break
            try:
                text = await asyncio.to_thread(self._fetch_trades, symbol, wanted[0])
                events, count = self.feed.on_historical_trades(symbol, text, time.time_ns())
            except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
                _log.warning("backfill_failed", symbol=symbol, from_id=wanted[0], error=str(exc))
                break
            if events:
                await self._deliver(events)
            if count < self.backfill_limit:
                break
        events = self.feed.end_backfill(symbol)
        if events:
            await self._deliver(events)

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
                    self.url, compression=None, max_size=2**24, open_timeout=10, close_timeout=2
                ) as ws:
                    self.connections += 1
                    self.feed.on_reconnect()
                    self.connected.set()
                    backoff = self.initial_backoff_s
                    _log.info("connected", url=self.url, connections=self.connections)
                    resync: asyncio.Task[None] | None = None
                    backfills: dict[str, asyncio.Task[None]] = {}
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
                            for symbol in self.feed.backfills():
                                task = backfills.get(symbol)
                                if task is None or task.done():
                                    if task is not None:
                                        task.result()
                                    backfills[symbol] = asyncio.create_task(
                                        self._backfill(symbol), name=f"binance-backfill:{symbol}"
                                    )
                    finally:
                        for task in [resync, *backfills.values()]:
                            if task is not None and not task.done():
                                task.cancel()
                                with contextlib.suppress(asyncio.CancelledError):
                                    await task
            except (ConnectionClosed, InvalidHandshake, InvalidURI, OSError, TimeoutError) as exc:
                _log.warning(
                    "disconnected", error=str(exc) or type(exc).__name__, retry_in_s=backoff
                )
            self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)


# ------------------------------------------------------------------ the process

LIVE_TOPICS: tuple[str, ...] = (
    "md.trade.crypto.>",
    "md.quote.crypto.>",
    "md.gap.crypto.>",
    "md.bar.>",
    "raw.binance.>",
)
"""Patterns of what the live market-data process publishes (read back on restart)."""


class LiveMarketDataHost:
    """The live market-data process: a venue feed and its bars, published durably.

    Start → newest snapshot (feed and bar state, log position, ``source_seq``) → read
    back its own events after that position from the log (so state equals the log even
    when the snapshot is older than the last publications) → publish the bars the log
    lacks → follow the venue with :class:`BinanceLiveAdapter` (trade backfill after a
    restart, book resync) → every event, and the bars of
    :class:`~tickertape.actors.marketdata.actor.LiveBars`, published in order under one
    identity with ``source_seq`` continuing from the log.

    Publishing runs in its own task, in batches of at most ``max_batch_events``; while
    more than ``max_queued_events`` wait, the feed waits (and the venue's socket with
    it). A snapshot is taken every ``snapshot_every_s`` seconds at a batch boundary where
    everything the feed produced is in the batch (state = log after that batch), and on
    a clean stop.

    Silences (``config.max_silence_s``; DESIGN §9 time gaps): every ``md.trade`` and
    ``md.quote`` topic it publishes with a bound is watched by a
    :class:`~tickertape.actors.marketdata.sessions.SilenceWatch` (crypto hours: always
    open) on ``now_ns``, the machine's clock; an event counts as handled when it is
    queued, at its ``ts_init``. A task sleeps until the earliest deadline: a topic
    still without an event then gets its open ``md.gap`` (``open=True``,
    ``next_seen=0``, ``ts_event`` = the clock), once; the event that ends the silence
    is followed by the whole gap (same ``last_seen``, ``next_seen`` = its time). Gaps
    take the same queue and ``source_seq`` sequence as every other event, and a gap
    topic's time never goes back
    (:class:`~tickertape.actors.marketdata.sessions.GapTimes`). A restart neither
    repeats nor loses them: the snapshot holds the watch's state; the events read back
    after it advance the watch as they did live (handled at their ``ts_init``); an
    open gap read back is not reported again; a whole gap the log lacks after the
    event that ended its silence (the process died between the two) is published
    before anything new; then every topic's silence counts from the restart at the
    earliest (trades sent while the process was down are backfilled from the venue,
    so the downtime is not the topics' silence). A topic is watched from its first
    event: a venue that never sends anything is not a silence (the connection
    failures are logged).

    Args:
        client: a started client whose identity is ``identity``.
        config: venue, symbols, bars and silence bounds.
        data_dir: where snapshots live (``snapshots/<namespace>/<identity>``).
        identity: the source of every event (``marketdata``).
        namespace: where it publishes.
        now_ns: the clock (ns since the epoch) of ``ts_init`` and of silences; the
            machine's, never going back (:class:`~tickertape.timeauthority.clock.LiveClock`),
            when None.

    Raises:
        ConfigError: an invalid ``config`` (the field is named).
    """

    def __init__(
        self,
        client: Client,
        config: LiveFeedConfig,
        data_dir: str | Path,
        *,
        identity: str = "marketdata",
        namespace: str = "main",
        snapshot_every_s: float = 2.0,
        max_batch_events: int = 1000,
        max_queued_events: int = 20_000,
        now_ns: Callable[[], int] | None = None,
    ) -> None:
        config.validate()
        self.client = client
        self.config = config
        self.identity = identity
        self.namespace = namespace
        self.snapshot_every_s = snapshot_every_s
        self.max_batch_events = max_batch_events
        self.max_queued_events = max_queued_events
        self.store = SnapshotStore(snapshot_dir(data_dir, namespace, identity))
        self.symbols = [s.upper() for s in config.symbols]
        self.feed = BinanceFeed(self.symbols, backfill_trades=True)
        self.bars = LiveBars(config.bar_intervals, grace_ns=config.bar_grace_ms * 1_000_000)
        self.adapter: BinanceLiveAdapter | None = None
        self.source_seq = 0
        self.position = 0
        self.published = 0
        self.recovered = 0
        self._queue: list[Envelope] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stop = asyncio.Event()
        self._last_snapshot = 0.0
        self.now_ns = now_ns if now_ns is not None else LiveClock().now_ns
        bounds = config.silence_bounds_ns()
        hours = MarketHours("crypto")
        self.silences: SilenceWatch | None = (
            SilenceWatch(bounds, lambda _market, _symbol: hours) if bounds else None
        )
        self.gap_times = GapTimes()
        self.silence_gaps = 0  # open and whole silence gaps this run queued
        self._silence_streams: dict[str, str | None] = {}
        self._silence_wake = asyncio.Event()
        # Read back: whole gaps found again from their events, not (yet) seen in the log.
        self._unpublished_gaps: dict[tuple[str, int], ParsedEvent] = {}

    def stop(self) -> None:
        """Ask :meth:`run` to stop cleanly (publish what is pending, final snapshot)."""
        self._stop.set()

    async def run(self) -> None:
        """Run until :meth:`stop`.

        Raises:
            PublishRefusedError: the router refused events (``TS_REGRESSION``,
                ``TOPIC_OWNED``...): the process must halt.
            SnapshotError, OSError: a snapshot could not be written.
        """
        await self._restore()
        self._enqueue(self.bars.take_unpublished())
        self._enqueue(self._take_unpublished_gaps())
        adapter = self.adapter = BinanceLiveAdapter(
            self.config.ws_url,
            self.config.rest_base(),
            self.symbols,
            self._sink,
            feed=self.feed,
        )
        feed_task = asyncio.create_task(adapter.run(), name="marketdata:feed")
        publisher = asyncio.create_task(self._publish_loop(), name="marketdata:publish")
        reporter = asyncio.create_task(self._report_loop(), name="marketdata:report")
        # Without silence bounds there is nothing to watch: no task.
        silences = (
            []
            if self.silences is None
            else [asyncio.create_task(self._silence_loop(), name="marketdata:silences")]
        )
        stop = asyncio.create_task(self._stop.wait(), name="marketdata:stop")
        try:
            done, _ = await asyncio.wait(
                [feed_task, publisher, *silences, stop], return_when="FIRST_COMPLETED"
            )
            for task in done:
                if task is not stop:
                    task.result()
            for task in (feed_task, *silences):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._enqueue(
                self.bars.on_events(
                    adapter.take_undelivered(),
                    clock_ns=self.feed.venue_ns,
                    held=self.feed.unconfirmed(),
                )
            )
            self._wake.set()
            await asyncio.wait_for(self._drained(), 30)
            self._save()
        finally:
            tasks = (feed_task, publisher, reporter, *silences, stop)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        _log.info(
            "stopped",
            published=self.published,
            source_seq=self.source_seq,
            gaps=self.feed.stats.gaps,
            silence_gaps=self.silence_gaps,
            late_trades=self.bars.late_trades,
        )

    async def _drained(self) -> None:
        # Publish what is pending; give up after 2 s without a router (it may be
        # stopping too): the next start reads the log back and backfills the trades.
        offline = 0.0
        while self._queue or not self._idle.is_set():
            self._wake.set()
            await asyncio.sleep(0.01)
            offline = 0.0 if self.client.connected else offline + 0.01
            if offline > 2.0:
                _log.warning("stopping_unpublished", events=len(self._queue))
                return

    async def _restore(self) -> None:
        snapshot = self.store.load_latest(LIVE_STATE_VERSION)
        if snapshot is not None and snapshot.state is not None:
            state = msgspec.msgpack.decode(snapshot.state, type=LiveMarketDataState)
            self.feed = BinanceFeed.from_state(self.symbols, state.feed, backfill_trades=True)
            self.bars.restore(state.bars)
            self.gap_times = GapTimes(state.gap_last_ts)
            if self.silences is not None:
                self.silences.restore(self._still_watched(state.silences))
            self.source_seq = snapshot.source_seq
            self.position = snapshot.positions.get(self.namespace, 0)
            self.published = snapshot.events_handled
        fetch = self.client.fetch(
            list(LIVE_TOPICS), StartAt(gseq=self.position + 1), ns=self.namespace
        )
        async for item in fetch:
            if not isinstance(item, Record):
                continue
            self.position = max(self.position, item.gseq)
            if item.source != self.identity or item.market is None:
                continue
            payload = decode_payload(item.type, item.v, item.payload)
            event = ParsedEvent(item.ts_event, item.topic, item.market, payload)
            self.feed.observe(event)
            self.bars.observe(event)
            self._observe_silence(event, item.ts_init)
            self.source_seq = max(self.source_seq, item.source_seq)
            self.recovered += 1
        if self.silences is not None:
            self.silences.restart(self.now_ns())
        _log.info(
            "restored",
            identity=self.identity,
            snapshot=snapshot is not None,
            position=self.position,
            source_seq=self.source_seq,
            read_back=self.recovered,
            silences_open=[] if self.silences is None else self.silences.state().reported_open,
        )

    def _still_watched(self, state: StreamSilenceState) -> StreamSilenceState:
        # Topics whose bound was removed from the configuration are dropped.
        watch = self.silences
        assert watch is not None
        last = {t: ns for t, ns in state.last_ns.items() if watch.bound_ns(t) is not None}
        return StreamSilenceState(last, state.seen_ns, state.reported_open)

    def _observe_silence(self, event: ParsedEvent, handled_ns: int) -> None:
        """Advance the silence watch and gap times with an event read back from the log,
        handled at ``handled_ns`` (its ``ts_init``) when it was published."""
        payload = event.payload
        watch = self.silences
        if isinstance(payload, Gap):
            self.gap_times.observe(event.topic, event.ts_event)
            if payload.kind != "time" or payload.stream not in ("trade", "quote"):
                return
            market, symbol = topic_market_symbol(event.topic)
            topic = f"md.{payload.stream}.{market}.{symbol}"
            if not payload.open:
                self._unpublished_gaps.pop((topic, payload.last_seen), None)
            elif watch is not None and not watch.mark_open(topic, payload.last_seen):
                _log.warning(
                    "silence_read_back_not_current",
                    topic=topic,
                    last_seen=payload.last_seen,
                )
            return
        if watch is None:
            return
        stream = self._silence_stream(event)
        if stream is None:
            return
        gap = watch.on_event(event.topic, stream, event.ts_event, handled_ns)
        if gap is not None:
            self._unpublished_gaps[(event.topic, gap.last_seen)] = _gap_event(event, gap)

    def _take_unpublished_gaps(self) -> list[ParsedEvent]:
        out = list(self._unpublished_gaps.values())
        self._unpublished_gaps.clear()
        self.silence_gaps += len(out)
        for event in out:
            _log.warning("silence_gap_republished", topic=event.topic, ts_event=event.ts_event)
        return out

    def _silence_stream(self, event: ParsedEvent) -> str | None:
        """``trade`` or ``quote`` for a watched topic's event, else None (cached per topic)."""
        topic = event.topic
        stream = self._silence_streams.get(topic, "")
        if stream == "":
            watch = self.silences
            assert watch is not None  # callers return first without a watch
            payload = event.payload
            if watch.bound_ns(topic) is None:
                stream = None
            elif isinstance(payload, Trade) and topic.startswith("md.trade."):
                stream = "trade"
            elif isinstance(payload, Quote) and topic.startswith("md.quote."):
                stream = "quote"
            else:
                stream = None
            self._silence_streams[topic] = stream
        return stream

    def _watch(self, events: list[ParsedEvent], now: int) -> list[ParsedEvent]:
        """Pass events handled at ``now`` through the silence watch; return them with
        the whole gap each one ends right after it."""
        watch = self.silences
        assert watch is not None
        found: list[tuple[int, ParsedEvent]] = []
        for index, event in enumerate(events):
            stream = self._silence_stream(event)
            if stream is None:
                continue
            topic = event.topic
            if not watch.watches(topic):
                self._silence_wake.set()  # a first deadline for the silence task
            gap = watch.on_event(topic, stream, event.ts_event, now)
            if gap is None:
                continue
            self._silence_wake.set()  # a topic reported open has a deadline again
            found.append((index, _gap_event(event, gap)))
            _log.info("silence_closed", topic=topic, last_seen=gap.last_seen, detail=gap.detail)
        if not found:
            return events
        self.silence_gaps += len(found)
        out: list[ParsedEvent] = []
        start = 0
        for index, gap_event in found:
            out.extend(events[start : index + 1])
            out.append(gap_event)
            start = index + 1
        out.extend(events[start:])
        return out

    async def _silence_loop(self) -> None:
        """Publish the open gap of every watched topic past its deadline, at the
        deadline (sleeping until the earliest; woken when a topic gets a deadline)."""
        watch = self.silences
        assert watch is not None
        while True:
            self._silence_wake.clear()
            now = self.now_ns()
            due = watch.next_deadline()
            if due is not None and due <= now:
                opened: list[ParsedEvent] = []
                for topic in watch.topics():
                    gap = watch.open_gap(topic, now)
                    if gap is None:
                        continue
                    opened.append(ParsedEvent(now, gap_topic(topic), "crypto", gap))
                    _log.warning(
                        "silence_open", topic=topic, last_seen=gap.last_seen, detail=gap.detail
                    )
                self.silence_gaps += len(opened)
                self._enqueue(opened, now)
                continue
            timeout = None if due is None else (due - now) / 1e9
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._silence_wake.wait()

    async def _sink(self, batch: list[ParsedEvent]) -> None:
        events = self.bars.on_events(
            batch, clock_ns=self.feed.venue_ns, held=self.feed.unconfirmed()
        )
        self._enqueue(events)
        if len(self._queue) > self.max_queued_events:
            self._room.clear()
            await self._room.wait()

    def _enqueue(self, events: list[ParsedEvent], now: int | None = None) -> None:
        # ``now``: the clock the events are handled at (their ts_init, and the time
        # silences count from).
        if not events:
            return
        if now is None:
            now = self.now_ns()
        if self.silences is not None:
            events = self._watch(events, now)
        gap_times = self.gap_times
        for event in events:
            self.source_seq += 1
            ts_event = event.ts_event
            if isinstance(event.payload, Gap):
                ts_event = gap_times.stamp(event.topic, ts_event)
            self._queue.append(
                make_envelope(
                    event.payload,
                    topic=event.topic,
                    source=self.identity,
                    source_seq=self.source_seq,
                    ts_event=ts_event,
                    ts_init=now,
                    market=event.market,
                )
            )
        self._wake.set()

    async def _publish_loop(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            self._idle.clear()
            batch = self._queue[: self.max_batch_events]
            del self._queue[: self.max_batch_events]
            state = self._consistent_state(len(batch))
            acks = await self.client.publish(batch, ns=self.namespace)
            for ack in acks:
                if ack.gseq is not None and ack.gseq > self.position:
                    self.position = ack.gseq
                if ack.duplicate:
                    _log.error("duplicate_source_seq", id=ack.id)
            self.published += len(batch)
            if len(self._queue) <= self.max_queued_events // 2:
                self._room.set()
            if state is not None:
                self._save_state(*state)

    def _consistent_state(self, batch_len: int) -> tuple[bytes, int, int, int] | None:
        # Only when this batch holds everything the feed has produced: then the state
        # is exactly what the log will hold once the batch is acknowledged.
        due = time.monotonic() - self._last_snapshot >= self.snapshot_every_s
        adapter = self.adapter
        if not due or self._queue or (adapter is not None and adapter.undelivered):
            return None
        return (
            msgspec.msgpack.encode(self._state()),
            self.source_seq,
            self.feed.venue_ns,
            self.published + batch_len,
        )

    def _save_state(self, state: bytes, source_seq: int, clock_ns: int, events: int) -> None:
        self.store.save(
            Snapshot(
                actor=self.identity,
                state_version=LIVE_STATE_VERSION,
                state=state,
                positions={self.namespace: self.position},
                source_seq=source_seq,
                clock_ns=clock_ns,
                events_handled=events,
            )
        )
        self._last_snapshot = time.monotonic()

    def _state(self) -> LiveMarketDataState:
        return LiveMarketDataState(
            feed=self.feed.state(),
            bars=self.bars.state(),
            silences=(
                StreamSilenceState(last_ns={}) if self.silences is None else self.silences.state()
            ),
            gap_last_ts=self.gap_times.state(),
        )

    def _save(self) -> None:
        if self._queue or (self.adapter is not None and self.adapter.undelivered):
            return
        self._save_state(
            msgspec.msgpack.encode(self._state()),
            self.source_seq,
            self.feed.venue_ns,
            self.published,
        )

    async def _report_loop(self) -> None:
        reported = -1
        while True:
            await asyncio.sleep(10.0)
            if self.published != reported:
                reported = self.published
                stats = self.feed.stats
                _log.info(
                    "feed",
                    published=self.published,
                    gaps=stats.gaps,
                    silence_gaps=self.silence_gaps,
                    backfills=stats.backfills,
                    resyncs=stats.resyncs,
                    late_trades=self.bars.late_trades,
                    connected=self.adapter is not None and self.adapter.connected.is_set(),
                )


def _gap_event(event: ParsedEvent, gap: Gap) -> ParsedEvent:
    """The whole-silence ``md.gap`` that ``event`` ends, published right after it."""
    return ParsedEvent(event.ts_event, gap_topic(event.topic), event.market, gap)
