"""Sealing closed days into seekable zstd, and retention.

A sealed day is a sequence of independent zstd frames of :data:`INDEX_EVERY` records
each, so a reader can start at any frame named by the index. The sequence is
crash-safe: write ``<day>.jsonl.zst.tmp``, fsync, write the index (atomically), rename
the temporary file, fsync the directory, and only then remove the ``.jsonl`` and fsync
the directory again. A crash at any point leaves either the open file alone (the
temporary one is removed on the next open) or both, in which case the sealed one
wins and the open one is removed (:func:`finish_interrupted`).

Days are sealed by ``tape compact`` (a log opened for writing by that command), or
while the log runs by a :class:`Sealer` thread, to which
:class:`~tickertape.eventlog.AsyncEventLog` (``seal=True``: ``tape router`` and
``tape eventlog``) hands each day a topic rolls over from.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import structlog
import zstandard

from tickertape.errors import CorruptRecordError
from tickertape.eventlog.codec import CodecError, decode_line
from tickertape.eventlog.index import INDEX_EVERY, SegmentIndex, load_index, save_index
from tickertape.eventlog.layout import (
    NS_PER_DAY,
    Segment,
    day_name,
    fsync_dir,
    list_segments,
)
from tickertape.eventlog.segment import iter_lines
from tickertape.eventlog.writer import EventLog
from tickertape.topics import matches

ZSTD_LEVEL = 3
"""zstd level for sealed days (PERF_NOTES: level 1–3 give 5–6× on market data at 380–580 MB/s)."""

log = structlog.get_logger("tickertape.eventlog")


def finish_interrupted(topic_dir: Path) -> None:
    """Finish or undo a seal interrupted by a crash in ``topic_dir``."""
    try:
        names = os.listdir(topic_dir)
    except FileNotFoundError:
        return
    present = set(names)  # a topic can hold thousands of day files: no list search
    changed = False
    for name in names:
        if name.endswith(".tmp") or (name.endswith(".jsonl") and (name + ".zst") in present):
            os.unlink(topic_dir / name)
            changed = True
    if changed:
        fsync_dir(topic_dir)


class SealCancelled(Exception):
    """A seal was given up before its rename (``cancel`` was set): nothing changed."""


def seal_segment(
    segment: Segment, level: int = ZSTD_LEVEL, cancel: threading.Event | None = None
) -> SegmentIndex:
    """Rewrite an open day file as a sealed one; return the sealed file's index.

    Args:
        segment: a day file no writer appends to any more.
        level: the zstd level.
        cancel: when set while the frames are written, the temporary file is removed
            and :class:`SealCancelled` raised (checked once per frame).

    Raises:
        SealCancelled: ``cancel`` was set.
        CorruptRecordError: the day file holds an invalid record (nothing is changed:
            a corrupt day is never sealed; run ``tape verify``). Its offset is the one
            after the previous valid record's, None when the day's first record is the
            invalid one (:func:`compact` names it from the day before).
    """
    assert not segment.sealed
    src = segment.path
    dst = src.with_name(src.name + ".zst")
    tmp = dst.with_name(dst.name + ".tmp")
    cctx = zstandard.ZstdCompressor(level=level, write_content_size=True)
    index = SegmentIndex(sealed=True, data_size=0)
    chunk = bytearray()
    file_pos = 0
    raw_pos = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:

        def flush() -> None:
            nonlocal file_pos
            if not chunk:
                return
            frame = cctx.compress(bytes(chunk))
            view = memoryview(frame)
            while view:
                view = view[os.write(fd, view) :]
            file_pos += len(frame)
            chunk.clear()

        for pos, line in iter_lines(segment):
            try:
                rec = decode_line(line)
            except CodecError as exc:
                offset = index.last_offset + 1 if index.count else None
                raise CorruptRecordError(src, pos, offset, exc.reason) from None
            # Each frame starts at the current file position (earlier frames are written).
            index.add(
                rec.offset, rec.gseq, rec.ts_event, rec.source, rec.source_seq,
                file_pos, raw_pos, entry=not chunk,
            )  # fmt: skip
            chunk += line
            raw_pos += len(line)
            if index.count % INDEX_EVERY == 0:
                flush()
                if cancel is not None and cancel.is_set():
                    raise SealCancelled(str(src))
        flush()
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)
    index.data_size = file_pos
    index.raw_size = raw_pos
    save_index(segment.index_path, index)
    os.replace(tmp, dst)
    fsync_dir(src.parent)
    os.unlink(src)
    fsync_dir(src.parent)
    return index


SEAL_DUTY = 0.25
"""Share of wall time a :class:`Sealer` spends sealing while days wait: after each day
it pauses ``(1 / duty - 1)`` times as long as that day took (three times at 0.25).
A seal costs three fsyncs whatever the day's size, and each one commits the file
system's journal, which the writer's own fsyncs then wait for; sealing at full speed
the thousands of closed days an imported history leaves roughly doubled the router's
step time in a distributed replay. Measured: docs/operations.md ("Sealing while the
log runs")."""


class Sealer:
    """Seals day files that are over, one at a time, on a thread of its own.

    The writer hands it days no append can reach any more
    (:meth:`EventLog.take_closed_days <tickertape.eventlog.writer.EventLog.take_closed_days>`);
    readers meanwhile read each day from whichever file holds it
    (:func:`~tickertape.eventlog.layout.read_current`). A day it cannot seal stays an
    open day file, which reads the same, and is tried again at the next start: one
    holding an invalid record is logged (``eventlog.seal_refused``, naming file, byte
    position and offset; run ``tape verify``); an OS error (a full disk) is logged
    (``eventlog.seal_failed``). Neither stops the log: nothing stored is changed
    until a sealed copy is durable. Each seal is logged at debug level
    (``eventlog.sealed``); each time the queue runs empty, one info line
    (``eventlog.sealed_days``) sums up the days sealed since the previous one (a start
    on a long history seals thousands).

    Sealing is background work: it takes at most ``duty`` of the wall time while days
    wait (:data:`SEAL_DUTY`), pausing after each day, so that appends keep the disk.

    Attributes:
        sealed: the number of days sealed so far.
        busy_s: the seconds spent sealing (failed attempts included), pauses excluded.

    Raises:
        ValueError: ``duty`` is not in (0, 1].
    """

    def __init__(self, namespace: str, duty: float = SEAL_DUTY) -> None:
        if not 0 < duty <= 1:
            raise ValueError(f"sealer duty must be in (0, 1], got {duty}")
        self.namespace = namespace
        self.sealed = 0
        self.busy_s = 0.0
        self._pause_per_busy_s = 1 / duty - 1
        self._pending: set[Path] = set()  # submitted, not finished; under _pending_lock
        self._pending_lock = threading.Lock()
        self._days: queue.SimpleQueue[Segment | None] = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"eventlog-sealer[{namespace}]", daemon=True
        )
        self._thread.start()

    def submit(self, days: Iterable[Segment]) -> None:
        """Queue day files to seal, in the order given."""
        for day in days:
            with self._pending_lock:
                self._pending.add(day.path)
            self._days.put(day)

    def pending(self) -> frozenset[Path]:
        """The open day files submitted and not yet sealed or given up (the one being
        sealed included): :func:`apply_retention` leaves them to the sealer."""
        with self._pending_lock:
            return frozenset(self._pending)

    def close(self) -> None:
        """Stop: a seal in progress is given up (its temporary file removed), the days
        still queued stay open day files. Waits for the thread to end (at most one
        frame's compression once a seal is under way)."""
        self._cancel.set()
        self._days.put(None)
        self._thread.join()
        with self._pending_lock:
            self._pending.clear()

    def _finished(self, path: Path) -> None:
        with self._pending_lock:
            self._pending.discard(path)

    def _run(self) -> None:
        days = raw = sealed = 0
        since = time.perf_counter()
        while True:
            seg = self._days.get()
            if seg is None or self._cancel.is_set():
                return
            if not seg.path.exists():  # deleted by retention before it was handed over
                self._finished(seg.path)
                continue
            started = time.perf_counter()
            if not days:
                since = started
            try:
                index = seal_day(seg, cancel=self._cancel)
            except SealCancelled:
                return
            except CorruptRecordError as exc:
                log.error("eventlog.seal_refused", namespace=self.namespace, problem=str(exc))
            except Exception as exc:  # OSError (a full disk), or anything else: go on
                log.error(
                    "eventlog.seal_failed", namespace=self.namespace, path=str(seg.path),
                    error=f"{type(exc).__name__}: {exc}",
                )  # fmt: skip
            else:
                self.sealed += 1
                days, raw, sealed = days + 1, raw + index.raw_size, sealed + index.data_size
                log.debug(
                    "eventlog.sealed", namespace=self.namespace, topic=seg.topic,
                    day=day_name(seg.day), records=index.count, raw_bytes=index.raw_size,
                    sealed_bytes=index.data_size,
                )  # fmt: skip
            if days and self._days.empty():
                log.info(
                    "eventlog.sealed_days", namespace=self.namespace, days=days,
                    raw_bytes=raw, sealed_bytes=sealed,
                    seconds=round(time.perf_counter() - since, 3),
                )  # fmt: skip
                days = raw = sealed = 0
            self._finished(seg.path)
            took = time.perf_counter() - started
            self.busy_s += took
            if self._cancel.wait(took * self._pause_per_busy_s):
                return


