"""Tests of recovery on open (tickertape.eventlog.writer): torn tails, garbage, cut groups, corruption."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from tickertape.errors import CorruptRecordError
from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog.index import load_index, save_index
from tickertape.eventlog.verify import verify_namespace

from .envelopes import (
    NS_PER_DAY,
    T0,
    TRADE_TOPIC,
    bytes_read,
    crash_head,
    day_file,
    envelope,
    envelopes,
    keys,
    needs_proc_io,
    run_tape,
    stored_lines,
    verify_clean,
)

QUOTE_TOPIC = "md.quote.crypto.BTCUSDT"


def build(data_dir: Path, batches: list[list[int]]) -> None:
    """Append ``md.trade`` envelopes of the given source_seqs, one append per inner list."""
    with EventLog.open(data_dir) as lg:
        for seqs in batches:
            res = lg.append([envelope(s) for s in seqs])
            assert all(r.error is None for r in res)


def line_bounds(path: Path) -> list[tuple[int, int]]:
    """(start, end) byte positions of each line of a file."""
    bounds, pos = [], 0
    for line in stored_lines(path):
        bounds.append((pos, pos + len(line)))
        pos += len(line)
    return bounds


def check_reopens_cleanly(data_dir: Path, expected_prefix: list[int], allow_next: bool) -> None:
    """Reopen: the kept records are ``expected_prefix`` (plus, maybe, one more); an append works; verify is clean."""
    with EventLog.open(data_dir) as lg:
        kept = [r.source_seq for r in lg.read()]
        if allow_next and len(kept) == len(expected_prefix) + 1:
            expected = [*expected_prefix, kept[-1]]
        else:
            expected = expected_prefix
        assert kept == expected
        assert lg.head_gseq == len(expected)
        res = lg.append([envelope(1000)])
        assert (res[0].error, res[0].gseq, res[0].offset) == (
            None,
            len(expected) + 1,
            len(expected),
        )
        assert [r.source_seq for r in lg.read()] == [*expected, 1000]
    report = verify_namespace(data_dir)
    assert report.ok, report.problems
    assert report.records == len(expected) + 1


@pytest.mark.slow
@pytest.mark.parametrize("which", [-2, -1], ids=["second_to_last", "last"])
def test_cut_at_every_byte_of_the_last_two_records(tmp_path: Path, which: int) -> None:
    """A file cut at any byte of its last two records reopens with every complete record before the cut."""
    pristine = tmp_path / "data"
    build(pristine, [[1, 2, 3, 4, 5], [6], [7]])
    path = day_file(pristine, TRADE_TOPIC, T0)
    data = path.read_bytes()
    bounds = line_bounds(path)
    assert len(bounds) == 7
    start, stop = bounds[which]
    newline_only = {end - 1 for _s, end in bounds}  # see test_cut_after_the_closing_brace...
    for cut in range(start, stop):
        if cut in newline_only:
            continue
        path.write_bytes(data[:cut])
        path.with_suffix(".idx").unlink(missing_ok=True)
        complete = [i + 1 for i, (_s, end) in enumerate(bounds) if end <= cut]
        crash_head(pristine, len(complete))  # the torn record's group was in flight
        with EventLog.open(pristine) as lg:
            dropped = lg.recovery.dropped
            if cut not in {end for _s, end in bounds}:
                assert dropped, f"cut at {cut}: the torn tail was not reported"
                assert (dropped[0].path, dropped[0].to_pos) == (str(path), cut)
        check_reopens_cleanly(pristine, complete, allow_next=False)


def test_cut_after_the_closing_brace_keeps_a_well_formed_file(data_dir: Path) -> None:
    """A record whose newline was lost is dropped or repaired: the next append never merges with it."""
    build(data_dir, [[1, 2, 3]])
    path = day_file(data_dir, TRADE_TOPIC, T0)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 1)
    crash_head(data_dir, 0)  # the group was in flight
    check_reopens_cleanly(data_dir, [1, 2], allow_next=True)
    assert path.read_bytes().endswith(b"}\n")


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00" * 100,
        b"garbage\n",
        b"\n\n\n",
        b'{"id":"md:9","topic":"x"}\n',
        b"\xff\xfe{\n\x00partial",
        bytes(random.Random(7).randrange(256) for _ in range(500)),
    ],
    ids=["zeros", "text", "newlines", "json", "binary", "random"],
)
def test_garbage_appended_is_truncated_and_reported(data_dir: Path, garbage: bytes) -> None:
    """Garbage after the last record is cut off on open and reported with its byte range."""
    build(data_dir, [[1, 2, 3]])
    path = day_file(data_dir, TRADE_TOPIC, T0)
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(garbage)
    with EventLog.open(data_dir) as lg:
        assert [(d.from_pos, d.to_pos) for d in lg.recovery.dropped] == [
            (size, size + len(garbage))
        ]
        assert lg.recovery.dropped[0].records >= 1
    assert path.stat().st_size == size
    check_reopens_cleanly(data_dir, [1, 2, 3], allow_next=False)


def test_a_copy_of_a_valid_record_appended_is_not_trusted_blindly(data_dir: Path) -> None:
    """A valid-looking duplicate line (same offset and gseq) at the tail breaks contiguity and is flagged."""
    build(data_dir, [[1, 2]])
    path = day_file(data_dir, TRADE_TOPIC, T0)
    last = stored_lines(path)[-1]
    with open(path, "ab") as f:
        f.write(last)
    report = verify_namespace(data_dir)
    assert not report.ok


def test_torn_tail_reported_by_verify_before_recovery_and_clean_after(data_dir: Path) -> None:
    """`tape verify` flags a torn tail (exit 1); after a reopen it is clean (exit 0)."""
    build(data_dir, [[1, 2], [3]])
    path = day_file(data_dir, TRADE_TOPIC, T0)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 20)
    crash_head(data_dir, 2)  # the group of record 3 was in flight
    proc = run_tape("verify", "--json", data_dir=data_dir)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["problems"][0]["path"] == str(path)
    EventLog.open(data_dir).close()
    verify_clean(data_dir)


GROUP = envelopes(4, topics=(TRADE_TOPIC, QUOTE_TOPIC), start_seq=5, start_ns=T0 + 10**6)


def two_topic_log(data_dir: Path) -> tuple[Path, Path]:
    """gseq 1–4 committed; then one group [A5, B6, A7, B8] over a trade (A) and a quote (B) topic."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(4, topics=(TRADE_TOPIC, QUOTE_TOPIC)))
        res = lg.append(GROUP)
        assert [r.gseq for r in res] == [5, 6, 7, 8]
    return day_file(data_dir, TRADE_TOPIC, T0), day_file(data_dir, QUOTE_TOPIC, T0)


