"""Binance spot stream logic (pure): normalization, gap detection, book synchronisation.

:class:`BinanceFeed` takes the frames of a combined stream (``{"stream": ...,
"data": ...}`` text) and depth snapshots, and returns the events to publish
(:class:`~tickertape.actors.marketdata.importers.ParsedEvent`): raw messages on
``raw.binance.{stream}``, ``md.trade`` and ``md.quote``, and ``md.gap`` for every gap
found. It does no I/O: the client (:mod:`tickertape.actors.marketdata.binance_client`)
feeds it and asks it when a snapshot is needed.

Rules (Binance spot API documentation, "How to manage a local order book correctly"):

- Trades: ids are consecutive per symbol. An id at or below the last seen is a
  replay (after a reconnect) and is dropped; a jump publishes a ``sequence`` gap on
  stream ``trade`` with the number of ids missing.
- Depth: until synchronised, diffs are buffered and a snapshot is requested. On a
  snapshot with ``lastUpdateId`` L, buffered diffs with ``u`` ≤ L are dropped; the
  first applied one must satisfy ``U`` ≤ L + 1 ≤ ``u`` (else a newer snapshot is
  requested). Once synchronised, each diff must start at the previous ``u`` + 1: a
  jump publishes a ``sequence`` gap on stream ``depth`` and triggers a resync.
  After every reconnect the books resynchronise from a snapshot.
- Book tickers: an update id at or below the last seen is dropped.
- Raw messages are published only when they carry new information (so a replayed
  stream after a reconnect does not duplicate them), and every topic's ``ts_event``
  only moves forward: book tickers and snapshots, which carry no venue time, take
  the latest venue time seen.
- Trade backfill (``backfill_trades=True``): a trade id jump does not publish a gap at
  once. The symbol's trades are held back while the client fetches the missing ids
  from the venue's ``GET /api/v3/historicalTrades?fromId=...`` (each answer is kept as
  raw ``{symbol}@historical_trades``); then the held trades follow, and a gap is
  published only for ids the venue could not supply. After a restart or reconnect this
  recovers the trades sent while the client was away.

The state that decides what is new (last ids, last times) survives restarts: it is
exported by :meth:`BinanceFeed.state`, restored with :meth:`BinanceFeed.from_state`,
and advanced by :meth:`BinanceFeed.observe` with the events already in the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import orjson

from tickertape.actors.marketdata.importers import ParsedEvent
from tickertape.schemas.market import Gap, Quote, RawMessage, Trade

MAX_BUFFERED_DIFFS = 10_000
"""Depth diffs kept per symbol while waiting for a snapshot (the oldest are dropped)."""

MAX_HELD_TRADES = 100_000
"""Trades held per symbol during a backfill; beyond, the backfill ends with a gap."""


class FeedState(msgspec.Struct, frozen=True, kw_only=True):
    """What a :class:`BinanceFeed` must remember across restarts (sorted keys).

    Attributes:
        last_trade: per symbol, the last trade id published.
        last_ticker: per symbol, the last book-ticker update id published.
        raw_depth: per symbol, the final update id ``u`` of the last raw diff published.
        raw_snapshot: per symbol, the ``lastUpdateId`` of the last raw snapshot published.
        topic_ts: per topic, the last ``ts_event`` published (ns).
        venue_ns: the latest venue time seen (ns).
    """

    last_trade: dict[str, int] = msgspec.field(default_factory=dict)
    last_ticker: dict[str, int] = msgspec.field(default_factory=dict)
    raw_depth: dict[str, int] = msgspec.field(default_factory=dict)
    raw_snapshot: dict[str, int] = msgspec.field(default_factory=dict)
    topic_ts: dict[str, int] = msgspec.field(default_factory=dict)
    venue_ns: int = 0


class _Backfill:
    __slots__ = ("held", "next_id", "until_id")

    def __init__(self, next_id: int, until_id: int) -> None:
        self.next_id = next_id  # first id still wanted
        self.until_id = until_id  # the id that revealed the gap (held, not wanted)
        self.held: list[tuple[str, dict[str, Any], int, str]] = []


class _Book:
    __slots__ = ("asks", "bids", "buffer", "last_update_id", "synced", "verified")

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.last_update_id = 0
        self.synced = False
        self.verified = False  # a diff has bridged the snapshot
        self.buffer: list[dict[str, Any]] = []

    def apply(self, diff: dict[str, Any]) -> None:
        for side, levels in ((self.bids, diff["b"]), (self.asks, diff["a"])):
            for price, qty in levels:
                if float(qty) == 0.0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_update_id = int(diff["u"])


class FeedStats:
    """Counters of a feed (for health reports and benchmarks)."""

    __slots__ = ("backfills", "duplicates", "gaps", "messages", "resyncs")

    def __init__(self) -> None:
        self.messages = 0
        self.duplicates = 0
        self.gaps = 0
        self.resyncs = 0
        self.backfills = 0


class BinanceFeed:
    """Turns a Binance combined stream into normalized events, finding every gap.

    Args:
        symbols: the symbols followed (upper case, e.g. ``BTCUSDT``).
        backfill_trades: hold trades after an id jump until :meth:`end_backfill`
            (see the module docstring); off, a jump publishes its gap at once.
    """

    def __init__(self, symbols: Iterable[str], *, backfill_trades: bool = False) -> None:
        self.symbols = sorted({s.upper() for s in symbols})
        self.backfill_trades = backfill_trades
        self._books = {s: _Book() for s in self.symbols}
        self._last_trade: dict[str, int] = {}
        self._last_ticker: dict[str, int] = {}
        self._last_ts: dict[str, int] = {}
        self._raw_depth_id: dict[str, int] = {}
        self._raw_snapshot_id: dict[str, int] = {}
        self._venue_ns = 0
        self._backfills: dict[str, _Backfill] = {}
        self._confirmed: set[str] = set()
        self.stats = FeedStats()

    @classmethod
    def from_state(
        cls, symbols: Iterable[str], state: FeedState, *, backfill_trades: bool = False
    ) -> BinanceFeed:
        """A feed that continues from ``state`` (its books resynchronise from snapshots)."""
        feed = cls(symbols, backfill_trades=backfill_trades)
        feed._last_trade = dict(state.last_trade)
        feed._last_ticker = dict(state.last_ticker)
        feed._raw_depth_id = dict(state.raw_depth)
        feed._raw_snapshot_id = dict(state.raw_snapshot)
        feed._last_ts = dict(state.topic_ts)
        feed._venue_ns = state.venue_ns
        return feed

    def state(self) -> FeedState:
        """Return what decides novelty and time floors (the books are not included)."""
        return FeedState(
            last_trade=dict(sorted(self._last_trade.items())),
            last_ticker=dict(sorted(self._last_ticker.items())),
            raw_depth=dict(sorted(self._raw_depth_id.items())),
            raw_snapshot=dict(sorted(self._raw_snapshot_id.items())),
            topic_ts=dict(sorted(self._last_ts.items())),
            venue_ns=self._venue_ns,
        )

    @property
    def venue_ns(self) -> int:
        """The latest venue time seen (trade and depth event times), ns."""
        return self._venue_ns

    def observe(self, event: ParsedEvent) -> None:
        """Advance the state with an event this feed published before (from the log).

        Raises:
            ValueError: a raw message whose text is not the JSON it should be.
        """
        topic, payload = event.topic, event.payload
        if event.ts_event > self._last_ts.get(topic, 0):
            self._last_ts[topic] = event.ts_event
        if isinstance(payload, Trade):
            if payload.trade_id.isdigit():
                trade_id = int(payload.trade_id)
                if trade_id > self._last_trade.get(payload.symbol, 0):
                    self._last_trade[payload.symbol] = trade_id
            self._venue_ns = max(self._venue_ns, event.ts_event)
        elif isinstance(payload, RawMessage):
            self._observe_raw(payload, event.ts_event)

    def _observe_raw(self, raw: RawMessage, ts: int) -> None:
        symbol, _, kind = raw.stream.partition("@")
        symbol = symbol.upper()
        if kind == "depth_snapshot":
            last_id = int(orjson.loads(raw.message)["lastUpdateId"])
            if last_id > self._raw_snapshot_id.get(symbol, 0):
                self._raw_snapshot_id[symbol] = last_id
            return
        if kind == "historical_trades":
            return  # the md.trade events of the page carry the ids
        data = orjson.loads(raw.message)["data"]
        if kind == "bookTicker":
            if int(data["u"]) > self._last_ticker.get(symbol, 0):
                self._last_ticker[symbol] = int(data["u"])
        elif kind.startswith("depth"):
            if int(data["u"]) > self._raw_depth_id.get(symbol, 0):
                self._raw_depth_id[symbol] = int(data["u"])
            self._venue_ns = max(self._venue_ns, ts)
        elif kind == "trade":
            self._venue_ns = max(self._venue_ns, ts)

    # ------------------------------------------------------------------ state

    def needs_snapshot(self) -> list[str]:
        """Symbols whose book waits for a depth snapshot, sorted."""
        return [s for s in self.symbols if not self._books[s].synced]

    def book(self, symbol: str) -> tuple[dict[str, str], dict[str, str], int]:
        """Return (bids, asks, last update id) of ``symbol``'s local book (price → qty)."""
        book = self._books[symbol.upper()]
        return dict(book.bids), dict(book.asks), book.last_update_id

    def on_reconnect(self) -> None:
        """Mark every book unsynchronised (the next snapshot rebuilds them), and every
        symbol's trade continuity unconfirmed until its next new trade or backfill."""
        for book in self._books.values():
            book.synced = False
            book.verified = False
            book.buffer.clear()
        self._confirmed.clear()

    # --------------------------------------------------------------- backfill

    def backfills(self) -> dict[str, tuple[int, int]]:
        """Symbols whose trades are held: symbol → (first id wanted, id that ended the gap)."""
        return {s: (b.next_id, b.until_id) for s, b in sorted(self._backfills.items())}

    def unconfirmed(self) -> set[str]:
        """Symbols whose trades may still be completed by a backfill: since the last
        reconnect no new trade has shown continuity, or a backfill is running. Bars of
        these symbols must not be closed by the clock yet."""
        return set(self.symbols) - self._confirmed | set(self._backfills)

    def on_historical_trades(
        self, symbol: str, text: str, recv_ns: int
    ) -> tuple[list[ParsedEvent], int]:
        """Apply one ``historicalTrades`` answer (a JSON list, ids ascending).

        Trades with ids in the wanted range are published (with a gap for ids the
        answer skips); the raw answer is published when it supplied any.

        Returns:
            (events, trades in the answer): the client asks for more while the
            answer was full and :meth:`backfills` still wants ids.

        Raises:
            ValueError: ``text`` is not a list of trades.
        """
        symbol = symbol.upper()
        backfill = self._backfills.get(symbol)
        trades = orjson.loads(text)
        if not isinstance(trades, list):
            raise ValueError(f"historicalTrades answer for {symbol} is not a list")
        if backfill is None:
            return [], len(trades)
        out: list[ParsedEvent] = []
        last = self._last_trade.get(symbol)
        stream = f"{symbol.lower()}@historical_trades"
        for item in trades:
            trade_id = int(item["id"])
            if trade_id >= backfill.until_id:
                break
            if last is not None and trade_id <= last:
                continue
            ts = int(item["time"]) * 1_000_000
            self._venue_ns = max(self._venue_ns, ts)
            if not out:
                out.append(self._raw(stream, recv_ns, text, ts))
            if last is not None and trade_id > last + 1:
                out.append(self._gap(symbol, "trade", last, trade_id, ts))
            last = self._last_trade[symbol] = trade_id
            trade = Trade(
                symbol=symbol,
                price=float(item["price"]),
                size=float(item["qty"]),
                side="sell" if item["isBuyerMaker"] else "buy",
                trade_id=str(trade_id),
            )
            topic = f"md.trade.crypto.{symbol}"
            out.append(ParsedEvent(self._stamp(topic, ts), topic, "crypto", trade))
        if trades:
            backfill.next_id = max(backfill.next_id, int(trades[-1]["id"]) + 1)
        return out, len(trades)

    def end_backfill(self, symbol: str) -> list[ParsedEvent]:
        """Stop backfilling ``symbol``: publish its held trades (with a gap for any id
        still missing before them). Returns the events; none when not backfilling."""
        symbol = symbol.upper()
        backfill = self._backfills.pop(symbol, None)
        if backfill is None:
            return []
        self.stats.backfills += 1
        out: list[ParsedEvent] = []
        for stream, data, recv_ns, text in backfill.held:
            out.extend(self._on_trade(stream, symbol, data, recv_ns, text, hold=False))
        self._confirmed.add(symbol)
        return out

    # --------------------------------------------------------------- messages

    def _stamp(self, topic: str, ts: int) -> int:
        last = self._last_ts.get(topic, 0)
        if ts < last:
            ts = last
        self._last_ts[topic] = ts
        return ts

    def _raw(self, stream: str, recv_ns: int, text: str, ts: int) -> ParsedEvent:
        topic = "raw.binance." + stream.replace("@", "_")
        raw = RawMessage(venue="binance", stream=stream, recv_ns=recv_ns, message=text)
        return ParsedEvent(self._stamp(topic, ts), topic, "crypto", raw)

    def _gap(self, symbol: str, stream: str, last: int, next_: int, ts: int) -> ParsedEvent:
        self.stats.gaps += 1
        topic = f"md.gap.crypto.{symbol}"
        gap = Gap(
            symbol=symbol,
            kind="sequence",
            stream=stream,
            last_seen=last,
            next_seen=next_,
            missing=max(next_ - last - 1, 0),
        )
        return ParsedEvent(self._stamp(topic, ts), topic, "crypto", gap)

    def on_message(self, text: str, recv_ns: int) -> list[ParsedEvent]:
        """Handle one combined-stream frame; return the events to publish, in order.

        Raises:
            ValueError: the frame is not a combined-stream message of a known kind.
        """
        self.stats.messages += 1
        frame = orjson.loads(text)
        stream = frame["stream"]
        data = frame["data"]
        kind = stream.split("@", 1)[1]
        symbol = str(data.get("s") or stream.split("@", 1)[0]).upper()
        if kind == "trade":
            return self._on_trade(stream, symbol, data, recv_ns, text)
        if kind == "bookTicker":
            return self._on_ticker(stream, symbol, data, recv_ns, text)
        if kind.startswith("depth"):
            return self._on_depth(stream, symbol, data, recv_ns, text)
        raise ValueError(f"unknown stream kind {kind!r}")

    def _on_trade(
        self,
        stream: str,
        symbol: str,
        data: dict[str, Any],
        recv_ns: int,
        text: str,
        *,
        hold: bool = True,
    ) -> list[ParsedEvent]:
        trade_id = int(data["t"])
        backfill = self._backfills.get(symbol) if hold else None
        if backfill is not None:
            backfill.held.append((stream, data, recv_ns, text))
            if len(backfill.held) >= MAX_HELD_TRADES:
                return self.end_backfill(symbol)
            return []
        last = self._last_trade.get(symbol)
        if last is not None and trade_id <= last:
            self.stats.duplicates += 1
            return []
        ts = int(data["T"]) * 1_000_000
        self._venue_ns = max(self._venue_ns, ts)
        if hold and self.backfill_trades and last is not None and trade_id > last + 1:
            backfill = self._backfills[symbol] = _Backfill(last + 1, trade_id)
            backfill.held.append((stream, data, recv_ns, text))
            return []
        self._confirmed.add(symbol)
        out = [self._raw(stream, recv_ns, text, ts)]
        if last is not None and trade_id > last + 1:
            out.append(self._gap(symbol, "trade", last, trade_id, ts))
        self._last_trade[symbol] = trade_id
        trade = Trade(
            symbol=symbol,
            price=float(data["p"]),
            size=float(data["q"]),
            side="sell" if data["m"] else "buy",
            trade_id=str(trade_id),
        )
        topic = f"md.trade.crypto.{symbol}"
        out.append(ParsedEvent(self._stamp(topic, ts), topic, "crypto", trade))
        return out

    def _on_ticker(
        self, stream: str, symbol: str, data: dict[str, Any], recv_ns: int, text: str
    ) -> list[ParsedEvent]:
        update_id = int(data["u"])
        if update_id <= self._last_ticker.get(symbol, 0):
            self.stats.duplicates += 1
            return []
        self._last_ticker[symbol] = update_id
        quote = Quote(
            symbol=symbol,
            bid=float(data["b"]),
            bid_size=float(data["B"]),
            ask=float(data["a"]),
            ask_size=float(data["A"]),
        )
        ts = self._venue_ns
        topic = f"md.quote.crypto.{symbol}"
        return [
            self._raw(stream, recv_ns, text, ts),
            ParsedEvent(self._stamp(topic, ts), topic, "crypto", quote),
        ]

    def _on_depth(
        self, stream: str, symbol: str, data: dict[str, Any], recv_ns: int, text: str
    ) -> list[ParsedEvent]:
        book = self._books.get(symbol)
        if book is None:
            return []
        ts = int(data["E"]) * 1_000_000
        self._venue_ns = max(self._venue_ns, ts)
        first, final = int(data["U"]), int(data["u"])
        if not book.synced:
            book.buffer.append({**data, "_recv": recv_ns, "_text": text, "_stream": stream})
            del book.buffer[:-MAX_BUFFERED_DIFFS]
            return []
        if final <= book.last_update_id:
            self.stats.duplicates += 1
            return []
        if not book.verified and first > book.last_update_id + 1:
            # The snapshot is older than the stream: not a loss, fetch a newer one.
            book.synced = False
            book.buffer.append({**data, "_recv": recv_ns, "_text": text, "_stream": stream})
            return []
        book.verified = True
        out = self._raw_depth(symbol, final, stream, recv_ns, text, ts)
        if first > book.last_update_id + 1:
            out.append(self._gap(symbol, "depth", book.last_update_id, first, ts))
            book.synced = False
            book.buffer.clear()
            return out
        book.apply(data)
        return out

    def on_snapshot(self, symbol: str, text: str, recv_ns: int) -> list[ParsedEvent]:
        """Rebuild ``symbol``'s book from a REST depth snapshot and its buffered diffs.

        Returns:
            The raw snapshot and the raw diffs applied from the buffer. When the
            snapshot does not bridge the buffer (its ``lastUpdateId`` + 1 is below the
            first buffered ``U``), the book stays unsynchronised: ask for another
            snapshot later.

        Raises:
            ValueError: ``text`` is not a depth snapshot.
        """
        symbol = symbol.upper()
        book = self._books[symbol]
        snapshot = orjson.loads(text)
        last_id = int(snapshot["lastUpdateId"])
        pending = [d for d in book.buffer if int(d["u"]) > last_id]
        if pending and int(pending[0]["U"]) > last_id + 1:
            return []
        self.stats.resyncs += 1
        book.bids = {p: q for p, q in snapshot["bids"] if float(q) != 0.0}
        book.asks = {p: q for p, q in snapshot["asks"] if float(q) != 0.0}
        book.last_update_id = last_id
        book.synced = True
        book.verified = bool(pending)
        book.buffer.clear()
        out: list[ParsedEvent] = []
        if last_id > self._raw_snapshot_id.get(symbol, 0):
            self._raw_snapshot_id[symbol] = last_id
            stream = f"{symbol.lower()}@depth_snapshot"
            out.append(self._raw(stream, recv_ns, text, self._venue_ns))
        for diff in pending:
            if int(diff["U"]) > book.last_update_id + 1:
                out.append(
                    self._gap(symbol, "depth", book.last_update_id, int(diff["U"]), self._venue_ns)
                )
                book.synced = False
                break
            book.apply(diff)
            out.extend(
                self._raw_depth(
                    symbol,
                    int(diff["u"]),
                    diff["_stream"],
                    diff["_recv"],
                    diff["_text"],
                    int(diff["E"]) * 1_000_000,
                )
            )
        return out

    def _raw_depth(
        self, symbol: str, final: int, stream: str, recv_ns: int, text: str, ts: int
    ) -> list[ParsedEvent]:
        # A diff replayed after a resync is not published twice.
        if final <= self._raw_depth_id.get(symbol, 0):
            return []
        self._raw_depth_id[symbol] = final
        return [self._raw(stream, recv_ns, text, ts)]
