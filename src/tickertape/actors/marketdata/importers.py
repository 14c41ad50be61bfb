"""Parsers of historical market-data files into normalized events (pure: no log I/O).

Each parser reads one file and returns a :class:`ParsedFile`: its events in the order
they will be stored (``ts_event`` order, ties in file order) and the rows it refused.
Formats (DESIGN §4 payloads, ``data/README.md`` for the files):

- ``binance-ws``: a recorded Binance spot combined-stream capture, one
  ``<local_recv_ns> <json>`` per line (gzip or plain). Every message is kept as
  received on ``raw.binance.{stream}`` (``@`` becomes ``_``: ``btcusdt_trade``); trades
  become ``md.trade`` (``ts_event`` = trade time ``T``, the aggressor is the seller when
  ``m`` — buyer is maker — is true) and book tickers ``md.quote``. A message without a
  venue time (book ticker, REST depth snapshot) is stamped with the latest venue time
  seen before it in the file (the first one after it when none was seen yet): never
  ahead of the venue, and the recorder's clock (about 1.27 s behind) is never mixed in.
- ``ohlcv-csv``: a bar CSV with a header; the time column, its time zone, whether
  the stamp is the bar's start or end, and the interval are explicit options.
- ``quandl-wiki``: Quandl WIKI daily rows (several tickers per file), unadjusted
  bars plus ``md.corporate_action`` events for splits (``split_ratio`` ≠ 1) and cash
  dividends (``ex-dividend`` ≠ 0).
- ``krx-daily``: KRX daily files: UTF-8 with or without BOM, with or without a header,
  comma or tab separated, ``"2,569,000"`` thousands separators, ``YYYY-MM-DD`` or
  ``YYYYMMDD`` dates. Whether prices are raw or adjusted is said by the caller and
  written on every bar.

Daily bars span the exchange session (``start_ns`` = open, ``ts_event`` = close, from
:mod:`tickertape.actors.marketdata.sessions`).

Sources: every file is its own source, ``import.{format}.{file stem}[.{ticker}].{key}``
(the ticker for multi-ticker files), ``key`` a digest of the format, the file's
resolved path and the options that shape its events (:attr:`ParsedFile.options`):
two files that share a name in different folders are different sources, and the same
file imported again with the same options is the same source. ``source_seq`` is the
event's rank in the file's stored order. What a source may be appended to, and when
the same content under another name counts as already imported, is decided by
:mod:`tickertape.actors.marketdata.loader`.

Malformed rows — including a line that is not UTF-8 — are refused one by one with
file, line and reason; ``strict`` raises at the first instead.
"""

from __future__ import annotations

import csv
import gc
import gzip
import hashlib
import math
import re
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import lru_cache
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from tickertape.actors.marketdata.sessions import daily_session_ns
from tickertape.errors import ConfigError, ImportDataError
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar, CorporateAction, Quote, RawMessage, Trade

FORMATS: tuple[str, ...] = ("binance-ws", "ohlcv-csv", "quandl-wiki", "krx-daily")
"""The import formats, as named on the command line."""