def cut_lines(path: Path, keep: int, extra: int = 0) -> None:
    """Keep the first ``keep`` lines of a file, plus ``extra`` bytes of the next."""
    bounds = line_bounds(path)
    end = bounds[keep - 1][1] if keep else 0
    with open(path, "r+b") as f:
        f.truncate(end + extra)


def assert_contiguous(data_dir: Path, head: int) -> None:
    """gseq is 1..head across the namespace and offsets are contiguous per topic."""
    records = list(LogReader(data_dir).read())
    assert [r.gseq for r in records] == list(range(1, head + 1))
    for topic in {r.topic for r in records}:
        offsets = [r.offset for r in records if r.topic == topic]
        assert offsets == list(range(len(offsets)))


@pytest.mark.parametrize(
    ("topic", "keep", "extra", "head"),
    [
        ("B", 2, 0, 5),  # crash after A's write, before any of B's: gseq 6 missing
        ("B", 2, 30, 5),  # B's first record of the group torn
        ("B", 3, 0, 7),  # B's last record missing
        ("B", 3, 50, 7),  # B's last record torn
        ("A", 3, 0, 6),  # A's last record missing (B intact): cut back to 6
    ],
)
def test_incomplete_multi_topic_group_is_cut_to_contiguous_gseq(
    data_dir: Path, topic: str, keep: int, extra: int, head: int
) -> None:
    """Records of a group present in one topic but missing in another are cut back to contiguous gseq."""
    a, b = two_topic_log(data_dir)
    cut_lines(a if topic == "A" else b, keep, extra)
    crash_head(data_dir, 4)
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == head
        assert bool(lg.recovery.dropped) == ((topic, keep, extra) != ("B", 3, 0))
        assert lg.recovery.head_gseq == head
        nxt = lg.append([envelope(100, topic=QUOTE_TOPIC, ts_event=T0 + 10**9)])
        assert nxt[0].gseq == head + 1
    assert_contiguous(data_dir, head + 1)
    verify_clean(data_dir)


