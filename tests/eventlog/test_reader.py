"""Tests of tickertape.eventlog.reader: positions, time, patterns, merge, sealed days, follow, index."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tickertape.errors import CorruptRecordError
from tickertape.eventlog import EventLog, LogReader, merge_by_gseq
from tickertape.eventlog import reader as reader_module
from tickertape.eventlog.index import INDEX_EVERY, IndexEntry, SegmentIndex, load_index, save_index
from tickertape.eventlog.sealing import compact
from tickertape.eventlog.verify import verify_namespace
from tickertape.schemas.envelope import Record
from tickertape.topics import matches_any

from .conftest import FixedClock
from .envelopes import (
    NS_PER_DAY,
    T0,
    TRADE_TOPIC,
    bytes_read,
    envelope,
    envelope_json,
    envelopes,
    needs_proc_io,
    run_tape,
    topic_dir,
)

TOPICS = ("md.trade.crypto.BTCUSDT", "md.quote.crypto.BTCUSDT", "md.trade.us.AAPL")
PATTERNS = [
    None,
    [">"],
    ["md.>"],
    ["md.trade.*.*"],
    ["md.*.crypto.BTCUSDT"],
    ["md.trade.us.AAPL"],
    ["md.quote.>", "md.trade.us.*"],
    ["nothing.>"],
]
DAYS = 3
PER_DAY = 3000  # > INDEX_EVERY records per file on the busiest topic: several index entries


def build(data_dir: Path) -> None:
    """3 topics (uneven) over 3 days, appended in several batches, with a fixed ts_log clock."""
    topics = (TOPICS[0], TOPICS[0], TOPICS[1], TOPICS[2])
    with EventLog.open(data_dir, now_ns=FixedClock()) as lg:
        seq = 1
        for day in range(DAYS):
            for part in range(3):
                n = PER_DAY // 3
                lg.append(
                    envelopes(
                        n,
                        topics=topics,
                        start_seq=seq,
                        step_ns=3_000_000,
                        start_ns=T0 + day * NS_PER_DAY + part * n * 3_000_000,
                    )
                )
                seq += n


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Record]]:
    """The same log twice: all days open, and all days sealed; plus every record in gseq order."""
    open_dir = tmp_path_factory.mktemp("open")
    build(open_dir)
    sealed_dir = tmp_path_factory.mktemp("sealed")
    shutil.rmtree(sealed_dir)
    shutil.copytree(open_dir, sealed_dir)
    with EventLog.open(sealed_dir) as lg:
        compact(lg, include_open=True)
    assert not list(sealed_dir.rglob("*.jsonl"))
    records = list(LogReader(open_dir).read())
    assert [r.gseq for r in records] == list(range(1, DAYS * PER_DAY + 1))
    return open_dir, sealed_dir, records


@pytest.fixture(scope="module")
def mixed(logs: tuple[Path, Path, list[Record]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same log with the days that are over sealed and each topic's newest day open."""
    mixed_dir = tmp_path_factory.mktemp("mixed")
    shutil.rmtree(mixed_dir)
    shutil.copytree(logs[0], mixed_dir)
    with EventLog.open(mixed_dir) as lg:
        compact(lg)
    assert list(mixed_dir.rglob("*.jsonl"))
    assert list(mixed_dir.rglob("*.jsonl.zst"))
    return mixed_dir


LAYOUTS = st.sampled_from(["open", "sealed", "mixed"])


def pick(logs: tuple[Path, Path, list[Record]], mixed: Path, layout: str) -> Path:
    return {"open": logs[0], "sealed": logs[1], "mixed": mixed}[layout]


def ids(records: list[Record]) -> list[tuple[str, int, int]]:
    return [(r.topic, r.offset, r.gseq) for r in records]