_NS_PER_UNIT = {"s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_INTERVAL = re.compile(r"^([1-9][0-9]*)([smhd])$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block (restored on exit, even on error).

    Parsing and importing create millions of small, acyclic objects that live until
    the import ends. With the collector running, each of its full collections walks
    all of them again; on the Binance captures that doubled the parse time.
    Reference counting still frees every object as usual; only cycle detection is
    deferred to the end of the block. Nested blocks leave the collector paused
    until the outermost one ends.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class ParsedEvent(msgspec.Struct, frozen=True, gc=False):
    """One normalized event before it becomes an envelope.

    Not tracked by the cyclic garbage collector (``gc=False``): an import holds
    hundreds of thousands of them, and they cannot form cycles (a payload never
    refers back to its event).

    Attributes:
        ts_event: ns since the epoch (UTC).
        topic: its topic (DESIGN §4).
        market: its market scope.
        payload: the registered payload Struct.
        line: the 1-based line of the file it was read from (0: not from a file), for
            errors that name a row after parsing (the loader's time checks).
    """

    ts_event: int
    topic: str
    market: Market
    payload: msgspec.Struct
    line: int = 0


class ParsedFile(msgspec.Struct, frozen=True):
    """What one file yielded.

    Attributes:
        format: the format name.
        path: the file.
        sha256: hex digest of the file's bytes as stored (compressed if gzipped).
        rows_read: data rows read (header and blank lines excluded).
        streams: per source, its events in stored order (``source_seq`` = index + 1).
        refused: one :class:`ImportDataError` per refused row, in file order.
        options: the parse options that shape the events, as canonical text (e.g.
            ``market=us symbol=6EH4 interval=1m ...``; empty when the file alone
            decides them): with ``sha256`` it identifies an import's content, whatever
            the file's name.
    """

    format: str
    path: str
    sha256: str
    rows_read: int
    streams: dict[str, list[ParsedEvent]]
    refused: list[ImportDataError]
    options: str = ""


def interval_ns(interval: str) -> int:
    """Return the length of a bar interval (``1s``, ``5m``, ``1h``, ``1d``) in ns.

    A day is 86 400 s; daily bars of an exchange span its session instead.

    Raises:
        ConfigError: the interval is not a positive count followed by s, m, h or d.
    """
    match = _INTERVAL.match(interval)
    if match is None:
        raise ConfigError(f"bar interval {interval!r} is not like 1s, 1m, 5m, 1h or 1d")
    count, unit = int(match.group(1)), match.group(2)
    return count * (86_400_000_000_000 if unit == "d" else _NS_PER_UNIT[unit])


def source_name(format: str, path: str | Path, *suffix: str, options: str = "") -> str:
    """Return the import source identity of a file: ``import.{format}.{stem}[.{suffix}].{key}``.

    The stem drops ``.gz``/``.csv``/``.txt``/``.jsonl`` and replaces characters other
    than letters, digits, ``_`` and ``-`` with ``_``; ``key`` is 12 hex digits of the
    sha256 of the format, the resolved path and ``options`` (see
    :attr:`ParsedFile.options`). So ``aapl/daily.csv`` and ``msft/daily.csv`` are two
    sources, and one file parsed again with the same options is the same source.
    """
    name = Path(path).name
    for ext in (".gz", ".csv", ".txt", ".jsonl"):
        name = name.removesuffix(ext)
    identity = "\0".join((format, str(Path(path).resolve()), options))
    key = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    parts = [_UNSAFE.sub("_", name), *(_UNSAFE.sub("_", s) for s in suffix), key]
    return ".".join(["import", format, *parts])


_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_STEP = 1 << 16


def _read_raw(path: Path) -> tuple[bytes, str]:
    """The file's bytes as stored and their sha256."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportDataError(path, None, f"cannot read file: {exc.strerror or exc}") from None
    return data, hashlib.sha256(data).hexdigest()


def _read_lines(path: Path) -> tuple[Iterator[bytes], str]:
    """The file's lines (gzip or plain) and the sha256 of its bytes as stored.

    Gzip data is decompressed in 64 KiB steps as the lines are consumed: a whole
    decompressed capture would be one large fresh buffer, slower to fill than small
    reused ones. A corrupt stream raises :class:`ImportDataError` when reached.
    """
    data, digest = _read_raw(path)
    if data[:2] != _GZIP_MAGIC:
        return iter(data.split(b"\n")), digest
    return _gunzip_lines(path, data), digest


def _gunzip_lines(path: Path, data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    pending = b""
    start = 0
    try:
        while start < len(data) and any(view[start : start + 512]):  # members, then padding
            member = zlib.decompressobj(wbits=31)
            pos = start
            while not member.eof:
                if pos >= len(data):
                    raise ImportDataError(path, None, "corrupt gzip data: truncated stream")
                block = member.decompress(view[pos : pos + _GZIP_STEP])
                pos = min(pos + _GZIP_STEP, len(data))
                if block:
                    lines = (pending + block).split(b"\n")
                    pending = lines.pop()
                    yield from lines
            start = pos - len(member.unused_data)
    except zlib.error as exc:
        raise ImportDataError(path, None, f"corrupt gzip data: {exc}") from None
    yield pending


def _read_bytes(path: Path) -> tuple[bytes, str]:
    data, digest = _read_raw(path)
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ImportDataError(path, None, f"corrupt gzip data: {exc}") from None
    return data, digest


_ESCAPED = re.compile("[\udc80-\udcff]")  # a byte surrogateescape could not decode


def _text(data: bytes) -> tuple[str, dict[int, str]]:
    """The file's text (BOM dropped) and, per line that is not UTF-8, why.

    Lines are numbered from 1 as ``str.splitlines`` counts them. A line holding
    bytes that are not UTF-8 is kept with U+FFFD in their place (so the other lines
    keep their numbers) and listed with the first such byte and its column; a file
    that decodes in one go (the usual case) costs nothing more.
    """
    try:
        return data.decode("utf-8-sig"), {}
    except UnicodeDecodeError:
        pass
    bad: dict[int, str] = {}
    escaped = data.decode("utf-8-sig", errors="surrogateescape").splitlines()
    for lineno, line in enumerate(escaped, start=1):
        found = _ESCAPED.search(line)
        if found is not None:
            byte = ord(found.group()) - 0xDC00
            bad[lineno] = f"not UTF-8: byte 0x{byte:02x} at column {found.start() + 1}"
    return data.decode("utf-8-sig", errors="replace"), bad


def _csv_rows(text: str) -> Iterator[list[str]]:
    """The rows of a comma-separated text, as ``csv.reader`` gives them.

    A text without any quote or NUL character is split on commas directly, which is
    what ``csv.reader`` does with such lines (its default dialect), several times
    faster; any other text goes through ``csv.reader``.
    """
    lines = text.splitlines()
    if '"' in text or "\0" in text:
        return csv.reader(lines)
    return (line.split(",") if line else [] for line in lines)


class _Refusals:
    def __init__(self, path: Path, strict: bool) -> None:
        self.path = path
        self.strict = strict
        self.errors: list[ImportDataError] = []

    def refuse(self, line: int, reason: str) -> None:
        error = ImportDataError(self.path, line, reason)
        if self.strict:
            raise error
        self.errors.append(error)


def _order(events: list[tuple[int, int, ParsedEvent]]) -> list[ParsedEvent]:
    events.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in events]


# ------------------------------------------------------------------------ binance-ws


class _Frame(msgspec.Struct):
    """A capture line's JSON: a combined-stream frame or a REST depth snapshot."""

    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"")
    lastUpdateId: int | None = None


