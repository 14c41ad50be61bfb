"""Tests of the reader's block path (tickertape.eventlog.reader): records are read,
decoded and checked a block of lines at a time, and merged a batch at a time; faults,
bounds and merges must come out as they would one record at a time."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tickertape.errors import CorruptRecordError
from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog.reader import merge_by_time
from tickertape.schemas.envelope import Record

from .envelopes import T0, TRADE_TOPIC, envelope, envelopes, topic_dir
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


@settings(max_examples=40, deadline=None)
@example(damaged=1500, start=0, length=1498, damage="flip", sealed=False)  # to: 2 before
@example(damaged=1500, start=0, length=1499, damage="flip", sealed=False)  # to: just before
@example(damaged=1500, start=1400, length=97, damage="garbage", sealed=True)
@example(damaged=1500, start=1490, length=8, damage="duplicate", sealed=False)
@example(damaged=1500, start=1500, length=None, damage="flip", sealed=True)  # from: the damage
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


def test_an_unterminated_last_line_that_checks_is_read(tmp_path: Path) -> None:
    """An open day whose last record lost only its newline still yields that record (it
    parses and its CRC matches), as before the block path."""
    data_dir = tmp_path / "data"
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(700))
    path = topic_dir(data_dir, TRADE_TOPIC) / "2024-01-01.jsonl"
    path.write_bytes(path.read_bytes()[:-1])
    assert [r.offset for r in LogReader(data_dir).read_topic(TRADE_TOPIC)] == list(range(700))


def test_a_torn_last_line_ends_an_open_day_quietly(tmp_path: Path) -> None:
    """An open day whose last line is cut mid-record yields the records before it, no error."""
    data_dir = tmp_path / "data"
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(700))
    path = topic_dir(data_dir, TRADE_TOPIC) / "2024-01-01.jsonl"
    path.write_bytes(path.read_bytes()[:-40])
    assert [r.offset for r in LogReader(data_dir).read_topic(TRADE_TOPIC)] == list(range(699))


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


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 40), st.integers(1, 5000)), max_size=600),
        max_size=5,
    )
)
def test_merge_by_time_equals_sorted_by_time_then_gseq(
    streams: list[list[tuple[int, int]]],
) -> None:
    """merge_by_time of streams each in (ts_event, gseq) order, with times shared across
    streams, equals all their records sorted by (ts_event, gseq)."""
    seen: set[int] = set()
    inputs = []
    for i, stream in enumerate(streams):
        unique = sorted((ts, g) for ts, g in stream if g not in seen and not seen.add(g))
        # each stream: ts_event non-decreasing, gseq increasing
        gseqs = sorted(g for _ts, g in unique)
        times = sorted(ts for ts, _g in unique)
        inputs.append([_record(g, t, f"t.{i}") for t, g in zip(times, gseqs, strict=True)])
    merged = list(merge_by_time([iter(x) for x in inputs]))
    want = sorted((r for x in inputs for r in x), key=lambda r: (r.ts_event, r.gseq))
    assert [(r.ts_event, r.gseq) for r in merged] == [(r.ts_event, r.gseq) for r in want]
