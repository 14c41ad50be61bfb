"""The pure Binance stream logic on the real capture: no gap, one gap, resync, dedupe."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from tickertape.actors.marketdata.binance_feed import BinanceFeed
from tickertape.actors.marketdata.exchange_sim import _Book
from tickertape.schemas.market import Gap, Quote, Trade

DATA = Path(__file__).resolve().parents[3] / "data" / "binance-spot-ws-2024-08-08"


@pytest.fixture(scope="module")
def capture() -> list[tuple[int, str]]:
    lines = []
    for name in ("btcusdt_20240808.gz",):
        for line in gzip.decompress((DATA / name).read_bytes()).split(b"\n"):
            if line:
                head, _, body = line.partition(b" ")
                lines.append((int(head), body.decode()))
    return lines


def _play(
    feed: BinanceFeed, lines: list[tuple[int, str]], skip: frozenset[int] = frozenset()
) -> list:  # type: ignore[type-arg]
    """Feed ``lines`` except ``skip``; answer snapshot requests from a reference book
    built from every line (the exchange's own book, as the simulator keeps it)."""
    out = []
    exchange = None
    for index, (recv, text) in enumerate(lines):
        if text.startswith('{"lastUpdateId"'):
            exchange = exchange or _Book(text)
            continue
        if exchange is not None and "@depth" in text:
            exchange.apply(orjson.loads(text)["data"])
        if index in skip:
            continue
        out.extend(feed.on_message(text, recv))
        if feed.needs_snapshot() and exchange is not None:
            out.extend(feed.on_snapshot("BTCUSDT", exchange.snapshot(5000).decode(), recv))
    return out


def test_real_capture_has_no_gap_and_every_trade(capture: list[tuple[int, str]]) -> None:
    """All 9,757 + trades come out once, the book syncs once, no gap is reported."""
    feed = BinanceFeed(["BTCUSDT"])
    out = _play(feed, capture)
    trades = [e.payload for e in out if isinstance(e.payload, Trade)]
    expected = sum('@trade"' in text for _, text in capture)
    assert len(trades) == expected
    assert not [e for e in out if isinstance(e.payload, Gap)]
    assert feed.stats.resyncs == 1
    last: dict[str, int] = {}
    for e in out:
        assert e.ts_event >= last.get(e.topic, 0)
        last[e.topic] = e.ts_event
    bids, asks, _ = feed.book("BTCUSDT")
    assert max(map(float, bids)) < min(map(float, asks))
    quotes = [e.payload for e in out if isinstance(e.payload, Quote)]
    assert quotes[-1].bid == max(map(float, bids))


@pytest.mark.parametrize("kind", ["trade", "depth"])
def test_one_removed_line_is_exactly_one_gap(capture: list[tuple[int, str]], kind: str) -> None:
    """Removing one trade (or depth diff) mid-stream yields exactly that gap."""
    marker = '@trade"' if kind == "trade" else "@depth@100ms"
    indexes = [i for i, (_, text) in enumerate(capture) if marker in text]
    victim = indexes[len(indexes) // 2]
    data = orjson.loads(capture[victim][1])["data"]
    feed = BinanceFeed(["BTCUSDT"])
    out = _play(feed, capture, frozenset({victim}))
    gaps = [e.payload for e in out if isinstance(e.payload, Gap)]
    assert len(gaps) == 1
    gap = gaps[0]
    assert gap.stream == kind
    if kind == "trade":
        assert (gap.last_seen, gap.next_seen, gap.missing) == (data["t"] - 1, data["t"] + 1, 1)
    else:
        assert gap.last_seen == data["U"] - 1
        assert gap.next_seen == data["u"] + 1
        assert feed.stats.resyncs == 2  # resynchronised after the depth gap


def test_replayed_stream_after_reconnect_is_deduplicated(capture: list[tuple[int, str]]) -> None:
    """Frames replayed after a reconnect publish nothing twice and report no gap."""
    feed = BinanceFeed(["BTCUSDT"])
    first = _play(feed, capture[:5000])
    feed.on_reconnect()
    second = _play(feed, capture[:8000])
    ids = [e.payload.trade_id for e in first + second if isinstance(e.payload, Trade)]
    assert len(ids) == len(set(ids))
    raw = [e.payload.message for e in first + second if e.topic.startswith("raw.")]
    assert len(raw) == len(set(raw))
    assert not [e for e in second if isinstance(e.payload, Gap)]