def test_an_incomplete_group_is_not_acknowledged_again_as_duplicate(data_dir: Path) -> None:
    """After a cut group, re-sending its envelopes stores them (they were never acknowledged)."""
    _a, b = two_topic_log(data_dir)
    cut_lines(b, 2)
    crash_head(data_dir, 4)
    with EventLog.open(data_dir) as lg:
        res = lg.append(GROUP)
        assert [r.duplicate for r in res] == [True, False, False, False]
        assert [r.gseq for r in res] == [5, 6, 7, 8]
    assert_contiguous(data_dir, 8)
    verify_clean(data_dir)


def flip_in_middle(path: Path, line_no: int) -> tuple[int, bytes]:
    """Flip the low bit of a digit of the trade_id in line ``line_no``; return (line start, original)."""
    bounds = line_bounds(path)
    start, end = bounds[line_no]
    data = bytearray(path.read_bytes())
    line = bytes(data[start:end])
    pos = start + line.index(b'"trade_id":"') + len(b'"trade_id":"')
    data[pos] ^= 1
    path.write_bytes(bytes(data))
    return start, line


def test_corruption_in_the_middle_is_not_truncated(data_dir: Path) -> None:
    """A bad record followed by valid ones is reported on open, and nothing is truncated."""
    build(data_dir, [[1, 2, 3, 4, 5]])
    path = day_file(data_dir, TRADE_TOPIC, T0)
    _start, _line = flip_in_middle(path, 1)
    size = path.stat().st_size
    with EventLog.open(data_dir) as lg:
        assert lg.recovery.corrupt
        assert str(path) in lg.recovery.corrupt[0]
        assert lg.recovery.dropped == []
        assert lg.head_gseq == 5
    assert path.stat().st_size == size


def test_corruption_in_an_older_file_is_not_truncated(data_dir: Path) -> None:
    """A bad record in a closed (older) day file is left in place on open."""
    with EventLog.open(data_dir) as lg:
        lg.append([envelope(1), envelope(2), envelope(3)])
        lg.append([envelope(4, ts_event=T0 + 86_400 * 10**9)])
    path = day_file(data_dir, TRADE_TOPIC, T0)
    flip_in_middle(path, 1)
    size = path.stat().st_size
    EventLog.open(data_dir).close()
    assert path.stat().st_size == size


def test_reads_stop_at_mid_file_corruption_naming_file_position_and_offset(data_dir: Path) -> None:
    """Reading through a corrupt record raises CorruptRecordError with file, byte position and offset."""
    build(data_dir, [[1, 2, 3, 4, 5]])
    path = day_file(data_dir, TRADE_TOPIC, T0)
    start, _line = flip_in_middle(path, 2)
    reader = LogReader(data_dir)
    records = reader.read_topic(TRADE_TOPIC)
    assert [next(records).source_seq, next(records).source_seq] == [1, 2]
    with pytest.raises(CorruptRecordError) as info:
        next(records)
    err = info.value
    assert (err.path, err.position, err.offset) == (str(path), start, 2)
    assert str(path) in str(err)
    assert f"byte {start}" in str(err)
    assert "offset 2" in str(err)
    with pytest.raises(CorruptRecordError):
        list(reader.read())