def test_sealed_and_open_days_read_alike(logs: tuple[Path, Path, list[Record]]) -> None:
    """Every record read from sealed days equals the one read from open days, field for field."""
    open_dir, sealed_dir, records = logs
    assert list(LogReader(sealed_dir).read()) == records
    for topic in TOPICS:
        assert list(LogReader(sealed_dir).read_topic(topic)) == list(
            LogReader(open_dir).read_topic(topic)
        )
    assert verify_namespace(sealed_dir).ok


@settings(max_examples=60, deadline=None)
@given(
    topic=st.sampled_from(TOPICS),
    start=st.integers(-5, 5000),
    length=st.none() | st.integers(-1, 6000),
    layout=LAYOUTS,
)
def test_read_topic_from_any_offset(
    logs: tuple[Path, Path, list[Record]],
    mixed: Path,
    topic: str,
    start: int,
    length: int | None,
    layout: str,
) -> None:
    """read_topic(from, to) returns exactly the topic's records with from ≤ offset ≤ to."""
    records = logs[2]
    start = max(start, 0)
    to = None if length is None else start + length
    got = list(LogReader(pick(logs, mixed, layout)).read_topic(topic, start, to))
    want = [
        r
        for r in records
        if r.topic == topic and r.offset >= start and (to is None or r.offset <= to)
    ]
    assert ids(got) == ids(want)


@settings(max_examples=60, deadline=None)
@given(
    patterns=st.sampled_from(PATTERNS),
    start=st.integers(1, DAYS * PER_DAY + 5),
    to=st.none() | st.integers(0, DAYS * PER_DAY + 5),
    layout=LAYOUTS,
)
def test_read_from_any_gseq(
    logs: tuple[Path, Path, list[Record]],
    mixed: Path,
    patterns: list[str] | None,
    start: int,
    to: int | None,
    layout: str,
) -> None:
    """read(patterns, from_gseq, to_gseq) is the matching records in that gseq range, in gseq order."""
    records = logs[2]
    got = list(LogReader(pick(logs, mixed, layout)).read(patterns, start, to))
    want = [
        r
        for r in records
        if (patterns is None or matches_any(patterns, r.topic))
        and r.gseq >= start
        and (to is None or r.gseq <= to)
    ]
    assert ids(got) == ids(want)


@settings(max_examples=60, deadline=None)
@given(
    patterns=st.sampled_from(PATTERNS),
    start=st.integers(T0 - NS_PER_DAY, T0 + (DAYS + 1) * NS_PER_DAY),
    span=st.none() | st.integers(0, 2 * NS_PER_DAY),
    layout=LAYOUTS,
)
def test_read_from_any_time(
    logs: tuple[Path, Path, list[Record]],
    mixed: Path,
    patterns: list[str] | None,
    start: int,
    span: int | None,
    layout: str,
) -> None:
    """read_from_time(ts, to) is the matching records with ts ≤ ts_event < to, in gseq order."""
    records = logs[2]
    to = None if span is None else start + span
    got = list(LogReader(pick(logs, mixed, layout)).read_from_time(patterns, start, to))
    want = [
        r
        for r in records
        if (patterns is None or matches_any(patterns, r.topic))
        and r.ts_event >= start
        and (to is None or r.ts_event < to)
    ]
    assert ids(got) == ids(want)


def test_read_from_an_exact_record_time(logs: tuple[Path, Path, list[Record]]) -> None:
    """A time equal to a record's ts_event starts at that record (first with ts_event ≥ t)."""
    open_dir, _sealed, records = logs
    for rec in (records[0], records[1234], records[-1]):
        first = next(LogReader(open_dir).read_from_time([rec.topic], rec.ts_event))
        assert first.gseq == rec.gseq
    assert LogReader(open_dir).first_gseq_at(None, records[77].ts_event) == 78


