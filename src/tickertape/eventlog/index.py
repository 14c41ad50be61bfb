"""The sparse index of a day file: a cache, rebuilt when missing or stale.

An index holds one entry every :data:`INDEX_EVERY` records (and at the first record):
``(offset, gseq, ts_event, file_pos, raw_pos)``. For an open ``.jsonl`` file both
positions are the byte position of the record's line. For a sealed ``.jsonl.zst`` file
each entry starts an independent zstd frame: ``file_pos`` is the frame's position in
the compressed file, ``raw_pos`` the line's position in the uncompressed stream.

It also summarizes the file (record count, first/last offset, gseq and ts_event, and
the highest ``source_seq`` per source), so that opening a log does not have to read
sealed days. Stored as msgpack with a CRC-32 trailer; ``data_size`` (the data file's
size when the index was written) tells whether it is stale.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import msgspec

INDEX_EVERY = 1024
"""Records between index entries; also the number of records per sealed zstd frame."""

INDEX_VERSION = 1


class IndexEntry(msgspec.Struct, array_like=True, frozen=True):
    """One sparse index entry (positions in bytes)."""

    offset: int
    gseq: int
    ts_event: int
    file_pos: int
    raw_pos: int


class SegmentIndex(msgspec.Struct, kw_only=True):
    """The index and summary of one day file."""

    version: int = INDEX_VERSION
    sealed: bool
    data_size: int
    count: int = 0
    first_offset: int = -1
    last_offset: int = -1
    first_gseq: int = 0
    last_gseq: int = 0
    first_ts: int = 0
    last_ts: int = 0
    raw_size: int = 0
    sources: dict[str, int] = msgspec.field(default_factory=dict)
    entries: list[IndexEntry] = msgspec.field(default_factory=list)

    def add(
        self,
        offset: int,
        gseq: int,
        ts_event: int,
        source: str,
        source_seq: int,
        file_pos: int,
        raw_pos: int,
        *,
        entry: bool | None = None,
    ) -> None:
        """Count the next record of the file in the summary, indexing it when due.

        Args:
            file_pos, raw_pos: the record's positions (bytes; see the module docstring).
            entry: index this record (True: a sealed file's frame start), or not (False);
                None indexes every :data:`INDEX_EVERY`-th record (open files).
        """
        if entry is None:
            entry = self.count % INDEX_EVERY == 0
        if entry:
            self.entries.append(IndexEntry(offset, gseq, ts_event, file_pos, raw_pos))
        if self.count == 0:
            self.first_offset, self.first_gseq, self.first_ts = offset, gseq, ts_event
        self.count += 1
        self.last_offset, self.last_gseq, self.last_ts = offset, gseq, ts_event
        if self.sources.get(source, 0) < source_seq:
            self.sources[source] = source_seq

    def absorb(
        self,
        count: int,
        entries: list[tuple[int, int, int, int]],
        sources: dict[str, int],
        base_pos: int,
    ) -> None:
        """Count ``count`` more records appended at ``base_pos`` at once (the writer's
        groups). The caller sets the ``last_*`` fields.

        Args:
            entries: ``(offset, gseq, ts_event, position)`` of the records due for an
                entry (every :data:`INDEX_EVERY`-th record of the file), positions
                relative to ``base_pos``.
            sources: the highest ``source_seq`` per source among the records.
        """
        if not count:
            return
        if self.count == 0 and entries:
            self.first_offset, self.first_gseq, self.first_ts = entries[0][:3]
        for offset, gseq, ts_event, pos in entries:
            self.entries.append(IndexEntry(offset, gseq, ts_event, base_pos + pos, base_pos + pos))
        self.count += count
        known = self.sources
        for source, seq in sources.items():
            if known.get(source, 0) < seq:
                known[source] = seq


_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder(SegmentIndex)


def save_index(path: Path, index: SegmentIndex) -> None:
    """Write an index file (temp, rename) without fsync: it is a cache.

    After a crash an index may be missing, empty or stale; its CRC and ``data_size``
    tell, and it is rebuilt from the data file.
    """
    body = _ENC.encode(index)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    os.replace(tmp, path)


def load_index(path: Path) -> SegmentIndex | None:
    """Return the index stored at ``path``, or None when missing, corrupt or of another version."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) < 4:
        return None
    body, trailer = data[:-4], data[-4:]
    if struct.unpack("<I", trailer)[0] != zlib.crc32(body):
        return None
    try:
        index = _DEC.decode(body)
    except msgspec.DecodeError:
        return None
    return index if index.version == INDEX_VERSION else None