def test_verify_reports_mid_file_corruption(data_dir: Path) -> None:
    """`tape verify --json` exits 1 and names file, byte position and offset of the bad record."""
    build(data_dir, [[1, 2, 3, 4, 5]])
    path = day_file(data_dir, TRADE_TOPIC, T0)
    start, _line = flip_in_middle(path, 3)
    proc = run_tape("verify", "--json", data_dir=data_dir)
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)["problems"]
    in_data = [(p["path"], p["position"], p["offset"]) for p in problems if p["path"] == str(path)]
    assert in_data == [(str(path), start, 3)]
    assert all(p["path"] in (str(path), str(path.with_suffix(".idx"))) for p in problems)
    human = run_tape("verify", data_dir=data_dir)
    assert human.returncode == 1
    assert b"NOT CLEAN" in human.stdout


def test_recovery_report_counts_dropped_records(data_dir: Path) -> None:
    """The drop report gives file, byte range and the number of records cut."""
    build(data_dir, [[1, 2, 3, 4]])
    path = day_file(data_dir, TRADE_TOPIC, T0)
    bounds = line_bounds(path)
    with open(path, "r+b") as f:
        f.truncate(bounds[2][0] + 10)
    crash_head(data_dir, 0)  # the group was in flight
    with EventLog.open(data_dir) as lg:
        (d,) = lg.recovery.dropped
    assert (d.path, d.from_pos, d.to_pos, d.records) == (
        str(path),
        bounds[2][0],
        bounds[2][0] + 10,
        1,
    )
    assert keys(LogReader(data_dir).read()) == [("md", 1), ("md", 2)]


def test_empty_day_file_is_harmless(data_dir: Path) -> None:
    """A day file created but never written (crash right after creation) reopens cleanly."""
    build(data_dir, [[1]])
    empty = day_file(data_dir, TRADE_TOPIC, T0 + 86_400 * 10**9)
    empty.touch()
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == 1
        res = lg.append([envelope(2, ts_event=T0 + 86_400 * 10**9 + 5)])
        assert res[0].gseq == 2
    verify_clean(data_dir)


def test_verify_reports_a_record_removed_from_the_middle(data_dir: Path) -> None:
    """A whole line cut out of the middle of a file (no checksum broken) is reported by verify."""
    build(data_dir, [[1, 2, 3, 4, 5]])
    path = day_file(data_dir, TRADE_TOPIC, T0)
    lines = stored_lines(path)
    path.write_bytes(b"".join(lines[:2] + lines[3:]))
    report = verify_namespace(data_dir)
    assert not report.ok
    assert any(p.path == str(path) and p.offset in (2, 3) for p in report.problems)


@needs_proc_io
def test_open_after_a_clean_close_reads_only_the_tail(data_dir: Path) -> None:
    """Reopening a cleanly closed log does not read its open day files whole."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(30_000, step_ns=100_000))
    size = day_file(data_dir, TRADE_TOPIC, T0).stat().st_size
    before = bytes_read()
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == 30_000
    spent = bytes_read() - before
    assert spent < size // 10, f"open read {spent} bytes of a {size}-byte day file"


@pytest.mark.parametrize("stale_head", [0, 3, 6])
def test_a_lagging_head_file_does_not_cut_complete_groups(data_dir: Path, stale_head: int) -> None:
    """HEAD lagging the files (it is not fsync'd) never makes recovery drop complete records."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(4, topics=(TRADE_TOPIC, QUOTE_TOPIC)))
        lg.append(envelopes(4, topics=(TRADE_TOPIC, QUOTE_TOPIC), start_seq=5, start_ns=T0 + 10**6))
    crash_head(data_dir, stale_head)
    with EventLog.open(data_dir) as lg:
        assert lg.recovery.dropped == []
        assert lg.head_gseq == 8
    assert LogReader(data_dir).head_gseq() == 8
    assert_contiguous(data_dir, 8)


_CRASH_AFTER_APPEND = r"""
import os, sys
from tickertape.eventlog import EventLog
from tests.eventlog.envelopes import envelopes, T0, TRADE_TOPIC
lg = EventLog.open(sys.argv[1])
if sys.argv[2] == "other":
    lg.append(envelopes(500, source="other", start_ns=T0 + 10**9))
else:
    topics = (TRADE_TOPIC, "md.quote.crypto.BTCUSDT")
    lg.append(envelopes(4, topics=topics, start_seq=2001, start_ns=T0 + 10**12), durable=False)
os._exit(0)  # a crash: no close, no index saved
"""


def crash_after_append(data_dir: Path, what: str) -> None:
    """Run a writer that appends ``what`` and dies without closing."""
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", _CRASH_AFTER_APPEND, str(data_dir), what],
        cwd=root,
        check=True,
        timeout=60,
    )