def test_read_from_a_time_shared_by_several_index_entries(data_dir: Path) -> None:
    """Records sharing one ts_event across several index entries are all read from that time."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(10, step_ns=1))
        lg.append(envelopes(3 * INDEX_EVERY, start_seq=11, step_ns=0, start_ns=T0 + 100))
    reader = LogReader(data_dir)
    assert len(reader.segment_index(reader.segments(TRADE_TOPIC)[0]).entries) == 4
    got = [r.gseq for r in reader.read_from_time(None, T0 + 100)]
    assert got == list(range(11, 11 + 3 * INDEX_EVERY))
    assert reader.first_gseq_at(None, T0 + 100) == 11
    assert [r.gseq for r in reader.read_in_time_order(None, T0 + 5, T0 + 101)][:6] == [
        6,
        7,
        8,
        9,
        10,
        11,
    ]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(1, 10_000), unique=True, max_size=30).map(sorted),
        max_size=6,
    ).filter(lambda ls: len({g for x in ls for g in x}) == sum(len(x) for x in ls))
)
def test_merge_equals_sorted_by_gseq(streams: list[list[int]]) -> None:
    """merge_by_gseq of gseq-ordered streams equals all their records sorted by gseq."""
    recs = [[_record(g, f"t.{i}") for g in stream] for i, stream in enumerate(streams)]
    merged = list(merge_by_gseq([iter(x) for x in recs]))
    assert [r.gseq for r in merged] == sorted(g for stream in streams for g in stream)
    assert sorted(merged, key=lambda r: r.gseq) == merged


def _record(gseq: int, topic: str) -> Record:
    env = envelope(gseq, topic=topic)
    return Record(
        **{f: getattr(env, f) for f in env.__struct_fields__}, offset=0, gseq=gseq, ts_log=0
    )


def test_topics_and_summary(logs: tuple[Path, Path, list[Record]]) -> None:
    """topics() lists sorted topics (filtered by patterns); topic_summary counts and bounds agree."""
    open_dir, sealed_dir, records = logs
    for d in (open_dir, sealed_dir):
        reader = LogReader(d)
        assert reader.topics() == sorted(TOPICS)
        assert reader.topics(["md.trade.>"]) == sorted(TOPICS[0::2])
        assert reader.head_gseq() == len(records)
        for topic in TOPICS:
            mine = [r for r in records if r.topic == topic]
            s = reader.topic_summary(topic)
            assert (s.count, s.first_offset, s.last_offset) == (len(mine), 0, len(mine) - 1)
            assert (s.first_gseq, s.last_gseq) == (mine[0].gseq, mine[-1].gseq)
            assert (s.first_ts, s.last_ts) == (mine[0].ts_event, mine[-1].ts_event)


def test_reader_of_a_missing_namespace_is_empty(tmp_path: Path) -> None:
    """A namespace that does not exist reads as empty."""
    reader = LogReader(tmp_path, "runs/none")
    assert (reader.topics(), reader.head_gseq(), list(reader.read())) == ([], 0, [])


_APPENDER = r"""
import sys, time
from tickertape.eventlog import EventLog
from tests.eventlog.envelopes import envelopes
log = EventLog.open(sys.argv[1])
for i in range(3):
    sys.stdin.readline()
    log.append(envelopes(10, start_seq=1 + 10 * i, start_ns=10**18 + i * 10**9))
    print("appended", flush=True)
