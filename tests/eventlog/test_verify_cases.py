"""`tape verify` and `tape stats` on what crashes and a running `tape compact` leave
(tickertape.eventlog.verify, LogReader.topic_files / topic_summary)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog.layout import Segment
from tickertape.eventlog.sealing import compact
from tickertape.eventlog.verify import verify_namespace

from .envelopes import (
    NS_PER_DAY,
    T0,
    TAPE,
    TRADE_TOPIC,
    day_file,
    envelope,
    run_tape,
    stored_lines,
)

ROOT = Path(__file__).resolve().parents[2]

_KILLED_REPLAY = r"""
import os, signal, sys
from tests.eventlog.envelopes import envelopes, T0
from tickertape.eventlog import EventLog
lg = EventLog.open(sys.argv[1])
lg.append(envelopes(10))  # durable: HEAD = 10
lg.append(envelopes(10, start_seq=11, start_ns=T0 + 10**6), durable=False)  # a replay's
os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_replay(data_dir: Path) -> Path:
    """A real writer that appended 10 durable records, then 10 without fsync, and was
    SIGKILLed: records 11-20 are in the file past HEAD. Returns the file."""
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_REPLAY, str(data_dir)], cwd=ROOT, timeout=60, check=False
    )
    assert proc.returncode == -9
    assert LogReader(data_dir).head_gseq() == 10
    path = day_file(data_dir, TRADE_TOPIC, T0)
    assert len(stored_lines(path)) == 20
    return path


def test_verify_without_a_writer_reports_damage_past_the_head(data_dir: Path) -> None:
    """With no writer live, verify checks the records past HEAD too: a bad checksum
    and a torn last line there are problems and `tape verify` exits 1 (it stopped at
    the head and said clean)."""
    path = killed_replay(data_dir)
    lines = stored_lines(path)
    flipped = sum(map(len, lines[:14]))
    data = bytearray(b"".join(lines))
    data[flipped + 40] ^= 0x20
    torn_at = len(data)
    data += b'{"id":"md:21","topic":"md.tr'
    path.write_bytes(bytes(data))
    report = verify_namespace(data_dir)
    assert not report.writer_live
    assert [(p.path, p.position, p.offset, p.what) for p in report.problems] == [
        (str(path), flipped, 14, "checksum mismatch"),
        (str(path), torn_at, 20, "torn record at the end"),
    ]
    assert (report.records, report.past_head) == (19, 9)
    proc = run_tape("verify", data_dir=data_dir)
    assert proc.returncode == 1
    assert b"NOT CLEAN" in proc.stdout


def test_verify_without_a_writer_counts_valid_records_past_the_head(data_dir: Path) -> None:
    """Valid records past HEAD (a crash before it moved) are checked and counted, not
    problems; the next open keeps them."""
    killed_replay(data_dir)
    report = verify_namespace(data_dir)
    assert report.problems == []
    assert (report.head_gseq, report.records, report.past_head) == (10, 20, 10)
    proc = run_tape("verify", data_dir=data_dir)
    assert proc.returncode == 0, proc.stdout
    assert b"head gseq 10 (10 past it" in proc.stdout
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == 20


def days_of_bars(data_dir: Path, topics: int, days: int) -> None:
    """``days`` open day files of one daily bar each, per topic."""
    with EventLog.open(data_dir) as lg:
        for t in range(topics):
            lg.append(
                [
                    envelope(
                        t * 10_000 + i + 1, topic=f"md.bar.1d.us.S{t}", ts_event=T0 + i * NS_PER_DAY
                    )
                    for i in range(days)
                ]
            )


def listed_before_compaction(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seal the days of a namespace after each topic's first listing, as `tape compact`
    running beside a reader does: the first listing of a topic returns its open day
    files, already replaced by sealed ones."""
    stale = {t: LogReader(data_dir).segments(t) for t in LogReader(data_dir).topics()}
    with EventLog.open(data_dir) as lg:
        compact(lg)
    real = LogReader.segments

    def segments(self: LogReader, topic: str) -> list[Segment]:
        listed = stale.pop(topic, None)
        return listed if listed is not None else real(self, topic)

    monkeypatch.setattr(LogReader, "segments", segments)


@pytest.mark.parametrize("reading", ["files", "summary", "verify"])
def test_stats_and_verify_read_a_day_sealed_after_it_was_listed(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, reading: str
) -> None:
    """A day listed open and sealed before it is read is read from its sealed file by
    the sizes, the summaries and verify (FileNotFoundError escaped from them)."""
    days_of_bars(data_dir, topics=2, days=3)
    listed_before_compaction(data_dir, monkeypatch)
    if reading == "files":
        files = LogReader(data_dir).files()
        assert [(t, s.path.name) for t, s, _size in files] == [
            (t, name)
            for t in ("md.bar.1d.us.S0", "md.bar.1d.us.S1")
            for name in ("2024-01-01.jsonl.zst", "2024-01-02.jsonl.zst", "2024-01-03.jsonl")
        ]
        assert all(size == s.path.stat().st_size for _t, s, size in files)
    elif reading == "summary":
        summary = LogReader(data_dir).topic_summary("md.bar.1d.us.S0")
        assert (summary.count, summary.first_offset, summary.last_offset) == (3, 0, 2)
    else:
        report = verify_namespace(data_dir)
        assert report.problems == []
        assert (report.files, report.records) == (6, 6)


def test_files_skip_a_day_deleted_after_it_was_listed(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day deleted (retention) between the listing and the read is left out."""
    days_of_bars(data_dir, topics=1, days=3)
    stale = LogReader(data_dir).segments("md.bar.1d.us.S0")
    stale[0].path.unlink()
    stale[0].index_path.unlink()
    real = LogReader.segments
    calls = [0]

    def segments(self: LogReader, topic: str) -> list[Segment]:
        calls[0] += 1
        return stale if calls[0] == 1 else real(self, topic)

    monkeypatch.setattr(LogReader, "segments", segments)
    assert [s.path.name for _t, s, _n in LogReader(data_dir).files()] == [
        "2024-01-02.jsonl",
        "2024-01-03.jsonl",
    ]


@pytest.mark.slow
def test_stats_and_verify_beside_a_running_compact(data_dir: Path) -> None:
    """`tape stats` and what `tape verify` reads, over and over while a real `tape
    compact` seals 1,200 days: never a FileNotFoundError, and the counts add up."""
    days_of_bars(data_dir, topics=4, days=300)
    compactor = subprocess.Popen(
        [TAPE, "compact", "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    rounds = 0
    try:
        while compactor.poll() is None or rounds == 0:
            reader = LogReader(data_dir)
            assert len(reader.files()) == 1200
            for topic in reader.topics():
                assert reader.topic_summary(topic).count == 300
            report = verify_namespace(data_dir)
            assert report.problems == [], report.problems[:3]
            assert report.files == 1200
            if rounds % 4 == 0:
                stats = run_tape("stats", "--json", data_dir=data_dir)
                assert stats.returncode == 0, stats.stderr.decode()
            rounds += 1
    finally:
        _out, err = compactor.communicate(timeout=120)
    assert compactor.returncode == 0, err.decode()
    for command in ("stats", "verify"):
        proc = run_tape(command, "--json", data_dir=data_dir)
        assert proc.returncode == 0, proc.stderr.decode()
