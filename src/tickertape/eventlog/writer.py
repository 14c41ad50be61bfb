"""The sequencer and persister of one namespace: :class:`EventLog` (synchronous).

One process writes a namespace at a time (an exclusive ``flock`` on its ``.lock``).
:meth:`EventLog.append` assigns ``offset`` (per topic) and ``gseq`` (per namespace),
writes every record of the batch with one ``os.write`` per touched file, fsyncs each
touched file (and the directory of any file it created), and only then returns: an
append that returned is durable. :class:`tickertape.eventlog.AsyncEventLog` adds group
commit on top for concurrent producers. ``append(..., durable=False)`` defers the
fsync to :meth:`EventLog.sync` (for namespaces that can be regenerated, such as a
replay's run namespace).

Crash safety (see :meth:`EventLog.open`): a batch is written as *groups* of at most
:data:`MAX_GROUP` records, and at most :data:`MAX_GROUP` records are ever written
between two fsyncs. ``HEAD`` is published only after an fsync. After a crash, only
records written since the last fsync can be missing or damaged (in any order: the
page cache flushes pages in any order); none of them was acknowledged as durable, so
recovery cuts every record from the first missing gseq on, which keeps ``gseq``
contiguous across the namespace, and never cuts at or below the published head.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import mmap
import os
import re
import signal
import struct
import sys
import threading
import time
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import msgspec
import structlog

from tickertape.errors import (
    DiskFullError,
    LogClosedError,
    LogError,
    LogFatalError,
)
from tickertape.eventlog.codec import CodecError, decode_line, encode_batch, ts_log_suffix
from tickertape.eventlog.dedupe import OLDER, RecentPositions
from tickertape.eventlog.index import (
    INDEX_EVERY,
    IndexEntry,
    SegmentIndex,
    load_index,
    save_index,
)
from tickertape.eventlog.layout import (
    NS_PER_DAY,
    RetainedTopic,
    RetentionMark,
    Segment,
    check_namespace_free,
    day_name,
    day_number,
    fsync_dir,
    list_segments,
    list_topics,
    load_retention_mark,
    makedirs_durable,
    namespace_creation_lock,
    namespace_dir,
    read_current,
    save_retention_mark,
)
from tickertape.eventlog.reader import LogReader
from tickertape.eventlog.segment import build_index, iter_lines, scan_segment
from tickertape.schemas.envelope import Envelope, Record
from tickertape.topics import validate_topic

MAX_GROUP = 65_536
"""Most records written between two fsyncs; recovery relies on this bound."""

MAX_OPEN_FILES = 256
"""Day files kept open for appending; beyond, the least recently used are closed."""

SYNCFS_THRESHOLD = 8
"""A group touching more files than this is made durable with one syncfs(2) (Linux)."""

RECENT_KEYS = 131_072
"""Positions of stored (source, source_seq) kept in memory to answer duplicates without
reading the files (about 3.7 MB at most: see :mod:`tickertape.eventlog.dedupe`).
Trimmed to half when full, it holds the latest 65,536 to 131,072 records; older
duplicates (a client's full outbox is 100,000 events) are found in the files
(``_resolve_older``). At 262,144 the router's RSS grew 21.0 MB at its peak over 5 M
events to 16 subscribers, 17.4 MB at this size (benchmarks/bench_router.py, one run
each; docs/protocol.md §13)."""

_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}

log = structlog.get_logger("tickertape.eventlog")


def _load_syncfs() -> Callable[[int], None] | None:
    """syncfs(2) through libc, or None where it does not exist (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None

    def syncfs(fd: int) -> None:
        if fn(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return syncfs


_syncfs = _load_syncfs()


class AppendResult(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The outcome of one envelope of an append.

    Attributes:
        id: the envelope's id.
        offset, gseq: its position (also for a duplicate: the position it already has).
            None for errors, and for a duplicate whose record is not found: never
            stored (refused when first sent, then passed by a later source_seq), or,
            older than the in-memory window, stored under another topic than the
            envelope's or deleted by retention.
        duplicate: True when (source, source_seq) was already stored: nothing written.
        error: a stable code when refused (``TS_REGRESSION``, ``INVALID_TOPIC``,
            ``INVALID_ENVELOPE``: ``ts_event``, ``ts_init`` or ``source_seq`` outside
            0..2**63-1, a payload that is not one JSON value (when the log checks
            payloads) or a string JSON cannot carry; ``DAY_SEALED``;
            ``TOPIC_DAMAGED``: the topic's newest file is damaged past its last
            readable record, so its next offset is unknown), else None.
        message: what was wrong, for errors.
    """

    id: str
    offset: int | None = None
    gseq: int | None = None
    duplicate: bool = False
    error: str | None = None
    message: str | None = None


_DUPLICATE = AppendResult(id="", duplicate=True)  # a placeholder in a group's results


def _duplicate_at(env: Envelope, pos: object) -> AppendResult:
    """The result of ``env`` as a duplicate: at ``pos`` when it is the ``(topic, offset,
    gseq)`` of :meth:`RecentPositions.find`, else without position."""
    if isinstance(pos, tuple):
        return AppendResult(id=env.id, offset=pos[1], gseq=pos[2], duplicate=True)
    return AppendResult(id=env.id, duplicate=True)


class DroppedTail(msgspec.Struct, frozen=True):
    """What recovery removed from the end of a day file."""

    path: str
    from_pos: int
    to_pos: int
    records: int
    reason: str


class RecoveryReport(msgspec.Struct):
    """What :meth:`EventLog.open` found and repaired."""

    dropped: list[DroppedTail] = msgspec.field(default_factory=list)
    corrupt: list[str] = msgspec.field(default_factory=list)
    head_gseq: int = 0


@dataclass(slots=True)
class _Topic:
    name: str
    dir: Path
    next_offset: int = 0
    last_ts: int = -1
    last_gseq: int = 0
    sealed_day: int = -1
    damaged: str | None = None  # why the next offset is unknown (appends refused)
    day: int = -1
    fd: int = -1
    size: int = 0
    index: SegmentIndex | None = None

    path_day: int = -1
    path_cache: Path | None = None

    @property
    def path(self) -> Path:
        """The file of the topic's open day (``day`` ≥ 0)."""
        if self.path_day != self.day or self.path_cache is None:
            self.path_cache = self.dir / f"{day_name(self.day)}.jsonl"
            self.path_day = self.day
        return self.path_cache


@dataclass(slots=True)
class _Touched:
    topic: _Topic
    day: int
    path: Path
    fd: int
    size_before: int
    created: bool
    index: SegmentIndex | None  # the file's in-memory index, when it held `base` records


class _Batch:
    """The records of one group for one topic-day file: collected, then encoded and
    summarized at once (:meth:`encode`)."""

    __slots__ = (
        "base",
        "buffer",
        "count",
        "day",
        "entries",
        "envelopes",
        "first_offset",
        "gseqs",
        "last",
        "sources",
        "topic",
    )

    def __init__(self, topic: str, day: int, base: int, first_offset: int) -> None:
        self.topic = topic
        self.day = day
        self.base = base  # records the file's in-memory index held before (-1: unknown)
        self.first_offset = first_offset
        self.envelopes: list[Envelope] = []
        self.gseqs: list[int] = []
        self.buffer = bytearray()
        self.count = 0
        # (offset, gseq, ts_event, position in buffer) of the records to index
        self.entries: list[tuple[int, int, int, int]] = []
        self.sources: dict[str, int] = {}  # highest source_seq per source
        self.last = (-1, 0, 0)  # (offset, gseq, ts_event) of its last record

    def encode(self, ts_log: bytes) -> None:
        """Encode the records into ``buffer`` and summarize them for the sparse index."""
        envs = self.envelopes
        gseqs = self.gseqs
        n = self.count = len(envs)
        first = self.first_offset
        # The file's records due for an index entry: every INDEX_EVERY-th, from its first.
        marks = range((-self.base) % INDEX_EVERY if self.base >= 0 else 0, n, INDEX_EVERY)
        positions = encode_batch(envs, first, gseqs, ts_log, self.buffer, marks)
        if positions:
            self.entries = [
                (first + k, gseqs[k], envs[k].ts_event, pos)
                for k, pos in zip(marks, positions, strict=True)
            ]
        last = envs[-1]
        if n == 1:
            self.sources = {last.source: last.source_seq}
        else:
            # Highest source_seq per source (a source's records come in increasing order).
            self.sources = dict(zip(map(_source, envs), map(_source_seq, envs), strict=True))
        self.last = (first + n - 1, gseqs[-1], last.ts_event)


_source = attrgetter("source")
_source_seq = attrgetter("source_seq")

_ENCODE_ERRORS = (ValueError, TypeError, OverflowError, msgspec.EncodeError)
"""What encoding an envelope raises for a value JSON cannot carry (a lone surrogate)."""

_POSITIONS = re.compile(rb',"offset":(\d+),"gseq":(\d+),"ts_log":')


def _last_gseq(found: _OpenFile) -> int:
    """The gseq of the last valid record of a scanned file (0: none)."""
    index = found.index
    return index.last_gseq if index is not None and index.count else 0


def _tail_gseq(found: _OpenFile) -> int | None:
    """The gseq the first record of ``found``'s invalid tail gives itself, when its
    positions still read and its offset is the one the file expects next; else None
    (a write torn before its positions, garbage)."""
    assert found.tail is not None
    start, _end, _reason = found.tail
    with open(found.segment.path, "rb") as f:
        f.seek(start)
        line = f.readline()
    matches = _POSITIONS.findall(line)
    if not matches:
        return None
    offset, gseq = (int(x) for x in matches[-1])  # the log's own members come last
    index = found.index
    if index is not None and index.count and offset != index.last_offset + 1:
        return None
    return gseq


_check_raw = msgspec.json.Decoder(msgspec.Raw).decode


def _invalid_payload(payload: msgspec.Raw) -> bool:
    """True when ``payload`` is not one JSON value."""
    try:
        _check_raw(payload)
    except msgspec.DecodeError:
        return True
    return False


def _envelope_problem(env: Envelope, check_payload: bool) -> str | None:
    """Why the log cannot store ``env`` faithfully, or None: ``ts_event``, ``ts_init``
    or ``source_seq`` not an int or outside 0..2**63-1, or (with ``check_payload``) a
    payload that is not one JSON value. (A string JSON cannot carry shows only when
    the envelope is encoded: :meth:`EventLog._append_encodable`.)"""
    for name in ("ts_event", "ts_init", "source_seq"):
        value = getattr(env, name)
        if type(value) is not int:
            return f"{name} must be an integer"
        if value >> 63:
            return f"{name} {value} is outside 0..2**63-1"
    if check_payload:
        try:
            _check_raw(env.payload)
        except msgspec.DecodeError as exc:
            return f"payload is not one JSON value: {exc}"
    return None


def _refusal(env: Envelope, problem: str | None) -> AppendResult:
    """The ``INVALID_ENVELOPE`` answer to ``env`` (its id made printable)."""
    env_id = str(env.id).encode("utf-8", "backslashreplace").decode()
    return AppendResult(
        id=env_id, error="INVALID_ENVELOPE", message=f"envelope {env_id!r}: {problem}"
    )


_first = itemgetter(0)


@dataclass(slots=True)
class _BadRegion:
    """Invalid bytes of an open day file with valid records after them."""

    pos: int
    reason: str
    prev_gseq: int  # the last valid record before it in the file (0: none)
    next_gseq: int  # the first valid record after it


@dataclass(slots=True)
class _OpenFile:
    """What the recovery scan of one open day file found."""

    segment: Segment
    trusted_gseq: int = 0  # last gseq of the prefix described by a trusted .idx (0: none)
    prefix_end: int = 0  # where that prefix ends (bytes)
    prefix_entries: list[IndexEntry] = field(default_factory=list)
    index: SegmentIndex | None = None  # the file's index after the scan
    records: deque[tuple[int, int]] = field(
        default_factory=lambda: deque(maxlen=MAX_GROUP + 1)
    )  # (gseq, byte position) of the file's last records past the prefix
    bad: list[_BadRegion] = field(default_factory=list)
    # Invalid bytes after the last valid record: (start, end, reason), cut by
    # _settle_tails unless they may hold records the published HEAD says were durable.
    tail: tuple[int, int, str] | None = None


class _Presence:
    """Which gseqs of a range ``(lo, hi]`` were seen (one byte each)."""

    MAX_SPAN = 1 << 24

    def __init__(self, lo: int, hi: int) -> None:
        self.lo = lo
        self.seen = bytearray(max(0, min(hi - lo, self.MAX_SPAN)))

    def add(self, gseq: int) -> None:
        i = gseq - self.lo - 1
        if 0 <= i < len(self.seen):
            self.seen[i] = 1

    def all_present(self, lo: int, hi: int) -> bool:
        """True when every gseq of ``(lo, hi]`` was seen (False past the tracked span)."""
        if hi - self.lo > len(self.seen) or lo < self.lo:
            return False
        return 0 not in self.seen[lo - self.lo : hi - self.lo]


class EventLog:
    """A namespace of the event log, opened for writing (one process at a time).

    Not thread-safe: call it from one thread (``AsyncEventLog`` runs it on its own).
    Use :meth:`open`.
    """

    def __init__(
        self,
        data_dir: Path,
        namespace: str,
        now_ns: Callable[[], int],
        check_payloads: bool = True,
        closed_days: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.check_payloads = check_payloads
        # Day files that are over and durable, for take_closed_days() (None: not kept).
        self._closed_days: list[Segment] | None = [] if closed_days else None
        self.namespace = namespace
        self.dir = namespace_dir(data_dir, namespace)
        self._now_ns = now_ns
        self._topics: dict[str, _Topic] = {}
        self._sources: dict[str, int] = {}
        self._positions = RecentPositions(RECENT_KEYS)
        self._head = 0
        self._synced = 0
        self._unsynced = 0
        self._pending_fds: dict[int, None] = {}
        self._pending_dirs: set[Path] = set()
        self._failed: LogError | None = None
        self._closed = False
        self._lock_fd = -1
        self._head_map: mmap.mmap | None = None
        # Day files rolled over since the last sync -> their index (saved after the sync;
        # None: rebuilt from the file then).
        self._rolled: dict[Path, SegmentIndex | None] = {}
        self._open_lru: OrderedDict[str, None] = OrderedDict()
        self._deferred_close: list[int] = []
        self._retention: RetentionMark | None = None
        self.recovery = RecoveryReport()
        self.reader = LogReader(data_dir, namespace, head=self._reader_head)

    def _reader_head(self) -> int:
        return self._head

    # ------------------------------------------------------------------ open

    @classmethod
    def open(
        cls,
        data_dir: str | Path,
        namespace: str = "main",
        *,
        now_ns: Callable[[], int] = time.time_ns,
        check_payloads: bool = True,
        closed_days: bool = False,
    ) -> EventLog:
        """Open (creating if needed) a namespace for writing, recovering it first.

        Recovery: finishes interrupted seals; checks each open day file from the end
        of the prefix its saved ``.idx`` describes (the whole file when there is no
        usable one), and does not read at all an open day that is not its topic's
        newest when its saved index describes the whole file (see
        :meth:`_load_complete`: such a file has no tail left to check); truncates
        torn or garbage tails and damaged records written without fsync past the
        durable head (fsync'd, reported in :attr:`recovery` and the log); cuts every
        record from the first missing gseq on (never below the head published after
        the last fsync); and rebuilds offsets, the gseq head and the (source,
        source_seq) dedupe state. What it keeps is fsync'd before the head is
        published. The retention mark (``RETENTION``, written by
        :func:`~tickertape.eventlog.sealing.apply_retention`) counts as a durable head
        beside ``HEAD``, so the gseqs retention deleted are never cut as a crash's
        incomplete group, and it keeps each topic's next offset and last ``ts_event``,
        and each source's highest ``source_seq``, at least where they stood when
        retention ran. The head is never set below ``HEAD`` or the mark's head.

        Args:
            data_dir: the data directory (the log lives in ``<data_dir>/logs``).
            namespace: ``main`` or ``runs/<run-id>`` style.
            now_ns: the ``ts_log`` clock when appends do not pass one.
            check_payloads: check that each appended envelope's payload is one JSON
                value (refused with ``INVALID_ENVELOPE`` otherwise: invalid bytes
                stored would make the line unreadable). About 0.5 µs per 150-byte
                payload; callers whose payloads were encoded by msgspec or decoded from
                JSON (the router, the replay's sinks, the importers) pass False.
            closed_days: keep the day files that are over for :meth:`take_closed_days`
                (the open days before each topic's newest record's day, then each day
                a topic rolls over from); :class:`~tickertape.eventlog.AsyncEventLog`
                with ``seal=True`` hands them to its sealer.

        Raises:
            LogError: another process holds the namespace, or its ``RETENTION`` file
                does not decode.
            ConfigError: invalid namespace name, or one that collides with an existing
                namespace (``runs`` and ``runs/<id>`` cannot both exist).
        """
        self = cls(Path(data_dir), namespace, now_ns, check_payloads, closed_days)
        with namespace_creation_lock(self.data_dir):
            check_namespace_free(self.data_dir, namespace)
            makedirs_durable(self.dir)
            self._lock_fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise LogError(
                f"namespace {namespace!r} in {self.dir} is open for writing by another process"
            ) from None
        if threading.current_thread() is threading.main_thread():
            # Past RLIMIT_FSIZE, write() must fail with EFBIG instead of killing us.
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        try:
            self._recover()
        except BaseException:
            self._release()
            raise
        self._open_head_file()
        return self

    def _recover(self) -> None:
        self._retention = load_retention_mark(self.dir)
        # Every gseq up to the retention mark's head was durable when retention ran
        # (it syncs first), and the mark is fsync'd: a durable head that, unlike HEAD,
        # no power loss can take back.
        hint = self._read_head_hint()
        if self._retention is not None:
            hint = max(hint, self._retention.head_gseq)
        files, newest = self._load_topics(hint)
        if self._repair(files, hint):
            # Rebuild the state of the namespace from the repaired files.
            self._topics.clear()
            self._sources.clear()
            self._positions.clear()
            files, newest = self._load_topics(hint)
        try:
            self._sync_kept(files, hint)
        except OSError as exc:
            raise LogFatalError(self.dir, exc) from exc
        self._save_scanned_indexes(files, newest)
        self._synced = self._head
        self.recovery.head_gseq = self._head
        for name, seg in newest.items():
            topic = self._topics[name]
            topic.size = seg.path.stat().st_size  # opened on the first append
        if self._closed_days is not None:
            self._closed_days.extend(self._days_over())
        if self.recovery.dropped or self.recovery.corrupt:
            log.warning(
                "eventlog.recovered",
                namespace=self.namespace,
                dropped=[msgspec.to_builtins(d) for d in self.recovery.dropped],
                corrupt=self.recovery.corrupt,
                head_gseq=self._head,
            )

    def _hand_out_if_over(self, seg: Segment) -> None:
        """Keep a day a topic rolled over from for :meth:`take_closed_days` when it is
        before the day of the topic's last record. Not otherwise: a topic rolls back
        from an empty newest file (left by a crash as a day began) to the day of its
        last record, and a group can roll over and back; that day still takes appends.
        The topic refuses appends to a day handed out (``DAY_SEALED``), so that none
        can create its open file again beside the sealed one."""
        topic = self._topics[seg.topic]
        if topic.last_ts < 0 or seg.day >= topic.last_ts // NS_PER_DAY:
            return
        self._mark_sealed(seg.topic, seg.day)
        assert self._closed_days is not None
        self._closed_days.append(seg)

    def _days_over(self) -> Iterator[Segment]:
        """The open day files before the day of each topic's last record: no append can
        go to them (``ts_event`` never decreases within a topic). A topic's empty newest
        file (a crash as a day began) is not among them, nor the day before it."""
        for name, topic in self._topics.items():
            if topic.last_ts < 0:
                continue
            last_day = topic.last_ts // NS_PER_DAY
            for seg in list_segments(topic.dir, name):
                if not seg.sealed and seg.day < last_day:
                    self._mark_sealed(name, seg.day)
                    yield seg

    def take_closed_days(self) -> list[Segment]:
        """Hand out the day files that are over (no append can go to them) and whose
        records are all durable, each once: at the first call those found by
        :meth:`open`, then each day a topic rolled over from, after the sync that made
        its last records durable. Empty unless opened with ``closed_days=True``.

        The files are closed and their indexes saved; the caller may seal them
        (:func:`~tickertape.eventlog.sealing.seal_segment`) from another thread: this
        log never touches them again.
        """
        days = self._closed_days
        if not days:
            return []
        self._closed_days = []
        return days

    @staticmethod
    def _save_scanned_indexes(files: list[_OpenFile], newest: dict[str, Segment]) -> None:
        """Save the index of every open day file that is not its topic's newest (a day
        rolled over before a crash, its index not saved) when the scan had to read past
        its saved index. Call after the kept records are fsync'd; the newest days'
        indexes are kept in memory and saved on close, as usual."""
        for found in files:
            seg = found.segment
            index = found.index
            if (
                index is None
                or not index.count
                or found.bad
                or found.prefix_end == index.data_size
                or newest.get(seg.topic) == seg
            ):
                continue
            save_index(seg.index_path, index)

    def _load_topics(self, hint: int) -> tuple[list[_OpenFile], dict[str, Segment]]:
        """Load every topic's state from its files (truncating torn tails, see
        :meth:`_settle_tails`) and the head; ``hint`` is the durable head: the published
        ``HEAD``, or the retention mark's head when higher (``HEAD`` below).

        Returns:
            What the scan of every open day file found, and each topic's newest open day.
        """
        from tickertape.eventlog.sealing import finish_interrupted

        files: list[_OpenFile] = []
        newest: dict[str, Segment] = {}
        for name in list_topics(self.dir):
            topic = _Topic(name, self.dir / name)
            finish_interrupted(topic.dir)
            segments = list_segments(topic.dir, name)
            last = len(segments) - 1
            for i, seg in enumerate(segments):
                topic.damaged = None  # a later day's records give the next offset
                if seg.sealed:
                    self._load_sealed(topic, seg)
                    continue
                found = self._load_complete(topic, seg) if i < last else None
                files.append(found if found is not None else self._scan_open(topic, seg))
            if segments and not segments[-1].sealed:
                topic.day = segments[-1].day
                newest[name] = segments[-1]
            self._absorb_retained(topic)
            self._topics[name] = topic
        if self._retention is not None:
            for src, seq in self._retention.sources.items():
                if self._sources.get(src, 0) < seq:
                    self._sources[src] = seq
        # Never below the durable head published (HEAD never leads the files) or
        # recorded by retention: a gseq above it may have been given to a record that
        # is gone now (deleted by retention, lost to damage), and is never given again.
        self._head = max(max((t.last_gseq for t in self._topics.values()), default=0), hint)
        self._settle_tails(files, hint)
        return files, newest

    def _settle_tails(self, files: list[_OpenFile], hint: int) -> None:
        """Truncate the invalid tails the scan found (torn or garbage records a crash
        left past the last fsync), reported in :attr:`recovery`, except those that may
        hold a record the published ``HEAD`` says was durable, damaged on disk after
        its fsync (a flipped byte): cutting one would give its offset and gseq to
        another record. Such a tail is kept and reported as corruption (readers stop
        there with an error), the namespace's gseqs go on after ``HEAD``, and the topic
        refuses appends with ``TOPIC_DAMAGED`` unless a later day of it holds records.

        A tail may hold such a record when its first line still reads as a record of
        the file's next offset with a gseq at or below ``HEAD`` (damage usually leaves
        the positions readable), or, when it does not read, when some gseq between the
        file's last valid record and ``HEAD`` is held by no valid record and claimed by
        no other tail (gseqs up to the retention mark's head are not looked for when
        the topic held none of them: :meth:`_retained_floor`). A torn write (its
        positions are at the end of the line) past ``HEAD`` is cut. ``HEAD`` here is
        ``hint``: the published ``HEAD``, or the retention mark's head when higher.
        """
        tails = [f for f in files if f.tail is not None]
        if not tails:
            return
        kept: list[_OpenFile] = []
        cut: list[_OpenFile] = []
        unknown: list[tuple[_OpenFile, int]] = []
        claimed: list[int] = []
        for found in tails:
            gseq = _tail_gseq(found)
            if gseq is None:
                # The tail's records come after the file's last valid one, and after
                # the gseqs retention vouches its topic held none of.
                unknown.append(
                    (found, self._retained_floor(found.segment.topic, _last_gseq(found)))
                )
            elif gseq <= hint:
                kept.append(found)
                claimed.append(gseq)
            else:
                cut.append(found)
        if unknown:
            lo = min(since for _f, since in unknown)
            presence = self._known_gseqs(files, lo, hint) if lo < hint else None
            if presence is not None:
                for gseq in claimed:
                    presence.add(gseq)
            for found, since in unknown:
                if presence is not None and since < hint and not presence.all_present(since, hint):
                    kept.append(found)
                else:
                    cut.append(found)
        for found in kept:
            seg = found.segment
            start, _end, reason = found.tail  # type: ignore[misc]
            last = _last_gseq(found)
            self.recovery.corrupt.append(
                f"{seg.path}: byte {start}: {reason} (after gseq {last}; it may hold a "
                f"record acknowledged as durable, up to gseq {hint}: kept)"
            )
            later = self._topics[seg.topic].sealed_day > seg.day or any(
                f.segment.topic == seg.topic
                and f.segment.day > seg.day
                and f.index is not None
                and f.index.count
                for f in files
            )
            if not later:
                self._topics[seg.topic].damaged = (
                    f"open day file {seg.path} is damaged after its record of gseq {last} "
                    f"(byte {start}: {reason}), which may hold records acknowledged as "
                    f"durable (up to gseq {hint}); restore it from a copy, then reopen the log"
                )
        for found in cut:
            seg = found.segment
            start, end, _reason = found.tail  # type: ignore[misc]
            dropped = self._count_lines(seg.path, start, end)
            self._truncate(seg.path, start)
            self.recovery.dropped.append(
                DroppedTail(str(seg.path), start, end, dropped, "torn or invalid tail")
            )
            found.tail = None

    def _load_sealed(self, topic: _Topic, seg: Segment) -> None:
        size = seg.path.stat().st_size
        index = load_index(seg.index_path)
        if index is None or index.data_size != size or not index.sealed:
            scan = scan_segment(seg, size)
            index = scan.index
            for pos, reason in scan.problems:
                self.recovery.corrupt.append(f"{seg.path}: byte {pos}: {reason}")
            save_index(seg.index_path, index)
            if scan.damaged_tail:
                # Records past the last readable one were lost to damage: their
                # offsets are unknown, and assigning them again would give two
                # records one offset. Unless a later day follows, appends are refused.
                pos, reason = scan.problems[-1]
                topic.damaged = (
                    f"sealed day file {seg.path} is damaged after offset "
                    f"{index.last_offset if index.count else 'none'} (byte {pos}: "
                    f"{reason}); restore it from a copy, then reopen the log"
                )
        self._absorb_summary(topic, index)
        topic.sealed_day = max(topic.sealed_day, seg.day)

    def _absorb_summary(self, topic: _Topic, index: SegmentIndex) -> None:
        if index.count:
            topic.next_offset = index.last_offset + 1
            topic.last_ts = index.last_ts
            topic.last_gseq = index.last_gseq
        for src, seq in index.sources.items():
            if self._sources.get(src, 0) < seq:
                self._sources[src] = seq

    def _absorb_retained(self, topic: _Topic) -> None:
        """Keep a topic's position at least where the retention mark says it stood: its
        next offset and last ``ts_event`` outlive the files retention deleted."""
        mark = self._retention
        retained = mark.topics.get(topic.name) if mark is not None else None
        if retained is None:
            return
        topic.next_offset = max(topic.next_offset, retained.next_offset)
        topic.last_ts = max(topic.last_ts, retained.last_ts_event)
        topic.last_gseq = max(topic.last_gseq, retained.last_gseq)

    def _retained_floor(self, topic: str, after: int) -> int:
        """Where to start looking for the gseqs a topic's records past ``after`` may hold.

        Records of ``topic`` after its record of gseq ``after`` have gseqs above it.
        When the topic's last record was at or below ``after`` when retention last ran,
        none of them is at or below that run's head either (every gseq up to it was
        given out by then): the gseqs up to that head, where retention leaves gaps,
        are not theirs. Returns ``after`` or that head, whichever is higher in that
        case; ``after`` otherwise.
        """
        mark = self._retention
        if mark is None or mark.head_gseq <= after:
            return after
        retained = mark.topics.get(topic)
        if retained is not None and retained.last_gseq > after:
            return after
        return mark.head_gseq

    def _save_retention_mark(self) -> None:
        """Save where the namespace stands now as its retention mark (fsync'd), for
        retention to call before it deletes days. Syncs first: every record up to the
        mark's head is durable.

        Raises:
            OSError: the mark could not be written.
        """
        self.sync()
        mark = RetentionMark(
            head_gseq=self._synced,
            topics={
                t.name: RetainedTopic(
                    next_offset=t.next_offset, last_gseq=t.last_gseq, last_ts_event=t.last_ts
                )
                for t in self._topics.values()
                if t.next_offset > 0
            },
            sources=dict(self._sources),
        )
        save_retention_mark(self.dir, mark)
        self._retention = mark

    def _load_complete(self, topic: _Topic, seg: Segment) -> _OpenFile | None:
        """Load an open day file that is not its topic's newest from its saved index
        alone when that index describes the whole file; else None (it is then scanned).

        DESIGN §5 asks recovery to check the tail of every open file, because a crash
        can leave a torn tail past what was fsync'd. The writer saves an open day's
        ``.idx`` only once the data it describes is fsync'd (on a day roll after the
        sync, on close and before sealing; recovery saves the indexes it rebuilt after
        fsyncing what it kept), and it never fsyncs the index itself: after a power
        loss an index can be missing, corrupt or older, never ahead of the data. So an
        index whose ``data_size`` is the file's size says that every byte of the file
        was durable before the index was written: the file has no unchecked tail and
        nothing of it is read (the saving: with thousands of daily files of a
        record or a few each, the reads of every file were most of the time of an
        open). Whatever was written to a day file after its index was saved (the
        group a crash interrupted while it rolled over, or an append to an older day
        after a crash left a newer day's file empty, which sends the writer back to
        the older day) makes the sizes differ, and that file is scanned as before.

        Not seen here, as for sealed days, whose indexes are trusted the same way: a
        change of the file's bytes that keeps its size (damage on disk, a manual edit).
        Readers stop at it with an error and ``tape verify`` reports it. The newest
        day, the one the writer appends to, always goes through :meth:`_scan_open`,
        which also decodes its last indexed stretch again.
        """
        index = load_index(seg.index_path)
        if index is None or index.sealed:
            return None
        size = os.stat(seg.path).st_size
        if index.data_size != size or index.raw_size != size:
            return None
        if index.count == 0:
            if size:
                return None
        elif not index.entries or index.entries[0].offset != index.first_offset:
            return None
        found = _OpenFile(
            seg,
            trusted_gseq=index.last_gseq,
            prefix_end=size,
            prefix_entries=list(index.entries),
            index=index,
        )
        topic.index = index
        self._absorb_summary(topic, index)
        return found

    @staticmethod
    def _trusted_prefix(seg: Segment, size: int) -> SegmentIndex | None:
        """The saved index of an open day file when it can stand for the file's start.

        The writer saves an open day's ``.idx`` only for data already fsync'd (on a
        clean close, a day roll and before sealing), so a CRC-valid index whose
        ``data_size`` is within the file describes a durable prefix. As a check that
        it belongs to this file, the records of its last indexed stretch (at most
        :data:`INDEX_EVERY`) are decoded again: they must continue the index's offsets
        and end exactly at ``data_size`` with its last offset and gseq.
        """
        index = load_index(seg.index_path)
        if (
            index is None
            or index.sealed
            or index.count == 0
            or not index.entries
            or index.data_size > size
            or index.raw_size != index.data_size
        ):
            return None
        last = index.entries[-1]
        expected = last.offset
        end = last.file_pos
        gseq = -1
        for pos, line in iter_lines(seg, last.file_pos, last.file_pos):
            if pos >= index.data_size:
                break
            try:
                rec = decode_line(line)
            except CodecError:
                return None
            if rec.offset != expected or not line.endswith(b"\n"):
                return None
            expected += 1
            gseq = rec.gseq
            end = pos + len(line)
        if end != index.data_size or expected - 1 != index.last_offset:
            return None
        return index if gseq == index.last_gseq else None

    def _scan_open(self, topic: _Topic, seg: Segment) -> _OpenFile:
        """Check an open day file past its trusted prefix: index it, find its valid end
        and the torn or garbage tail after it (truncated by :meth:`_settle_tails`), and
        note invalid records followed by valid ones."""
        size = seg.path.stat().st_size
        found = _OpenFile(seg)
        index = self._trusted_prefix(seg, size)
        if index is None:
            index = SegmentIndex(sealed=False, data_size=size)
            start = 0
        else:
            start = index.data_size
            found.trusted_gseq = index.last_gseq
            found.prefix_end = start
            found.prefix_entries = list(index.entries)
        valid_end = start
        bad_since: int | None = None
        bad_reason = ""
        prev_gseq = index.last_gseq
        for pos, line in iter_lines(seg, start, start):
            try:
                if not line.endswith(b"\n"):
                    raise CodecError("torn record (no newline)")
                rec = decode_line(line)
            except CodecError as exc:
                if bad_since is None:
                    bad_since = pos
                    bad_reason = exc.reason
                continue
            if bad_since is not None:
                found.bad.append(_BadRegion(bad_since, bad_reason, prev_gseq, rec.gseq))
                bad_since = None
            prev_gseq = rec.gseq
            index.add(rec.offset, rec.gseq, rec.ts_event, rec.source, rec.source_seq, pos, pos)
            valid_end = pos + len(line)
            found.records.append((rec.gseq, pos))
        if valid_end < size:
            found.tail = (valid_end, size, bad_reason)  # every line past valid_end is bad
        index.data_size = valid_end
        index.raw_size = valid_end
        topic.index = found.index = index
        self._absorb_summary(topic, index)
        return found

    @staticmethod
    def _count_lines(path: Path, start: int, end: int) -> int:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(end - start)
        return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)

    def _truncate(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _cut_file(self, found: _OpenFile, pos: int, reason: str) -> None:
        """Truncate an open day file at ``pos`` (fsync'd, reported) and forget its records there."""
        path = found.segment.path
        size = path.stat().st_size
        if pos >= size:
            return
        records = self._count_lines(path, pos, size)
        self._truncate(path, pos)
        self.recovery.dropped.append(DroppedTail(str(path), pos, size, records, reason))
        while found.records and found.records[-1][1] >= pos:
            found.records.pop()

    def _repair(self, files: list[_OpenFile], hint: int) -> bool:
        """Cut what a crash left past the durable head so that gseq is contiguous.

        Everything up to ``low`` is known durable: the HEAD published after the last
        fsync (``hint``; not itself fsync'd, so after a power loss it may lag, never
        lead; or the head the retention mark recorded, fsync'd, when higher) and
        ``head - MAX_GROUP`` (at most MAX_GROUP records are ever written between two
        fsyncs). Every gseq retention deleted is at or below the mark's head, so its
        gaps are never taken for missing records. Past ``low``, records written without
        fsync may be missing or damaged in any order (the page cache flushes pages in
        any order):

        1. invalid bytes followed by valid records, in a stretch that can only hold
           records past ``low``, are damage of that kind: the file is cut there;
           invalid bytes that may hold a record at or below ``low`` are corruption
           (reported, never cut);
        2. then every record from the first gseq missing above ``low`` on is cut, so
           the log keeps the longest contiguous prefix.

        Returns:
            True when a file was cut (the state must be loaded again).
        """
        head = self._head
        if head == 0:
            return False
        low = max(head - MAX_GROUP, min(hint, head), 0)
        for found in files:
            if found.trusted_gseq > low:
                found.records = deque([*self._prefix_records(found, low), *found.records])
        changed = False
        gaps: list[tuple[int, int]] = []
        suspects = [
            since
            for f in files
            for r in f.bad
            if r.next_gseq > low
            and (since := self._retained_floor(f.segment.topic, r.prev_gseq)) < low
        ]
        known = self._known_gseqs(files, min(suspects), low) if suspects else None
        for found in files:
            for region in found.bad:
                since = self._retained_floor(found.segment.topic, region.prev_gseq)
                in_flight = region.next_gseq > low and (
                    since >= low or (known is not None and known.all_present(since, low))
                )
                if in_flight:
                    self._cut_file(
                        found,
                        region.pos,
                        f"records past the durable head gseq {low} damaged by a crash "
                        f"({region.reason})",
                    )
                    changed = True
                    break
                self.recovery.corrupt.append(
                    f"{found.segment.path}: byte {region.pos}: {region.reason} "
                    "(valid records follow)"
                )
                gaps.append((region.prev_gseq, region.next_gseq))
        if low >= head:
            return changed  # everything is durable: no gseq to look for
        present: set[int] = set()
        for found in files:
            present.update(g for (g, _p) in found.records if g > low)
        present.update(self._sealed_gseqs_above(low))

        def explained(g: int) -> bool:
            return any(a < g < b for a, b in gaps)

        missing = next(
            (g for g in range(low + 1, head + 1) if g not in present and not explained(g)), None
        )
        if missing is not None:
            for found in files:
                cut = next((p for (g, p) in found.records if g >= missing), None)
                if cut is not None:
                    self._cut_file(
                        found,
                        cut,
                        f"records of an incomplete group past the durable head "
                        f"(gseq {missing} missing)",
                    )
                    changed = True
        return changed

    @staticmethod
    def _prefix_records(found: _OpenFile, low: int) -> list[tuple[int, int]]:
        """(gseq, position) of the records above ``low`` in the trusted prefix of a file."""
        entries = found.prefix_entries
        i = bisect_right([e.gseq for e in entries], low) - 1
        start = entries[max(i, 0)].file_pos
        out: list[tuple[int, int]] = []
        for pos, line in iter_lines(found.segment, start, start):
            if pos >= found.prefix_end:
                break
            try:
                gseq = decode_line(line).gseq
            except CodecError:
                continue
            if gseq > low:
                out.append((gseq, pos))
        return out

    def _sealed_gseqs_above(self, low: int) -> Iterator[int]:
        """The gseqs above ``low`` held by sealed days (they hold committed records only)."""
        for name in self._topics:
            for seg in list_segments(self.dir / name, name):
                if not seg.sealed:
                    continue
                index = load_index(seg.index_path)
                if index is not None and index.last_gseq <= low:
                    continue
                for _pos, line in iter_lines(seg):
                    try:
                        g = decode_line(line).gseq
                    except CodecError:
                        continue
                    if g > low:
                        yield g

    def _known_gseqs(self, files: list[_OpenFile], lo: int, hi: int) -> _Presence:
        """Which gseqs in ``(lo, hi]`` are held by valid records of the namespace.

        From the records the scan kept when they cover the range; otherwise every day
        file is read (a slow path taken only after a crash damaged unsynced records).
        """
        presence = _Presence(lo, hi)
        for found in files:
            for g, _p in found.records:
                presence.add(g)
        if presence.all_present(lo, hi):
            return presence
        for name in self._topics:
            for seg in list_segments(self.dir / name, name):
                for _pos, line in iter_lines(seg):
                    try:
                        presence.add(decode_line(line).gseq)
                    except CodecError:
                        continue
        return presence

    def _sync_kept(self, files: list[_OpenFile], hint: int) -> None:
        """fsync the open day files holding records past the published head before it moves.

        After a kill (not a power loss) records written without fsync are still in the
        page cache and are kept: they must be durable before HEAD says so.
        """
        if self._head <= hint:
            return
        paths = [f.segment.path for f in files if f.records and f.records[-1][0] > hint]
        if len(paths) > SYNCFS_THRESHOLD and _syncfs is not None:
            fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                _syncfs(fd)
            finally:
                os.close(fd)
            return
        for path in paths:
            if not path.exists():
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _read_head_hint(self) -> int:
        try:
            data = (self.dir / "HEAD").read_bytes()
        except FileNotFoundError:
            return 0
        return int(struct.unpack("<q", data[:8])[0]) if len(data) >= 8 else 0

    def _open_head_file(self) -> None:
        path = self.dir / "HEAD"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            self._head_map = mmap.mmap(fd, 8)
        finally:
            os.close(fd)
        self._publish_head()

    def _publish_head(self) -> None:
        if self._head_map is not None:
            struct.pack_into("<q", self._head_map, 0, self._synced)

    # ------------------------------------------------------------- queries

    @property
    def head_gseq(self) -> int:
        """The last assigned gseq (0 for an empty namespace).

        Every record up to it is readable through this object. After appends with
        ``durable=False`` it may be ahead of :attr:`synced_gseq`, the head other
        processes see; otherwise the two are equal.
        """
        return self._head

    @property
    def synced_gseq(self) -> int:
        """The last durable gseq: the head published in ``HEAD`` for other readers."""
        return self._synced

    def topics(self, patterns: Sequence[str] | None = None) -> list[str]:
        """Topics of the namespace (matching any of ``patterns`` when given), sorted."""
        return self.reader.topics(patterns)

    def next_offsets(self) -> dict[str, int]:
        """The next offset of every topic (its record count when nothing was deleted)."""
        return {name: t.next_offset for name, t in sorted(self._topics.items())}

    def last_ts_event(self, topic: str) -> int | None:
        """The last stored ``ts_event`` of a topic, or None when the topic is empty."""
        t = self._topics.get(topic)
        return None if t is None or t.last_ts < 0 else t.last_ts

    def last_source_seq(self, source: str) -> int:
        """The highest stored ``source_seq`` of ``source`` (0 when none)."""
        return self._sources.get(source, 0)

    def read_topic(
        self, topic: str, from_offset: int = 0, to_offset: int | None = None
    ) -> Iterator[Record]:
        """Records of one topic by offset; see :meth:`LogReader.read_topic`."""
        return self.reader.read_topic(topic, from_offset, to_offset)

    def read(
        self, patterns: Sequence[str] | None = None, from_gseq: int = 1, to_gseq: int | None = None
    ) -> Iterator[Record]:
        """Records merged by gseq; see :meth:`LogReader.read`."""
        return self.reader.read(patterns, from_gseq, to_gseq)

    def read_from_time(
        self, patterns: Sequence[str] | None, ts_ns: int, to_ns: int | None = None
    ) -> Iterator[Record]:
        """Records with ``ts_event`` ≥ ``ts_ns``, merged by gseq; see :meth:`LogReader.read_from_time`."""
        return self.reader.read_from_time(patterns, ts_ns, to_ns)

    # -------------------------------------------------------------- append

    def append(
        self,
        envelopes: Sequence[Envelope],
        *,
        ts_log: int | None = None,
        durable: bool = True,
    ) -> list[AppendResult]:
        """Append a batch; return one result per envelope, in order.

        Each envelope is stored (new offset and gseq), recognised as a duplicate of
        its (source, source_seq) (nothing stored, its existing position returned), or
        refused with an error code (the rest of the batch proceeds).

        With ``durable=True`` (the default) the call returns only after every stored
        record (and every record written before it) is fsync'd, and the published
        head moves to it: other readers see it.

        With ``durable=False`` the records are written (to the page cache) but not
        fsync'd, and the published head stays where the last fsync left it: this
        object reads them (:attr:`head_gseq`), other processes do not until
        :meth:`sync`. For namespaces that can be regenerated (a replay's run
        namespace, rebuilt from snapshots), made durable at snapshots and at the end.
        A crash (kill or power loss) loses some or all of what was written after the
        last sync, never anything before it; on the next open the log keeps the
        longest gseq-contiguous prefix of what survived (see :meth:`open`). At most
        :data:`MAX_GROUP` records are ever left unsynced: an append that would pass
        that bound syncs first. :meth:`close` syncs.

        Args:
            envelopes: the batch (any size; written in groups of ≤ ``MAX_GROUP``).
            ts_log: the ``ts_log`` to stamp (backtest namespaces pass simulated time);
                default the log's clock at the time of each group.
            durable: fsync before returning (True) or leave it to :meth:`sync`.

        Raises:
            DiskFullError: no space (or file size limit): nothing of the current group
                was stored; earlier groups of a large batch were.
            LogFatalError: a write or fsync failed otherwise; the log refuses all
                further work and the process should exit.
            LogClosedError: the log is closed or failed earlier.
        """
        self._check_usable()
        results: list[AppendResult] = []
        for start in range(0, len(envelopes), MAX_GROUP):
            group = envelopes[start : start + MAX_GROUP]
            if self._unsynced and self._unsynced + len(group) > MAX_GROUP:
                self.sync()  # keep the recovery bound: ≤ MAX_GROUP records between fsyncs
            ts = self._now_ns() if ts_log is None else ts_log
            try:
                results.extend(self._append_group(group, ts, durable))
            except _ENCODE_ERRORS as exc:
                # Nothing of the group was written: refuse the envelopes that cannot be
                # stored (a float ts_event, a string with a lone surrogate) and store
                # the rest.
                results.extend(self._append_encodable(group, ts, durable, exc))
        if durable and self._synced != self._head:
            self.sync()  # e.g. a batch of duplicates of records not yet synced
        return results

    def _append_encodable(
        self, group: Sequence[Envelope], ts_log: int, durable: bool, error: Exception
    ) -> list[AppendResult]:
        """Append ``group`` less the envelopes that cannot be stored (integer fields
        that are not ints, values JSON cannot carry), which are refused with
        ``INVALID_ENVELOPE``; re-raise ``error`` (what the whole group raised) when
        none is."""
        refused: dict[int, AppendResult] = {}
        scratch = bytearray()
        for i, env in enumerate(group):
            problem = _envelope_problem(env, check_payload=False)  # checked before
            if problem is None:
                try:
                    encode_batch([env], 0, [1], b"", scratch)
                except _ENCODE_ERRORS as exc:
                    problem = f"cannot be encoded as JSON: {exc}"
                scratch.clear()
            if problem is not None:
                refused[i] = _refusal(env, problem)
        if not refused:
            raise error
        stored = iter(
            self._append_group(
                [e for i, e in enumerate(group) if i not in refused], ts_log, durable
            )
        )
        return [refused[i] if i in refused else next(stored) for i in range(len(group))]

    def sync(self) -> None:
        """Make every record written so far durable, then publish the head.

        fsyncs each file written since the last sync (one ``syncfs(2)`` when there
        are more than :data:`SYNCFS_THRESHOLD`) and each directory that got a new
        file, saves the indexes of day files that rolled over, and moves the
        published ``HEAD`` (what other readers see) to :attr:`head_gseq`. A no-op
        when nothing is pending.

        Raises:
            LogFatalError: an fsync failed; the log refuses all further work.
            LogClosedError: the log is closed or failed earlier.
        """
        self._check_usable()
        if self._synced == self._head and not self._pending_fds and not self._deferred_close:
            return
        self._sync_files()
        self._after_sync()

    def _check_usable(self) -> None:
        if self._closed:
            raise LogClosedError(f"event log {self.dir} is closed")
        if self._failed is not None:
            raise LogClosedError(f"event log {self.dir} failed earlier: {self._failed}")

    def _after_sync(self) -> None:
        """Everything written is durable: save rolled-over days' indexes, publish the head.

        A rolled-over day's index is the one kept in memory while appending (no read of
        the file); only a file whose in-memory index was not kept (a day file that
        existed before it was reopened for appending, after an undone group) is indexed
        from the file here.
        """
        for path, index in self._rolled.items():
            seg = Segment(path.parent.name, day_number(path.name[:10]), path, False)
            if index is None:
                try:
                    index, _problems = build_index(seg, path.stat().st_size)
                except FileNotFoundError:
                    continue  # an undone roll removed it
            save_index(seg.index_path, index)
            if self._closed_days is not None:
                self._hand_out_if_over(seg)
        self._rolled.clear()
        self._unsynced = 0
        self._synced = self._head
        self._publish_head()

    def _append_group(
        self, group: Sequence[Envelope], ts_log: int, durable: bool
    ) -> list[AppendResult]:
        results: list[AppendResult] = []
        append_result = results.append
        batches: list[_Batch] = []
        sources = self._sources
        topics = self._topics
        positions = self._positions
        pending_src: dict[str, int] = {}  # highest source_seq stored or pending
        # Duplicates answered once the group is written (of a record of the group) or
        # from the files (older than the in-memory window): (index in results, envelope).
        in_group: list[tuple[int, Envelope]] = []
        older: list[tuple[int, Envelope]] = []
        # name -> [next_offset, last_ts, sealed_day, batch of its latest day]
        pending_topic: dict[str, list[Any]] = {}
        new_topics: list[str] = []
        head = self._head
        first = head + 1
        current_day = -1
        current_day_end = -1
        current_day_start = 0
        check_payloads = self.check_payloads
        for env in group:
            source = env.source
            seq = env.source_seq
            if (env.ts_event | env.ts_init | seq) >> 63 or (
                check_payloads and _invalid_payload(env.payload)
            ):
                append_result(_refusal(env, _envelope_problem(env, check_payloads)))
                continue
            src_last = pending_src.get(source)
            if src_last is None:
                src_last = sources.get(source, 0)
            if seq <= src_last:
                if seq > sources.get(source, 0):
                    in_group.append((len(results), env))
                    append_result(_DUPLICATE)  # answered after the write
                    continue
                pos = positions.find(source, seq)
                if pos is OLDER:
                    older.append((len(results), env))
                    append_result(_DUPLICATE)  # answered by _resolve_older
                else:
                    append_result(_duplicate_at(env, pos))
                continue
            topic_name = env.topic
            state = pending_topic.get(topic_name)
            if state is None:
                t = topics.get(topic_name)
                if t is None:
                    problem = validate_topic(topic_name)
                    if problem is not None:
                        append_result(
                            AppendResult(id=env.id, error="INVALID_TOPIC", message=problem)
                        )
                        continue
                    new_topics.append(topic_name)
                    state = [0, -1, -1, None]
                else:
                    if t.damaged is not None:
                        append_result(
                            AppendResult(id=env.id, error="TOPIC_DAMAGED", message=t.damaged)
                        )
                        continue
                    state = [t.next_offset, t.last_ts, t.sealed_day, None]
                pending_topic[topic_name] = state
            ts_event = env.ts_event
            if ts_event < state[1]:
                append_result(
                    AppendResult(
                        id=env.id,
                        error="TS_REGRESSION",
                        message=(
                            f"ts_event regression on topic {topic_name!r}: {ts_event} < "
                            f"last stored {state[1]}"
                        ),
                    )
                )
                continue
            if current_day_start <= ts_event < current_day_end:
                day = current_day
            else:
                day = current_day = ts_event // NS_PER_DAY
                current_day_start = day * NS_PER_DAY
                current_day_end = current_day_start + NS_PER_DAY
            if day <= state[2]:
                append_result(
                    AppendResult(
                        id=env.id,
                        error="DAY_SEALED",
                        message=f"topic {topic_name!r}: day {day_name(day)} is sealed; appends must be later",
                    )
                )
                continue
            batch = state[3]
            offset = state[0]
            if batch is None or batch.day != day:
                batch = state[3] = self._new_batch(topic_name, day, offset)
                batches.append(batch)
            head += 1
            state[0] = offset + 1
            state[1] = ts_event
            batch.envelopes.append(env)
            batch.gseqs.append(head)
            pending_src[source] = seq
            append_result(AppendResult(id=env.id, offset=offset, gseq=head))
        if older:
            self._resolve_older(older, results)
        if head >= first:
            ts_suffix = ts_log_suffix(ts_log)
            for batch in batches:
                batch.encode(ts_suffix)
            self._write(batches, new_topics)
            if durable:
                self._sync_files()
            self._head = head
            sources.update(pending_src)
            self._note_positions(batches, head)
            if durable:
                self._after_sync()
            else:
                self._unsynced += head - first + 1
        for i, env in in_group:
            # (no position: refused earlier in the group, then passed by a later source_seq)
            results[i] = _duplicate_at(env, positions.find(env.source, env.source_seq))
        if head >= first:
            # Trimmed only now: a duplicate within the group finds its first copy even
            # when the group alone holds more records than the window.
            positions.added(head - first + 1, head)
        return results

    def _note_positions(self, batches: list[_Batch], head: int) -> None:
        """Note the positions of a written group's records (gseq up to ``head``) in the
        in-memory window, source by source in gseq order (the caller trims the window
        with ``RecentPositions.added`` once the group's duplicates are answered).

        A batch whose records all come from one source that no other batch of the group
        holds (one producer per topic: the usual case) is added with a few array
        extends; the records of the other batches are merged by gseq one by one.
        """
        positions = self._positions
        if len(batches) == 1:
            batch = batches[0]
            if batch.count == 1:  # (a single-event append: the latency path)
                env = batch.envelopes[0]
                positions.source(env.source).append(
                    env.source_seq, head, batch.first_offset, positions.topic_id(batch.topic)
                )
                return
            owner = dict.fromkeys(batch.sources, True)
        else:
            owner = {}  # source -> held by one batch only
            for batch in batches:
                for source in batch.sources:
                    owner[source] = source not in owner
        mixed: list[tuple[int, Envelope, int, int]] = []
        for batch in batches:
            tid = positions.topic_id(batch.topic)
            first = batch.first_offset
            n = batch.count
            if len(batch.sources) == 1 and owner[next(iter(batch.sources))]:
                src = positions.source(next(iter(batch.sources)))
                if n == 1:
                    src.append(batch.envelopes[0].source_seq, batch.gseqs[0], first, tid)
                else:
                    src.seqs.extend(map(_source_seq, batch.envelopes))
                    src.gseqs.extend(batch.gseqs)
                    src.offsets.extend(range(first, first + n))
                    src.topics.extend(repeat(tid, n))
            else:
                mixed.extend(
                    zip(batch.gseqs, batch.envelopes, range(first, first + n), repeat(tid))
                )
        if len(batches) > 1:
            mixed.sort(key=_first)  # (one batch's records are in gseq order already)
        for gseq, env, offset, tid in mixed:
            # (SourcePositions.append inlined: once per record here)
            src = positions.source(env.source)
            src.seqs.append(env.source_seq)
            src.gseqs.append(gseq)
            src.offsets.append(offset)
            src.topics.append(tid)

    def _new_batch(self, name: str, day: int, first_offset: int) -> _Batch:
        """A batch for ``name``'s file of ``day``; ``base`` is what its index holds now."""
        topic = self._topics.get(name)
        if topic is None or topic.day != day:
            base = 0  # a new file (or one rebuilt when it is opened: checked after writing)
        else:
            base = topic.index.count if topic.index is not None else -1
        return _Batch(name, day, base, first_offset)

    def _resolve_older(
        self, older: list[tuple[int, Envelope]], results: list[AppendResult]
    ) -> None:
        """Put in ``results`` the stored positions of duplicates older than the in-memory
        window, found in their topic's files (memory: the group's duplicates only).

        1. A retried envelope keeps its ``ts_event``: one read of the topic by time, from
           the group's earliest such ``ts_event`` through its latest, finds the retries.
        2. Any other: a source's records have increasing ``source_seq`` along a topic,
           so only the first day file whose index counts the source's highest
           ``source_seq`` at or above it can hold it; that day is read.

        Not found (refused when first sent, stored in another topic, or deleted by
        retention): a duplicate without position (``offset`` and ``gseq`` None).
        """
        wanted_by_topic: dict[str, dict[tuple[str, int], list[int]]] = {}
        bounds: dict[str, tuple[int, int]] = {}
        for i, env in older:
            results[i] = AppendResult(id=env.id, duplicate=True)
            if env.topic not in self._topics:
                continue
            wanted = wanted_by_topic.setdefault(env.topic, {})
            wanted.setdefault((env.source, env.source_seq), []).append(i)
            lo, hi = bounds.get(env.topic, (env.ts_event, env.ts_event))
            bounds[env.topic] = (min(lo, env.ts_event), max(hi, env.ts_event))

        def found(wanted: dict[tuple[str, int], list[int]], records: Iterator[Record]) -> None:
            for rec in records:
                where = wanted.pop((rec.source, rec.source_seq), None)
                if where is None:
                    continue
                for i in where:
                    results[i] = AppendResult(
                        id=results[i].id, offset=rec.offset, gseq=rec.gseq, duplicate=True
                    )
                if not wanted:
                    return

        reader = self.reader
        for topic, wanted in wanted_by_topic.items():
            lo, hi = bounds[topic]
            found(wanted, reader.read_from_time([topic], lo, hi + 1))
            if not wanted:
                continue
            # (read_current: a day sealed meanwhile, by this log's sealer, is read sealed)
            current = (read_current(seg, reader.segment_index) for seg in reader.segments(topic))
            days = [day[1] for day in current if day is not None and day[1].count]
            by_day: dict[int, dict[tuple[str, int], list[int]]] = {}
            for key, where in wanted.items():
                source, seq = key
                day = next(
                    (d for d, idx in enumerate(days) if idx.sources.get(source, 0) >= seq), None
                )
                if day is not None:
                    by_day.setdefault(day, {})[key] = where
            for day, keys in by_day.items():
                idx = days[day]
                found(keys, reader.read_topic(topic, idx.first_offset, idx.last_offset))

    def _write(self, batches: list[_Batch], new_topics: list[str]) -> None:
        """Write a group's batches (one write per touched file) and update the topics'
        state and sparse indexes; nothing is fsync'd here. On a write error the group
        is taken back out of the files (:meth:`_undo`)."""
        touched: list[_Touched] = []
        try:
            for name in new_topics:
                if name not in self._topics:
                    tdir = self.dir / name
                    makedirs_durable(tdir)
                    self._topics[name] = _Topic(name, tdir)
            for batch in batches:
                topic = self._topics[batch.topic]
                day = batch.day
                created = False
                if topic.day != day:
                    created = self._roll(topic, day)
                    if created:
                        self._pending_dirs.add(topic.dir)
                elif topic.fd < 0:
                    topic.fd = os.open(topic.path, os.O_WRONLY | os.O_APPEND)
                index = topic.index
                if index is None and batch.base == 0:
                    index = topic.index = SegmentIndex(sealed=False, data_size=0)
                if index is not None and index.count != batch.base:
                    index = None  # not the index of the file as it was: rebuilt below
                touched.append(
                    _Touched(topic, day, topic.path, topic.fd, topic.size, created, index)
                )
                data = batch.buffer
                view = memoryview(data)
                while view:
                    n = os.write(topic.fd, view)
                    view = view[n:]
                self._pending_fds[topic.fd] = None
                topic.size += len(data)
                lru = self._open_lru
                lru[topic.name] = None
                lru.move_to_end(topic.name)
                if len(lru) + len(self._deferred_close) > MAX_OPEN_FILES:
                    self._shed_files(touched)
        except OSError as exc:
            self._undo(touched)
            if exc.errno in _DISK_FULL_ERRNOS:
                raise DiskFullError(self.dir) from exc
            self._failed = LogFatalError(self.dir, exc)
            raise self._failed from exc
        except BaseException:
            # Not the disk (a bug, an interrupt): take the group back out all the same,
            # so that its positions are not left on disk to be given out again.
            self._undo(touched)
            raise
        for batch, t in zip(batches, touched, strict=True):
            topic = t.topic
            last_offset, topic.last_gseq, topic.last_ts = batch.last  # (a topic's latest last)
            topic.next_offset = last_offset + 1
            size = t.size_before + len(batch.buffer)
            index = t.index
            if index is None:
                # The file existed before its day was (re)opened for appending and its
                # index was not kept: index it from the file (a rolled-over day: at sync).
                if batch.day == topic.day:
                    seg = Segment(topic.name, batch.day, t.path, False)
                    topic.index = build_index(seg, size)[0]
                else:
                    self._rolled[t.path] = None
                continue
            index.absorb(batch.count, batch.entries, batch.sources, t.size_before)
            index.last_offset, index.last_gseq, index.last_ts = batch.last
            index.data_size = index.raw_size = size

    def _sync_files(self) -> None:
        """fsync every file written since the last sync (or one syncfs(2) for many) and
        the directories of created files; then close the files of rolled-over days.

        Raises:
            LogFatalError: an fsync failed (the log refuses all further work).
        """
        fds = list(self._pending_fds)
        try:
            if len(fds) > SYNCFS_THRESHOLD and _syncfs is not None:
                _syncfs(fds[0])
            else:
                for fd in fds:
                    os.fsync(fd)
                for d in self._pending_dirs:
                    fsync_dir(d)
        except OSError as exc:
            self._failed = LogFatalError(self.dir, exc)
            raise self._failed from exc
        finally:
            self._pending_fds.clear()
            self._pending_dirs.clear()
            for fd in self._deferred_close:
                os.close(fd)
            self._deferred_close.clear()

    def _close_fd(self, fd: int) -> None:
        self._pending_fds.pop(fd, None)
        os.close(fd)

    def _shed_files(self, touched: list[_Touched]) -> None:
        """Stay under MAX_OPEN_FILES: sync what was written, then close the least
        recently used day files (they are reopened on demand)."""
        self._sync_files()
        closed: set[int] = set()
        while len(self._open_lru) > MAX_OPEN_FILES // 2:
            name, _ = self._open_lru.popitem(last=False)
            topic = self._topics[name]
            if topic.fd >= 0:
                closed.add(topic.fd)
                self._close_fd(topic.fd)
                topic.fd = -1
        for t in touched:
            if t.fd in closed:
                t.fd = -1

    def _roll(self, topic: _Topic, day: int) -> bool:
        """Move the topic to the file of ``day``; True when that file was created.

        The previous day's file is closed at the next sync, and its in-memory index
        (completed with the rolling group's records once they are written) is saved then.
        """
        if topic.day >= 0:
            # (Also when its file was closed to stay under MAX_OPEN_FILES.)
            self._rolled[topic.dir / f"{day_name(topic.day)}.jsonl"] = topic.index
        if topic.fd >= 0:
            self._deferred_close.append(topic.fd)
            topic.fd = -1
        path = topic.dir / f"{day_name(day)}.jsonl"
        try:
            topic.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
            created = True
        except FileExistsError:
            topic.fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            created = False
        topic.day = day
        topic.size = os.fstat(topic.fd).st_size
        topic.index = None
        if not created and topic.size:
            seg = Segment(topic.name, day, path, False)
            topic.index, _problems = build_index(seg, topic.size)
        return created

    def _close_topic_file(self, topic: _Topic, *, save: bool = True) -> None:
        """Close the topic's open day file (saving its index; call after a sync)."""
        if save and topic.index is not None and topic.index.count:
            topic.index.data_size = topic.size
            save_index(topic.dir / f"{day_name(topic.day)}.idx", topic.index)
        if topic.fd >= 0:
            self._close_fd(topic.fd)
        topic.fd = -1

    def _undo(self, touched: list[_Touched]) -> None:
        """Take a failed group back out of the files (disk full): truncate, fsync, reopen.

        Records written earlier without fsync stay (in files not touched, and before
        ``size_before`` in those that were).
        """
        try:
            for t in reversed(touched):
                if t.created:
                    if t.topic.fd >= 0 and t.topic.day == t.day:
                        self._close_fd(t.topic.fd)
                        t.topic.fd = -1
                        t.topic.day = -1
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(t.path)
                    fsync_dir(t.topic.dir)
                else:
                    fd = os.open(t.path, os.O_WRONLY)
                    try:
                        os.ftruncate(fd, t.size_before)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            for t in touched:
                topic = t.topic
                if topic.fd < 0:
                    segments = [s for s in list_segments(topic.dir, topic.name) if not s.sealed]
                    if segments:
                        prev = segments[-1]
                        topic.fd = os.open(prev.path, os.O_WRONLY | os.O_APPEND)
                        topic.day = prev.day
                        topic.index, _problems = build_index(prev, prev.path.stat().st_size)
                        self._rolled.pop(prev.path, None)  # current again
                topic.size = os.fstat(topic.fd).st_size if topic.fd >= 0 else 0
                if topic.index is not None:
                    topic.index.data_size = topic.size
        except OSError as exc:
            self._failed = LogFatalError(self.dir, exc)
            raise self._failed from exc

    # --------------------------------------------------------------- close

    def flush_indexes(self) -> None:
        """Sync, then save the sparse index of every open day file (a cache for readers).

        An open day's saved index only ever describes fsync'd data: :meth:`open`
        trusts it and checks only the records after it.
        """
        self.sync()
        for topic in self._topics.values():
            if topic.day >= 0 and topic.index is not None and topic.index.count:
                topic.index.data_size = topic.size
                topic.index.raw_size = topic.size
                save_index(topic.dir / f"{day_name(topic.day)}.idx", topic.index)

    def _release_topic_file(self, name: str) -> None:
        """Close a topic's open file before it is sealed (next append reopens)."""
        self.sync()
        topic = self._topics[name]
        if topic.day >= 0:
            self._close_topic_file(topic)
            topic.day = -1
            self._open_lru.pop(name, None)

    def _mark_sealed(self, name: str, day: int) -> None:
        topic = self._topics[name]
        topic.sealed_day = max(topic.sealed_day, day)

    def close(self) -> None:
        """Sync, save indexes, close files and release the namespace lock (idempotent).

        Raises:
            LogFatalError: the final fsync failed (the lock is released all the same).
        """
        if self._closed:
            return
        try:
            if self._failed is None:
                self.flush_indexes()
        finally:
            self._closed = True
            for fd in self._deferred_close:
                os.close(fd)
            self._deferred_close.clear()
            for topic in self._topics.values():
                if topic.fd >= 0:
                    os.close(topic.fd)
                    topic.fd = -1
            self._pending_fds.clear()
            self._release()

    def _release(self) -> None:
        if self._head_map is not None:
            self._head_map.close()
            self._head_map = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