log.close()
"""


def test_follow_sees_records_appended_by_another_process(tmp_path: Path) -> None:
    """follow() yields the records another process appends, in gseq order, as they are committed."""
    data_dir = tmp_path / "data"
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        [sys.executable, "-c", _APPENDER, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=root,
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        deadline = time.monotonic() + 30
        follower = LogReader(data_dir).follow(
            None, 1, poll_s=0.01, stop=lambda: time.monotonic() > deadline
        )
        got: list[int] = []
        for batch in range(3):
            child.stdin.write(b"go\n")
            child.stdin.flush()
            assert child.stdout.readline() == b"appended\n"
            while len(got) < 10 * (batch + 1):
                got.append(next(follower).gseq)
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    follower.close()
    assert got == list(range(1, 31))


def test_follow_batches_yields_another_process_appends_in_batches_cut_at_the_head(
    tmp_path: Path,
) -> None:
    """follow_batches() waits for another process's appends and yields them in gseq order,
    in batches of at most max_batch that end where the committed head was."""
    data_dir = tmp_path / "data"
    root = Path(__file__).resolve().parents[2]
    with (
        subprocess.Popen(
            [sys.executable, "-c", _APPENDER, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=root,
        ) as child,
        ThreadPoolExecutor(1) as waiter,
    ):
        assert child.stdin is not None
        assert child.stdout is not None
        deadline = time.monotonic() + 30
        follower = LogReader(data_dir).follow_batches(
            None, 1, poll_s=0.01, stop=lambda: time.monotonic() > deadline, max_batch=4
        )
        got: list[list[int]] = []
        for group in range(3):
            # Wait for the group in another thread (the follower polls an unchanged
            # head), then let the child append its 10 records in one durable append.
            first = waiter.submit(next, follower)
            child.stdin.write(b"go\n")
            child.stdin.flush()
            assert child.stdout.readline() == b"appended\n"
            batches = [first.result(timeout=30), next(follower), next(follower)]
            assert all(isinstance(r, Record) for batch in batches for r in batch)
            got.extend([r.gseq for r in batch] for batch in batches)
            base = 10 * group
            assert got[-3:] == [
                [base + 1, base + 2, base + 3, base + 4],
                [base + 5, base + 6, base + 7, base + 8],
                [base + 9, base + 10],
            ]
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    follower.close()
    assert [g for batch in got for g in batch] == list(range(1, 31))


def test_follow_batches_ends_when_stop_turns_true(data_dir: Path) -> None:
    """stop() is checked while waiting and after each batch: the generator then ends."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(10))
    polls = 0

    def stop_after_three_polls() -> bool:
        nonlocal polls
        polls += 1
        return polls > 3

    waiting = LogReader(data_dir).follow_batches(
        None, 11, poll_s=0.001, stop=stop_after_three_polls
    )
    assert list(waiting) == []
    assert polls == 4
    got: list[list[Record]] = []
    one = LogReader(data_dir).follow_batches(
        None, 1, poll_s=0.001, stop=lambda: len(got) >= 1, max_batch=4
    )
    got.extend(one)
    assert [[r.gseq for r in batch] for batch in got] == [[1, 2, 3, 4]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"from_gseq": 0}, "from_gseq must be at least 1, not 0"),
        ({"poll_s": -0.5}, "poll_s must be 0 or more seconds, not -0.5"),
        ({"poll_s": float("nan")}, "poll_s must be 0 or more seconds, not nan"),
        ({"max_batch": 0}, "max_batch must be at least 1, not 0"),
    ],
)
def test_follow_refuses_bad_arguments_at_the_call(
    data_dir: Path, kwargs: dict[str, float], message: str
) -> None:
    """Bad from_gseq, poll_s or max_batch raise ValueError when follow is called, not later."""
    reader = LogReader(data_dir)
    with pytest.raises(ValueError, match=message):
        reader.follow_batches(**kwargs)  # type: ignore[arg-type]
    if "max_batch" not in kwargs:
        with pytest.raises(ValueError, match=message):
            reader.follow(**kwargs)  # type: ignore[arg-type]