def compact(eventlog: EventLog, *, include_open: bool = False) -> list[Path]:
    """Seal every day that is over in a namespace opened for writing.

    A topic's newest day file is sealed only with ``include_open`` (``tape compact``
    on historical data); after that, appends to that topic must be on a later day.

    Records appended with ``durable=False`` are synced first: a sealed day holds only
    durable records.

    Returns:
        The sealed files created.
    """
    eventlog.sync()
    sealed: list[Path] = []
    for topic in eventlog.topics():
        segments = list_segments(eventlog.dir / topic, topic)
        newest = segments[-1] if segments else None
        for seg in segments:
            if seg.sealed or (seg == newest and not include_open):
                continue
            if seg == newest:
                eventlog._release_topic_file(topic)
            seal_day(seg, segments)
            eventlog._mark_sealed(topic, seg.day)
            sealed.append(seg.path.with_name(seg.path.name + ".zst"))
            log.debug("eventlog.sealed", topic=topic, day=day_name(seg.day))
    return sealed


def seal_day(
    segment: Segment,
    segments: list[Segment] | None = None,
    cancel: threading.Event | None = None,
) -> SegmentIndex:
    """:func:`seal_segment`, naming the offset of a damaged first record of the day.

    Args:
        segment: the day to seal.
        segments: the topic's days as listed (listed again when None).
        cancel: as :func:`seal_segment`'s.

    Raises:
        CorruptRecordError: the day holds an invalid record; when it is the day's
            first, its offset is the one after the last record of the nearest earlier
            day that holds records (None when no day tells).
        SealCancelled: ``cancel`` was set.
    """
    try:
        return seal_segment(segment, cancel=cancel)
    except CorruptRecordError as exc:
        if exc.offset is not None:
            raise
        if segments is None:
            segments = list_segments(segment.path.parent, segment.topic)
        i = next(k for k, s in enumerate(segments) if s.day == segment.day)
        offset = _first_offset(segments, i)
        raise CorruptRecordError(exc.path, exc.position, offset, exc.reason) from None