@needs_proc_io
def test_open_trusts_a_saved_index_and_checks_the_records_after_it(data_dir: Path) -> None:
    """Records appended after the saved index (then a crash) are scanned; the rest is trusted."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(8000, step_ns=100_000))
    path = day_file(data_dir, TRADE_TOPIC, T0)
    indexed = path.stat().st_size
    crash_after_append(data_dir, "other")
    index = load_index(path.with_suffix(".idx"))
    assert index is not None
    assert (index.count, index.data_size) == (8000, indexed)
    before = bytes_read()
    with EventLog.open(data_dir) as lg:
        spent = bytes_read() - before
        assert (lg.head_gseq, lg.next_offsets()) == (8500, {TRADE_TOPIC: 8500})
        assert (lg.last_source_seq("md"), lg.last_source_seq("other")) == (8000, 500)
        assert lg.append([envelope(2999)])[0].duplicate
        assert lg.append(envelopes(1, source="other", start_seq=500))[0].duplicate
    assert spent < indexed // 2, f"open read {spent} bytes; {indexed} were indexed"
    assert_contiguous(data_dir, 8500)


@pytest.mark.parametrize("lie", ["other file", "shifted"])
def test_open_does_not_trust_an_index_of_other_bytes(data_dir: Path, lie: str) -> None:
    """A CRC-valid .idx that does not describe the file's bytes is ignored: the file is scanned."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(3000, topics=(TRADE_TOPIC, QUOTE_TOPIC), step_ns=100_000))
    trade = day_file(data_dir, TRADE_TOPIC, T0)
    quote = day_file(data_dir, QUOTE_TOPIC, T0)
    if lie == "other file":
        shutil.copy(quote.with_suffix(".idx"), trade.with_suffix(".idx"))
    else:
        index = load_index(trade.with_suffix(".idx"))
        assert index is not None
        entries = [msgspec.structs.replace(e, file_pos=e.file_pos + 1) for e in index.entries]
        save_index(trade.with_suffix(".idx"), msgspec.structs.replace(index, entries=entries))
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == 3000
        assert lg.next_offsets() == {QUOTE_TOPIC: 1500, TRADE_TOPIC: 1500}
        assert lg.recovery.dropped == []
    assert_contiguous(data_dir, 3000)
    verify_clean(data_dir)