# The fields the importer reads from each stream's data (others are skipped unparsed:
# depth levels are kept only in the raw message). Decimals are strings on Binance.
class _TradeData(msgspec.Struct):
    t: int
    p: str | float
    q: str | float
    T: int
    m: bool
    s: str = ""


class _BookTickerData(msgspec.Struct):
    u: int
    b: str | float
    B: str | float
    a: str | float
    A: str | float
    s: str = ""


class _DepthData(msgspec.Struct):
    E: int
    U: int
    u: int
    s: str = ""


_FRAME_DECODER = msgspec.json.Decoder(_Frame)
_TRADE_DECODER = msgspec.json.Decoder(_TradeData)
_BOOK_TICKER_DECODER = msgspec.json.Decoder(_BookTickerData)
_DEPTH_DECODER = msgspec.json.Decoder(_DepthData)
_TS_EVENT = attrgetter("ts_event")


@lru_cache(maxsize=1024)
def _raw_topic(stream: str) -> str:
    return "raw.binance." + _UNSAFE.sub("_", stream.replace("@", "_"))


class _BinanceStreams:
    """Decodes one capture's frames; remembers what it learnt per stream and symbol."""

    def __init__(self, symbol_hint: str) -> None:
        self.snapshot_stream = f"{symbol_hint.lower()}@depth_snapshot"
        # stream -> (kind, its symbol, its raw topic, the md topic of its symbol or
        # None when that symbol is not a valid topic token): one lookup per message.
        self._streams: dict[str, tuple[str, str, str, str | None]] = {}
        self._topics: dict[tuple[str, str], str] = {}  # (kind, symbol) -> md topic

    def _stream(self, stream: str) -> tuple[str, str, str, str | None]:
        known = self._streams.get(stream)
        if known is None:
            name, at, kind = stream.partition("@")
            if not at:
                raise ValueError(f"bad stream name {stream!r}")
            if kind != "trade" and kind != "bookTicker" and not kind.startswith("depth"):
                raise ValueError(f"unknown stream kind {kind!r}")
            symbol = name.upper()
            md_kind = "trade" if kind == "trade" else "quote" if kind == "bookTicker" else "depth"
            topic = None if _UNSAFE.search(symbol) else self._topic(md_kind, symbol)
            known = self._streams[stream] = (kind, symbol, _raw_topic(stream), topic)
        return known

    def _topic(self, kind: str, symbol: str) -> str:
        topic = self._topics.get((kind, symbol))
        if topic is None:
            if _UNSAFE.search(symbol):
                raise ValueError(f"bad symbol {symbol!r}")
            topic = self._topics[(kind, symbol)] = f"md.{kind}.crypto.{symbol}"
        return topic

    def read(self, frame: _Frame) -> tuple[int | None, str, str, tuple[str, msgspec.Struct] | None]:
        """Return (venue ns or None, stream name, raw topic, the normalized event or None).

        Raises:
            ValueError, msgspec.DecodeError: the frame is not what its stream sends.
        """
        stream = frame.stream
        if stream is None:
            if frame.lastUpdateId is None:
                raise ValueError("neither a combined-stream frame nor a REST depth snapshot")
            return None, self.snapshot_stream, _raw_topic(self.snapshot_stream), None
        kind, stream_symbol, raw_topic, topic = self._stream(stream)
        if not frame.data:
            raise ValueError("no data")
        if kind == "trade":
            t = _TRADE_DECODER.decode(frame.data)
            symbol = t.s or stream_symbol
            trade = Trade(
                symbol=symbol,
                price=float(t.p),
                size=float(t.q),
                side="sell" if t.m else "buy",
                trade_id=str(t.t),
            )
            if symbol != stream_symbol or topic is None:
                topic = self._topic("trade", symbol)
            return t.T * 1_000_000, stream, raw_topic, (topic, trade)
        if kind == "bookTicker":
            b = _BOOK_TICKER_DECODER.decode(frame.data)
            symbol = b.s or stream_symbol
            quote = Quote(
                symbol=symbol,
                bid=float(b.b),
                bid_size=float(b.B),
                ask=float(b.a),
                ask_size=float(b.A),
            )
            if symbol != stream_symbol or topic is None:
                topic = self._topic("quote", symbol)
            return None, stream, raw_topic, (topic, quote)
        d = _DEPTH_DECODER.decode(frame.data)
        symbol = d.s or stream_symbol
        if symbol != stream_symbol or topic is None:
            self._topic("depth", symbol)  # validates the symbol
        return d.E * 1_000_000, stream, raw_topic, None


