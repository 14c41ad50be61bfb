"""Tests of the reader's block path (tickertape.eventlog.reader): records are read,
decoded and checked a block of lines at a time, and merged a batch at a time; faults,
bounds and merges must come out as they would one record at a time."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tickertape.errors import CorruptRecordError
from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog import reader as reader_module
from tickertape.eventlog.reader import merge_by_gseq, merge_by_time
from tickertape.schemas.envelope import Record

from .envelopes import NS_PER_DAY, T0, TRADE_TOPIC, envelope, envelopes, topic_dir
from .test_reader import seal_as_is

COUNT = 3000  # ~1.1 MB of lines: many blocks of the reader
DAMAGES = ("flip", "garbage", "duplicate")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A namespace of one topic with COUNT records in one day file (offset k has gseq k + 1)."""
    data_dir = tmp_path_factory.mktemp("pristine")
    with EventLog.open(data_dir) as lg:
        for start in range(0, COUNT, 500):
            lg.append(envelopes(500, start_seq=start + 1, start_ns=T0 + start * 1000))
    return data_dir


def damaged_copy(
    pristine: Path, into: Path, offset: int, damage: str, sealed: bool
) -> tuple[Path, int]:
    """Copy ``pristine`` to ``into`` with the line of ``offset`` damaged; return the damaged
    file (as it ends up: sealed or open) and the byte position of that line."""
    shutil.copytree(pristine, into)
    path = topic_dir(into, TRADE_TOPIC) / "2024-01-01.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    pos = sum(len(line) for line in lines[:offset])
    if damage == "flip":  # inside the topic name: the line still parses, its CRC fails
        line = bytearray(lines[offset])
        line[30] ^= 1
        lines[offset] = bytes(line)
    elif damage == "garbage":  # a line that does not parse
        lines[offset] = b'{"id":' + b"x" * 200 + b"\n"
    else:  # the previous record again: valid, but its offset is not the next one
        lines.insert(offset, lines[offset - 1])
    path.write_bytes(b"".join(lines))
    path.with_suffix(".idx").unlink()
    if sealed:
        seal_as_is(path)
        path = path.with_name(path.name + ".zst")
    return path, pos


def read_until_error(
    records: Iterator[Record], field: str = "offset"
) -> tuple[list[int], CorruptRecordError | None]:
    """The ``field`` of each record an iterator yields, and the error that ended it (if any)."""
    got: list[int] = []
    try:
        for rec in records:
            got.append(getattr(rec, field))
    except CorruptRecordError as exc:
        return got, exc
    return got, None


@settings(max_examples=40)
@example(damaged=1500, start=0, length=1498, damage="flip", sealed=False)  # to: 2 before
@example(damaged=1500, start=0, length=1499, damage="flip", sealed=False)  # to: just before
@example(damaged=1500, start=1400, length=97, damage="garbage", sealed=True)
@example(damaged=1500, start=1490, length=8, damage="duplicate", sealed=False)
@example(damaged=1500, start=1500, length=None, damage="flip", sealed=True)  # from: the damage
# A repeated record at an index entry (every 1 024 records), or just before one: the
# scan indexed it, and a read from there started on or past the damage, silently.
@example(damaged=1023, start=1023, length=None, damage="duplicate", sealed=False)
@example(damaged=1024, start=1024, length=None, damage="duplicate", sealed=False)
@given(
    damaged=st.integers(1, COUNT - 1),
    start=st.integers(0, COUNT - 1),
    length=st.none() | st.integers(0, COUNT),
    damage=st.sampled_from(DAMAGES),
    sealed=st.booleans(),
)
def test_a_read_over_damage_yields_what_precedes_it_then_names_it(
    pristine: Path, damaged: int, start: int, length: int | None, damage: str, sealed: bool
) -> None:
    """read_topic(from, to) over a damaged record yields every record from ``from`` up to
    it, then raises naming its file, byte position and offset. A read that ends before
    it judges only the first record past its end (read to learn that it is past the
    end): damage further on, whether in the reader's block or not, is never judged."""
    start = min(start, damaged)
    to = None if length is None else start + length
    with tempfile.TemporaryDirectory() as tmp:
        path, pos = damaged_copy(pristine, Path(tmp) / "data", damaged, damage, sealed)
        got, error = read_until_error(
            LogReader(Path(tmp) / "data").read_topic(TRADE_TOPIC, start, to)
        )
    if to is not None and to < damaged - 1:
        assert (got, error) == (list(range(start, to + 1)), None)
        return
    assert got == list(range(start, damaged))
    assert error is not None
    assert (error.path, error.position, error.offset) == (str(path), pos, damaged)


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_merged_read_over_damage_yields_a_gseq_prefix_then_names_it(
    tmp_path: Path, damage: str
) -> None:
    """A merged read of three topics, one damaged, yields records in gseq order with no gap
    from the first, all before the damaged one, then raises naming it."""
    data_dir = tmp_path / "data"
    topics = ("md.trade.crypto.A", "md.trade.crypto.B", TRADE_TOPIC)
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(3 * COUNT, topics=topics))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "data"
        path, pos = damaged_copy(data_dir, copy, 1200, damage, sealed=False)
        got, error = read_until_error(LogReader(copy).read(), "gseq")
    damaged_gseq = 3 * 1200 + 3  # round robin: offset k of the third topic has gseq 3k + 3
    assert got == list(range(1, len(got) + 1))
    assert 0 < len(got) < damaged_gseq
    assert error is not None
    assert (error.path, error.position, error.offset) == (str(path), pos, 1200)