def test_a_crash_that_lost_the_head_file_still_cuts_an_incomplete_group(data_dir: Path) -> None:
    """HEAD gone (power loss) with saved indexes describing the files' starts: the records
    they describe are kept, and the incomplete group written after them is cut."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(2000, topics=(TRADE_TOPIC, QUOTE_TOPIC), step_ns=100_000))
    crash_after_append(data_dir, "group")  # gseq 2001-2004, unsynced
    trade = day_file(data_dir, TRADE_TOPIC, T0)
    quote = day_file(data_dir, QUOTE_TOPIC, T0)
    cut_lines(quote, 1000)  # the quote topic's part of the group never reached the disk
    (data_dir / "logs" / "main" / "HEAD").unlink()
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == 2001
        assert [d.path for d in lg.recovery.dropped] == [str(trade)]
    assert_contiguous(data_dir, 2001)
    verify_clean(data_dir)


# ------------------------------------------- open days other than a topic's newest

DAYS = 4
PER_DAY = 100  # records per day, over the trade and the quote topic
STEP_NS = NS_PER_DAY // PER_DAY


def days_log(data_dir: Path) -> list[Path]:
    """``DAYS`` days of two topics, closed cleanly (every open day's .idx saved); the
    trade topic's day files, oldest first."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(DAYS * PER_DAY, topics=(TRADE_TOPIC, QUOTE_TOPIC), step_ns=STEP_NS))
    return [day_file(data_dir, TRADE_TOPIC, T0 + d * NS_PER_DAY) for d in range(DAYS)]


@needs_proc_io
def test_open_reads_nothing_of_older_days_whose_index_covers_them(data_dir: Path) -> None:
    """Reopening a cleanly closed log reads the indexes of the days before each topic's
    newest, not their records (each of these files is shorter than an indexed stretch,
    which open used to decode again)."""
    days_log(data_dir)
    older = [
        p
        for topic in (TRADE_TOPIC, QUOTE_TOPIC)
        for p in (data_dir / "logs" / "main" / topic).glob("*.jsonl")
        if not p.name.startswith(f"2024-01-0{DAYS}")
    ]
    assert len(older) == 2 * (DAYS - 1)
    older_bytes = sum(p.stat().st_size for p in older)
    newest_bytes = sum(p.stat().st_size for p in data_dir.rglob(f"2024-01-0{DAYS}.jsonl"))
    before = bytes_read()
    with EventLog.open(data_dir) as lg:
        spent = bytes_read() - before
        assert lg.head_gseq == DAYS * PER_DAY
        assert lg.next_offsets() == {QUOTE_TOPIC: 200, TRADE_TOPIC: 200}
        assert lg.last_source_seq("md") == DAYS * PER_DAY
        assert lg.append([envelope(1)])[0].duplicate  # the oldest day's records count too
    assert spent < newest_bytes + older_bytes // 5, (
        f"open read {spent} bytes; the older days hold {older_bytes}, the newest {newest_bytes}"
    )
    verify_clean(data_dir)


_CRASH_IN_GROUP = r"""
import os, signal, sys
from tickertape.eventlog import EventLog
from tests.eventlog.envelopes import NS_PER_DAY, T0, TRADE_TOPIC, envelopes
days = int(sys.argv[3])
topics = (TRADE_TOPIC, "md.quote.crypto.BTCUSDT")
lg = EventLog.open(sys.argv[1])
last = max(lg.last_ts_event(t) or 0 for t in topics)
# 10 more records on the newest day, then (rolled) 10 on the next day, never fsync'd
group = envelopes(10, topics=topics, start_seq=10_001, start_ns=last + 1, step_ns=1)
if sys.argv[2] == "rolled":
    group += envelopes(10, topics=topics, start_seq=10_011, start_ns=T0 + days * NS_PER_DAY)
assert all(r.error is None for r in lg.append(group, durable=False))
os.kill(os.getpid(), signal.SIGKILL)  # no sync, no index saved, no close
"""


