"""Reading day files, open (``.jsonl``) and sealed (``.jsonl.zst``), line by line.

Lines are yielded with their byte position in the uncompressed stream, so errors can
name the exact place. Readers stream and reuse buffers (PERF_NOTES: page faults are
expensive here): an open file is iterated with Python's buffered line iterator, a
sealed one through zstd's streaming decompressor.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import zstandard

from tickertape.errors import CorruptRecordError
from tickertape.eventlog.codec import CodecError, decode_line
from tickertape.eventlog.index import SegmentIndex
from tickertape.eventlog.layout import Segment

_READ_SIZE = 1 << 17


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


def iter_raw_lines(segment: Segment, file_pos: int = 0) -> Iterator[bytes]:
    """Yield the lines of ``segment`` from a file (or frame) position, without positions."""
    if segment.sealed:
        with open(segment.path, "rb") as f:
            f.seek(file_pos)
            reader = zstandard.ZstdDecompressor().stream_reader(
                f, read_size=_READ_SIZE, read_across_frames=True
            )
            try:
                yield from io.BufferedReader(reader, buffer_size=_READ_SIZE)
            except zstandard.ZstdError as exc:
                raise CorruptRecordError(
                    segment.path, file_pos, None, f"zstd frame: {exc}"
                ) from None
    else:
        with open(segment.path, "rb", buffering=_READ_SIZE) as f:
            f.seek(file_pos)
            yield from f


def frame_positions(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(file_pos, decompressed_frame)`` for each zstd frame of a sealed file."""
    data = path.read_bytes()
    dctx = zstandard.ZstdDecompressor()
    pos = 0
    while pos < len(data):
        dobj = dctx.decompressobj()
        try:
            out = dobj.decompress(data[pos:])
        except zstandard.ZstdError as exc:
            raise CorruptRecordError(path, pos, None, f"zstd frame: {exc}") from None
        consumed = len(data) - pos - len(dobj.unused_data)
        if consumed <= 0:
            break
        yield pos, out
        pos += consumed


def build_index(segment: Segment, data_size: int) -> tuple[SegmentIndex, list[tuple[int, str]]]:
    """Scan a day file and return its index and the problems found.

    Every line is checked (CRC, parse); the index covers the valid records. For an open
    file, a final line without newline ends the scan (it is not counted as a problem).

    Returns:
        ``(index, problems)`` where problems are ``(raw_pos, reason)``.
    """
    index = SegmentIndex(sealed=segment.sealed, data_size=data_size)
    problems: list[tuple[int, str]] = []

    def add(record_pos: int, file_pos: int, line: bytes, entry: bool | None) -> None:
        try:
            rec = decode_line(line)
        except CodecError as exc:
            problems.append((record_pos, exc.reason))
            return
        index.add(
            rec.offset, rec.gseq, rec.ts_event, rec.source, rec.source_seq,
            file_pos, record_pos, entry=entry,
        )  # fmt: skip

    if segment.sealed:
        raw = 0
        try:
            frames = list(frame_positions(segment.path))
        except CorruptRecordError as exc:
            problems.append((exc.position, exc.reason))
            frames = []
        for file_pos, frame in frames:
            first = True
            start = 0
            while start < len(frame):
                end = frame.find(b"\n", start)
                end = len(frame) if end < 0 else end + 1
                add(raw + start, file_pos, frame[start:end], first)
                first = False
                start = end
            raw += len(frame)
        index.raw_size = raw
    else:
        end_pos = 0
        for pos, line in iter_lines(segment):
            if not line.endswith(b"\n"):
                break
            add(pos, pos, line, None)
            end_pos = pos + len(line)
        index.raw_size = end_pos
    return index, problems
