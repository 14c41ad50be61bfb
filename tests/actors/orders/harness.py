"""Shared helpers of the trading-chain tests: bar records, the CME 6E file, a chain run."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from tickertape.actors.base import Actor
from tickertape.actors.marketdata.importers import parse_quandl_wiki, source_name
from tickertape.actors.orders import OrderEngine, OrderEngineConfig
from tickertape.actors.pnl import PnlActor, PnlConfig
from tickertape.actors.risk import RiskActor, RiskConfig
from tickertape.actors.runtime import InProcessHost, MemorySink
from tickertape.schemas import (
    Envelope,
    Record,
    decode_payload,
    encode_payload,
    schema_key,
    stamp,
)
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar
from tickertape.schemas.orders import Fill, OrderEvent
from tickertape.schemas.pnl import Book, PnlUpdate
from tickertape.schemas.risk import RiskDecision
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.scheduler import StepPlanner

MINUTE_NS = 60_000_000_000
REPO = Path(__file__).resolve().parents[3]
SIXE = "cme-6eh4-1m-2024-01/6EH4.XCME_1min_bars_20240101_20240131.csv.gz"
QUANDL = "us-equities-daily-2014/QUANDL_SAMPLE_TABLE.csv"
AAPL_SPLIT_NS = 1_402_320_600_000_000_000
"""AAPL's 7:1 split, 2014-06-09 (the session open its ``md.corporate_action`` is stamped at)."""

BarRow = tuple[int, float, float, float, float, float]
"""(close time ns, open, high, low, close, volume)."""


def data_file(relative: str) -> Path:
    """The bundled data file: ``data/`` of the repository if present, else ``../shared/data``."""
    for root in (REPO / "data", REPO.parent / "shared" / "data"):
        if (root / relative).exists():
            return root / relative
    raise FileNotFoundError(relative)