def parse_binance_ws(path: str | Path, *, strict: bool = False) -> ParsedFile:
    """Parse a recorded Binance spot combined-stream capture (format ``binance-ws``).

    Args:
        path: the capture, gzip or plain text.
        strict: raise on the first malformed line instead of refusing it and going on.

    Returns:
        The events of one source (``import.binance-ws.{stem}.{key}``): every message on
        ``raw.binance.*``, trades on ``md.trade.crypto.{SYMBOL}``, book tickers on
        ``md.quote.crypto.{SYMBOL}``; market ``crypto``. Sorted by ``ts_event``; a
        message's raw event comes before its normalized one, and ties keep file order.

    Raises:
        ImportDataError: the file cannot be read, no message carries a venue time, or
            (``strict``) a line is malformed.
    """
    path = Path(path)
    lines, digest = _read_lines(path)
    refusals = _Refusals(path, strict)
    streams = _BinanceStreams(path.name.split("_", 1)[0].upper())
    events: list[ParsedEvent] = []
    # Messages before the first one with a venue time take that time.
    undated: list[tuple[str, msgspec.Struct, int]] = []
    latest: int | None = None
    rows = 0
    with paused_gc():
        for lineno, raw_line in enumerate(lines, start=1):
            line = raw_line.strip()
            if not line:
                continue
            rows += 1
            head, _, body = line.partition(b" ")
            try:
                recv_ns = int(head)
                frame = _FRAME_DECODER.decode(body)
            except msgspec.ValidationError as exc:
                refusals.refuse(lineno, f"malformed message: {exc}")
                continue
            except (ValueError, msgspec.DecodeError):
                refusals.refuse(lineno, "not '<local_recv_ns> <json object>'")
                continue
            try:
                venue_ns, stream, raw_topic, normalized = streams.read(frame)
                raw = RawMessage(
                    venue="binance", stream=stream, recv_ns=recv_ns, message=body.decode()
                )
            except (ValueError, msgspec.DecodeError) as exc:
                refusals.refuse(lineno, f"malformed {frame.stream or 'message'}: {exc}")
                continue
            if venue_ns is None:
                if latest is None:
                    undated.append((raw_topic, raw, lineno))
                    if normalized is not None:
                        undated.append((*normalized, lineno))
                    continue
                ts = latest
            else:
                ts = venue_ns
                if latest is None:
                    latest = venue_ns
                    events.extend(ParsedEvent(ts, t, "crypto", p, n) for t, p, n in undated)
                    undated.clear()
                elif venue_ns > latest:
                    latest = venue_ns
            events.append(ParsedEvent(ts, raw_topic, "crypto", raw, lineno))
            if normalized is not None:
                events.append(ParsedEvent(ts, normalized[0], "crypto", normalized[1], lineno))
        if undated:
            raise ImportDataError(
                path, None, "no message carries a venue time: nothing can be stamped"
            )
        events.sort(key=_TS_EVENT)  # stable: ties keep file order
    return ParsedFile(
        format="binance-ws",
        path=str(path),
        sha256=digest,
        rows_read=rows,
        streams={source_name("binance-ws", path): events},
        refused=refusals.errors,
    )


