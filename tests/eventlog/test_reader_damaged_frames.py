"""Tests of reads over sealed days whose zstd frames are damaged (tickertape.eventlog.reader):
a frame that does not decompress stops a read as it did when records were read one at a
time, and a sealed day without its ``.idx`` is never skipped because of one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import zstandard

from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog import reader as reader_module
from tickertape.eventlog.codec import CodecError, decode_line
from tickertape.eventlog.index import INDEX_EVERY, load_index
from tickertape.eventlog.layout import Segment, list_segments
from tickertape.eventlog.sealing import seal_segment
from tickertape.eventlog.segment import open_lines, scan_segment

from .conftest import FixedClock
from .envelopes import NS_PER_DAY, T0, TRADE_TOPIC, envelopes, topic_dir
from .test_reader_blocks import read_until_error

COUNT = 3000  # three frames: offsets 0-1023, 1024-2047, 2048-2999

Outcome = tuple[list[int], tuple[str, int, int | None, str] | None]


def sealed_namespace(data_dir: Path, topics: tuple[str, ...] = (TRADE_TOPIC,)) -> None:
    """COUNT records per topic (round robin) in one day, sealed by the log's own sealing."""
    with EventLog.open(data_dir, now_ns=FixedClock()) as lg:
        lg.append(envelopes(COUNT * len(topics), topics=topics))
    for topic in topics:
        seal_segment(list_segments(topic_dir(data_dir, topic), topic)[0])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A namespace of one topic whose one day is sealed in three frames."""
    data_dir = tmp_path_factory.mktemp("sealed")
    sealed_namespace(data_dir)
    return data_dir


def sealed_file(data_dir: Path, topic: str = TRADE_TOPIC) -> Segment:
    return list_segments(topic_dir(data_dir, topic), topic)[0]


def frame_bounds(segment: Segment) -> list[tuple[int, int]]:
    """(start, end) of each zstd frame in the compressed file, from the sealed .idx."""
    index = load_index(segment.index_path)
    assert index is not None
    assert index.sealed
    starts = [e.file_pos for e in index.entries]
    return list(zip(starts, [*starts[1:], index.data_size], strict=True))


def stream_lines(segment: Segment, file_pos: int) -> tuple[list[bytes], str | None]:
    """The lines a buffered zstd stream from ``file_pos`` gives (as the readers open
    it), and the zstd error that ends it, if any."""
    lines: list[bytes] = []
    try:
        with open_lines(segment, file_pos, buffer_size=reader_module._MAX_BUFFER) as f:
            lines.extend(f)
    except zstandard.ZstdError as exc:
        return lines, f"zstd frame: {exc}"
    return lines, None


def damage_frame(segment: Segment, frame: int, where: str) -> None:
    """Damage one byte of a frame so that zstd refuses it: its magic number ("header"),
    or a byte of its compressed blocks ("data", the first byte from the frame's middle
    on whose flip zstd detects while every line the stream gives before is intact)."""
    start, end = frame_bounds(segment)[frame]
    original = segment.path.read_bytes()
    candidates = [start + 2] if where == "header" else range((start + end) // 2, end)
    for pos in candidates:
        data = bytearray(original)
        data[pos] ^= 0xFF
        try:
            zstandard.ZstdDecompressor().decompressobj().decompress(bytes(data[start:end]))
        except zstandard.ZstdError:
            pass
        else:
            continue  # decoded to something, or undetected: not the damage wanted here
        segment.path.write_bytes(bytes(data))
        lines, error = stream_lines(segment, 0)
        try:
            for line in lines:
                decode_line(line)
        except CodecError:
            continue
        assert error is not None
        return
    raise AssertionError(f"no byte of frame {frame} ({where}) makes zstd fail")


def damaged_day_then_a_later_one(data_dir: Path) -> Segment:
    """COUNT records on day one (sealed, its last frame damaged, its .idx gone), then
    500 on day two (open); returns the damaged day's file."""
    with EventLog.open(data_dir, now_ns=FixedClock()) as lg:
        lg.append(envelopes(COUNT))
        lg.append(envelopes(500, start_seq=COUNT + 1, start_ns=T0 + NS_PER_DAY))
    seal_segment(sealed_file(data_dir))
    segment = sealed_file(data_dir)
    damage_frame(segment, 2, "header")
    segment.index_path.unlink()
    return segment


