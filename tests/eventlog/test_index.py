"""Tests of the sparse index (tickertape.eventlog.index) as the writer keeps and saves it.

The writer keeps each open day's index in memory while appending and saves it when
the day rolls over (after the sync that makes the day durable) and on close, without
reading the day file again. A saved index must be byte for byte what a rebuild from
the file gives; after a crash, recovery saves the rebuilt index of rolled-over days.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tickertape.eventlog import EventLog
from tickertape.eventlog import writer as writer_module
from tickertape.eventlog.index import INDEX_EVERY, save_index
from tickertape.eventlog.layout import Segment, list_segments, list_topics
from tickertape.eventlog.segment import build_index
from tickertape.eventlog.verify import verify_namespace

from .envelopes import NS_PER_DAY, T0, bytes_read, envelopes, needs_proc_io

ROOT = Path(__file__).resolve().parents[2]
TOPICS = ("md.trade.crypto.BTCUSDT", "md.quote.crypto.BTCUSDT", "md.trade.us.AAPL")


def rebuilt_index_bytes(seg: Segment, scratch: Path) -> bytes:
    """The bytes of ``seg``'s index as a fresh scan of the file saves it."""
    index, problems = build_index(seg, seg.path.stat().st_size)
    assert problems == []
    save_index(scratch, index)
    return scratch.read_bytes()


def saved_days(ns_dir: Path) -> dict[Segment, bytes | None]:
    """Every open day file of a namespace and its saved ``.idx`` bytes (None: none)."""
    out: dict[Segment, bytes | None] = {}
    for topic in list_topics(ns_dir):
        for seg in list_segments(ns_dir / topic, topic):
            if not seg.sealed:
                out[seg] = seg.index_path.read_bytes() if seg.index_path.exists() else None
    return out


def assert_saved_indexes_are_rebuilds(
    ns_dir: Path, scratch: Path, *, skip_newest: bool = False
) -> int:
    """Every saved ``.idx`` of an open day equals a rebuild; every day but each topic's
    newest (all of them unless ``skip_newest``) has one. Returns the days checked."""
    checked = 0
    newest = {t: list_segments(ns_dir / t, t)[-1] for t in list_topics(ns_dir)}
    for seg, data in saved_days(ns_dir).items():
        if skip_newest and newest[seg.topic] == seg:
            continue
        assert data is not None, f"no index saved for {seg.path}"
        assert data == rebuilt_index_bytes(seg, scratch), f"{seg.index_path} differs"
        checked += 1
    return checked


@needs_proc_io
def test_rolled_over_days_save_the_in_memory_index(data_dir: Path, tmp_path: Path) -> None:
    """Days that roll over (also in the middle of a group) save an index equal to a
    rebuild; close saves the newest days' likewise; after a reopen, a roll reads nothing
    back either."""
    ns_dir = data_dir / "logs" / "main"
    scratch = tmp_path / "rebuilt.idx"
    # 3 topics over 4 days, > INDEX_EVERY records per file; batches of 700 records cross
    # midnight in the middle of a group.
    envs = envelopes(4 * 3 * 2500, topics=TOPICS, step_ns=4 * NS_PER_DAY // (4 * 3 * 2500))
    with EventLog.open(data_dir) as lg:
        for i in range(0, len(envs), 700):
            lg.append(envs[i : i + 700])
            checked = assert_saved_indexes_are_rebuilds(ns_dir, scratch, skip_newest=True)
    assert checked == 3 * 3
    assert assert_saved_indexes_are_rebuilds(ns_dir, scratch) == 3 * 4
    data_size = sum(p.stat().st_size for p in ns_dir.rglob("*.jsonl"))
    with EventLog.open(data_dir) as lg:
        later = T0 + 5 * NS_PER_DAY
        before = bytes_read()
        lg.append(envelopes(10, topics=TOPICS, start_seq=len(envs) + 1, start_ns=later))
        spent = bytes_read() - before
    assert spent < data_size // 100, f"a roll after reopen read {spent} of {data_size} bytes"
    assert assert_saved_indexes_are_rebuilds(ns_dir, scratch) == 3 * 5
    assert verify_namespace(data_dir).ok


@needs_proc_io
def test_a_roll_does_not_read_the_closed_day(data_dir: Path, tmp_path: Path) -> None:
    """Appending across midnight reads nothing back from the day that closed."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(3 * INDEX_EVERY + 5, topics=TOPICS, step_ns=1_000_000))
        closed = sum(p.stat().st_size for p in data_dir.rglob("*.jsonl"))
        before = bytes_read()
        lg.append(envelopes(30, topics=TOPICS, start_seq=5000, start_ns=T0 + NS_PER_DAY + 1))
        spent = bytes_read() - before
    assert spent < closed // 20, f"the roll read {spent} bytes; the closed days hold {closed}"
    ns_dir = data_dir / "logs" / "main"
    assert assert_saved_indexes_are_rebuilds(ns_dir, tmp_path / "x.idx") == 2 * len(TOPICS)


def test_deferred_rolls_save_their_index_only_after_sync(data_dir: Path, tmp_path: Path) -> None:
    """With durable=False a rolled day's index (describing unsynced data) waits for sync()."""
    ns_dir = data_dir / "logs" / "main"
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(2000, topics=TOPICS, step_ns=1_000_000), durable=False)
        lg.append(
            envelopes(20, topics=TOPICS, start_seq=2001, start_ns=T0 + NS_PER_DAY), durable=False
        )
        assert all(data is None for data in saved_days(ns_dir).values())
        lg.sync()
        assert assert_saved_indexes_are_rebuilds(ns_dir, tmp_path / "x.idx", skip_newest=True) == 3


