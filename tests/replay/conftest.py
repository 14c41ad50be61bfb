"""Fixtures of the replay tests: a source log of trades in a data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.actors.runtime.sample_actors import trade_envelopes
from tickertape.eventlog import EventLog


def write_source(data_dir: Path, n: int = 300) -> None:
    """Append ``n`` trades (2 symbols, 10 ms apart) to namespace main of ``data_dir``."""
    log = EventLog.open(data_dir, "main")
    try:
        results = log.append(trade_envelopes(n), ts_log=1)
        assert all(r.error is None for r in results)
    finally:
        log.close()


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    """A data directory whose main namespace holds 300 trades."""
    d = tmp_path / "data"
    write_source(d)
    return d