@pytest.mark.parametrize("where", ["newest", "rolled"])
def test_a_torn_tail_past_the_saved_index_is_cut_in_the_newest_and_in_a_rolled_day(
    data_dir: Path, where: str
) -> None:
    """A writer killed after an unsynced group, whose last trade record of the (then)
    newest day is torn as a power loss can leave it: open cuts the torn record and every
    later gseq, whether that day is still the newest (``newest``) or the group had rolled
    both topics over to a new day before the crash (``rolled``: the torn day is no longer
    the newest, and its saved index, older than the group, does not cover the file)."""
    trade_days = days_log(data_dir)
    before = {p: p.read_bytes() for p in trade_days[:-1]}
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH_IN_GROUP, str(data_dir), where, str(DAYS)],
        cwd=root,
        check=False,
        timeout=60,
    )
    assert proc.returncode == -9
    torn = trade_days[-1]
    lines = stored_lines(torn)
    assert len(lines) == PER_DAY // 2 + 5  # 50 committed and 5 of the group
    cut_lines(torn, len(lines) - 1, 20)  # the group's last trade record of the day, torn
    if where == "rolled":
        assert day_file(data_dir, TRADE_TOPIC, T0 + DAYS * NS_PER_DAY).stat().st_size > 0
    # Before recovery readers return the committed records (the torn line and the next
    # day's records are past the published head) without an error.
    assert [r.gseq for r in LogReader(data_dir).read()] == list(range(1, DAYS * PER_DAY + 1))
    head = DAYS * PER_DAY + 8  # gseq 409 (the torn record) and everything after it is cut
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == head
        dropped = {Path(d.path) for d in lg.recovery.dropped}
        assert torn in dropped
        if where == "rolled":
            assert day_file(data_dir, QUOTE_TOPIC, T0 + DAYS * NS_PER_DAY) in dropped
        assert lg.recovery.corrupt == []
        res = lg.append([envelope(20_000, ts_event=T0 + (DAYS + 1) * NS_PER_DAY)])
        assert res[0].gseq == head + 1
    assert {p: p.read_bytes() for p in trade_days[:-1]} == before
    assert_contiguous(data_dir, head + 1)
    verify_clean(data_dir)


@pytest.mark.parametrize("damage", ["torn", "flipped", "newline"])
def test_damage_to_an_older_open_day_is_repaired_on_open_or_reported_by_verify(
    data_dir: Path, damage: str
) -> None:
    """The last record of an older open day damaged from outside the writer (no crash
    leaves this: the day was fsync'd before its index was saved) is found: cut short
    (``torn``, the size changed) it is read on open, and kept and reported as
    corruption (its gseq, at or below HEAD, is held by no other record: it was
    durable); damaged in place (``flipped`` bit, ``newline`` overwritten: the size kept,
    so open trusts the saved index and reads nothing of the file) `tape verify` reports
    it with file and byte."""
    trade_days = days_log(data_dir)
    path = trade_days[1]
    bounds = line_bounds(path)
    last_start, last_end = bounds[-1]
    if damage == "torn":
        cut_lines(path, len(bounds) - 1, 40)
    elif damage == "flipped":
        assert flip_in_middle(path, len(bounds) - 1)[0] == last_start
    else:
        data = bytearray(path.read_bytes())
        assert data[-1:] == b"\n"
        data[-1:] = b" "
        path.write_bytes(bytes(data))
    proc = run_tape("verify", "--json", data_dir=data_dir)
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)["problems"]
    assert (problems[0]["path"], problems[0]["position"]) == (str(path), last_start)
    size = path.stat().st_size
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == DAYS * PER_DAY
        assert lg.recovery.dropped == []
        if damage == "torn":
            (problem,) = lg.recovery.corrupt
            assert problem.startswith(f"{path}: byte {last_start}: ")
            (late,) = lg.append([envelope(20_000, ts_event=T0 + (DAYS + 1) * NS_PER_DAY)])
            assert (late.error, late.gseq) == (None, DAYS * PER_DAY + 1)  # later days: not damaged
    assert path.stat().st_size == size  # left in place, never truncated
    if damage == "torn":
        return
    after = run_tape("verify", "--json", data_dir=data_dir)
    assert after.returncode == 1
    problems = json.loads(after.stdout)["problems"]
    assert (problems[0]["path"], problems[0]["position"]) == (str(path), last_start)
    assert last_end == size
    if damage == "flipped":
        with pytest.raises(CorruptRecordError) as info:
            list(LogReader(data_dir).read_topic(TRADE_TOPIC, 60))
        assert (info.value.path, info.value.position) == (str(path), last_start)