def _first_offset(segments: list[Segment], i: int) -> int | None:
    """The offset of the first record of ``segments[i]``: after the last record of the
    nearest earlier day that holds records, else from the day's own saved index
    (retention deleted the days before it); None when neither tells."""
    for seg in reversed(segments[:i]):
        index = load_index(seg.index_path)
        if index is None:
            return None  # (the writer's open saved every earlier day's index)
        if index.count:
            return index.last_offset + 1
    own = load_index(segments[i].index_path)
    return own.first_offset if own is not None and own.count and not own.sealed else None


def apply_retention(
    eventlog: EventLog,
    rules: Sequence[tuple[str, int]],
    now_ns: int,
    sealer: Sealer | None = None,
) -> list[Path]:
    """Delete whole days older than a topic's retention.

    A topic keeps its newest day that holds records and every day after it (an empty
    newest day file, left by a crash as a new day began, does not count): its last
    record, and so its next offset, last ``ts_event`` and the ``source_seq`` of that
    record, stays in the files.

    Before the first file is deleted, every record is synced and the namespace's
    retention mark (``RETENTION``, :class:`~tickertape.eventlog.layout.RetentionMark`:
    the head, each topic's next offset, last gseq and ``ts_event``, and the highest
    ``source_seq`` per source) is written and fsync'd. Recovery reads it: the gseqs
    retention deleted are never taken for records lost in a crash (which would cut
    every record after them), and no offset, gseq or ``source_seq`` the deleted days
    held is given out or accepted again.

    Beside a running :class:`Sealer` (a log opened with ``seal=True``; call this on its
    writer thread), the days it has been handed and not finished are left for a later
    pass: deleting a day while it is being sealed would let the seal put it back.

    Args:
        rules: ``(pattern, max_age_days)``; the first matching pattern applies.
        now_ns: the reference time (ns).
        sealer: the sealer of the namespace, if one runs.

    Returns:
        The deleted day files.

    Raises:
        OSError: writing the retention mark, or deleting a file, failed (the mark
            is written before any deletion).
    """
    today = now_ns // NS_PER_DAY
    # Only the writer thread hands days to the sealer: none joins during this pass.
    busy = sealer.pending() if sealer is not None else frozenset()
    doomed: dict[str, list[Segment]] = {}
    for topic in eventlog.topics():
        rule = next((days for pattern, days in rules if matches(pattern, topic)), None)
        if rule is None:
            continue
        segments = list_segments(eventlog.dir / topic, topic)
        keep = len(segments) - 1  # the newest day that holds records, and those after it
        while keep > 0 and segments[keep].path.stat().st_size == 0:
            keep -= 1
        old = [seg for seg in segments[:keep] if seg.day < today - rule and seg.path not in busy]
        if old:
            doomed[topic] = old
    if not doomed:
        return []
    eventlog._save_retention_mark()
    deleted: list[Path] = []
    for topic, old in doomed.items():
        for seg in old:
            os.unlink(seg.path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(seg.index_path)
            deleted.append(seg.path)
        fsync_dir(eventlog.dir / topic)
    return deleted