def test_follow_batches_goes_on_across_a_compaction_and_later_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Following a multi-topic log while `tape compact --all` seals every day it reads, then
    while `tape append` adds a later day, yields every record once, in gseq order."""
    monkeypatch.setattr(reader_module, "MERGE_OPEN_FILES", 1)  # files closed between reads
    monkeypatch.setattr(reader_module, "MERGE_BUFFER_BYTES", 1)  # the smallest read-ahead
    data_dir = tmp_path / "data"
    topics = tuple(f"md.trade.crypto.S{i}" for i in range(4))
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(8000, topics=topics, step_ns=2 * NS_PER_DAY // 8000))
    deadline = time.monotonic() + 60
    follower = LogReader(data_dir).follow_batches(
        None, 1, poll_s=0.01, stop=lambda: time.monotonic() > deadline, max_batch=100
    )
    got = [next(follower) for _ in range(15)]  # 1,500 records: inside every topic's first day
    sealed = run_tape("compact", "--all", data_dir=data_dir)
    assert sealed.returncode == 0, sealed.stderr.decode()
    assert not list(data_dir.rglob("*.jsonl"))
    while sum(map(len, got)) < 8000:
        got.append(next(follower))
    later = envelopes(
        40, topics=topics, start_seq=8001, start_ns=T0 + 3 * NS_PER_DAY, step_ns=1_000
    )
    appended = run_tape(
        "append", data_dir=data_dir, stdin=b"".join(envelope_json(e) for e in later)
    )
    assert appended.returncode == 0, appended.stderr.decode()
    while sum(map(len, got)) < 8040:
        got.append(next(follower))
    follower.close()
    assert all(1 <= len(batch) <= 100 for batch in got)
    assert [r.gseq for batch in got for r in batch] == list(range(1, 8041))
    assert [r.source_seq for r in got[-1]][-1] == 8040


def idx_of(data_dir: Path) -> Path:
    return topic_dir(data_dir, TOPICS[0]) / "2024-01-02.idx"


@pytest.mark.parametrize("damage", ["delete", "truncate", "garbage", "stale", "wrong_kind"])
def test_index_rebuilt_when_missing_or_stale(tmp_path: Path, damage: str) -> None:
    """A missing, truncated, corrupt, stale or wrong-kind .idx is ignored and reads are unchanged."""
    data_dir = tmp_path / "data"
    build(data_dir)
    path = idx_of(data_dir)
    want = list(LogReader(data_dir).read_topic(TOPICS[0], 2000))
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:10])
    elif damage == "garbage":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "stale":
        old = path.read_bytes()
        with EventLog.open(data_dir) as lg:
            more = envelopes(5, topics=(TOPICS[0],), start_seq=10**6, start_ns=T0 + NS_PER_DAY + 1)
            lg.append(list(more))
        path.write_bytes(old)
        want = list(LogReader(data_dir).read_topic(TOPICS[0], 2000))
    elif damage == "wrong_kind":
        index = load_index(path)
        assert index is not None
        index.sealed = True
        save_index(path, index)
    fresh = LogReader(data_dir)
    assert list(fresh.read_topic(TOPICS[0], 2000)) == want
    assert verify_namespace(data_dir).ok


def test_stale_index_after_more_appends_is_rebuilt(tmp_path: Path) -> None:
    """An index saved before later appends (size mismatch) does not hide the new records."""
    data_dir = tmp_path / "data"
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(10))
    path = topic_dir(data_dir, TOPICS[0]) / "2024-01-01.idx"
    old = path.read_bytes()
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(10, start_seq=11, start_ns=T0 + 10**6))
    path.write_bytes(old)
    assert [r.offset for r in LogReader(data_dir).read_topic(TOPICS[0], 5)] == list(range(5, 20))


def test_verify_flags_a_fresh_looking_index_that_lies(tmp_path: Path) -> None:
    """An index with a valid checksum and size but wrong entries is reported by verify."""
    data_dir = tmp_path / "data"
    build(data_dir)
    path = idx_of(data_dir)
    index = load_index(path)
    assert index is not None
    assert len(index.entries) >= 2
    e = index.entries[1]
    index.entries[1] = IndexEntry(e.offset + 1, e.gseq, e.ts_event, e.file_pos, e.raw_pos)
    save_index(path, index)
    report = verify_namespace(data_dir)
    assert [p.path for p in report.problems] == [str(path)]


@pytest.mark.slow
def test_reads_during_a_concurrent_compaction(tmp_path: Path) -> None:
    """A reader looping over the whole log while another process seals it always gets every record."""
    data_dir = tmp_path / "data"
    with EventLog.open(data_dir) as lg:
        envs = envelopes(10_000, topics=TOPICS[:2], step_ns=NS_PER_DAY // 50)
        lg.append(envs)
    tape = str(Path(sys.executable).parent / "tape")
    failures: list[str] = []
    reads = 0
    with subprocess.Popen(
        [tape, "compact", "--all", "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as child:
        while child.poll() is None or reads == 0:
            try:
                count = sum(1 for _ in LogReader(data_dir).read())
                if count != len(envs):
                    failures.append(f"read {count} of {len(envs)} records")
            except OSError as exc:
                failures.append(repr(exc))
            reads += 1
    assert child.returncode == 0
    assert failures == [], f"{len(failures)} of {reads} reads failed, e.g. {failures[0]}"


_READ_MANY = r"""
import resource, sys
from tickertape.eventlog import LogReader
resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))
reader = LogReader(sys.argv[1])
print(sum(1 for _ in reader.read()), sum(1 for _ in reader.read_from_time(None, 0)), flush=True)
"""


def test_merged_read_over_more_topics_than_file_descriptors(tmp_path: Path) -> None:
    """A merged read over more topics than the process may open files returns every record."""
    data_dir = tmp_path / "data"
    with EventLog.open(data_dir) as lg:
        for start in range(0, 1200, 50):
            lg.append(
                [
                    envelope(i + 1, topic=f"md.trade.crypto.S{i:04d}")
                    for i in range(start, start + 50)
                ]
            )
    proc = subprocess.run(
        [sys.executable, "-c", _READ_MANY, str(data_dir)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-300:]
    assert proc.stdout.split() == [b"1200", b"1200"]


def test_follow_picks_up_topics_created_later(tmp_path: Path) -> None:
    """follow() with a wildcard also yields records of topics that did not exist when it started."""
    data_dir = tmp_path / "data"
    with EventLog.open(data_dir) as lg:
        lg.append([envelope(1, topic=TOPICS[0])])
        deadline = time.monotonic() + 10
        follower = LogReader(data_dir).follow(
            ["md.>"], 1, poll_s=0.01, stop=lambda: time.monotonic() > deadline
        )
        assert next(follower).gseq == 1
        lg.append([envelope(2, topic=TOPICS[2]), envelope(3, topic="md.bar.1m.us.AAPL")])
        got = [next(follower), next(follower)]
        follower.close()
    assert [(r.gseq, r.topic) for r in got] == [(2, TOPICS[2]), (3, "md.bar.1m.us.AAPL")]


@needs_proc_io
def test_reading_the_head_of_a_live_day_does_not_rescan_it(tmp_path: Path) -> None:
    """Reading the newest records of a growing open day reads a small part of its file."""
    data_dir = tmp_path / "data"
    with EventLog.open(data_dir) as lg:
        envs = envelopes(30_000, step_ns=100_000)
        lg.append(envs)
        reader = LogReader(data_dir)
        assert len(list(reader.read(None, 29_990))) == 11
        size = next(data_dir.rglob("*.jsonl")).stat().st_size
        for k in range(3):
            lg.append([envelope(30_001 + k, ts_event=envs[-1].ts_event + 1 + k)])
            before = bytes_read()
            got = [r.gseq for r in reader.read(None, 30_001 + k)]
            spent = bytes_read() - before
            assert got == [30_001 + k]
            assert spent < size // 10, f"read {spent} bytes of a {size}-byte file for one record"


def test_merged_read_keeps_at_most_the_pool_of_files_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merged read over 12 topics with a pool of 3 holds ≤ 3 files open and returns every record."""
    monkeypatch.setattr(reader_module, "MERGE_OPEN_FILES", 3)
    data_dir = tmp_path / "data"
    topics = tuple(f"md.trade.crypto.S{i}" for i in range(12))
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(6000, topics=topics, step_ns=NS_PER_DAY // 2000))
    reader = LogReader(data_dir)
    fds_before = len(os.listdir("/proc/self/fd"))
    most = 0
    got = []
    for i, rec in enumerate(reader.read()):
        got.append(rec.gseq)
        if i % 97 == 0:
            most = max(most, len(os.listdir("/proc/self/fd")) - fds_before)
    assert got == list(range(1, 6001))
    assert 0 < most <= 3
    by_time = [r.gseq for r in reader.read_in_time_order(None, T0)]
    assert by_time == list(range(1, 6001))


def test_merged_read_goes_on_when_a_closed_file_is_sealed_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pooled file closed mid-day and sealed before it is reopened is read on from the sealed day."""
    monkeypatch.setattr(reader_module, "MERGE_OPEN_FILES", 1)
    monkeypatch.setattr(reader_module, "MERGE_BUFFER_BYTES", 1)  # the smallest read-ahead
    data_dir = tmp_path / "data"
    topics = tuple(f"md.trade.crypto.S{i}" for i in range(4))
    envs = envelopes(8000, topics=topics, step_ns=2 * NS_PER_DAY // 8000)
    with EventLog.open(data_dir) as lg:
        lg.append(envs)
    merged = LogReader(data_dir).read()
    first = [next(merged).gseq for _ in range(1500)]  # inside the first day of every topic
    with EventLog.open(data_dir) as lg:
        compact(lg, include_open=True)
    assert not list(data_dir.rglob("*.jsonl"))
    rest = [r.gseq for r in merged]
    assert first + rest == list(range(1, 8001))


def test_open_day_index_is_extended_to_equal_a_full_rebuild(tmp_path: Path) -> None:
    """The reader's index of a growing open day, extended step by step, equals one built in one scan."""
    data_dir = tmp_path / "data"
    reader = LogReader(data_dir)
    with EventLog.open(data_dir) as lg:
        for part in range(5):
            lg.append(
                envelopes(
                    700,
                    source=f"s{part % 2}",
                    start_seq=1 + part * 700,
                    start_ns=T0 + part * 10**9,
                )
            )
            seg = reader.segments(TRADE_TOPIC)[0]
            extended = reader.segment_index(seg)
            rebuilt = LogReader(data_dir).segment_index(seg)
            assert extended.count == 700 * (part + 1)
            assert msgspec.structs.asdict(extended) == msgspec.structs.asdict(rebuilt)
    # After close the saved .idx is the starting point of a new reader: the same index.
    seg = reader.segments(TRADE_TOPIC)[0]
    assert msgspec.structs.asdict(LogReader(data_dir).segment_index(seg)) == (
        msgspec.structs.asdict(reader.segment_index(seg))
    )


def test_open_day_index_covers_only_the_published_head(tmp_path: Path) -> None:
    """Records written without fsync are left out of another reader's index until sync."""
    data_dir = tmp_path / "data"
    reader = LogReader(data_dir)
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(100))
        lg.append(envelopes(50, start_seq=101, start_ns=T0 + 10**9), durable=False)
        seg = reader.segments(TRADE_TOPIC)[0]
        assert reader.segment_index(seg).last_gseq == 100
        assert reader.topic_summary(TRADE_TOPIC).count == 100
        assert lg.reader.topic_summary(TRADE_TOPIC).count == 150  # the writer's own view
        lg.sync()
        assert reader.segment_index(seg).last_gseq == 150
        assert [r.offset for r in reader.read_topic(TRADE_TOPIC, 120)] == list(range(120, 150))