# ------------------------------------------------------------------------- ohlcv-csv


_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Zulu", "Etc/Zulu"})
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH = _EPOCH_UTC.replace(tzinfo=None)  # naive stamps minus their zone's offset


def _zone(tz: str) -> ZoneInfo | None:
    """The zone of naive stamps; None for UTC (the common case, computed without it)."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {tz!r} (an IANA name such as UTC or America/Chicago)"
        ) from None
    return None if tz in _UTC_NAMES else zone


def _timestamp_ns(text: str, zone: ZoneInfo | None, *, fold: int = 0) -> int:
    """An ISO-8601 stamp in ns since the epoch; a naive one is local time of ``zone``
    (UTC when None). ``fold=1`` takes the second of the two instants a local time
    means when clocks go back (the same instant when it is not ambiguous).

    Raises:
        ValueError: not an ISO-8601 stamp.
    """
    stamp = datetime.fromisoformat(text.strip())
    if stamp.tzinfo is not None:
        delta = stamp - _EPOCH_UTC
    else:
        delta = stamp - _EPOCH
        if zone is not None:
            offset = zone.utcoffset(stamp.replace(fold=1) if fold else stamp)
            if offset is not None:
                delta -= offset
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _columns(expected: int, fields: Sequence[str]) -> str:
    """The refusal reason of a row with too few columns."""
    return f"expected {expected} columns, got {len(fields)}"


def _float(text: str) -> float:
    value = float(text.replace(",", ""))
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def _bar_values(fields: Sequence[str]) -> tuple[float, float, float, float, float]:
    """Return (open, high, low, close, volume) of five text fields.

    Raises:
        ValueError: not five finite numbers (thousands separators allowed), OHLC
            inconsistent, a price not positive or the volume negative.
    """
    try:
        o, h, low, c, v = map(float, fields)
        finite = math.isfinite(o + h + low + c) and math.isfinite(v)
    except ValueError:
        finite = False
    if not finite:  # thousands separators, or a field to name in the error
        o, h, low, c, v = map(_float, fields)
    if not (low <= o <= h and low <= c <= h):
        raise ValueError(f"inconsistent OHLC (open {o}, high {h}, low {low}, close {c})")
    if low <= 0 or v < 0:
        raise ValueError(f"non-positive price or negative volume (low {low}, volume {v})")
    return o, h, low, c, v


def _blank(fields: list[str]) -> bool:
    return not "".join(fields).strip()


def parse_ohlcv_csv(
    path: str | Path,
    *,
    market: Market,
    symbol: str,
    interval: str,
    time_column: str | None = None,
    tz: str = "UTC",
    stamp: Literal["start", "end"] = "start",
    adjusted: bool = False,
    strict: bool = False,
) -> ParsedFile:
    """Parse a generic OHLCV bar CSV with a header (format ``ohlcv-csv``).

    Args:
        path: the file (gzip or plain); columns ``open, high, low, close, volume``
            and a time column.
        market: the market of the bars.
        symbol: the instrument (a topic token: letters, digits, ``_``, ``-``).
        interval: bar length, e.g. ``1m`` (see :func:`interval_ns`).
        time_column: the time column's name; the first column when None.
        tz: IANA time zone of naive timestamps (aware ones keep their offset). A
            local time that occurs twice when clocks go back is read as its first
            occurrence unless that is not after the previous bar: then as its second
            (rows in time order make the repeated hour's second pass unambiguous).
        stamp: whether a row's time is the bar's ``start`` or its ``end``.
        adjusted: whether prices are adjusted for corporate actions.
        strict: raise on the first malformed row.

    Returns:
        Bars on ``md.bar.{interval}.{market}.{symbol}`` (``-adj`` appended to the
        interval token when adjusted), ``ts_event`` = close time, in time order.
        Refused (with file, line and reason): a line that is not UTF-8, a row with
        fewer columns than the header, a bad time or number, inconsistent OHLC, a
        bar not ending after the previous one.

    Raises:
        ConfigError: a bad option (interval, time zone, missing column).
        ImportDataError: unreadable file, or (``strict``) a malformed or
            out-of-order row.
    """
    path = Path(path)
    length = interval_ns(interval)
    zone = _zone(tz)
    data, digest = _read_bytes(path)
    refusals = _Refusals(path, strict)
    text, bad = _text(data)
    reader = _csv_rows(text)
    header = [h.strip() for h in next(reader, [])]
    time_column = time_column or (header[0] if header else "")
    try:
        columns = [header.index(c) for c in (time_column, "open", "high", "low", "close", "volume")]
    except ValueError:
        raise ConfigError(
            f"{path}: header {header} lacks one of {time_column!r}, open, high, low, close, volume"
        ) from None
    topic = f"md.bar.{interval}{'-adj' if adjusted else ''}.{market}.{symbol}"
    time_index = columns[0]
    pick_values = itemgetter(*columns[1:])  # (open, high, low, close, volume) fields
    shift = 0 if stamp == "start" else length
    out: list[ParsedEvent] = []
    rows = 0
    last_close: int | None = None
    with paused_gc():
        for lineno, fields in enumerate(reader, start=2):
            if not (fields and fields[0].strip()) and _blank(fields):
                continue
            rows += 1
            if bad and lineno in bad:
                refusals.refuse(lineno, bad[lineno])
                continue
            try:
                start = _timestamp_ns(fields[time_index], zone) - shift
                o, h, low, c, v = _bar_values(pick_values(fields))
            except IndexError:
                refusals.refuse(lineno, "malformed bar: " + _columns(len(header), fields))
                continue
            except ValueError as exc:
                refusals.refuse(lineno, f"malformed bar: {exc}")
                continue
            close = start + length
            if last_close is not None and close <= last_close:
                # The repeated hour when clocks go back: its second reading may be later.
                later = _timestamp_ns(fields[time_index], zone, fold=1)
                if later - shift + length <= last_close:
                    refusals.refuse(
                        lineno,
                        f"bar ending {close} ns is not after the previous one ({last_close} ns)",
                    )
                    continue
                start = later - shift  # the repeated hour, second time round
                close = start + length
            last_close = close
            bar = Bar(
                symbol=symbol,
                interval=interval,
                open=o,
                high=h,
                low=low,
                close=c,
                volume=v,
                start_ns=start,
                adjusted=adjusted,
            )
            out.append(ParsedEvent(close, topic, market, bar, lineno))  # in order: checked
    options = (
        f"market={market} symbol={symbol} interval={interval} time_column={time_column} "
        f"tz={tz} stamp={stamp} adjusted={str(adjusted).lower()}"
    )
    return ParsedFile(
        format="ohlcv-csv",
        path=str(path),
        sha256=digest,
        rows_read=rows,
        streams={source_name("ohlcv-csv", path, options=options): out},
        refused=refusals.errors,
        options=options,
    )


# ----------------------------------------------------------------------- quandl-wiki


def parse_quandl_wiki(path: str | Path, *, strict: bool = False) -> ParsedFile:
    """Parse Quandl WIKI daily rows (format ``quandl-wiki``), market ``us``.

    Args:
        path: CSV with ``ticker,date,open,high,low,close,volume,ex-dividend,
            split_ratio`` (the ``adj_*`` columns are ignored: adjusted series are
            derived explicitly from the corporate actions).
        strict: raise on the first malformed row.

    Returns:
        One source per ticker: unadjusted daily bars on ``md.bar.1d.us.{TICKER}``
        spanning the NYSE session, and on each ex-date, before that day's bar,
        ``md.corporate_action`` events (``split`` with ``ratio``; ``dividend`` with
        ``amount`` in USD), stamped at the session open. Refused (with file, line
        and reason): a line that is not UTF-8, a row with fewer columns than the
        header, a bad ticker, date or number, and a ticker's date not after that
        ticker's previous row (a repeated or out-of-order day).

    Raises:
        ImportDataError: unreadable file, or (``strict``) a malformed row.
    """
    path = Path(path)
    data, digest = _read_bytes(path)
    text, bad = _text(data)
    refusals = _Refusals(path, strict)
    reader = csv.reader(text.splitlines())
    header = [h.strip() for h in next(reader, [])]
    needed = (
        "ticker",
        "date",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "ex-dividend",
        "split_ratio",
    )
    try:
        col = {name: header.index(name) for name in needed}
    except ValueError:
        raise ImportDataError(path, 1, f"header {header} lacks one of {needed}") from None
    per_ticker: dict[str, list[tuple[int, int, ParsedEvent]]] = {}
    last_day: dict[str, date] = {}
    rows = 0
    for lineno, fields in enumerate(reader, start=2):
        if _blank(fields):
            continue
        rows += 1
        if bad and lineno in bad:
            refusals.refuse(lineno, bad[lineno])
            continue
        try:
            ticker = fields[col["ticker"]].strip().replace(".", "_")
            if not ticker or _UNSAFE.search(ticker):
                raise ValueError(f"bad ticker {fields[col['ticker']]!r}")
            day = date.fromisoformat(fields[col["date"]].strip())
            o, h, low, c, v = _bar_values(
                [fields[col[k]] for k in ("open", "high", "low", "close", "volume")]
            )
            dividend = _float(fields[col["ex-dividend"]])
            split = _float(fields[col["split_ratio"]])
            if split <= 0 or dividend < 0:
                raise ValueError(f"bad split ratio {split} or dividend {dividend}")
        except IndexError:
            refusals.refuse(lineno, "malformed row: " + _columns(len(header), fields))
            continue
        except ValueError as exc:
            refusals.refuse(lineno, f"malformed row: {exc}")
            continue
        previous = last_day.get(ticker)
        if previous is not None and day <= previous:
            refusals.refuse(
                lineno, f"{ticker}: date {day} is not after that ticker's previous row's {previous}"
            )
            continue
        last_day[ticker] = day
        open_ns, close_ns = daily_session_ns("us", day)
        events = per_ticker.setdefault(ticker, [])
        topic_ca = f"md.corporate_action.us.{ticker}"
        if split != 1.0:
            action = CorporateAction(
                symbol=ticker, action="split", ex_date=day.isoformat(), ratio=split
            )
            event = ParsedEvent(open_ns, topic_ca, "us", action, lineno)
            events.append((open_ns, lineno * 4, event))
        if dividend != 0.0:
            action = CorporateAction(
                symbol=ticker,
                action="dividend",
                ex_date=day.isoformat(),
                amount=dividend,
                currency="USD",
            )
            event = ParsedEvent(open_ns, topic_ca, "us", action, lineno)
            events.append((open_ns, lineno * 4 + 1, event))
        bar = Bar(
            symbol=ticker,
            interval="1d",
            open=o,
            high=h,
            low=low,
            close=c,
            volume=v,
            start_ns=open_ns,
            adjusted=False,
        )
        event = ParsedEvent(close_ns, f"md.bar.1d.us.{ticker}", "us", bar, lineno)
        events.append((close_ns, lineno * 4 + 2, event))
    return ParsedFile(
        format="quandl-wiki",
        path=str(path),
        sha256=digest,
        rows_read=rows,
        streams={
            source_name("quandl-wiki", path, ticker): _order(events)
            for ticker, events in sorted(per_ticker.items())
        },
        refused=refusals.errors,
    )


# ------------------------------------------------------------------------- krx-daily


def _krx_rows(lines: list[str]) -> Iterator[tuple[int, list[str]]]:
    delimiter = "\t" if lines and "\t" in lines[0] else ","
    for lineno, fields in enumerate(csv.reader(lines, delimiter=delimiter), start=1):
        if not _blank(fields):
            yield lineno, fields


def _krx_date(text: str) -> date:
    text = text.strip()
    if len(text) == 8 and text.isdigit():
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    return date.fromisoformat(text)


def parse_krx_daily(
    path: str | Path, *, symbol: str, adjusted: bool, strict: bool = False
) -> ParsedFile:
    """Parse a KRX daily file (format ``krx-daily``), market ``kr``.

    Args:
        path: ``date,open,high,low,close,volume[,...]`` rows; optional BOM and
            header; comma or tab separated; quoted thousands separators.
        symbol: the KRX code, e.g. ``005930``.
        adjusted: whether the file's prices are adjusted (the caller says so: it is
            written on every bar, and adjusted bars go to their own topic).
        strict: raise on the first malformed row.

    Returns:
        Daily bars on ``md.bar.1d.kr.{symbol}`` (``1d-adj`` when adjusted) spanning
        the KRX session (``start_ns`` = open, ``ts_event`` = close). Refused (with
        file, line and reason): a line that is not UTF-8, a row with fewer than six
        columns, a bad date or number, a date not after the previous row's.

    Raises:
        ImportDataError: unreadable file, or (``strict``) a malformed row.
    """
    path = Path(path)
    data, digest = _read_bytes(path)
    text, bad = _text(data)
    lines = text.splitlines()
    refusals = _Refusals(path, strict)
    topic = f"md.bar.1d{'-adj' if adjusted else ''}.kr.{symbol}"
    out: list[tuple[int, int, ParsedEvent]] = []
    rows = 0
    last: date | None = None
    for lineno, fields in _krx_rows(lines):
        if lineno == 1 and fields[0].strip().lower() == "date":
            continue
        rows += 1
        if bad and lineno in bad:
            refusals.refuse(lineno, bad[lineno])
            continue
        if len(fields) < 6:  # date, open, high, low, close, volume[, ...]
            refusals.refuse(lineno, "malformed row: " + _columns(6, fields))
            continue
        try:
            day = _krx_date(fields[0])
            o, h, low, c, v = _bar_values(fields[1:6])
        except ValueError as exc:
            refusals.refuse(lineno, f"malformed row: {exc}")
            continue
        if last is not None and day <= last:
            refusals.refuse(lineno, f"date {day} is not after the previous row's {last}")
            continue
        last = day
        open_ns, close_ns = daily_session_ns("kr", day)
        bar = Bar(
            symbol=symbol,
            interval="1d",
            open=o,
            high=h,
            low=low,
            close=c,
            volume=v,
            start_ns=open_ns,
            adjusted=adjusted,
        )
        out.append((close_ns, lineno, ParsedEvent(close_ns, topic, "kr", bar, lineno)))
    options = f"symbol={symbol} adjusted={str(adjusted).lower()}"
    return ParsedFile(
        format="krx-daily",
        path=str(path),
        sha256=digest,
        rows_read=rows,
        streams={source_name("krx-daily", path, options=options): _order(out)},
        refused=refusals.errors,
        options=options,
    )