def load_6e_bars() -> list[BarRow]:
    """The CME 6EH4 1-minute bars of January 2024 (timestamps are bar end times, UTC)."""
    rows: list[BarRow] = []
    with gzip.open(data_file(SIXE), "rt", newline="") as f:
        for row in csv.DictReader(f):
            ts = datetime.strptime(row["timestamp_utc"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            rows.append(
                (
                    int(ts.timestamp()) * 1_000_000_000,
                    float(row["open"]),
                    float(row["high"]),
                    float(row["low"]),
                    float(row["close"]),
                    float(row["volume"]),
                )
            )
    return rows


def write_6e_csv(path: Path, until: str) -> Path:
    """Write the bundled 6E bars ending before ``until`` (``YYYY-MM-DD HH:MM:SS``, UTC) as
    a CSV in the bundled file's format, for ``tape import ohlcv-csv ... --stamp end``."""
    with gzip.open(data_file(SIXE), "rt", newline="") as f, path.open("w", newline="") as out:
        reader = csv.reader(f)
        writer = csv.writer(out)
        writer.writerow(next(reader))
        for row in reader:
            if row[0] >= until:
                break
            writer.writerow(row)
    return path


def aapl_records() -> list[Record]:
    """AAPL's real 2014 daily bars (raw) and corporate actions (the 7:1 split, four
    dividends), stored as ``tape import quandl-wiki`` stores them (source ``import``)."""
    path = data_file(QUANDL)
    parsed = parse_quandl_wiki(path).streams[source_name("quandl-wiki", path, "AAPL")]
    records: list[Record] = []
    for i, event in enumerate(parsed, 1):
        type_, v = schema_key(event.payload)
        env = Envelope(
            id=f"import:{i}", topic=event.topic, type=type_, v=v, market=event.market,
            ts_event=event.ts_event, ts_init=event.ts_event, source="import", source_seq=i,
            payload=encode_payload(event.payload),
        )  # fmt: skip
        records.append(stamp(env, i, i, event.ts_event))
    return records


def aapl_with_a_buy() -> tuple[list[Record], list[Bar]]:
    """The real AAPL 2014 daily bars and corporate actions (Quandl sample), stored as the
    importer would, with the order engine's fill of 100 AAPL bought by strategy ``s`` at
    the raw close of the fifth bar before the 7:1 split; and the raw bars."""
    records = aapl_records()
    raw = [decode_payload(r.type, r.v, r.payload) for r in records if r.type == "md.bar"]
    before = [r for r in records if r.topic.startswith("md.bar") and r.ts_event < AAPL_SPLIT_NS]
    bought = before[-5]
    close = decode_payload(bought.type, bought.v, bought.payload).close
    ts = bought.ts_event + 1
    order = OrderEvent(
        order_id="o1", client_order_id="c1", strategy_id="s", market="us", symbol="AAPL",
        side="buy", order_type="market", quantity=100.0, status="filled",
        filled_quantity=100.0, average_price=close,
        fill=Fill(fill_id="o1-f1", price=close, quantity=100.0, fee=0.0, currency="USD",
                  liquidity="taker", slippage_bps=0.0, ts_fill=ts),
    )  # fmt: skip
    fill = Envelope(
        id="orders:1", topic="order.filled.us", type="order.event", v=1, market="us",
        ts_event=ts, ts_init=ts, source="orders", source_seq=1, payload=encode_payload(order),
    )  # fmt: skip
    inputs = sorted([*records, stamp(fill, 0, 0, ts)], key=lambda r: r.ts_event)
    inputs = [msgspec.structs.replace(r, gseq=i) for i, r in enumerate(inputs, 1)]
    return inputs, raw


def bar_records(
    rows: Sequence[BarRow], market: Market, symbol: str, interval: str = "1m"
) -> list[Record]:
    """Stored ``md.bar`` records of ``rows``, as the market-data actor would publish them."""
    records = []
    topic = f"md.bar.{interval}.{market}.{symbol}"
    for i, (ts, o, h, lo, c, v) in enumerate(rows):
        bar = Bar(
            symbol=symbol, interval=interval, open=o, high=h, low=lo, close=c, volume=v,
            start_ns=ts - MINUTE_NS,
        )  # fmt: skip
        env = Envelope(
            id=f"marketdata:{i + 1}", topic=topic, type="md.bar", v=1, market=market,
            ts_event=ts, ts_init=ts, source="marketdata", source_seq=i + 1,
            payload=encode_payload(bar),
        )  # fmt: skip
        records.append(stamp(env, i, i + 1, ts))
    return records


def run_chain(
    inputs: Sequence[Record],
    actors: Sequence[Actor],
    *,
    orders: OrderEngineConfig | None = None,
    risk: RiskConfig | None = None,
    pnl: PnlConfig | None = None,
) -> list[Record]:
    """Run ``actors`` plus risk, orders and pnl over ``inputs`` in-process; return the outputs."""
    sink = MemorySink()
    start = inputs[0].ts_event
    host = InProcessHost(sink, clock=SimulatedClock(start), seed=1)
    for actor in (*actors, RiskActor(risk), OrderEngine(orders), PnlActor(pnl)):
        host.add(actor)
    host.start()
    host.run(StepPlanner(inputs, host.timers, start_ns=start, end_ns=inputs[-1].ts_event + 1))
    host.stop()
    return sink.records


def system(
    payload: msgspec.Struct, topic: str, ts: int, seq: int, source: str = "operator"
) -> Record:
    """A stored record of ``payload`` without a market (a command, an alert...) from
    ``source`` with ``source_seq`` = ``seq``, at ``ts`` (ns); gseq 10,000 + ``seq``."""
    type_, v = schema_key(payload)
    env = Envelope(
        id=f"{source}:{seq}", topic=topic, type=type_, v=v, market=None, ts_event=ts, ts_init=ts,
        source=source, source_seq=seq, payload=encode_payload(payload),
    )  # fmt: skip
    return stamp(env, seq - 1, 10_000 + seq, ts)


def payloads(records: Sequence[Record], prefix: str) -> list[tuple[Record, msgspec.Struct]]:
    """(record, decoded payload) of the records whose topic starts with ``prefix``."""
    return [
        (r, decode_payload(r.type, r.v, r.payload)) for r in records if r.topic.startswith(prefix)
    ]


def chain_outcome(
    records: Sequence[Record],
) -> tuple[list[tuple[str, dict[str, float]]], Book | None]:
    """The risk gate's decisions other than cancels, as (reason code, inputs), and
    strategy ``s``'s last booked state (None when it never had an update)."""
    decisions = [
        (d.reason_code, d.inputs)
        for _, d in payloads(records, "risk.")
        if isinstance(d, RiskDecision) and d.reason != "cancel"
    ]
    updates = [p for _, p in payloads(records, "pnl.update.s") if isinstance(p, PnlUpdate)]
    return decisions, updates[-1].books[0] if updates else None