def test_rolls_with_files_closed_for_the_open_file_limit(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A topic whose file was closed to stay under MAX_OPEN_FILES still saves its rolled day."""
    monkeypatch.setattr(writer_module, "MAX_OPEN_FILES", 4)
    topics = tuple(f"md.trade.crypto.S{i}" for i in range(10))
    envs = envelopes(3000, topics=topics, step_ns=3 * NS_PER_DAY // 3000)
    with EventLog.open(data_dir) as lg:
        for i in range(0, len(envs), 7):
            lg.append(envs[i : i + 7])
    ns_dir = data_dir / "logs" / "main"
    assert assert_saved_indexes_are_rebuilds(ns_dir, tmp_path / "x.idx") == 3 * len(topics)
    assert verify_namespace(data_dir).ok


_KILLED_AFTER_ROLL = r"""
import os, signal, sys
from tickertape.eventlog import EventLog
from tests.eventlog.envelopes import NS_PER_DAY, T0, envelopes
topics = ("md.trade.crypto.BTCUSDT", "md.quote.crypto.BTCUSDT", "md.trade.us.AAPL")
lg = EventLog.open(sys.argv[1])
lg.append(envelopes(3000, topics=topics, step_ns=1_000_000))
# Roll every topic to the next day without fsync: the closed days' indexes are not saved.
lg.append(envelopes(300, topics=topics, start_seq=3001, start_ns=T0 + NS_PER_DAY), durable=False)
if sys.argv[2] == "synced":
    lg.sync()
    lg.append(envelopes(30, topics=topics, start_seq=3301, start_ns=T0 + NS_PER_DAY + 10**9))
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("when", ["unsynced", "synced"])
def test_index_after_a_writer_killed_after_a_roll(
    data_dir: Path, tmp_path: Path, when: str
) -> None:
    """A writer SIGKILLed after a roll (before or after the sync that saves the closed days'
    indexes): reopening leaves every day's index equal to a rebuild, and the log verifies."""
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_ROLL, str(data_dir), when], cwd=ROOT, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL
    ns_dir = data_dir / "logs" / "main"
    saved = saved_days(ns_dir)
    first_days = [s for s in saved if s.path.name.startswith("2024-01-01")]
    assert len(first_days) == 3
    assert all((saved[s] is None) == (when == "unsynced") for s in first_days)
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == (3300 if when == "unsynced" else 3330)
        assert lg.recovery.dropped == []
        # the rolled days are indexed by recovery; the newest ones are saved on close
        assert assert_saved_indexes_are_rebuilds(ns_dir, tmp_path / "x.idx", skip_newest=True) == 3
    assert assert_saved_indexes_are_rebuilds(ns_dir, tmp_path / "x.idx") == 6
    assert verify_namespace(data_dir).ok
