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
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from operator import attrgetter
from pathlib import Path
from typing import Any, cast

import crc32c
import msgspec
import zstandard

from tickertape.errors import CorruptRecordError
from tickertape.eventlog.codec import CodecError, decode_line
from tickertape.eventlog.index import IndexEntry, SegmentIndex, load_index
from tickertape.eventlog.layout import (
    Segment,
    day_of,
    list_segments,
    list_topics,
    namespace_dir,
    read_current,
)
from tickertape.eventlog.segment import (
    FilePool,
    iter_lines,
    iter_raw_lines,
    open_lines,
    scan_segment,
)
from tickertape.iterutils import batched
from tickertape.schemas.envelope import Record, StoredRecord
from tickertape.topics import matches_any

_HEAD = struct.Struct("<q")
_INF = 1 << 63
_DECODER = msgspec.json.Decoder(StoredRecord)

MERGE_OPEN_FILES = 64
"""Most day files one merged read keeps open at once (see :class:`FilePool`)."""

MERGE_BUFFER_BYTES = 16 << 20
"""Read-ahead shared by the topics of one merged read (each gets 16–128 KiB)."""

_MAX_BUFFER = 1 << 17
_MIN_BUFFER = 1 << 14
MERGE_DECODE_BYTES = 4 << 20
"""Lines a merged read decodes ahead, shared by its topics (each decodes blocks of
1 byte to 128 KiB: at least one line, whole lines); decoded, they take about 2.3
times their size in memory."""

_FIRST_BLOCK = 1 << 13  # bytes of lines decoded first in a day file (then 4×, up to the block)
_CRC_TAG = b',"crc":'


@dataclass(slots=True)
class _Bounds:
    min_offset: int = 0
    max_offset: int = _INF
    min_gseq: int = 0
    max_gseq: int = _INF
    min_ts: int = -1
    max_ts: int = _INF
    done: bool = False
    resume_offset: int = -1  # set when a file vanished mid-read: the next offset to read
    # An open day that ended on an unterminated line: (segment, entry, expected offset,
    # start offset) as _corrupt takes them. A write in progress, or a torn tail awaiting
    # recovery, unless a later day of the topic holds a record within the bounds.
    torn: tuple[Segment, IndexEntry | None, int, int] | None = None

    def past_end(self, rec: Record) -> bool:
        """Whether ``rec`` is past an upper bound (offset, gseq inclusive; time exclusive)."""
        return (
            rec.gseq > self.max_gseq or rec.offset > self.max_offset or rec.ts_event >= self.max_ts
        )

    def before_start(self, rec: Record) -> bool:
        """Whether ``rec`` is before a lower bound (all inclusive)."""
        return (
            rec.offset < self.min_offset or rec.gseq < self.min_gseq or rec.ts_event < self.min_ts
        )


# Keys of index entries and summaries, by what a read starts from.
_entry_offset = attrgetter("offset")
_entry_gseq = attrgetter("gseq")
_entry_ts = attrgetter("ts_event")
_last_offset = attrgetter("last_offset")
_last_gseq = attrgetter("last_gseq")
_last_ts = attrgetter("last_ts")


