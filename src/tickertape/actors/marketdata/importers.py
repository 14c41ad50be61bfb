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

Sources: every file is its own source, ``import.{format}.{file stem}`` (and
``.{ticker}`` for multi-ticker files), with ``source_seq`` = the event's rank in the
file's stored order. Importing the same file again yields the same ids, which the log
drops as duplicates; a different file name is a different source.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import re
from collections.abc import Iterator
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import orjson

from tickertape.actors.marketdata.sessions import daily_session_ns
from tickertape.errors import ConfigError, ImportDataError
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar, CorporateAction, Quote, RawMessage, Trade

FORMATS: tuple[str, ...] = ("binance-ws", "ohlcv-csv", "quandl-wiki", "krx-daily")
"""The import formats, as named on the command line."""

_NS_PER_UNIT = {"s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_INTERVAL = re.compile(r"^([1-9][0-9]*)([smhd])$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


class ParsedEvent(msgspec.Struct, frozen=True):
    """One normalized event before it becomes an envelope.

    Attributes:
        ts_event: ns since the epoch (UTC).
        topic: its topic (DESIGN §4).
        market: its market scope.
        payload: the registered payload Struct.
    """

    ts_event: int
    topic: str
    market: Market
    payload: msgspec.Struct


class ParsedFile(msgspec.Struct, frozen=True):
    """What one file yielded.

    Attributes:
        format: the format name.
        path: the file.
        sha256: hex digest of the file's bytes as stored (compressed if gzipped).
        rows_read: data rows read (header and blank lines excluded).
        streams: per source, its events in stored order (``source_seq`` = index + 1).
        refused: one :class:`ImportDataError` per refused row, in file order.
    """

    format: str
    path: str
    sha256: str
    rows_read: int
    streams: dict[str, list[ParsedEvent]]
    refused: list[ImportDataError]


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


def source_name(format: str, path: str | Path, *suffix: str) -> str:
    """Return the import source identity of a file: ``import.{format}.{stem}[.{suffix}]``.

    The stem drops ``.gz``/``.csv`` and replaces characters other than letters,
    digits, ``_`` and ``-`` with ``_``.
    """
    name = Path(path).name
    for ext in (".gz", ".csv", ".txt", ".jsonl"):
        name = name.removesuffix(ext)
    parts = [_UNSAFE.sub("_", name), *(_UNSAFE.sub("_", s) for s in suffix)]
    return ".".join(["import", format, *parts])


def _read_bytes(path: Path) -> tuple[bytes, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportDataError(path, None, f"cannot read file: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ImportDataError(path, None, f"corrupt gzip data: {exc}") from None
    return data, digest


def _text_lines(path: Path, data: bytes) -> list[str]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportDataError(path, None, f"not UTF-8 text: {exc}") from None
    return text.splitlines()


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


@lru_cache(maxsize=1024)
def _raw_topic(stream: str) -> str:
    return "raw.binance." + _UNSAFE.sub("_", stream.replace("@", "_"))


def parse_binance_ws(path: str | Path, *, strict: bool = False) -> ParsedFile:
    """Parse a recorded Binance spot combined-stream capture (format ``binance-ws``).

    Args:
        path: the capture, gzip or plain text.
        strict: raise on the first malformed line instead of refusing it and going on.

    Returns:
        The events of one source (``import.binance-ws.{stem}``): every message on
        ``raw.binance.*``, trades on ``md.trade.crypto.{SYMBOL}``, book tickers on
        ``md.quote.crypto.{SYMBOL}``; market ``crypto``.

    Raises:
        ImportDataError: the file cannot be read, or (``strict``) a line is malformed.
    """
    path = Path(path)
    data, digest = _read_bytes(path)
    refusals = _Refusals(path, strict)
    # (venue ns or None, [events without their ts]) per message, in file order.
    messages: list[tuple[int | None, list[tuple[str, msgspec.Struct]]]] = []
    symbol_hint = path.name.split("_", 1)[0].upper()
    rows = 0
    for lineno, raw_line in enumerate(data.split(b"\n"), start=1):
        line = raw_line.strip()
        if not line:
            continue
        rows += 1
        head, _, body = line.partition(b" ")
        try:
            recv_ns = int(head)
            message = orjson.loads(body)
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            refusals.refuse(lineno, "not '<local_recv_ns> <json object>'")
            continue
        stream = message.get("stream")
        try:
            parsed = _binance_message(message, stream, symbol_hint)
        except (KeyError, TypeError, ValueError) as exc:
            refusals.refuse(lineno, f"malformed {stream or 'message'}: {exc!r}")
            continue
        venue_ns, stream_name, normalized = parsed
        raw = RawMessage(
            venue="binance", stream=stream_name, recv_ns=recv_ns, message=body.decode("utf-8")
        )
        messages.append((venue_ns, [(_raw_topic(stream_name), raw), *normalized]))
    first_venue = next((ts for ts, _ in messages if ts is not None), None)
    if first_venue is None and messages:
        raise ImportDataError(path, None, "no message carries a venue time: nothing can be stamped")
    out: list[tuple[int, int, ParsedEvent]] = []
    latest = first_venue or 0
    rank = 0
    for venue_ns, events in messages:
        if venue_ns is not None and venue_ns > latest:
            latest = venue_ns
        ts = venue_ns if venue_ns is not None else latest
        for topic, payload in events:
            out.append((ts, rank, ParsedEvent(ts, topic, "crypto", payload)))
            rank += 1
    return ParsedFile(
        format="binance-ws",
        path=str(path),
        sha256=digest,
        rows_read=rows,
        streams={source_name("binance-ws", path): _order(out)},
        refused=refusals.errors,
    )


def _binance_message(
    message: dict[str, Any], stream: Any, symbol_hint: str
) -> tuple[int | None, str, list[tuple[str, msgspec.Struct]]]:
    """Return (venue ns or None, stream name, normalized events) of one message."""
    if stream is None:
        if "lastUpdateId" not in message:
            raise ValueError("neither a combined-stream frame nor a REST depth snapshot")
        int(message["lastUpdateId"])
        return None, f"{symbol_hint.lower()}@depth_snapshot", []
    if not isinstance(stream, str) or "@" not in stream:
        raise ValueError(f"bad stream name {stream!r}")
    payload = message["data"]
    kind = stream.split("@", 1)[1]
    symbol = str(payload.get("s") or stream.split("@", 1)[0].upper())
    if _UNSAFE.search(symbol):
        raise ValueError(f"bad symbol {symbol!r}")
    if kind == "trade":
        trade = Trade(
            symbol=symbol,
            price=float(payload["p"]),
            size=float(payload["q"]),
            side="sell" if payload["m"] else "buy",
            trade_id=str(int(payload["t"])),
        )
        return int(payload["T"]) * 1_000_000, stream, [(f"md.trade.crypto.{symbol}", trade)]
    if kind == "bookTicker":
        int(payload["u"])
        quote = Quote(
            symbol=symbol,
            bid=float(payload["b"]),
            bid_size=float(payload["B"]),
            ask=float(payload["a"]),
            ask_size=float(payload["A"]),
        )
        return None, stream, [(f"md.quote.crypto.{symbol}", quote)]
    if kind.startswith("depth"):
        int(payload["U"])
        int(payload["u"])
        return int(payload["E"]) * 1_000_000, stream, []
    raise ValueError(f"unknown stream kind {kind!r}")


# ------------------------------------------------------------------------- ohlcv-csv


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {tz!r} (an IANA name such as UTC or America/Chicago)"
        ) from None


def _timestamp_ns(text: str, zone: ZoneInfo) -> int:
    stamp = datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=zone)
    seconds = int(stamp.timestamp())
    return seconds * 1_000_000_000 + stamp.microsecond * 1_000


def _float(text: str) -> float:
    value = float(text.replace(",", "").strip())
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def _bar_values(fields: list[str], line: int) -> tuple[float, float, float, float, float]:
    o, h, low, c, v = (_float(x) for x in fields)
    if not (low <= o <= h and low <= c <= h):
        raise ValueError(f"inconsistent OHLC (open {o}, high {h}, low {low}, close {c})")
    if low <= 0 or v < 0:
        raise ValueError(f"non-positive price or negative volume (low {low}, volume {v})")
    return o, h, low, c, v


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
        tz: IANA time zone of naive timestamps (aware ones keep their offset).
        stamp: whether a row's time is the bar's ``start`` or its ``end``.
        adjusted: whether prices are adjusted for corporate actions.
        strict: raise on the first malformed row.

    Returns:
        Bars on ``md.bar.{interval}.{market}.{symbol}`` (``-adj`` appended to the
        interval token when adjusted), ``ts_event`` = close time, in time order.

    Raises:
        ConfigError: a bad option (interval, time zone, missing column).
        ImportDataError: unreadable file, or (``strict``) a malformed or
            out-of-order row.
    """
    path = Path(path)
    length = interval_ns(interval)
    zone = _zone(tz)
    data, digest = _read_bytes(path)
    lines = _text_lines(path, data)
    refusals = _Refusals(path, strict)
    reader = csv.reader(lines)
    header = [h.strip() for h in next(reader, [])]
    time_column = time_column or (header[0] if header else "")
    try:
        columns = [header.index(c) for c in (time_column, "open", "high", "low", "close", "volume")]
    except ValueError:
        raise ConfigError(
            f"{path}: header {header} lacks one of {time_column!r}, open, high, low, close, volume"
        ) from None
    topic = f"md.bar.{interval}{'-adj' if adjusted else ''}.{market}.{symbol}"
    out: list[tuple[int, int, ParsedEvent]] = []
    rows = 0
    last_close: int | None = None
    for lineno, fields in enumerate(reader, start=2):
        if not fields or not any(f.strip() for f in fields):
            continue
        rows += 1
        try:
            t = _timestamp_ns(fields[columns[0]], zone)
            o, h, low, c, v = _bar_values([fields[i] for i in columns[1:]], lineno)
        except (ValueError, IndexError) as exc:
            refusals.refuse(lineno, f"malformed bar: {exc}")
            continue
        start = t if stamp == "start" else t - length
        close = start + length
        if last_close is not None and close <= last_close:
            refusals.refuse(
                lineno, f"bar ending {close} ns is not after the previous one ({last_close} ns)"
            )
            continue
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
        out.append((close, lineno, ParsedEvent(close, topic, market, bar)))
    return ParsedFile(
        format="ohlcv-csv",
        path=str(path),
        sha256=digest,
        rows_read=rows,
        streams={source_name("ohlcv-csv", path): _order(out)},
        refused=refusals.errors,
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
        ``amount`` in USD), stamped at the session open.

    Raises:
        ImportDataError: unreadable file, or (``strict``) a malformed row.
    """
    path = Path(path)
    data, digest = _read_bytes(path)
    lines = _text_lines(path, data)
    refusals = _Refusals(path, strict)
    reader = csv.reader(lines)
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
    rows = 0
    for lineno, fields in enumerate(reader, start=2):
        if not fields or not any(f.strip() for f in fields):
            continue
        rows += 1
        try:
            ticker = fields[col["ticker"]].strip().replace(".", "_")
            if not ticker or _UNSAFE.search(ticker):
                raise ValueError(f"bad ticker {fields[col['ticker']]!r}")
            day = date.fromisoformat(fields[col["date"]].strip())
            o, h, low, c, v = _bar_values(
                [fields[col[k]] for k in ("open", "high", "low", "close", "volume")], lineno
            )
            dividend = _float(fields[col["ex-dividend"]])
            split = _float(fields[col["split_ratio"]])
            if split <= 0 or dividend < 0:
                raise ValueError(f"bad split ratio {split} or dividend {dividend}")
        except (ValueError, IndexError) as exc:
            refusals.refuse(lineno, f"malformed row: {exc}")
            continue
        open_ns, close_ns = daily_session_ns("us", day)
        events = per_ticker.setdefault(ticker, [])
        topic_ca = f"md.corporate_action.us.{ticker}"
        if split != 1.0:
            action = CorporateAction(
                symbol=ticker, action="split", ex_date=day.isoformat(), ratio=split
            )
            events.append((open_ns, lineno * 4, ParsedEvent(open_ns, topic_ca, "us", action)))
        if dividend != 0.0:
            action = CorporateAction(
                symbol=ticker,
                action="dividend",
                ex_date=day.isoformat(),
                amount=dividend,
                currency="USD",
            )
            events.append((open_ns, lineno * 4 + 1, ParsedEvent(open_ns, topic_ca, "us", action)))
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
        events.append(
            (close_ns, lineno * 4 + 2, ParsedEvent(close_ns, f"md.bar.1d.us.{ticker}", "us", bar))
        )
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
        if fields and any(f.strip() for f in fields):
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
        the KRX session (``start_ns`` = open, ``ts_event`` = close).

    Raises:
        ImportDataError: unreadable file, or (``strict``) a malformed row.
    """
    path = Path(path)
    data, digest = _read_bytes(path)
    lines = _text_lines(path, data)
    refusals = _Refusals(path, strict)
    topic = f"md.bar.1d{'-adj' if adjusted else ''}.kr.{symbol}"
    out: list[tuple[int, int, ParsedEvent]] = []
    rows = 0
    last: date | None = None
    for lineno, fields in _krx_rows(lines):
        if lineno == 1 and fields[0].strip().lower() == "date":
            continue
        rows += 1
        try:
            day = _krx_date(fields[0])
            o, h, low, c, v = _bar_values(fields[1:6], lineno)
        except (ValueError, IndexError) as exc:
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
        out.append((close_ns, lineno, ParsedEvent(close_ns, topic, "kr", bar)))
    return ParsedFile(
        format="krx-daily",
        path=str(path),
        sha256=digest,
        rows_read=rows,
        streams={source_name("krx-daily", path): _order(out)},
        refused=refusals.errors,
    )