@pytest.mark.parametrize("from_offset", [0, 1100, 1500])
@pytest.mark.parametrize("sealed", [False, True], ids=["open", "sealed"])
def test_a_bad_record_is_reported_at_its_byte_position(
    tmp_path: Path, from_offset: int, sealed: bool
) -> None:
    """Reading into a damaged record raises with its file, byte position and offset."""
    data_dir = tmp_path / "data"
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(3000))
    path = topic_dir(data_dir, TRADE_TOPIC) / "2024-01-01.jsonl"
    data = bytearray(path.read_bytes())
    lines = bytes(data).splitlines(keepends=True)
    pos = sum(len(line) for line in lines[:1500])
    data[pos + 30] ^= 1  # inside the topic name of offset 1500 (line ends unchanged)
    path.write_bytes(bytes(data))
    path.with_suffix(".idx").unlink()
    if sealed:
        seal_as_is(path)
    with pytest.raises(CorruptRecordError) as err:
        list(LogReader(data_dir).read_topic(TRADE_TOPIC, from_offset))
    expected_path = path.with_name(path.name + ".zst") if sealed else path
    assert (err.value.path, err.value.position, err.value.offset) == (
        str(expected_path),
        pos,
        1500,
    )


def seal_as_is(path: Path) -> None:
    """Seal an open day file without checking its records (compaction refuses bad ones)."""
    lines = path.read_bytes().splitlines(keepends=True)
    cctx = zstandard.ZstdCompressor(level=3)
    index = SegmentIndex(sealed=True, data_size=0)
    out = bytearray()
    raw = 0
    for k in range(0, len(lines), INDEX_EVERY):
        chunk = b"".join(lines[k : k + INDEX_EVERY])
        index.entries.append(IndexEntry(k, k + 1, T0 + (k + 1) * 1000, len(out), raw))
        out += cctx.compress(chunk)
        raw += len(chunk)
    index.count, index.first_offset, index.last_offset = len(lines), 0, len(lines) - 1
    index.first_gseq, index.last_gseq = 1, len(lines)
    index.data_size, index.raw_size = len(out), raw
    path.with_name(path.name + ".zst").write_bytes(bytes(out))
    save_index(path.with_suffix(".idx"), index)
    path.unlink()


