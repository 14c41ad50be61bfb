"""Reading day files, open (``.jsonl``) and sealed (``.jsonl.zst``), line by line.

Lines are yielded with their byte position in the uncompressed stream, so errors can
name the exact place. Readers stream and reuse buffers (PERF_NOTES: page faults are
expensive here): an open file is iterated with Python's buffered line iterator, a
sealed one through zstd's streaming decompressor.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import zstandard

from tickertape.errors import CorruptRecordError
from tickertape.eventlog.codec import CodecError, decode_line
from tickertape.eventlog.index import SegmentIndex
from tickertape.eventlog.layout import Segment

_READ_SIZE = 1 << 17


class FilePool:
    """Bounds the files open at once for the readers of one merged read.

    A merge over thousands of topics holds one reader per topic; with a pool, each
    reader opens its file only while it refills its buffer, and past ``limit`` open
    files the least recently used is closed (and reopened, by position, when its
    reader needs more bytes). Not thread-safe: a pool belongs to one iteration.

    Args:
        limit: most files open at once (≥ 1).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"FilePool limit must be at least 1, not {limit}")
        self.limit = limit
        self._open: OrderedDict[PooledFile, None] = OrderedDict()

    @property
    def open_files(self) -> int:
        """Files currently open through this pool."""
        return len(self._open)

    def _acquire(self, file: PooledFile) -> int:
        while len(self._open) >= self.limit:
            victim, _ = self._open.popitem(last=False)
            victim._drop_fd()
        fd = os.open(file.path, os.O_RDONLY)
        self._open[file] = None
        return fd

    def _touch(self, file: PooledFile) -> None:
        self._open.move_to_end(file)

    def _forget(self, file: PooledFile) -> None:
        self._open.pop(file, None)


class PooledFile(io.RawIOBase):
    """A read-only file that a :class:`FilePool` may close between reads.

    It keeps its own position and reads with ``pread``, so a closed file is reopened
    where it was. Raises :class:`FileNotFoundError` from a read when the file was
    removed (a day sealed, or deleted by retention) while it was closed.
    """

    def __init__(self, path: Path, pos: int, pool: FilePool) -> None:
        super().__init__()
        self.path = path
        self._pos = pos
        self._pool = pool
        self._fd = -1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._fd < 0:
            self._fd = self._pool._acquire(self)
        else:
            self._pool._touch(self)
        n = os.preadv(self._fd, [buffer], self._pos)
        self._pos += n
        return n

    def _drop_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        if self._fd >= 0:
            self._pool._forget(self)
            self._drop_fd()
        super().close()