def record_at_a_time(segment: Segment, start: int, to: int | None) -> Outcome:
    """What read_topic(start, to) returned when it read one record at a time (commit
    bde7cff): it opens the frame holding ``start`` and goes through the stream's lines,
    yielding those within the bounds; it stops at the first line past ``to`` or raises
    the stream's zstd error (file, the frame it started from, no offset)."""
    frame = start // INDEX_EVERY
    file_pos = frame_bounds(segment)[frame][0]
    lines, error = stream_lines(segment, file_pos)
    got: list[int] = []
    for i in range(len(lines)):
        offset = frame * INDEX_EVERY + i
        if to is not None and offset > to:
            return got, None
        if offset >= start:
            got.append(offset)
    if error is None:
        return got, None
    return got, (str(segment.path), file_pos, None, error)


def block_reader(data_dir: Path, start: int, to: int | None) -> Outcome:
    got, error = read_until_error(LogReader(data_dir).read_topic(TRADE_TOPIC, start, to))
    if error is None:
        return got, None
    return got, (error.path, error.position, error.offset, error.reason)


READS = [(0, None), (1000, 1010), (1500, None), (2000, 2040), (2040, 2047), (2100, 2200)]


@pytest.mark.parametrize("where", ["header", "data"])
@pytest.mark.parametrize("frame", [1, 2])
@pytest.mark.parametrize(("start", "to"), READS)
def test_a_read_over_a_damaged_frame_yields_what_the_record_at_a_time_reader_did(
    pristine: Path, tmp_path: Path, where: str, frame: int, start: int, to: int | None
) -> None:
    """read_topic over a sealed day with a damaged frame yields the records the
    record-at-a-time reader did (those its stream gave before the zstd error, within the
    bounds), then the same error; a read that ends before the damage reaches it ends
    without error, even when the block the reader decodes reaches past the damage."""
    data_dir = tmp_path / "data"
    shutil.copytree(pristine, data_dir)
    segment = sealed_file(data_dir)
    damage_frame(segment, frame, where)
    assert block_reader(data_dir, start, to) == record_at_a_time(segment, start, to)


@pytest.mark.parametrize("where", ["header", "data"])
def test_a_bounded_read_before_a_damaged_frame_ends_without_error(
    pristine: Path, tmp_path: Path, where: str
) -> None:
    """With the third frame (offsets 2048 on) damaged, read_topic(1000, 1010) yields
    offsets 1000 to 1010 and no error, and a whole read yields every record the stream
    gives before the damage (all but the few decoded in the buffer the error took)."""
    data_dir = tmp_path / "data"
    shutil.copytree(pristine, data_dir)
    segment = sealed_file(data_dir)
    damage_frame(segment, 2, where)
    assert block_reader(data_dir, 1000, 1010) == (list(range(1000, 1011)), None)
    got, error = block_reader(data_dir, 0, None)
    lines, _zstd = stream_lines(segment, 0)
    assert got == list(range(len(lines)))
    assert INDEX_EVERY < len(got) < COUNT
    assert error is not None
    assert error[:3] == (str(segment.path), 0, None)
    assert error[3].startswith("zstd frame: ")


def test_a_merged_read_over_a_damaged_frame_yields_a_gseq_prefix_then_names_it(
    tmp_path: Path,
) -> None:
    """A merged read of two sealed topics, one with a damaged frame, yields every record
    in gseq order up to the last one its stream gives before the damage, then raises
    naming the damaged file."""
    data_dir = tmp_path / "data"
    topics = ("md.trade.crypto.A", TRADE_TOPIC)
    sealed_namespace(data_dir, topics)
    segment = sealed_file(data_dir)
    damage_frame(segment, 1, "data")
    lines, _zstd = stream_lines(segment, 0)
    last_gseq = decode_line(lines[-1]).gseq
    got, error = read_until_error(LogReader(data_dir).read(), "gseq")
    assert got == list(range(1, last_gseq + 1))
    assert error is not None
    assert (error.path, error.offset) == (str(segment.path), None)
    assert error.reason.startswith("zstd frame: ")