def test_a_time_window_reads_only_its_days(data_dir: Path) -> None:
    """A time-bounded read opens only the day files whose day meets the window: a day
    file's day is the UTC day of its records' ts_event (DESIGN §5), so days before or
    after the window are skipped by name (a replay of two days in a topic of thousands
    of daily files must not load every day's index)."""
    with EventLog.open(data_dir) as lg:
        for day in range(6):
            lg.append(envelopes(5, start_seq=1 + 5 * day, start_ns=T0 + day * NS_PER_DAY))
    reader = LogReader(data_dir)
    days = reader.segments(TRADE_TOPIC)
    assert len(days) == 6
    start, end = T0 + 2 * NS_PER_DAY, T0 + 4 * NS_PER_DAY
    got = [r.gseq for r in reader.read_in_time_order(None, start, end)]
    assert got == list(range(11, 21))
    assert set(reader._indexes) <= {days[2].path, days[3].path}
    # Nothing about the days before the window is read, not even a file gone bad.
    days[0].path.write_bytes(b"not a record\n" * 3)
    days[1].path.unlink()
    assert [r.gseq for r in LogReader(data_dir).read_from_time(None, start, end)] == got


def test_a_torn_record_before_later_days_stops_the_read(data_dir: Path) -> None:
    """An open day whose last line lost its end, followed by committed records of later
    days, is damage, not a write in progress: reads stop there naming file, byte
    position and offset (they used to go on with the next day, skipping the record)."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(40, step_ns=NS_PER_DAY // 10))
    path = topic_dir(data_dir, TRADE_TOPIC) / "2024-01-02.jsonl"
    data = path.read_bytes()
    start = data.rindex(b"\n", 0, len(data) - 1) + 1  # the day's last line: offset 19
    path.write_bytes(data[:-30])
    for read in (
        lambda r: r.read_topic(TRADE_TOPIC),
        lambda r: r.read_topic(TRADE_TOPIC, 15),
        lambda r: r.read(None, 12),
        lambda r: r.read_from_time(None, T0 + NS_PER_DAY // 2),
    ):
        with pytest.raises(CorruptRecordError) as err:
            list(read(LogReader(data_dir)))
        assert (err.value.path, err.value.position, err.value.offset) == (str(path), start, 19)
    # Up to that day nothing is wrong yet, and a read that ends before the next day's
    # records does not see them.
    assert [r.offset for r in LogReader(data_dir).read_topic(TRADE_TOPIC, 0, 18)] == list(range(19))
    assert [r.gseq for r in LogReader(data_dir).read(None, 1, 19)] == list(range(1, 20))