def iter_lines(
    segment: Segment, file_pos: int = 0, raw_pos: int = 0
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(raw_pos, line)`` from ``segment`` starting at an index position.

    For an open file a final line without its newline (a write in progress, or a torn
    tail not yet recovered) is yielded as is; callers treat it as the end.
    """
    if segment.sealed:
        with open(segment.path, "rb") as f:
            f.seek(file_pos)
            reader = zstandard.ZstdDecompressor().stream_reader(
                f, read_size=_READ_SIZE, read_across_frames=True
            )
            buffered = io.BufferedReader(reader, buffer_size=_READ_SIZE)
            pos = raw_pos
            try:
                for line in buffered:
                    yield pos, line
                    pos += len(line)
            except zstandard.ZstdError as exc:
                raise CorruptRecordError(segment.path, pos, None, f"zstd frame: {exc}") from None
    else:
        with open(segment.path, "rb", buffering=_READ_SIZE) as f:
            f.seek(file_pos)
            pos = file_pos
            for line in f:
                yield pos, line
                pos += len(line)


@contextlib.contextmanager
def open_lines(
    segment: Segment,
    file_pos: int = 0,
    *,
    pool: FilePool | None = None,
    buffer_size: int = _READ_SIZE,
) -> Iterator[io.BufferedReader]:
    """Open a day file at a file (or frame) position; iterate the result for its lines.

    The lines come straight from a buffered reader (no generator in between: this is
    the readers' hot path). Iterating a sealed file raises
    :class:`zstandard.ZstdError` on a damaged frame.

    Args:
        pool: open the file through this pool (merged reads), else hold it open.
        buffer_size: read-ahead in bytes (smaller when many files are read at once).
    """
    if pool is not None:
        raw: io.RawIOBase = PooledFile(segment.path, file_pos, pool)
    else:
        raw = open(segment.path, "rb", buffering=0)  # noqa: SIM115 (closed below)
        raw.seek(file_pos)
    try:
        if segment.sealed:
            reader = zstandard.ZstdDecompressor().stream_reader(
                cast("IO[bytes]", raw), read_size=buffer_size, read_across_frames=True
            )
            yield io.BufferedReader(reader, buffer_size=buffer_size)
        else:
            yield io.BufferedReader(raw, buffer_size=buffer_size)
    finally:
        raw.close()


def iter_raw_lines(
    segment: Segment,
    file_pos: int = 0,
    *,
    pool: FilePool | None = None,
    buffer_size: int = _READ_SIZE,
) -> Iterator[bytes]:
    """Yield the lines of ``segment`` from a file (or frame) position, without positions.

    Raises:
        CorruptRecordError: a sealed file's frame does not decompress.
    """
    with open_lines(segment, file_pos, pool=pool, buffer_size=buffer_size) as lines:
        try:
            yield from lines
        except zstandard.ZstdError as exc:
            raise CorruptRecordError(segment.path, file_pos, None, f"zstd frame: {exc}") from None


_FIRST_FEED = 1 << 15
"""Bytes of a sealed file given to zstd at first for a frame (then the previous frame's
size): see :func:`frame_positions`."""


def frame_positions(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(file_pos, decompressed_frame)`` for each zstd frame of a sealed file.

    zstd does not say where a frame ends before decoding it, so each frame is fed in
    slices of the file (a view, no copy), the first as long as the previous frame and
    each next one twice as long, until the frame is complete: what zstd copies past
    the frame's end is at most a slice, and the whole scan is linear in the file's
    size. A last frame cut short yields what decompresses of it.

    Raises:
        CorruptRecordError: a frame does not decompress (its position, no offset).
        OSError: the file cannot be read.
    """
    data = path.read_bytes()
    size = len(data)
    view = memoryview(data)
    dctx = zstandard.ZstdDecompressor()
    pos = 0
    feed = _FIRST_FEED
    while pos < size:
        dobj = dctx.decompressobj()
        parts: list[bytes] = []
        fed = pos
        step = feed
        try:
            while fed < size and not dobj.eof:
                piece = view[fed : fed + step]
                parts.append(dobj.decompress(piece))
                fed += len(piece)
                step *= 2
        except zstandard.ZstdError as exc:
            raise CorruptRecordError(path, pos, None, f"zstd frame: {exc}") from None
        end = fed - len(dobj.unused_data) if dobj.eof else size
        if end <= pos:
            break
        yield pos, b"".join(parts)  # one part: that bytes object itself, no copy
        feed = max(end - pos, 1024)
        pos = end


@dataclass(slots=True)
class SegmentScan:
    """What a scan of a day file found (see :func:`scan_segment`)."""

    index: SegmentIndex
    problems: list[tuple[int, str]]
    """``(position, reason)``: the uncompressed byte position of a line that does not
    decode, or the position in the compressed file of a frame that does not
    decompress."""
    damaged_tail: bool
    """Damage after the last record indexed (a line that does not decode, or a frame
    that does not decompress): the file may hold records past the index's last one."""


def build_index(segment: Segment, data_size: int) -> tuple[SegmentIndex, list[tuple[int, str]]]:
    """Scan a day file and return its index and the problems found
    (:func:`scan_segment`'s ``index`` and ``problems``)."""
    scan = scan_segment(segment, data_size)
    return scan.index, scan.problems


def scan_segment(segment: Segment, data_size: int) -> SegmentScan:
    """Scan a day file: its index, the problems found, and whether damage follows the
    last record indexed.

    Every line is checked (CRC, parse, and its offset past the previous record's); the
    index covers the valid records, and the record after a damaged line is no entry
    (a read starting there would not meet the damage). For an open
    file, a final line without newline ends the scan (it is not counted as a problem).
    In a sealed file a frame that does not decompress ends the scan: the index covers
    the records of the frames before it (the frames after it cannot be found), and its
    ``data_size`` is that frame's position, not ``data_size``: saved, it never passes
    for the fresh index of the file, so whoever loads it scans the file again and
    meets the damage.

    Args:
        segment: the day file.
        data_size: the file's size in bytes (compressed, for a sealed file).

    Raises:
        OSError: the file cannot be read (FileNotFoundError: sealed or deleted since
            it was listed).
    """
    index = SegmentIndex(sealed=segment.sealed, data_size=data_size)
    problems: list[tuple[int, str]] = []
    damaged_tail = False

    def add(record_pos: int, file_pos: int, line: bytes, entry: bool | None) -> None:
        nonlocal damaged_tail
        try:
            rec = decode_line(line)
        except CodecError as exc:
            problems.append((record_pos, exc.reason))
            damaged_tail = True
            return
        if index.count and rec.offset <= index.last_offset:
            # A valid line repeated or out of order: indexed, an entry could point a
            # read at it or just past it, and the read would start beyond the damage.
            problems.append(
                (record_pos, f"offset {rec.offset} where {index.last_offset + 1} was expected")
            )
            damaged_tail = True
            return
        if damaged_tail and index.count:
            entry = False  # a read must not start right after damage: it would miss it
        damaged_tail = False
        index.add(
            rec.offset, rec.gseq, rec.ts_event, rec.source, rec.source_seq,
            file_pos, record_pos, entry=entry,
        )  # fmt: skip

    if segment.sealed:
        raw = 0
        try:
            for file_pos, frame in frame_positions(segment.path):
                first = True
                start = 0
                while start < len(frame):
                    end = frame.find(b"\n", start)
                    end = len(frame) if end < 0 else end + 1
                    add(raw + start, file_pos, frame[start:end], first)
                    first = False
                    start = end
                raw += len(frame)
        except CorruptRecordError as exc:
            # A damaged frame: the frames after it cannot be found without it.
            problems.append((exc.position, exc.reason))
            index.data_size = exc.position
            damaged_tail = True
        index.raw_size = raw
    else:
        end_pos = 0
        for pos, line in iter_lines(segment):
            if not line.endswith(b"\n"):
                break
            add(pos, pos, line, None)
            end_pos = pos + len(line)
        index.raw_size = end_pos
    return SegmentScan(index, problems, damaged_tail)
