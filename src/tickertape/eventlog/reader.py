"""Reading a namespace: by topic and offset, by gseq, by time, merged, and following.

A :class:`LogReader` takes no lock and may run in any process while one writer
appends. It never returns a record past the committed head (the ``HEAD`` file the
writer updates after each fsync), so a reader never sees a record that a crash could
still take back. Every record is checked (CRC, and contiguous offsets within a file);
a bad one stops the read with :class:`~tickertape.errors.CorruptRecordError` naming
file, byte position and offset: corruption is never skipped.

Ranges: ``to_offset`` and ``to_gseq`` are inclusive; ``to_ns`` is exclusive (a
``--to 2024-02-01`` date means "before that day").
"""

from __future__ import annotations

import heapq
import os
import struct
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from tickertape.errors import CorruptRecordError
from tickertape.eventlog.codec import CodecError, decode_line
from tickertape.eventlog.index import IndexEntry, SegmentIndex, load_index
from tickertape.eventlog.layout import Segment, list_segments, list_topics, namespace_dir
from tickertape.eventlog.segment import build_index, iter_lines
from tickertape.schemas.envelope import Record
from tickertape.topics import matches_any

_HEAD = struct.Struct("<q")


class LogReader:
    """Read-only access to one namespace of the log (no lock; safe beside a writer).

    Args:
        data_dir: the data directory.
        namespace: the namespace to read.
    """

    def __init__(self, data_dir: str | Path, namespace: str = "main") -> None:
        self.data_dir = Path(data_dir)
        self.namespace = namespace
        self.dir = namespace_dir(data_dir, namespace)
        self._indexes: dict[Path, tuple[int, float, SegmentIndex]] = {}

    # ------------------------------------------------------------ discovery

    def topics(self, patterns: Sequence[str] | None = None) -> list[str]:
        """Topics of the namespace, sorted; only those matching ``patterns`` when given."""
        names = list_topics(self.dir)
        if patterns:
            names = [n for n in names if matches_any(patterns, n)]
        return names

    def head_gseq(self) -> int:
        """The committed head gseq (0 when the namespace is empty or absent)."""
        try:
            with open(self.dir / "HEAD", "rb") as f:
                data = f.read(8)
        except FileNotFoundError:
            data = b""
        if len(data) == 8:
            return int(_HEAD.unpack(data)[0])
        return max((self.topic_summary(t).last_gseq for t in self.topics()), default=0)

    def segments(self, topic: str) -> list[Segment]:
        """The day files of ``topic``, oldest first."""
        return list_segments(self.dir / topic, topic)

    def segment_index(self, segment: Segment) -> SegmentIndex:
        """The sparse index of a day file: from its ``.idx`` when fresh, else rebuilt by a scan."""
        try:
            st = segment.path.stat()
        except FileNotFoundError:
            return SegmentIndex(sealed=segment.sealed, data_size=0)
        cached = self._indexes.get(segment.path)
        if cached is not None and cached[0] == st.st_size and cached[1] == st.st_mtime:
            return cached[2]
        index = load_index(segment.index_path)
        if index is None or index.data_size != st.st_size or index.sealed != segment.sealed:
            index, _problems = build_index(segment, st.st_size)
        self._indexes[segment.path] = (st.st_size, st.st_mtime, index)
        return index

    def topic_summary(self, topic: str) -> SegmentIndex:
        """Counts and first/last offset, gseq and ts_event of a whole topic."""
        total = SegmentIndex(sealed=False, data_size=0)
        for seg in self.segments(topic):
            idx = self.segment_index(seg)
            if not idx.count:
                continue
            if total.count == 0:
                total.first_offset, total.first_gseq, total.first_ts = (
                    idx.first_offset,
                    idx.first_gseq,
                    idx.first_ts,
                )
            total.count += idx.count
            total.data_size += idx.data_size
            total.raw_size += idx.raw_size
            total.last_offset, total.last_gseq, total.last_ts = (
                idx.last_offset,
                idx.last_gseq,
                idx.last_ts,
            )
        return total

    # -------------------------------------------------------------- reading

    def _iter_segment(
        self, seg: Segment, entry: IndexEntry | None, max_gseq: int
    ) -> Iterator[Record]:
        expected = entry.offset if entry is not None else None
        file_pos = entry.file_pos if entry is not None else 0
        raw_pos = entry.raw_pos if entry is not None else 0
        for pos, line in iter_lines(seg, file_pos, raw_pos):
            if not seg.sealed and not line.endswith(b"\n"):
                return  # a write in progress (or a torn tail awaiting recovery)
            try:
                rec = decode_line(line)
            except CodecError as exc:
                raise CorruptRecordError(seg.path, pos, expected, exc.reason) from None
            if expected is not None and rec.offset != expected:
                raise CorruptRecordError(
                    seg.path, pos, expected, f"offset {rec.offset} where {expected} was expected"
                )
            if rec.gseq > max_gseq:
                return
            expected = rec.offset + 1
            yield rec

    def _iter_topic(
        self,
        topic: str,
        key: Callable[[IndexEntry], int],
        summary_last: Callable[[SegmentIndex], int],
        value: int,
        max_gseq: int,
    ) -> Iterator[Record]:
        """Records of ``topic`` starting near the first one whose key ≥ value."""
        started = False
        for seg in self.segments(topic):
            if not started:
                idx = self.segment_index(seg)
                if idx.count == 0 or summary_last(idx) < value:
                    continue
                keys = [key(e) for e in idx.entries]
                i = bisect_right(keys, value) - 1
                entry = idx.entries[max(i, 0)] if idx.entries else None
                started = True
                yield from self._iter_segment(seg, entry, max_gseq)
            else:
                yield from self._iter_segment(seg, None, max_gseq)

    def read_topic(
        self,
        topic: str,
        from_offset: int = 0,
        to_offset: int | None = None,
        *,
        max_gseq: int | None = None,
    ) -> Iterator[Record]:
        """Yield the records of one topic with ``from_offset ≤ offset ≤ to_offset``.

        Raises:
            CorruptRecordError: a record fails its checksum or breaks offset contiguity.
        """
        limit = self.head_gseq() if max_gseq is None else max_gseq
        for rec in self._iter_topic(
            topic, lambda e: e.offset, lambda i: i.last_offset, from_offset, limit
        ):
            if rec.offset < from_offset:
                continue
            if to_offset is not None and rec.offset > to_offset:
                return
            yield rec

    def read(
        self,
        patterns: Sequence[str] | None = None,
        from_gseq: int = 1,
        to_gseq: int | None = None,
    ) -> Iterator[Record]:
        """Yield the records of the matching topics with ``from_gseq ≤ gseq ≤ to_gseq``, in gseq order.

        Raises:
            CorruptRecordError: as :meth:`read_topic`.
        """
        head = self.head_gseq()
        limit = head if to_gseq is None else min(to_gseq, head)
        iterators = [
            self._gseq_filtered(
                self._iter_topic(t, lambda e: e.gseq, lambda i: i.last_gseq, from_gseq, limit),
                from_gseq,
            )
            for t in self.topics(patterns)
        ]
        return merge_by_gseq(iterators)

    @staticmethod
    def _gseq_filtered(records: Iterator[Record], from_gseq: int) -> Iterator[Record]:
        for rec in records:
            if rec.gseq >= from_gseq:
                yield rec
                yield from records
                return

    def read_from_time(
        self, patterns: Sequence[str] | None, ts_ns: int, to_ns: int | None = None
    ) -> Iterator[Record]:
        """Yield, in gseq order, each matching topic's records from the first with ``ts_event ≥ ts_ns``.

        Stops each topic before the first record with ``ts_event ≥ to_ns``.
        """
        head = self.head_gseq()

        def topic_iter(topic: str) -> Iterator[Record]:
            for rec in self._iter_topic(
                topic, lambda e: e.ts_event, lambda i: i.last_ts, ts_ns, head
            ):
                if rec.ts_event < ts_ns:
                    continue
                if to_ns is not None and rec.ts_event >= to_ns:
                    return
                yield rec

        return merge_by_gseq([topic_iter(t) for t in self.topics(patterns)])

    def first_gseq_at(self, patterns: Sequence[str] | None, ts_ns: int) -> int | None:
        """The smallest gseq among matching records with ``ts_event ≥ ts_ns``, or None."""
        for rec in self.read_from_time(patterns, ts_ns):
            return rec.gseq
        return None

    def follow(
        self,
        patterns: Sequence[str] | None = None,
        from_gseq: int = 1,
        *,
        poll_s: float = 0.1,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[Record]:
        """Yield matching records from ``from_gseq`` on, then wait for new ones (``tail -f``).

        Polls the committed head every ``poll_s`` seconds; returns when ``stop()`` is true.
        """
        next_gseq = from_gseq
        while stop is None or not stop():
            head = self.head_gseq()
            if head >= next_gseq:
                yield from self.read(patterns, next_gseq, head)
                next_gseq = head + 1
            else:
                time.sleep(poll_s)

    def files(self) -> list[tuple[str, Segment, int]]:
        """Every day file: ``(topic, segment, size in bytes)``."""
        out = []
        for topic in self.topics():
            for seg in self.segments(topic):
                out.append((topic, seg, os.stat(seg.path).st_size))
        return out


def merge_by_gseq(iterators: Sequence[Iterator[Record]]) -> Iterator[Record]:
    """Merge per-topic record iterators (each in gseq order) into one gseq-ordered stream."""
    if len(iterators) == 1:
        yield from iterators[0]
        return
    heap: list[tuple[int, int, Record]] = []
    for i, it in enumerate(iterators):
        rec = next(it, None)
        if rec is not None:
            heap.append((rec.gseq, i, rec))
    heapq.heapify(heap)
    while heap:
        _g, i, rec = heap[0]
        yield rec
        nxt = next(iterators[i], None)
        if nxt is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (nxt.gseq, i, nxt))
