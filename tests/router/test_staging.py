"""Tests for tickertape.router.staging: staged events, expected counts, commit order."""

from __future__ import annotations

import pytest

from tickertape.errors import RouterError
from tickertape.router.staging import (
    StageBook,
    StageIncompleteError,
    StageUnknownError,
    footprint,
)

from .support import trade


def test_take_sorts_by_ts_event_source_and_seq_and_dedupes() -> None:
    """A stage is released in (ts_event, source, source_seq) order, a resend counted once."""
    book = StageBook()
    book.add("main", "s1", [trade("b", 2), trade("a", 2), trade("a", 1)])
    book.add("main", "s1", [trade("a", 1)])
    assert book.counts("main", "s1") == {"a": 2, "b": 1}
    events = book.take("main", "s1", {"a": 2, "b": 1, "c": 0})
    assert [(e.source, e.source_seq) for e in events] == [("a", 1), ("a", 2), ("b", 2)]
    assert book.staged_events == 0


def test_incomplete_stage_is_kept() -> None:
    """Counts differing from expect raise STAGE_INCOMPLETE and keep the stage."""
    book = StageBook()
    book.add("main", "s1", [trade("a", 1)])
    with pytest.raises(StageIncompleteError) as info:
        book.take("main", "s1", {"a": 1, "b": 1})
    assert info.value.code == "STAGE_INCOMPLETE"
    assert book.counts("main", "s1") == {"a": 1}


def test_empty_commit_of_unknown_stage_is_allowed() -> None:
    """An unknown stage with nothing expected commits zero events."""
    assert StageBook().take("main", "nothing", {}) == []


def test_expecting_events_of_a_stage_that_holds_none_is_stage_unknown() -> None:
    """A stage never staged (or already taken) with events expected raises STAGE_UNKNOWN."""
    book = StageBook()
    with pytest.raises(StageUnknownError) as info:
        book.take("main", "lost", {"a": 1})
    assert info.value.code == "STAGE_UNKNOWN"
    book.add("main", "s1", [trade("a", 1)])
    assert len(book.take("main", "s1", {"a": 1})) == 1
    with pytest.raises(StageUnknownError):
        book.take("main", "s1", {"a": 1})
    book.add("runs/x", "s2", [trade("a", 2)])
    with pytest.raises(StageUnknownError):  # another namespace's stage is not this one
        book.take("main", "s2", {"a": 1})


def test_one_source_cannot_take_the_routers_room() -> None:
    """A source at its quota is refused; other sources still stage; a commit frees it."""
    book = StageBook(max_events=10, max_per_source=3)
    book.add("main", "s1", [trade("a", 1), trade("a", 2)])
    book.add("main", "s2", [trade("a", 3)])
    with pytest.raises(RouterError) as info:
        book.add("main", "s2", [trade("a", 4)])
    assert info.value.code == "RATE_LIMITED"
    assert "'a' already has 3 events (" in info.value.message
    book.add("main", "s2", [trade("a", 3), trade("b", 1)])  # a resend is no new event
    assert book.staged_events == 4
    book.take("main", "s1", {"a": 2})
    book.add("main", "s2", [trade("a", 4), trade("a", 5)])
    assert book.counts("main", "s2") == {"a": 3, "b": 1}


def test_router_bound_drops_idle_stages_before_refusing() -> None:
    """Full: stages idle for idle_s go first; without any, the stage is refused."""
    now = [0.0]
    book = StageBook(max_events=3, idle_s=60.0, monotonic=lambda: now[0])
    book.add("runs/a", "old", [trade("a", 1), trade("a", 2)])
    now[0] = 30.0
    book.add("runs/b", "young", [trade("b", 1)])
    with pytest.raises(RouterError):
        book.add("runs/b", "young", [trade("b", 2)])  # nothing idle for 60 s yet
    now[0] = 61.0
    book.add("runs/b", "young", [trade("b", 2)])  # "old" is dropped to make room
    assert book.staged_events == 2
    with pytest.raises(StageUnknownError):  # its committer must have it staged again
        book.take("runs/a", "old", {"a": 2})
    assert [e.source_seq for e in book.take("runs/b", "young", {"b": 2})] == [1, 2]


def test_expire_drops_only_stages_idle_long_enough() -> None:
    now = [0.0]
    book = StageBook(idle_s=60.0, max_per_source=2, monotonic=lambda: now[0])
    book.add("main", "s1", [trade("a", 1)])
    book.add("main", "s2", [trade("b", 1)])
    now[0] = 50.0
    book.add("main", "s2", [trade("b", 2)])  # s2 was added to: idle since 50
    now[0] = 100.0
    assert book.expire() == 1
    assert book.counts("main", "s1") == {}
    assert book.counts("main", "s2") == {"b": 2}
    now[0] = 110.0
    assert book.expire() == 2
    assert book.staged_events == 0
    book.add("main", "s3", [trade("a", 2), trade("a", 3)])  # a's quota was freed too


def test_stages_are_bounded_in_bytes_per_router_and_per_source() -> None:
    """Events count for their footprint: a source over its byte quota is refused while
    others stage, the router's byte bound refuses anyone, a resend of the same event
    adds nothing, a larger resend counts the difference, and a commit frees it all."""
    size = footprint(trade("a", 1))
    book = StageBook(max_bytes=5 * size + 10, max_bytes_per_source=3 * size + 10)
    book.add("main", "s1", [trade("a", 1), trade("a", 2), trade("a", 3)])
    assert book.staged_bytes == 3 * size
    with pytest.raises(RouterError) as info:
        book.add("main", "s1", [trade("a", 4)])
    assert info.value.code == "RATE_LIMITED"
    assert f"({3 * size:,} bytes) staged" in info.value.message
    book.add("main", "s1", [trade("a", 3)])  # a resend: no new bytes
    book.add("main", "s2", [trade("b", 1), trade("b", 2)])
    assert book.staged_bytes == 5 * size
    with pytest.raises(RouterError) as info:
        book.add("main", "s2", [trade("c", 1)])  # the router is full
    assert "events (" in info.value.message
    bigger = trade("b", 2, topic="md.trade.crypto.BTC.with.a.much.longer.topic")
    with pytest.raises(RouterError):
        book.add("main", "s2", [bigger])  # 10 bytes of room left, the resend grows more
    assert book.staged_bytes == 5 * size
    book.take("main", "s1", {"a": 3})
    assert book.staged_bytes == 2 * size
    book.add("main", "s2", [bigger, trade("c", 1)])
    assert book.staged_bytes == 2 * size + footprint(bigger)
    book.take("main", "s2", {"b": 2, "c": 1})
    assert (book.staged_bytes, book.staged_events) == (0, 0)