def test_a_damaged_last_record_below_the_published_head_is_kept_not_cut(data_dir: Path) -> None:
    """One flipped byte in the last record of a topic's newest file, a record HEAD says
    was durable: recovery keeps it (reported as corruption), the topic refuses appends
    (``TOPIC_DAMAGED``), reads of it stop there with an error naming the file, and the
    namespace's gseqs go on after HEAD: the damaged record's gseq is never given to
    another record."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(4, topics=(TRADE_TOPIC, QUOTE_TOPIC)))  # A1 B2 A3 B4
    quotes = day_file(data_dir, QUOTE_TOPIC, T0)
    data = bytearray(quotes.read_bytes())
    data[-10] ^= 0x01  # inside the CRC of B4 (gseq 4, the head)
    quotes.write_bytes(bytes(data))
    with EventLog.open(data_dir) as lg:
        assert lg.recovery.dropped == []
        (problem,) = lg.recovery.corrupt
        assert str(quotes) in problem
        assert "kept" in problem
        assert lg.head_gseq == 4
        late = envelopes(2, topics=(TRADE_TOPIC, QUOTE_TOPIC), start_seq=5, start_ns=T0 + 10**6)
        a5, b6 = lg.append(late)
        assert (a5.error, a5.gseq, a5.offset) == (None, 5, 2)
        assert b6.error == "TOPIC_DAMAGED"
        assert str(quotes) in (b6.message or "")
    assert quotes.read_bytes() == bytes(data)  # nothing cut
    with pytest.raises(CorruptRecordError, match=str(quotes)):
        list(LogReader(data_dir).read([QUOTE_TOPIC]))
    assert [r.gseq for r in LogReader(data_dir).read([TRADE_TOPIC])] == [1, 3, 5]
    # HEAD (5) now passed by another topic: the damage is still kept at the next open,
    # and a torn write of that other topic past HEAD is still cut.
    trades = day_file(data_dir, TRADE_TOPIC, T0)
    with EventLog.open(data_dir) as lg:
        assert (lg.recovery.dropped, len(lg.recovery.corrupt)) == ([], 1)
        (a7,) = lg.append(envelopes(1, topics=(TRADE_TOPIC,), start_seq=7, start_ns=T0 + 2 * 10**6))
        assert (a7.gseq, a7.offset) == (6, 3)
    with open(trades, "r+b") as f:
        f.truncate(trades.stat().st_size - 30)  # A7 torn: it was in flight
    crash_head(data_dir, 5)
    with EventLog.open(data_dir) as lg:
        (dropped,) = lg.recovery.dropped
        assert dropped.path == str(trades)
        (problem,) = lg.recovery.corrupt
        assert str(quotes) in problem
        (a8,) = lg.append(envelopes(1, topics=(TRADE_TOPIC,), start_seq=8, start_ns=T0 + 3 * 10**6))
        assert (a8.error, a8.gseq, a8.offset) == (None, 6, 3)
    assert quotes.read_bytes() == bytes(data)


def test_a_damaged_tail_below_head_on_an_older_day_keeps_the_head(data_dir: Path) -> None:
    """The last record (gseq 3, durable) of a day file is damaged and the next day's
    file is empty (a roll whose write was lost): the tail is kept, the head stays at
    HEAD and the topic refuses appends (no later day holds records to give the next
    offset), so gseq 3 and offset 2 are never given out again."""
    with EventLog.open(data_dir) as lg:
        lg.append([envelope(i) for i in (1, 2, 3)])
    day1 = day_file(data_dir, TRADE_TOPIC, T0)
    day_file(data_dir, TRADE_TOPIC, T0 + NS_PER_DAY).write_bytes(b"")
    day1.write_bytes(day1.read_bytes()[:-5])
    day1.with_suffix(".idx").unlink(missing_ok=True)
    for _ in range(2):
        with EventLog.open(data_dir) as lg:
            assert (lg.recovery.dropped, len(lg.recovery.corrupt), lg.head_gseq) == ([], 1, 3)
            (late,) = lg.append([envelope(4, ts_event=T0 + NS_PER_DAY + 1)])
            assert late.error == "TOPIC_DAMAGED"