@pytest.mark.parametrize(
    ("cut", "read"),
    [pytest.param(1, 700, id="newline-only"), pytest.param(40, 699, id="mid-record")],
)
def test_a_torn_last_line_of_an_open_day(tmp_path: Path, cut: int, read: int) -> None:
    """An open day whose last record lost only its newline still yields that record (it
    parses and its CRC matches), as before the block path; one whose last line is cut
    mid-record yields the records before it. Neither raises."""
    data_dir = tmp_path / "data"
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(700))
    path = topic_dir(data_dir, TRADE_TOPIC) / "2024-01-01.jsonl"
    path.write_bytes(path.read_bytes()[:-cut])
    assert [r.offset for r in LogReader(data_dir).read_topic(TRADE_TOPIC)] == list(range(read))


def test_records_past_the_head_are_never_read(tmp_path: Path) -> None:
    """Records written without fsync (past the published head) stay out of another
    reader's reads, even in the middle of a block."""
    data_dir = tmp_path / "data"
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(1000))
        lg.append(envelopes(10, start_seq=1001, start_ns=10**19 // 5), durable=False)
        reader = LogReader(data_dir)
        assert [r.gseq for r in reader.read()] == list(range(1, 1001))
        assert [r.offset for r in reader.read_topic(TRADE_TOPIC, 995)] == list(range(995, 1000))


def _record(gseq: int, ts_event: int, topic: str) -> Record:
    env = envelope(gseq, topic=topic, ts_event=ts_event)
    return Record(
        **{f: getattr(env, f) for f in env.__struct_fields__}, offset=0, gseq=gseq, ts_log=0
    )


def _streams(draws: list[list[tuple[int, int]]]) -> list[list[Record]]:
    """Per-topic record lists from drawn (ts_event, gseq) pairs: gseqs unique across
    topics, each topic's gseqs increasing and its times non-decreasing."""
    seen: set[int] = set()
    streams = []
    for i, draw in enumerate(draws):
        gseqs = sorted({g for _t, g in draw} - seen)
        seen.update(gseqs)
        times = sorted(t for t, _g in draw)[: len(gseqs)]
        streams.append([_record(g, t, f"t.{i}") for t, g in zip(times, gseqs, strict=True)])
    return streams


STREAMS = st.lists(
    st.lists(st.tuples(st.integers(0, 40), st.integers(1, 3000)), max_size=300), max_size=6
)


@settings(max_examples=80, deadline=None)
@given(draws=STREAMS, batch=st.integers(1, 9))
def test_merges_equal_a_sort_whatever_the_batches(
    draws: list[list[tuple[int, int]]], batch: int
) -> None:
    """merge_by_gseq and merge_by_time equal their inputs sorted by gseq and by
    (ts_event, gseq), with the streams read in batches of any size (rounds that empty
    one batch while others give part of theirs, runs of one topic, interleaved topics)."""
    streams = _streams(draws)
    records = [r for stream in streams for r in stream]
    by_gseq = list(merge_by_gseq([iter(x) for x in streams], read_ahead=batch))
    by_time = list(merge_by_time([iter(x) for x in streams], read_ahead=batch))
    assert [r.gseq for r in by_gseq] == sorted(r.gseq for r in records)
    assert [(r.ts_event, r.gseq) for r in by_time] == sorted((r.ts_event, r.gseq) for r in records)


@settings(max_examples=80, deadline=None)
@example(draws=[[(0, 1), (0, 3)], [(0, 2), (0, 3)]], batch=9)  # IndexError before
@given(draws=STREAMS, batch=st.integers(1, 9))
def test_merges_yield_every_record_of_equal_keys(
    draws: list[list[tuple[int, int]]], batch: int
) -> None:
    """Streams that share gseqs (which the docstring rules out for a log, but a caller
    can pass) are merged into every record, keys in order: a batch that ends at the
    round's end in another stream than the one emptied no longer fails (IndexError)."""
    streams = [
        [_record(g, T0 + g, f"t.{i}") for g in sorted(g for _t, g in draw)]
        for i, draw in enumerate(draws)
    ]
    records = [r for stream in streams for r in stream]
    by_gseq = list(merge_by_gseq([iter(x) for x in streams], read_ahead=batch))
    by_time = list(merge_by_time([iter(x) for x in streams], read_ahead=batch))
    assert sorted((r.topic, r.gseq) for r in by_gseq) == sorted((r.topic, r.gseq) for r in records)
    assert [r.gseq for r in by_gseq] == sorted(r.gseq for r in records)
    assert sorted((r.topic, r.gseq) for r in by_time) == sorted((r.topic, r.gseq) for r in records)
    assert [r.gseq for r in by_time] == sorted(r.gseq for r in records)


class _Blocked(Exception):
    """Raised by a stream asked for a record it does not have yet (a live iterator
    would wait there)."""


def _live(gseqs: list[int], topic: str) -> Iterator[Record]:
    for g in gseqs:
        yield _record(g, T0 + g, topic)
    raise _Blocked(topic)


def test_merges_reading_one_record_ahead_are_lazy() -> None:
    """With read_ahead=1 a merge takes from each stream only the records it yields and
    one more, as heapq.merge does: a stream that has no more records yet (a live one)
    does not hold back the records already available. The default reads ahead a batch,
    so it asks that stream for more at once."""
    for merge in (merge_by_gseq, merge_by_time):
        lazy = merge([_live([1, 3, 5], "a"), _live([2, 4, 6, 8], "b")], read_ahead=1)
        assert [r.gseq for r in islice(lazy, 5)] == [1, 2, 3, 4, 5]
        eager = merge([_live([1, 3, 5], "a"), _live([2, 4, 6, 8], "b")])
        with pytest.raises(_Blocked):
            next(eager)
        with pytest.raises(ValueError, match="read_ahead"):
            merge([iter([])], read_ahead=0)


def test_merged_reads_in_one_line_blocks_equal_the_default(tmp_path: Path) -> None:
    """Merged reads (by gseq, from a time, in time order) give the same records when every
    topic decodes one line at a time (the smallest blocks) as with the default blocks."""
    data_dir = tmp_path / "data"
    topics = ("md.trade.crypto.A", "md.trade.crypto.A", "md.trade.crypto.B", TRADE_TOPIC)
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(2000, topics=topics, step_ns=NS_PER_DAY // 700))
        lg.append(envelopes(300, start_seq=2001, start_ns=T0 + 3 * NS_PER_DAY))  # a run

    def reads(reader: LogReader) -> list[list[tuple[str, int, int]]]:
        return [
            [(r.topic, r.offset, r.gseq) for r in records]
            for records in (
                reader.read(),
                reader.read(["md.trade.crypto.A", TRADE_TOPIC], 700, 2100),
                reader.read_from_time(None, T0 + NS_PER_DAY),
                reader.read_in_time_order(None, T0 + NS_PER_DAY // 3, T0 + 3 * NS_PER_DAY + 9),
            )
        ]

    default = reads(LogReader(data_dir))
    assert [g for _t, _o, g in default[0]] == list(range(1, 2301))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reader_module, "MERGE_DECODE_BYTES", 1)
        assert reads(LogReader(data_dir)) == default
