"""Tests of tickertape.eventlog.dedupe: recent positions by (source, source_seq), bounded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickertape.eventlog.dedupe import OLDER, SOURCE_COST, RecentPositions

TOPICS = ("md.trade.crypto.BTCUSDT", "md.quote.crypto.BTCUSDT", "risk.decision")


def store(
    positions: RecentPositions,
    source: str,
    seq: int,
    topic: str,
    offset: int,
    gseq: int,
) -> None:
    """Note one stored record as the writer does (entries appended, then accounted)."""
    positions.source(source).append(seq, gseq, offset, positions.topic_id(topic))
    positions.added(1, gseq)


# A stream of appends: (source index, source_seq step ≥ 1, topic index).
appends = st.lists(st.tuples(st.integers(0, 6), st.integers(1, 3), st.integers(0, 2)), max_size=400)


@settings(max_examples=60, deadline=None)
@given(appends, st.integers(2 * SOURCE_COST, 200))
def test_find_agrees_with_a_full_model_within_the_bound(
    stream: list[tuple[int, int, int]], limit: int
) -> None:
    """find() returns the stored position, None for a source_seq that was never stored,
    or OLDER only below the source's window; the cost never passes the limit."""
    positions = RecentPositions(limit)
    model: dict[tuple[str, int], tuple[str, int, int]] = {}
    last_seq: dict[str, int] = {}
    next_offset = dict.fromkeys(TOPICS, 0)
    for gseq, (s, step, t) in enumerate(stream, start=1):
        source, topic = f"s{s}", TOPICS[t]
        seq = last_seq.get(source, 0) + step
        last_seq[source] = seq
        store(positions, source, seq, topic, next_offset[topic], gseq)
        model[(source, seq)] = (topic, next_offset[topic], gseq)
        next_offset[topic] += 1
        assert positions.cost() <= limit
    # the newest record of the stream is always answered from memory
    if stream:
        newest = max(model.items(), key=lambda kv: kv[1][2])
        assert positions.find(*newest[0]) == newest[1]
    for source, top in last_seq.items():
        kept = [seq for seq in range(1, top + 1) if positions.find(source, seq) is not OLDER]
        if kept:  # the window of a source is a suffix of its source_seq range
            assert kept == list(range(kept[0], top + 1))
        for seq in range(1, top + 1):
            got = positions.find(source, seq)
            if got is OLDER:
                continue
            assert got == model.get((source, seq))


def test_oldest_entries_are_dropped_first() -> None:
    """Past the limit the lowest gseqs go first, whatever their source."""
    positions = RecentPositions(64)
    for gseq in range(1, 201):
        store(positions, f"s{gseq % 2}", gseq, TOPICS[0], gseq - 1, gseq)
    assert positions.cost() <= 64
    assert positions.find("s0", 200) == (TOPICS[0], 199, 200)
    assert positions.find("s1", 199) == (TOPICS[0], 198, 199)
    assert positions.find("s0", 2) is OLDER
    assert positions.find("nobody", 1) is OLDER
    assert positions.find("s0", 199) is None  # s1's: never stored for s0


def test_many_sources_with_one_entry_each_stay_bounded() -> None:
    """Each source holding entries is charged SOURCE_COST: many one-record sources cannot
    grow the window past its limit."""
    positions = RecentPositions(4096)
    for gseq in range(1, 20_001):
        store(positions, f"client-{gseq}", 1, TOPICS[2], gseq - 1, gseq)
        assert positions.cost() <= 4096
    assert len(positions.sources) <= 4096 // SOURCE_COST
    assert positions.find("client-20000", 1) == (TOPICS[2], 19_999, 20_000)


def test_a_too_small_limit_is_refused() -> None:
    """The limit must leave room for at least two sources."""
    with pytest.raises(ValueError, match="at least"):
        RecentPositions(SOURCE_COST)
