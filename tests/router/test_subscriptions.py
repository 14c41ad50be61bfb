"""Tests for tickertape.router.subscriptions: selection, cursors and start conditions."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickertape.errors import RouterError
from tickertape.router.fanout import LiveBatch
from tickertape.router.protocol import StartAt
from tickertape.router.subscriptions import Subscription, SubState
from tickertape.schemas import Record, stamp

from .support import trade


def _records(n: int, symbols: tuple[str, ...] = ("BTC", "ETH")) -> list:
    offsets = dict.fromkeys(symbols, 0)
    out = []
    for g in range(1, n + 1):
        sym = symbols[g % len(symbols)]
        out.append(stamp(trade("md", g, sym), offsets[sym], g, 0))
        offsets[sym] += 1
    return out


def test_now_starts_after_head_and_beginning_at_one() -> None:
    """'now' delivers only gseq > head; 'beginning' everything."""
    recs = _records(10)
    now = Subscription(1, "main", ["md.>"], "now", head_gseq=6)
    assert [recs[i].gseq for i in now.select(recs)] == [7, 8, 9, 10]
    begin = Subscription(2, "main", ["md.>"], "beginning", head_gseq=6)
    assert len(begin.select(recs)) == 10


def test_select_is_exactly_once_across_overlapping_batches() -> None:
    """Overlapping history and live batches deliver each gseq once, in order."""
    recs = _records(30)
    sub = Subscription(1, "main", ["md.trade.crypto.BTC"], "beginning", 0)
    seen = []
    for batch in (recs[:12], recs[5:20], recs[18:], recs[25:]):
        seen += [batch[i].gseq for i in sub.select(batch)]
    assert seen == [r.gseq for r in recs if r.topic.endswith("BTC")]
    assert seen == sorted(set(seen))


def test_start_conditions_are_anded() -> None:
    """gseq, time and per-topic offset conditions all apply."""
    recs = _records(20)
    ts_cut = recs[9].ts_event
    sub = Subscription(
        1, "main", [">"], StartAt(gseq=4, time=ts_cut, offsets={"md.trade.crypto.ETH": 7}), 0
    )
    got = [recs[i] for i in sub.select(recs)]
    assert all(r.gseq >= 4 and r.ts_event >= ts_cut for r in got)
    assert all(r.offset >= 7 for r in got if r.topic.endswith("ETH"))
    assert got


def test_invalid_pattern_and_empty_start_are_refused() -> None:
    """A bad pattern and a start object without conditions raise RouterError."""
    with pytest.raises(RouterError) as info:
        Subscription(1, "main", ["md.>.x"], "now", 0)
    assert info.value.code == "BAD_PATTERN"
    with pytest.raises(RouterError) as info:
        Subscription(1, "main", ["md.>"], StartAt(), 0)
    assert info.value.code == "BAD_START"


def test_state_machine_history_live_and_back() -> None:
    """A subscription starts in HISTORY, goes LIVE, and to_log returns it to HISTORY once."""
    sub = Subscription(1, "main", ["md.>"], "now", 0)
    assert sub.state is SubState.HISTORY
    sub.to_log()
    assert sub.switches_to_log == 0
    sub.go_live()
    sub.to_log()
    assert sub.state is SubState.HISTORY
    assert sub.switches_to_log == 1


@given(st.lists(st.tuples(st.integers(1, 60), st.integers(0, 20)), max_size=20))
def test_any_sequence_of_windows_delivers_in_order_without_repeats(windows: list) -> None:
    """Whatever windows of the log are offered, delivered gseqs strictly increase."""
    recs = _records(80)
    sub = Subscription(1, "main", ["md.>"], "beginning", 0)
    delivered: list[int] = []
    for start, length in windows:
        batch = recs[start - 1 : start - 1 + length]
        delivered += [batch[i].gseq for i in sub.select(batch)]
    assert delivered == sorted(set(delivered))


_PATTERNS = ["md.>", "md.trade.crypto.BTC", "md.trade.*.ETH", "md.trade.crypto.*", "x.>"]


@given(
    st.lists(st.sampled_from(_PATTERNS), min_size=1, max_size=3, unique=True),
    st.lists(st.integers(1, 25), min_size=1, max_size=6),
    st.sampled_from([None, 5, 30]),
    st.integers(1, 4),
)
def test_live_batches_select_what_record_by_record_selection_does(
    patterns: list[str], sizes: list[int], min_gseq: int | None, per_frame: int
) -> None:
    """select_batch (topics matched once per batch, shared frames) picks exactly what select picks."""
    recs = _records(sum(sizes), ("BTC", "ETH", "SOL"))
    start = StartAt(gseq=min_gseq) if min_gseq else "beginning"
    by_record = Subscription(1, "main", patterns, start, 0)
    by_batch = Subscription(2, "main", patterns, start, 0)
    shared = Subscription(3, "main", patterns, start, 0)
    pos = 0
    for size in sizes:
        chunk = recs[pos : pos + size]
        pos += size
        expected = [chunk[i].gseq for i in by_record.select(chunk)]
        batch = LiveBatch(chunk, per_frame)
        selection = by_batch.select_batch(batch)
        assert [chunk[i].gseq for i in selection[1]] == expected
        assert shared.select_batch(batch)[0] == selection[0]  # same pick, same key
        bodies = batch.bodies(selection)
        decoded = [r for body in bodies for r in msgspec.json.decode(body.body, type=list[Record])]
        assert [r.gseq for r in decoded] == expected
        assert all(body.count <= per_frame for body in bodies)
        assert by_batch.cursor == by_record.cursor