class LogReader:
    """Read-only access to one namespace of the log (no lock; safe beside a writer).

    Args:
        data_dir: the data directory.
        namespace: the namespace to read.
        head: where the committed head comes from; default the ``HEAD`` file the
            writer publishes after each fsync (the writer's own reader passes its
            head, which includes records it wrote without fsync).
    """

    def __init__(
        self,
        data_dir: str | Path,
        namespace: str = "main",
        *,
        head: Callable[[], int] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.namespace = namespace
        self.dir = namespace_dir(data_dir, namespace)
        self._head = head
        # path -> (file size, mtime, head when indexed, index, damaged: see _index_of)
        self._indexes: dict[Path, tuple[int, float, int, SegmentIndex, bool]] = {}

    # ------------------------------------------------------------ discovery

    def topics(self, patterns: Sequence[str] | None = None) -> list[str]:
        """Topics of the namespace, sorted; only those matching ``patterns`` when given."""
        names = list_topics(self.dir)
        if patterns:
            names = [n for n in names if matches_any(patterns, n)]
        return names

    def head_gseq(self) -> int:
        """The committed head gseq (0 when the namespace is empty or absent)."""
        head = self._published_head()
        if head is not None:
            return head
        return max((self.topic_summary(t).last_gseq for t in self.topics()), default=0)

    def _published_head(self) -> int | None:
        if self._head is not None:
            return self._head()
        try:
            with open(self.dir / "HEAD", "rb") as f:
                data = f.read(8)
        except FileNotFoundError:
            return None
        return int(_HEAD.unpack(data)[0]) if len(data) == 8 else None

    def segments(self, topic: str) -> list[Segment]:
        """The day files of ``topic``, oldest first."""
        return list_segments(self.dir / topic, topic)

    def segment_index(self, segment: Segment) -> SegmentIndex:
        """The sparse index of a day file.

        A sealed day's comes from its ``.idx`` when fresh, else from a scan. An open
        day's covers its committed records (gseq ≤ the head; those never change) and
        is extended from where it ended as the file grows: from the copy cached in
        this reader, else from the writer's saved ``.idx`` (which describes a prefix
        of the file), else from a scan of the whole file.

        Raises:
            FileNotFoundError: the file was sealed or deleted since it was listed.
        """
        return self._index_of(segment)[0]

    def _index_of(self, segment: Segment) -> tuple[SegmentIndex, bool]:
        """:meth:`segment_index`, and whether the scan that built it met damage after
        the last record it indexed (:attr:`SegmentScan.damaged_tail`): the file may then
        hold records past the index's last one. A fresh ``.idx`` met no damage."""
        st = segment.path.stat()
        cached = self._indexes.get(segment.path)
        if segment.sealed:
            if cached is not None and cached[0] == st.st_size and cached[1] == st.st_mtime:
                return cached[3], cached[4]
            index = load_index(segment.index_path)
            damaged = False
            if index is None or index.data_size != st.st_size or not index.sealed:
                scan = scan_segment(segment, st.st_size)
                index, damaged = scan.index, scan.damaged_tail
            self._indexes[segment.path] = (st.st_size, st.st_mtime, 0, index, damaged)
            return index, damaged
        published = self._published_head()
        head = _INF if published is None else published
        damaged = False
        if cached is not None:
            size, mtime, indexed_head, index, damaged = cached
            if (
                size == st.st_size
                and mtime == st.st_mtime
                and (index.raw_size == size or indexed_head == head)
            ):
                return index, damaged
            base: SegmentIndex | None = index
        else:
            base = load_index(segment.index_path)
            if base is not None and (
                base.sealed or base.raw_size != base.data_size or base.last_gseq > head
            ):
                base = None
        extended = None
        if base is not None and base.raw_size <= st.st_size:
            extended = _extend_index(segment, base, head, damaged)
        if extended is None:
            empty = SegmentIndex(sealed=False, data_size=0)
            extended = _extend_index(segment, empty, head, damaged_tail=False)
            assert extended is not None
        index, damaged = extended
        self._indexes[segment.path] = (st.st_size, st.st_mtime, head, index, damaged)
        return index, damaged

    def topic_summary(self, topic: str) -> SegmentIndex:
        """Counts and first/last offset, gseq and ts_event of a whole topic.

        A day sealed while it is read (``tape compact`` beside) is read from its sealed
        file; a day deleted meanwhile (retention) is left out.
        """
        total = SegmentIndex(sealed=False, data_size=0)
        for listed in self.segments(topic):
            current = read_current(listed, self.segment_index)
            if current is None or not current[1].count:
                continue
            idx = current[1]
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

    def _segment_batches(
        self,
        seg: Segment,
        entry: IndexEntry | None,
        bounds: _Bounds,
        pool: FilePool | None = None,
        buffer_size: int = _MAX_BUFFER,
        block_size: int = _MAX_BUFFER,
    ) -> Iterator[list[Record]]:
        """Records of one day file from an index entry, within ``bounds``, in batches
        (non-empty lists in offset order, from blocks of lines of about ``block_size``
        bytes; read ahead ``buffer_size`` bytes). The hot path of every read.

        Every record is checked: it parses, its CRC matches, its offset follows the
        previous one. Offsets, gseqs and times only grow within a topic, so once a
        record passes the lower bounds every later one does, and a block whose last
        record is within the upper bounds is within them all. An open file's last line
        without its newline ends the file quietly (a write in progress, or a torn tail
        the next open for writing cuts), unless a later day of the topic then yields a
        record: committed records after it make it damage (``bounds.torn``).

        Lines come a block at a time (``readlines``, split in C); a block is decoded in
        one pass and checksummed in a second (two tight loops run faster here than one
        alternating between them). A block with any fault is checked again line by line
        (:meth:`_check_lines`), in order, so that nothing past an upper bound is judged
        and the records before a fault are yielded before it is raised. A zstd error (a
        sealed file's damaged frame) takes the lines of its block with it: the file is
        then read again line by line up to it (:meth:`_lines_before_damage`).

        Raises:
            CorruptRecordError: a record fails a check, a frame of a sealed file does
                not decompress, or this file yields a record
                after an earlier day ended on an unterminated line (the error names
                that line); its byte position is found by reading the file again up
                to it.
            FileNotFoundError: the file vanished (sealed or deleted); ``bounds.resume_offset``
                is then the offset to go on from (-1 when no record was read).
        """
        state = _SegmentState(seg, entry)
        file_pos = entry.file_pos if entry is not None else 0
        decode = _DECODER.decode
        crc32 = crc32c.crc32c
        tag = _CRC_TAG
        ten_digits = 1_000_000_000
        hint = min(_FIRST_BLOCK, block_size)  # a read that wants a few records decodes few
        try:
            with open_lines(seg, file_pos, pool=pool, buffer_size=buffer_size) as f:
                readlines = f.readlines
                while lines := readlines(hint):
                    hint = min(hint * 4, block_size)
                    batch: list[Record] | None = None
                    try:
                        records = list(map(decode, lines))
                    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
                        records = []
                    # The checksum covers the line up to ',"crc":'; a 10-digit CRC (77% of
                    # them) and '}\n' are the line's last 19 bytes.
                    for rec, line in zip(records, lines):  # noqa: B905 (same length)
                        crc = rec.crc
                        if (
                            crc32(line[:-19] if crc >= ten_digits else line[: line.rfind(tag)])
                            != crc
                        ):
                            break
                    else:
                        expected = state.expected
                        first = records[0].offset if expected < 0 and records else expected
                        if records and list(map(_record_offset, records)) == list(
                            range(first, first + len(records))
                        ):
                            if expected < 0:
                                state.start_offset = first
                            state.expected = first + len(records)
                            batch = cast("list[Record]", records)
                    if batch is None:
                        # A fault in the block: line by line, in order.
                        yield from self._check_lines(lines, state, bounds)
                        if bounds.done or state.stopped:
                            return
                        continue
                    if bounds.past_end(batch[-1]):
                        batch = batch[: _first_past(batch, bounds)]
                        bounds.done = True
                    if state.below:
                        batch = self._above(batch, state, bounds)
                    if batch:
                        yield batch
                    if bounds.done:
                        return
        except zstandard.ZstdError as exc:
            damage = f"zstd frame: {exc}"
        except FileNotFoundError:
            bounds.resume_offset = state.expected
            raise
        else:
            return
        # A damaged frame: the lines of the block being read went with the error.
        yield from self._lines_before_damage(state, file_pos, bounds, pool, buffer_size, damage)

    def _lines_before_damage(
        self,
        state: _SegmentState,
        file_pos: int,
        bounds: _Bounds,
        pool: FilePool | None,
        buffer_size: int,
        damage: str,
    ) -> Iterator[list[Record]]:
        """After a zstd error in a block of a sealed file: read the file again from the
        same frame, past the lines already checked, one line at a time as the
        record-at-a-time reader did, until the bounds are done or the error comes back;
        then raise it (the first one, should the second pass end without one). Yields
        what that reader yielded: the records of the lines its buffered stream gave
        before the error, within the bounds.

        Raises:
            CorruptRecordError: the zstd error (position: ``file_pos``, the frame the read
                started from; no offset), or a bad record before it.
            FileNotFoundError: as :meth:`_segment_batches`.
        """
        seg = state.segment
        checked = state.expected - state.start_offset if state.start_offset >= 0 else 0
        try:
            with open_lines(seg, file_pos, pool=pool, buffer_size=buffer_size) as f:
                for line in islice(f, checked, None):
                    yield from self._check_lines([line], state, bounds)
                    if bounds.done or state.stopped:
                        return
        except zstandard.ZstdError as exc:
            damage = f"zstd frame: {exc}"
        except FileNotFoundError:
            bounds.resume_offset = state.expected
            raise
        raise CorruptRecordError(seg.path, file_pos, None, damage)

    def _above(self, batch: list[Record], state: _SegmentState, bounds: _Bounds) -> list[Record]:
        """The records of ``batch`` from the first within the lower bounds on."""
        for i, rec in enumerate(batch):
            if bounds.before_start(rec):
                continue
            state.below = False
            if bounds.torn is not None:
                # Committed records after an unterminated line of an earlier day: that
                # line is no write in progress but damage.
                raise self._corrupt(*bounds.torn, "torn record followed by records of later days")
            return batch[i:] if i else batch
        return []

    def _check_lines(
        self, lines: list[bytes], state: _SegmentState, bounds: _Bounds
    ) -> Iterator[list[Record]]:
        """Check a block of lines one record at a time; yield its records within
        ``bounds`` (one batch), then raise the block's fault if it has one.

        Stops at the first record past an upper bound (``bounds.done``), and at an open
        file's last line when it is unterminated and does not decode or check
        (``bounds.torn`` and ``state.stopped``).

        Raises:
            CorruptRecordError: a record fails a check, or a record within the bounds
                follows an earlier day's torn last line.
        """
        seg = state.segment
        out: list[Record] = []
        error: CorruptRecordError | None = None
        for line in lines:
            reason = ""
            try:
                rec = decode_line(line)
            except CodecError as exc:
                reason = exc.reason
            if reason:
                if not seg.sealed and line[-1:] != b"\n":
                    # a write in progress (or a torn tail awaiting recovery)
                    bounds.torn = (seg, state.entry, state.expected, state.start_offset)
                    state.stopped = True
                    break
                error = self._corrupt(seg, state.entry, state.expected, state.start_offset, reason)
                break
            offset = rec.offset
            if offset != state.expected:
                if state.expected >= 0:
                    error = self._corrupt(
                        seg,
                        state.entry,
                        state.expected,
                        state.start_offset,
                        f"offset {offset} where {state.expected} was expected",
                    )
                    break
                state.start_offset = offset
            state.expected = offset + 1
            if bounds.past_end(rec):
                bounds.done = True
                break
            if state.below:
                if bounds.before_start(rec):
                    continue
                state.below = False
                if bounds.torn is not None:
                    error = self._corrupt(
                        *bounds.torn, "torn record followed by records of later days"
                    )
                    break
            out.append(rec)
        if out:
            yield out
        if error is not None:
            raise error

    @staticmethod
    def _corrupt(
        seg: Segment, entry: IndexEntry | None, expected: int, start_offset: int, reason: str
    ) -> CorruptRecordError:
        """The error for the line after ``expected - start_offset`` good records since ``entry``."""
        skip = max(0, expected - start_offset) if start_offset >= 0 else 0
        pos = entry.raw_pos if entry is not None else 0
        file_pos = entry.file_pos if entry is not None else 0
        for i, line in enumerate(iter_raw_lines(seg, file_pos)):
            if i == skip:
                break
            pos += len(line)
        return CorruptRecordError(seg.path, pos, expected if expected >= 0 else None, reason)

    def _topic_batches(
        self,
        topic: str,
        key: Callable[[IndexEntry], int],
        summary_last: Callable[[SegmentIndex], int],
        value: int,
        bounds: _Bounds,
        pool: FilePool | None = None,
        buffer_size: int = _MAX_BUFFER,
        block_size: int = _MAX_BUFFER,
    ) -> Iterator[list[Record]]:
        """Records of ``topic`` within ``bounds``, starting near the first whose key ≥ value,
        in batches (non-empty lists in offset order; see :meth:`_segment_batches`)."""
        started = False
        done_days: set[int] = set()
        # A record's day file is the UTC day of its ts_event (DESIGN §5): days outside
        # a time range are skipped by name, without loading their index.
        first_day = day_of(bounds.min_ts) if bounds.min_ts > 0 else -_INF
        last_day = day_of(bounds.max_ts - 1) if bounds.max_ts < _INF else _INF
        while True:
            for seg in self.segments(topic):
                if seg.day in done_days:
                    continue
                if bounds.done or seg.day > last_day:
                    return
                if seg.day < first_day:
                    done_days.add(seg.day)
                    continue
                try:
                    if not started:
                        idx, damaged = self._index_of(seg)
                        if idx.count == 0 or summary_last(idx) < value:
                            if not damaged or self._later_day_starts_by(topic, seg, key, value):
                                done_days.add(seg.day)
                                continue
                            # The scan that built the index met damage after its last
                            # record: the day may hold records past it. Read on from its
                            # last entry into the damage (corruption is never skipped
                            # silently), as a read of that record on would.
                            entry = idx.entries[-1] if idx.entries else None
                        else:
                            keys = [key(e) for e in idx.entries]
                            # Offsets and gseqs are unique: start at the last entry ≤
                            # value. Times repeat (entries can share a ts_event): start at
                            # the last entry < value, or records equal to it before that
                            # entry are lost.
                            if key is _entry_ts:
                                i = bisect_left(keys, value) - 1
                            else:
                                i = bisect_right(keys, value) - 1
                            entry = idx.entries[max(i, 0)] if idx.entries else None
                        started = True
                        yield from self._segment_batches(
                            seg, entry, bounds, pool, buffer_size, block_size
                        )
                    else:
                        yield from self._segment_batches(
                            seg, None, bounds, pool, buffer_size, block_size
                        )
                except FileNotFoundError:
                    # Sealed (or deleted) since it was listed, maybe after some of its
                    # records were yielded (a pooled file is closed between reads): list
                    # the days again and go on from the next offset.
                    if bounds.resume_offset >= 0:
                        key, summary_last = _entry_offset, _last_offset
                        value = bounds.resume_offset
                        bounds.min_offset = max(bounds.min_offset, value)
                        bounds.resume_offset = -1
                        started = False
                    break
                done_days.add(seg.day)
            else:
                return

    def _later_day_starts_by(
        self, topic: str, seg: Segment, key: Callable[[IndexEntry], int], value: int
    ) -> bool:
        """Whether the first record of a later day of ``topic`` than ``seg`` has a key ≤
        ``value`` (then every record of ``seg`` comes before ``value``: offsets, gseqs and
        times only grow within a topic, and a day file holds one UTC day of ts_event)."""
        for later in self.segments(topic):
            if later.day > seg.day:
                entries = self.segment_index(later).entries
                if entries:
                    return key(entries[0]) <= value
        return False

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
        bounds = _Bounds(
            min_offset=from_offset,
            max_offset=_INF if to_offset is None else to_offset,
            max_gseq=self.head_gseq() if max_gseq is None else max_gseq,
        )
        return chain.from_iterable(
            self._topic_batches(topic, _entry_offset, _last_offset, from_offset, bounds)
        )

    def _merged_iterators(
        self,
        patterns: Sequence[str] | None,
        key: Callable[[IndexEntry], int],
        summary_last: Callable[[SegmentIndex], int],
        value: int,
        make_bounds: Callable[[], _Bounds],
    ) -> list[Iterator[list[Record]]]:
        """One iterator of batches per matching topic; together they keep at most
        :data:`MERGE_OPEN_FILES` files open, about :data:`MERGE_BUFFER_BYTES` buffered and
        about :data:`MERGE_DECODE_BYTES` of lines decoded ahead."""
        topics = self.topics(patterns)
        if len(topics) <= 1:
            return [self._topic_batches(t, key, summary_last, value, make_bounds()) for t in topics]
        pool = FilePool(MERGE_OPEN_FILES)
        buffer_size = max(_MIN_BUFFER, min(_MAX_BUFFER, MERGE_BUFFER_BYTES // len(topics)))
        block_size = max(1, min(_MAX_BUFFER, MERGE_DECODE_BYTES // len(topics)))
        return [
            self._topic_batches(
                t, key, summary_last, value, make_bounds(), pool, buffer_size, block_size
            )
            for t in topics
        ]

    def read(
        self,
        patterns: Sequence[str] | None = None,
        from_gseq: int = 1,
        to_gseq: int | None = None,
    ) -> Iterator[Record]:
        """Yield the records of the matching topics with ``from_gseq ≤ gseq ≤ to_gseq``, in gseq order.

        However many topics match, at most :data:`MERGE_OPEN_FILES` files are open at
        once (files are closed and reopened by position as the merge moves).

        Raises:
            CorruptRecordError: as :meth:`read_topic`.
        """
        head = self.head_gseq()
        limit = head if to_gseq is None else min(to_gseq, head)
        iterators = self._merged_iterators(
            patterns,
            _entry_gseq,
            _last_gseq,
            from_gseq,
            lambda: _Bounds(min_gseq=from_gseq, max_gseq=limit),
        )
        return chain.from_iterable(_merge_batches(iterators, _record_gseq, _sort_by_gseq))

    def read_from_time(
        self, patterns: Sequence[str] | None, ts_ns: int, to_ns: int | None = None
    ) -> Iterator[Record]:
        """Yield, in gseq order, each matching topic's records from the first with ``ts_event ≥ ts_ns``.

        Stops each topic before the first record with ``ts_event ≥ to_ns``. Open files
        are bounded as in :meth:`read`.
        """
        return chain.from_iterable(
            _merge_batches(
                self._time_range_iterators(patterns, ts_ns, to_ns), _record_gseq, _sort_by_gseq
            )
        )

    def read_in_time_order(
        self, patterns: Sequence[str] | None, ts_ns: int, to_ns: int | None = None
    ) -> Iterator[Record]:
        """Yield matching records with ``ts_ns ≤ ts_event < to_ns`` in (ts_event, gseq) order.

        This is the order a replay consumes its inputs in (DESIGN §7: time, then gseq):
        records imported later can carry earlier times than records imported before
        them, so gseq order is not time order across topics. Each topic's records are
        already in ts_event order (the log refuses regressions). Open files are bounded
        as in :meth:`read`.
        """
        return chain.from_iterable(
            _merge_batches(
                self._time_range_iterators(patterns, ts_ns, to_ns), _record_time, _sort_by_time
            )
        )

    def _time_range_iterators(
        self, patterns: Sequence[str] | None, ts_ns: int, to_ns: int | None
    ) -> list[Iterator[list[Record]]]:
        """Per-topic batch iterators of ``ts_ns ≤ ts_event < to_ns``, up to the current head."""
        head = self.head_gseq()
        max_ts = _INF if to_ns is None else to_ns
        return self._merged_iterators(
            patterns,
            _entry_ts,
            _last_ts,
            ts_ns,
            lambda: _Bounds(min_ts=ts_ns, max_ts=max_ts, max_gseq=head),
        )

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
    ) -> Generator[Record, None, None]:
        """Yield matching records from ``from_gseq`` on, then wait for new ones (``tail -f``).

        The records of :meth:`follow_batches` one by one (same arguments and errors);
        closing the generator ends the following.
        """
        return _one_by_one(self.follow_batches(patterns, from_gseq, poll_s=poll_s, stop=stop))

    def follow_batches(
        self,
        patterns: Sequence[str] | None = None,
        from_gseq: int = 1,
        *,
        poll_s: float = 0.1,
        stop: Callable[[], bool] | None = None,
        max_batch: int = 256,
        to_gseq: int | None = None,
    ) -> Generator[list[Record], None, None]:
        """Yield the matching records from ``from_gseq`` on in batches, then wait for
        new ones (``tail -f``, a batch at a time), up to ``to_gseq`` when given.

        Each batch is a new list of 1 to ``max_batch`` records in gseq order; together
        the batches are every matching record from ``from_gseq`` on, once each. A batch
        never reaches past the committed head read before it: when the records up to
        that head are out the batch ends there, however short, so the caller can print
        or send it before this waits for more. Topics that match ``patterns`` and appear
        later are followed too; a day sealed or rolled over while it is read is read
        on from its new file (as in :meth:`read`). Closing the generator ends the
        following.

        Args:
            patterns: NATS topic patterns (None: every topic).
            from_gseq: the first gseq to yield (≥ 1).
            poll_s: seconds between reads of the committed head while nothing new is
                committed.
            stop: checked before each read of the head and after each batch; once it
                returns true the generator ends. None: follow until closed.
            max_batch: most records per batch (≥ 1).
            to_gseq: last gseq to follow (inclusive): the generator ends once the
                committed head has reached it and the matching records up to it are
                out, whether or not one of them is at ``to_gseq``. None: no end.

        Raises:
            ValueError: at the call, when ``from_gseq < 1``, ``poll_s`` is negative or
                ``max_batch < 1``.
            CorruptRecordError: while iterating, as :meth:`read`.
        """
        if from_gseq < 1:
            raise ValueError(f"follow: from_gseq must be at least 1, not {from_gseq}")
        if not poll_s >= 0:
            raise ValueError(f"follow: poll_s must be 0 or more seconds, not {poll_s}")
        if max_batch < 1:
            raise ValueError(f"follow: max_batch must be at least 1, not {max_batch}")
        return self._follow_batches(
            patterns, from_gseq, poll_s, stop, max_batch, _INF if to_gseq is None else to_gseq
        )

    def _follow_batches(
        self,
        patterns: Sequence[str] | None,
        next_gseq: int,
        poll_s: float,
        stop: Callable[[], bool] | None,
        max_batch: int,
        to_gseq: int,
    ) -> Generator[list[Record], None, None]:
        while (stop is None or not stop()) and next_gseq <= to_gseq:
            head = min(self.head_gseq(), to_gseq)
            if head < next_gseq:
                time.sleep(poll_s)
                continue
            records = self.read(patterns, next_gseq, head)
            while batch := list(islice(records, max_batch)):
                yield batch
                if stop is not None and stop():
                    return
            next_gseq = head + 1

    def files(self) -> list[tuple[str, Segment, int]]:
        """Every day file: ``(topic, segment, size in bytes)`` (see :meth:`topic_files`)."""
        return [
            (topic, seg, size) for topic in self.topics() for seg, size in self.topic_files(topic)
        ]

    def topic_files(self, topic: str) -> list[tuple[Segment, int]]:
        """The day files of ``topic``, oldest first, each with its size in bytes.

        A day sealed while its size is read (``tape compact`` beside) is given by its
        sealed file; a day deleted meanwhile (retention) is left out.
        """
        sizes = (
            read_current(seg, lambda s: os.stat(s.path).st_size) for seg in self.segments(topic)
        )
        return [current for current in sizes if current is not None]


def _one_by_one(batches: Iterator[list[Record]]) -> Generator[Record, None, None]:
    """The records of ``batches`` one by one, as a generator, for :meth:`LogReader.follow`:
    a follow does not end by itself, so it keeps ``close``. The finite reads return
    ``chain.from_iterable`` instead, which has no ``close`` but iterates in C (read one
    topic ~2 % faster)."""
    for batch in batches:
        yield from batch


def merge_by_gseq(
    iterators: Sequence[Iterator[Record]], *, read_ahead: int = 256
) -> Iterator[Record]:
    """Merge per-topic record iterators (each in gseq order) into one gseq-ordered stream.

    The iterators are read a batch at a time: each is read up to ``read_ahead``
    records (or to its end) ahead of what was yielded. An iterator that waits for
    records (a :meth:`LogReader.follow`) therefore holds the merge until it has that
    many or ends; ``read_ahead=1`` takes one record at a time from each, as
    :func:`heapq.merge` does. Records with equal gseqs (which one log never holds)
    are all yielded, in no fixed order among themselves.

    Raises:
        ValueError: at the call, when ``read_ahead < 1``.
    """
    sources = _batch_sources(iterators, read_ahead)
    if len(iterators) == 1:
        return iter(iterators[0])
    return chain.from_iterable(_merge_batches(sources, _record_gseq, _sort_by_gseq))


def merge_by_time(
    iterators: Sequence[Iterator[Record]], *, read_ahead: int = 256
) -> Iterator[Record]:
    """Merge per-topic iterators (each in ts_event order) into (ts_event, gseq) order.

    Read ahead, and records with equal keys, as in :func:`merge_by_gseq`.

    Raises:
        ValueError: at the call, when ``read_ahead < 1``.
    """
    sources = _batch_sources(iterators, read_ahead)
    return chain.from_iterable(_merge_batches(sources, _record_time, _sort_by_time))


def _batch_sources(
    iterators: Sequence[Iterator[Record]], read_ahead: int
) -> list[Iterator[list[Record]]]:
    if read_ahead < 1:
        raise ValueError(f"merge: read_ahead must be at least 1 record, not {read_ahead}")
    return [batched(it, read_ahead) for it in iterators]


_record_offset = attrgetter("offset")
_record_gseq = attrgetter("gseq")
_record_ts = attrgetter("ts_event")


def _record_time(rec: Record) -> tuple[int, int]:
    return (rec.ts_event, rec.gseq)


def _sort_by_gseq(records: list[Record]) -> None:
    records.sort(key=_record_gseq)


def _sort_by_time(records: list[Record]) -> None:
    records.sort(key=_record_gseq)
    records.sort(key=_record_ts)  # stable: (ts_event, gseq) order


def _merge_batches(
    sources: Sequence[Iterator[list[Record]]],
    key: Callable[[Record], Any],
    sort: Callable[[list[Record]], None],
) -> Iterator[list[Record]]:
    """Merge streams of batches, each stream in ``key`` order, into batches in ``key``
    order (records with equal keys in several streams in no fixed order among them).

    Each round ends at the smallest last key among the streams' current batches (no
    later record of any stream can come before it): that batch is emptied, and every
    other stream whose next record comes before it gives its records up to it. The
    round's records are sorted in C (``sort`` sorts a list in place by ``key``): records
    of interleaved topics cost a sort rather than a heap operation each in Python, and
    a run of one topic costs nothing. Two heaps (streams by next key, and by last key
    of their batch) find the round's end and its streams, so a round costs
    O(streams in it × log streams): a merge of thousands of topics each holding one
    record of the round costs about what a heap of records would. The emptied stream
    is read on only once the round is out, so an error of a stream comes right after
    its last record, as from a merge that takes one record at a time. A stream whose
    batch ends at the round's end too (an equal key) waits, its batch used up, for its
    own round.
    """
    streams = list(sources)
    current: list[tuple[list[Record], int]] = []  # each stream's batch and position in it
    by_next: list[tuple[Any, int]] = []
    by_last: list[tuple[Any, int]] = []
    for i, it in enumerate(streams):
        batch = next(it, None)
        current.append((batch or [], 0))
        if batch:
            by_next.append((key(batch[0]), i))
            by_last.append((key(batch[-1]), i))
    heapq.heapify(by_next)
    heapq.heapify(by_last)
    pop, push = heapq.heappop, heapq.heappush
    while len(by_last) > 1:
        bound, emptied = by_last[0]
        out: list[Record] = []
        taken = 0
        while by_next and by_next[0][0] <= bound:
            i = pop(by_next)[1]
            batch, pos = current[i]
            taken += 1
            if i == emptied:
                out += batch[pos:] if pos else batch
                continue
            end = bisect_right(batch, bound, pos, key=key)
            out += batch[pos:end]
            current[i] = (batch, end)
            if end < len(batch):
                push(by_next, (key(batch[end]), i))
        if taken > 1:
            sort(out)
        if out:
            yield out
        batch = next(streams[emptied], None)
        if batch:
            current[emptied] = (batch, 0)
            push(by_next, (key(batch[0]), emptied))
            heapq.heapreplace(by_last, (key(batch[-1]), emptied))
        else:
            current[emptied] = ([], 0)
            pop(by_last)
    for _last, i in by_last:
        batch, pos = current[i]
        if pos < len(batch):
            yield batch[pos:] if pos else batch
        yield from streams[i]


@dataclass(slots=True)
class _SegmentState:
    """Where a read of one day file is (see :meth:`LogReader._segment_batches`)."""

    segment: Segment
    entry: IndexEntry | None
    expected: int = -1  # the next offset; -1 until the first record when no entry
    start_offset: int = -1  # the offset of the first record read
    below: bool = True  # still checking the lower bounds
    stopped: bool = False  # an unterminated last line ended the file

    def __post_init__(self) -> None:
        if self.entry is not None:
            self.expected = self.start_offset = self.entry.offset


def _first_past(batch: list[Record], bounds: _Bounds) -> int:
    """The index of the first record of ``batch`` past an upper bound (or its length)."""
    for i, rec in enumerate(batch):
        if bounds.past_end(rec):
            return i
    return len(batch)


def _extend_index(
    segment: Segment, base: SegmentIndex, head: int, damaged_tail: bool
) -> tuple[SegmentIndex, bool] | None:
    """A copy of ``base`` (the index of a prefix of an open day file) extended with the
    committed records (gseq ≤ ``head``) that follow it, and whether a line that does
    not decode follows its last record (``damaged_tail``: whether one followed
    ``base``'s).

    Returns None when the record after the prefix does not continue it (the file is
    not the one ``base`` was made from): the caller rebuilds from the start. Invalid
    lines and records repeated or out of offset order are left out, as
    :func:`~tickertape.eventlog.segment.scan_segment` does; a line without its newline
    ends the scan.
    """
    index = msgspec.structs.replace(base, entries=list(base.entries), sources=dict(base.sources))
    start = base.raw_size
    first = True
    for pos, line in iter_lines(segment, start, start):
        if not line.endswith(b"\n"):
            break
        try:
            rec = decode_line(line)
        except CodecError:
            damaged_tail = True
            continue
        if (
            first
            and index.count
            and (rec.offset != index.last_offset + 1 or rec.gseq <= index.last_gseq)
        ):
            return None
        first = False
        if index.count and rec.offset <= index.last_offset:
            damaged_tail = True  # repeated or out of order: left out, as scan_segment does
            continue
        if rec.gseq > head:
            break
        # (as scan_segment: the record after damage is no entry)
        entry = False if damaged_tail and index.count else None
        index.add(
            rec.offset, rec.gseq, rec.ts_event, rec.source, rec.source_seq, pos, pos, entry=entry
        )
        index.raw_size = pos + len(line)
        damaged_tail = False
    index.data_size = index.raw_size
    return index, damaged_tail