# -------------------------------------------------- a sealed day without its .idx


def test_a_damaged_frame_without_the_idx_is_read_up_to_the_damage(
    pristine: Path, tmp_path: Path
) -> None:
    """Without its .idx, a sealed day with a damaged second frame is read as with it:
    the records before the damage, then CorruptRecordError naming the file (the index
    rebuilt from the file keeps the frames before the damage instead of none)."""
    data_dir = tmp_path / "data"
    shutil.copytree(pristine, data_dir)
    segment = sealed_file(data_dir)
    damage_frame(segment, 1, "header")
    with_idx = block_reader(data_dir, 0, None)
    segment.index_path.unlink()
    without_idx = block_reader(data_dir, 0, None)
    assert without_idx == with_idx
    got, error = without_idx
    assert 0 < len(got) <= INDEX_EVERY
    assert got == list(range(len(got)))
    assert error is not None
    assert error[0] == str(segment.path)
    summary = LogReader(data_dir).topic_summary(TRADE_TOPIC)
    assert (summary.count, summary.last_offset) == (INDEX_EVERY, INDEX_EVERY - 1)


def test_a_read_from_past_the_damage_without_the_idx_raises(pristine: Path, tmp_path: Path) -> None:
    """A read that starts past the records indexed before a damaged frame (the day's
    .idx gone) reads the day's last indexed frame on into the damage and raises, as it
    does with the .idx: the day is not skipped for holding no record it knows of."""
    data_dir = tmp_path / "data"
    shutil.copytree(pristine, data_dir)
    segment = sealed_file(data_dir)
    damage_frame(segment, 2, "header")
    segment.index_path.unlink()
    for start in (2048, 2500):
        got, error = block_reader(data_dir, start, None)
        assert got == []
        assert error is not None
        assert error[0] == str(segment.path)
    got, error = read_until_error(LogReader(data_dir).read(None, 2600), "gseq")
    assert got == []
    assert error is not None
    assert error.path == str(segment.path)


def test_an_index_saved_from_a_damaged_day_is_scanned_again(pristine: Path, tmp_path: Path) -> None:
    """The index built from a sealed day with a damaged frame says so (its data_size is
    the damaged frame's position): the .idx the writer saves from it when it opens the
    log is not taken for the day's, so a read from past the damage still raises."""
    data_dir = tmp_path / "data"
    shutil.copytree(pristine, data_dir)
    segment = sealed_file(data_dir)
    damage_frame(segment, 2, "header")
    segment.index_path.unlink()
    scan = scan_segment(segment, segment.path.stat().st_size)
    assert scan.damaged_tail
    assert scan.index.count == 2 * INDEX_EVERY
    assert scan.index.data_size == frame_bounds(sealed_file(pristine))[2][0]
    with EventLog.open(data_dir):
        pass  # the writer indexes the sealed day again and saves it
    saved = load_index(segment.index_path)
    assert saved is not None
    assert saved.data_size != segment.path.stat().st_size
    got, error = block_reader(data_dir, 2500, None)
    assert got == []
    assert error is not None
    assert error[0] == str(segment.path)


