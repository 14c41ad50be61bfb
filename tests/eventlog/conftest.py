"""Fixtures of the event-log tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tickertape.eventlog import EventLog


class FixedClock:
    """A settable ``now_ns`` for ``ts_log`` (ns)."""

    def __init__(self, start: int = 1_800_000_000_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1
        return self.now


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data directory."""
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def log(data_dir: Path) -> Iterator[EventLog]:
    """An EventLog opened on ``data_dir`` (namespace main), closed after the test."""
    opened = EventLog.open(data_dir, now_ns=FixedClock())
    try:
        yield opened
    finally:
        opened.close()
