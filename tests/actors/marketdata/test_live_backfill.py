"""Trade backfill and restartable state of the Binance feed, and what the simulator
serves for them (historicalTrades, times rebased to now), on the real capture."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import urllib.request
from pathlib import Path

import msgspec
import orjson
import pytest
from websockets.asyncio.client import connect

from tickertape.actors.marketdata.binance_feed import BinanceFeed, FeedState
from tickertape.actors.marketdata.exchange_sim import ExchangeSimulator, load_capture
from tickertape.actors.marketdata.importers import ParsedEvent
from tickertape.schemas.market import Gap, RawMessage, Trade

DATA = Path(__file__).resolve().parents[3] / "data" / "binance-spot-ws-2024-08-08"


@pytest.fixture(scope="module")
def frames() -> list[tuple[int, str]]:
    """The BTCUSDT stream frames of the capture (the REST snapshot left out)."""
    out = []
    for line in gzip.decompress((DATA / "btcusdt_20240808.gz").read_bytes()).split(b"\n"):
        head, _, body = line.partition(b" ")
        if body.startswith(b'{"stream"'):
            out.append((int(head), body.decode()))
    return out


def _trade_data(text: str) -> dict[str, object] | None:
    frame = orjson.loads(text)
    return frame["data"] if frame["stream"].endswith("@trade") else None


def _history(frames: list[tuple[int, str]], missing: frozenset[int] = frozenset()) -> list[dict]:  # type: ignore[type-arg]
    """The venue's trades in historicalTrades' shape, minus ``missing`` ids."""
    out = []
    for _, text in frames:
        data = _trade_data(text)
        if data is not None and data["t"] not in missing:
            out.append(
                {"id": data["t"], "price": data["p"], "qty": data["q"], "quoteQty": "0",
                 "time": data["T"], "isBuyerMaker": data["m"], "isBestMatch": True}
            )  # fmt: skip
    return out


def _play(
    feed: BinanceFeed,
    frames: list[tuple[int, str]],
    history: list[dict],
    limit: int = 100,  # type: ignore[type-arg]
) -> list[ParsedEvent]:
    """Feed the frames; answer each backfill request at once from ``history``."""
    out: list[ParsedEvent] = []
    for recv, text in frames:
        out += feed.on_message(text, recv)
        for symbol, (next_id, _until) in feed.backfills().items():
            while True:
                page = [t for t in history if int(t["id"]) >= next_id][:limit]
                events, count = feed.on_historical_trades(symbol, json.dumps(page), recv)
                out += events
                next_id = feed.backfills()[symbol][0]
                if count < limit or next_id >= feed.backfills()[symbol][1]:
                    break
            out += feed.end_backfill(symbol)
    return out


def _trade_ids(events: list[ParsedEvent]) -> list[int]:
    return [int(e.payload.trade_id) for e in events if isinstance(e.payload, Trade)]


def _gaps(events: list[ParsedEvent]) -> list[Gap]:
    return [e.payload for e in events if isinstance(e.payload, Gap)]


def test_trades_missed_while_away_are_backfilled_without_a_gap(
    frames: list[tuple[int, str]],
) -> None:
    """A stretch of the stream never received is fetched from historicalTrades: every
    trade once, in id order, raw pages kept, no gap."""
    away = range(len(frames) // 3, len(frames) // 3 + 2_000)
    feed = BinanceFeed(["BTCUSDT"], backfill_trades=True)
    received = [f for i, f in enumerate(frames) if i not in away]
    out = _play(feed, received, _history(frames))
    everything = [int(t["id"]) for t in _history(frames)]
    assert _trade_ids(out) == everything
    assert _gaps(out) == []
    pages = [e for e in out if e.topic == "raw.binance.btcusdt_historical_trades"]
    assert pages, "nothing was backfilled"
    assert all(isinstance(p.payload, RawMessage) for p in pages)
    stamps = [e.ts_event for e in out if e.topic == "md.trade.crypto.BTCUSDT"]
    assert stamps == sorted(stamps)
    assert feed.stats.backfills == 1


def test_a_trade_the_venue_lacks_is_exactly_one_gap(frames: list[tuple[int, str]]) -> None:
    """Inside the backfilled stretch, a trade the venue cannot supply is reported once."""
    away = range(len(frames) // 3, len(frames) // 3 + 2_000)
    missed = [d["t"] for i, (_, t) in enumerate(frames) if i in away and (d := _trade_data(t))]
    lacking = int(missed[len(missed) // 2])  # type: ignore[call-overload]
    feed = BinanceFeed(["BTCUSDT"], backfill_trades=True)
    received = [f for i, f in enumerate(frames) if i not in away]
    out = _play(feed, received, _history(frames, frozenset({lacking})))
    assert _gaps(out) == [
        Gap(
            symbol="BTCUSDT",
            kind="sequence",
            stream="trade",
            last_seen=lacking - 1,
            next_seen=lacking + 1,
            missing=1,
        )
    ]
    assert lacking not in _trade_ids(out)


def test_a_feed_restored_from_its_state_and_the_log_publishes_nothing_twice(
    frames: list[tuple[int, str]],
) -> None:
    """State at a snapshot, plus the events published after it (read back from the
    log), plus a restarted stream from the beginning: no event twice, no gap."""
    history = _history(frames)
    first = BinanceFeed(["BTCUSDT"], backfill_trades=True)
    snapshot_at, crash_at = len(frames) // 4, len(frames) // 2
    before = _play(first, frames[:snapshot_at], history)
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(first.state()), type=FeedState)
    after = _play(first, frames[snapshot_at:crash_at], history)

    second = BinanceFeed.from_state(["BTCUSDT"], state, backfill_trades=True)
    for event in after:
        second.observe(event)
    second.on_reconnect()
    again = _play(second, frames, history)  # the venue replays from its start
    published = before + after + again
    assert _trade_ids(published) == [int(t["id"]) for t in history]
    assert _gaps(published) == []
    raw = [e.payload.message for e in published if isinstance(e.payload, RawMessage)]
    assert len(raw) == len(set(raw))
    for topic in {e.topic for e in published}:
        stamps = [e.ts_event for e in published if e.topic == topic]
        assert stamps == sorted(stamps), topic


async def test_simulator_serves_played_trades_and_rebased_times(tmp_path: Path) -> None:
    """historicalTrades answers with the trades already played (Binance's shape, from
    an id, limited); with rebased times no frame is stamped after it was sent."""
    lines = gzip.decompress((DATA / "btcusdt_20240808.gz").read_bytes()).split(b"\n")[:3_000]
    capture = tmp_path / "btcusdt_capture.gz"
    capture.write_bytes(gzip.compress(b"\n".join(lines)))
    frames, snapshots = load_capture([capture])
    simulator = ExchangeSimulator(frames, snapshots, speed=200, rebase_times=True)
    server = await simulator.serve("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    received: list[tuple[int, dict]] = []  # type: ignore[type-arg]
    streams = "btcusdt@trade/btcusdt@depth@100ms"
    try:
        async with connect(f"ws://127.0.0.1:{port}/stream?streams={streams}") as ws:
            while True:  # until the playback is over and everything sent has arrived
                try:
                    text = await asyncio.wait_for(ws.recv(), 1)
                except TimeoutError:
                    if simulator.finished.is_set():
                        break
                    continue
                received.append((time.time_ns() // 1_000_000, orjson.loads(text)["data"]))

        def get(query: str) -> list[dict]:  # type: ignore[type-arg]
            url = f"http://127.0.0.1:{port}/api/v3/historicalTrades?symbol=BTCUSDT&{query}"
            with urllib.request.urlopen(url, timeout=5) as response:
                return orjson.loads(response.read())  # type: ignore[no-any-return]

        trades = [d for _, d in received if d.get("e") == "trade"]
        first = int(trades[0]["t"])
        page = await asyncio.to_thread(get, f"fromId={first + 5}&limit=3")
        assert [t["id"] for t in page] == [first + 5, first + 6, first + 7]
        assert set(page[0]) == {
            "id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"
        }  # fmt: skip
        assert page[0]["price"] == trades[5]["p"]
        assert page[0]["time"] == trades[5]["T"]
        latest = await asyncio.to_thread(get, "limit=1")
        assert latest[0]["id"] == int(trades[-1]["t"])
    finally:
        server.close()
        await server.wait_closed()
        await simulator.close()
    # Rebased: venue times are this run's wall clock, never after the frame arrived.
    for arrived_ms, data in received:
        assert data["E"] <= arrived_ms + 1
        assert abs(data["E"] - arrived_ms) < 5_000
