"""Tests for tickertape.router.staging: staged events, expected counts, commit order."""

from __future__ import annotations

import pytest

from tickertape.router.staging import StageBook, StageIncompleteError, StageUnknownError

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
