"""Sealed days indexed by a scan, and what compaction says about a damaged day
(tickertape.eventlog.segment.frame_positions, tickertape.eventlog.sealing.compact)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import zstandard

from tickertape.errors import CorruptRecordError
from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog import segment as segment_module
from tickertape.eventlog.index import INDEX_EVERY, load_index
from tickertape.eventlog.layout import list_segments
from tickertape.eventlog.sealing import apply_retention, compact
from tickertape.eventlog.segment import frame_positions, scan_segment

from .envelopes import NS_PER_DAY, T0, TRADE_TOPIC, day_file, envelopes, keys, run_tape, topic_dir


class _CountingObj:
    """A zstd decompression object that counts the compressed bytes given to it."""

    def __init__(self, inner: zstandard.ZstdDecompressionObj, fed: list[int]) -> None:
        self._inner = inner
        self._fed = fed

    def decompress(self, data: bytes) -> bytes:
        self._fed[0] += len(data)
        return self._inner.decompress(data)

    @property
    def eof(self) -> bool:
        return bool(self._inner.eof)

    @property
    def unused_data(self) -> bytes:
        return bytes(self._inner.unused_data)


def counting_zstandard(fed: list[int]) -> types.SimpleNamespace:
    """A stand-in for the ``zstandard`` module that counts what decompression is fed."""

    class Decompressor:
        def __init__(self) -> None:
            self._inner = zstandard.ZstdDecompressor()

        def decompressobj(self) -> _CountingObj:
            return _CountingObj(self._inner.decompressobj(), fed)

    return types.SimpleNamespace(ZstdDecompressor=Decompressor, ZstdError=zstandard.ZstdError)


def sealed_day(data_dir: Path, frames: int) -> Path:
    """One topic-day of ``frames`` full zstd frames, sealed; its file."""
    with EventLog.open(data_dir, check_payloads=False) as lg:
        for start in range(1, frames * INDEX_EVERY + 1, 10_000):
            count = min(10_000, frames * INDEX_EVERY + 1 - start)
            lg.append(
                envelopes(count, start_seq=start, step_ns=10_000, start_ns=T0 + start * 10_000),
                durable=False,
            )
        compact(lg, include_open=True)
    [seg] = list_segments(topic_dir(data_dir, TRADE_TOPIC), TRADE_TOPIC)
    assert seg.sealed
    return seg.path


def test_scanning_a_sealed_day_reads_each_byte_a_bounded_number_of_times(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding the frames of a sealed day gives zstd each compressed byte a few times
    at most (it was given the rest of the file once per frame: quadratic)."""
    path = sealed_day(data_dir, 120)
    size = path.stat().st_size
    fed = [0]
    monkeypatch.setattr(segment_module, "zstandard", counting_zstandard(fed))
    frames = list(frame_positions(path))
    assert len(frames) == 120
    assert fed[0] <= 3 * size, f"{fed[0]:,} bytes fed for a file of {size:,}"


def test_a_scan_finds_the_frames_the_seal_wrote(data_dir: Path) -> None:
    """Rebuilt from a scan, a sealed day's index is the one sealing saved, and reads
    through it return every record."""
    path = sealed_day(data_dir, 5)
    [seg] = list_segments(path.parent, TRADE_TOPIC)
    saved = load_index(seg.index_path)
    assert saved is not None
    scan = scan_segment(seg, path.stat().st_size)
    assert scan.problems == []
    assert not scan.damaged_tail
    assert scan.index.entries == saved.entries
    assert (scan.index.count, scan.index.raw_size, scan.index.data_size) == (
        saved.count,
        saved.raw_size,
        saved.data_size,
    )
    seg.index_path.unlink()
    assert [r.offset for r in LogReader(data_dir).read_topic(TRADE_TOPIC)] == list(
        range(5 * INDEX_EVERY)
    )


def three_days(data_dir: Path) -> None:
    """5 trades a day on days 1-3 (offsets 0-4, 5-9, 10-14)."""
    with EventLog.open(data_dir) as lg:
        for day in range(3):
            lg.append(envelopes(5, start_seq=1 + 5 * day, start_ns=T0 + day * NS_PER_DAY))


def damage_first_record(path: Path) -> None:
    """Flip a bit inside the first record of a day file."""
    data = bytearray(path.read_bytes())
    data[30] ^= 0x01
    path.write_bytes(bytes(data))


def test_compact_names_the_offset_of_a_damaged_first_record(data_dir: Path) -> None:
    """A day whose first record is damaged is not sealed, and the error names that
    record's offset: the day after the previous day's last (it said 0)."""
    three_days(data_dir)
    day2 = day_file(data_dir, TRADE_TOPIC, T0 + NS_PER_DAY)
    damage_first_record(day2)
    with EventLog.open(data_dir) as lg, pytest.raises(CorruptRecordError) as caught:
        compact(lg)
    assert (caught.value.path, caught.value.position, caught.value.offset) == (str(day2), 0, 5)
    assert day2.exists()
    proc = run_tape("compact", data_dir=data_dir)
    assert proc.returncode == 1
    assert b"at byte 0, offset 5: checksum mismatch" in proc.stderr, proc.stderr


def test_compact_names_the_offset_of_a_damaged_first_record_of_the_oldest_day(
    data_dir: Path,
) -> None:
    """With no day before it (retention deleted it), the day's saved index gives the
    offset of its damaged first record."""
    three_days(data_dir)
    with EventLog.open(data_dir) as lg:
        assert len(apply_retention(lg, [("md.>", 0)], T0 + 2 * NS_PER_DAY)) == 2
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(1, start_seq=16, start_ns=T0 + 3 * NS_PER_DAY))
    day3 = day_file(data_dir, TRADE_TOPIC, T0 + 2 * NS_PER_DAY)
    damage_first_record(day3)
    with EventLog.open(data_dir) as lg, pytest.raises(CorruptRecordError) as caught:
        compact(lg)
    assert (caught.value.position, caught.value.offset) == (0, 10)


def test_a_second_compact_after_sealed_days_seals_the_next_day(data_dir: Path) -> None:
    """`compact` run again with sealed days before the open ones seals the day now
    over; the records read as before."""
    three_days(data_dir)
    before = keys(LogReader(data_dir).read())
    with EventLog.open(data_dir) as lg:
        assert len(compact(lg)) == 2
        lg.append(envelopes(1, start_seq=16, start_ns=T0 + 3 * NS_PER_DAY))
        assert len(compact(lg)) == 1
    assert keys(LogReader(data_dir).read()) == [*before, ("md", 16)]