def test_a_damaged_day_does_not_stop_reads_that_start_in_a_later_day(tmp_path: Path) -> None:
    """A read that starts in a later day of the topic does not read an earlier damaged
    day without .idx (every record of it comes before the read's start), as with the
    .idx; a read that starts between its indexed records and the later day does."""
    data_dir = tmp_path / "data"
    segment = damaged_day_then_a_later_one(data_dir)
    assert block_reader(data_dir, COUNT + 10, None) == (list(range(COUNT + 10, COUNT + 500)), None)
    by_gseq = [r.gseq for r in LogReader(data_dir).read(None, COUNT + 1)]
    assert by_gseq == list(range(COUNT + 1, COUNT + 501))
    by_time = [r.offset for r in LogReader(data_dir).read_from_time(None, T0 + NS_PER_DAY)]
    assert by_time == list(range(COUNT, COUNT + 500))
    got, error = block_reader(data_dir, 2500, None)
    assert got == []
    assert error is not None
    assert error[0] == str(segment.path)


def test_a_damaged_last_line_of_an_open_day_is_reached_from_past_it(tmp_path: Path) -> None:
    """An open day without .idx whose last line is damaged (terminated, CRC wrong) is not
    skipped by a read that starts at that line's offset: the index built from the file
    leaves the line out, so the read goes through the day's last indexed stretch and
    raises on it; a read from the offset before it yields that record first."""
    data_dir = tmp_path / "data"
    with EventLog.open(data_dir, now_ns=FixedClock()) as lg:
        lg.append(envelopes(1500))
    path = topic_dir(data_dir, TRADE_TOPIC) / "2024-01-01.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    last = bytearray(lines[-1])
    last[30] ^= 1  # inside the topic name: parses, its CRC fails
    path.write_bytes(b"".join(lines[:-1]) + bytes(last))
    path.with_suffix(".idx").unlink()
    position = len(path.read_bytes()) - len(last)
    got, error = block_reader(data_dir, 1499, None)
    assert (got, error) == ([], (str(path), position, 1499, "checksum mismatch"))
    got, error = block_reader(data_dir, 1498, None)
    assert (got, error) == ([1498], (str(path), position, 1499, "checksum mismatch"))


def test_appends_after_a_newest_sealed_day_damaged_past_its_records_are_refused(
    pristine: Path, tmp_path: Path
) -> None:
    """The topic's newest day is sealed, its last frame damaged and its .idx gone: the
    offsets of the lost records are unknown, so appends to the topic are refused with
    TOPIC_DAMAGED naming the file (they used to be given offsets 2048 on, already held
    by the lost records); other topics append with gseqs past the durable head (3000),
    not past the last readable record (2048), and nothing stored changes."""
    data_dir = tmp_path / "data"
    shutil.copytree(pristine, data_dir)
    segment = sealed_file(data_dir)
    damage_frame(segment, 2, "header")
    segment.index_path.unlink()
    damaged = segment.path.read_bytes()
    later = T0 + NS_PER_DAY
    with EventLog.open(data_dir, now_ns=FixedClock()) as lg:
        (refused,) = lg.append(envelopes(1, start_seq=COUNT + 1, start_ns=later))
        other = lg.append(
            envelopes(2, start_seq=COUNT + 2, start_ns=later, topics=("md.trade.crypto.ETHUSDT",))
        )
    assert refused.error == "TOPIC_DAMAGED"
    assert refused.offset is None
    assert refused.message is not None
    assert str(segment.path) in refused.message
    assert "after offset 2047" in refused.message
    assert [(r.error, r.offset, r.gseq) for r in other] == [
        (None, 0, COUNT + 1),
        (None, 1, COUNT + 2),
    ]
    assert segment.path.read_bytes() == damaged


def test_a_later_day_after_a_damaged_sealed_day_gives_the_next_offset(tmp_path: Path) -> None:
    """A damaged sealed day followed by a later open day of the same topic: the later
    day's records say where offsets continue, so appends go on from there."""
    data_dir = tmp_path / "data"
    segment = damaged_day_then_a_later_one(data_dir)
    damaged = segment.path.read_bytes()
    with EventLog.open(data_dir, now_ns=FixedClock()) as lg:
        (stored,) = lg.append(envelopes(1, start_seq=COUNT + 501, start_ns=T0 + 2 * NS_PER_DAY))
    assert (stored.error, stored.offset, stored.gseq) == (None, COUNT + 500, COUNT + 501)
    assert segment.path.read_bytes() == damaged
