"""``tape verify``: check every record of every file of a namespace.

Checks, per record: framing and CRC, that it parses, that its offset continues its
topic's sequence (across day files), that gseq increases within the topic and is
unique in the namespace, that ts_event never decreases within the topic, and that the
record lies in the file of its ts_event's UTC day. Per file: that a saved index that
claims to be fresh agrees with the records. Every problem is reported with file, byte
position and offset; verification goes on after a bad record.

Beside a live writer (one holds the namespace's lock) verification covers the records
up to the head it read when it started: it stops each file at the first record past
that head, and an unterminated last line (a write in progress) is reported in
``in_flight``, not as a problem. Without a writer every record of every file is
checked, also those past the published head (``HEAD`` lags the files after a crash:
records written without fsync, or before the head moved); an unterminated line is a
torn record (the next open for writing truncates it). A day file sealed or deleted
while it is listed is looked up again (``tape compact`` may run beside).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import msgspec

from tickertape.errors import CorruptRecordError
from tickertape.eventlog.codec import CodecError, decode_line
from tickertape.eventlog.index import INDEX_EVERY, load_index
from tickertape.eventlog.layout import Segment, day_name, day_of, read_current
from tickertape.eventlog.reader import LogReader
from tickertape.eventlog.segment import iter_lines


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong: where (file, byte position, offset) and what."""

    path: str
    position: int
    offset: int | None
    what: str


class VerifyReport(msgspec.Struct):
    """The outcome of :func:`verify_namespace`.

    Attributes:
        head_gseq: the committed head when verification started; records past it
            (appended meanwhile) are not checked.
        writer_live: a writer held the namespace's lock when verification started.
        in_flight: unterminated last lines left alone because a writer was live
            (records being written past ``head_gseq``): not problems.
        past_head: valid records found past ``head_gseq`` when no writer was live
            (left by a crash before the head was published; the next open for writing
            keeps them when they continue the namespace's gseqs): checked, counted in
            ``records``, not problems.
    """

    namespace: str
    files: int = 0
    records: int = 0
    bytes: int = 0
    head_gseq: int = 0
    writer_live: bool = False
    past_head: int = 0
    problems: list[Problem] = msgspec.field(default_factory=list)
    in_flight: list[Problem] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


class _TopicState:
    """Running expectations while one topic's day files are checked in order."""

    __slots__ = ("expected_offset", "last_gseq", "last_ts", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.expected_offset: int | None = None
        self.last_gseq = 0
        self.last_ts = -1


def writer_holds_lock(ns_dir: Path) -> bool:
    """True when a process holds the namespace's writer lock (``flock`` on ``.lock``)."""
    try:
        fd = os.open(ns_dir / ".lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases a shared lock taken above
    return False


class _Gseqs:
    """The gseqs seen so far: a byte each up to the head, a set past it."""

    __slots__ = ("above", "upto")

    def __init__(self, head: int) -> None:
        self.upto = bytearray(head + 1)
        self.above: set[int] = set()


def _check_segment(
    seg: Segment,
    state: _TopicState,
    report: VerifyReport,
    gseqs: _Gseqs,
    positions: list[tuple[int, int, int]],
) -> int | None:
    """Check one day file; return its record count, or None when it was checked only up to
    the head (a live writer appends to it). Raises CorruptRecordError on a bad frame,
    FileNotFoundError when the file is gone before it is opened."""
    n = 0
    live = report.writer_live
    seen = gseqs.upto
    for pos, line in iter_lines(seg):
        if not line.endswith(b"\n") and not seg.sealed:
            if report.writer_live:
                report.in_flight.append(
                    Problem(
                        str(seg.path),
                        pos,
                        state.expected_offset,
                        "unterminated last line past the head: a record being written",
                    )
                )
                return None
            report.problems.append(
                Problem(str(seg.path), pos, state.expected_offset, "torn record at the end")
            )
            break
        try:
            rec = decode_line(line)
        except CodecError as exc:
            report.problems.append(Problem(str(seg.path), pos, state.expected_offset, exc.reason))
            if state.expected_offset is not None:
                state.expected_offset += 1
            continue
        if live and not seg.sealed and rec.gseq > report.head_gseq:
            return None  # appended by a live writer after verification started
        report.records += 1
        where = (str(seg.path), pos, rec.offset)
        if state.expected_offset is not None and rec.offset != state.expected_offset:
            report.problems.append(
                Problem(*where, f"offset {rec.offset} where {state.expected_offset} was expected")
            )
        if rec.gseq <= state.last_gseq:
            report.problems.append(
                Problem(*where, f"gseq {rec.gseq} not above the topic's previous {state.last_gseq}")
            )
        if rec.ts_event < state.last_ts:
            report.problems.append(
                Problem(*where, f"ts_event {rec.ts_event} below the previous {state.last_ts}")
            )
        if day_of(rec.ts_event) != seg.day:
            report.problems.append(
                Problem(
                    *where, f"ts_event is on {day_name(day_of(rec.ts_event))}, not the file's day"
                )
            )
        if rec.topic != state.topic:
            report.problems.append(
                Problem(*where, f"topic {rec.topic!r} in the file of {state.topic!r}")
            )
        if 0 < rec.gseq < len(seen):
            if seen[rec.gseq]:
                report.problems.append(Problem(*where, f"gseq {rec.gseq} appears twice"))
            seen[rec.gseq] = 1
        elif rec.gseq < 1:
            report.problems.append(Problem(*where, f"gseq {rec.gseq} is below 1"))
        elif live:
            report.problems.append(
                Problem(*where, f"gseq {rec.gseq} beyond the committed head {report.head_gseq}")
            )
        else:
            report.past_head += 1
            if rec.gseq in gseqs.above:
                report.problems.append(Problem(*where, f"gseq {rec.gseq} appears twice"))
            gseqs.above.add(rec.gseq)
        if n % INDEX_EVERY == 0:
            positions.append((rec.offset, rec.gseq, pos))
        n += 1
        state.expected_offset = rec.offset + 1
        state.last_gseq = max(state.last_gseq, rec.gseq)
        state.last_ts = max(state.last_ts, rec.ts_event)
    return n


def _check_listed(
    listed: Segment, state: _TopicState, report: VerifyReport, gseqs: _Gseqs
) -> tuple[Segment, int, int | None, list[tuple[int, int, int]]] | None:
    """Check a listed day file, or the file that replaced it when it was sealed since it
    was listed (``tape compact`` beside). Returns the file checked, its size, its record
    count (None: checked only in part) and its records' index positions; None when the
    day is gone (deleted by retention)."""

    def check(seg: Segment) -> tuple[int, int | None, list[tuple[int, int, int]]]:
        positions: list[tuple[int, int, int]] = []
        size = seg.path.stat().st_size
        try:
            n: int | None = _check_segment(seg, state, report, gseqs, positions)
        except CorruptRecordError as exc:
            report.problems.append(Problem(exc.path, exc.position, exc.offset, exc.reason))
            n = None
        return size, n, positions

    # Nothing of a file is checked before it is opened: one gone since it was listed
    # left nothing behind, and its successor is checked instead.
    current = read_current(listed, check)
    if current is None:
        return None
    seg, (size, n, positions) = current
    return seg, size, n, positions


def verify_namespace(
    data_dir: str | Path,
    namespace: str = "main",
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check a whole namespace; never raises on bad data (it is reported).

    Args:
        progress: called with the number of bytes of each file once it is checked.
    """
    reader = LogReader(data_dir, namespace)
    live = writer_holds_lock(reader.dir)
    report = VerifyReport(namespace=namespace, head_gseq=reader.head_gseq(), writer_live=live)
    gseqs = _Gseqs(report.head_gseq)
    for topic in reader.topics():
        state = _TopicState(topic)
        for listed in reader.segments(topic):
            checked = _check_listed(listed, state, report, gseqs)
            if checked is None:
                continue  # deleted since it was listed
            seg, size, n, positions = checked
            report.files += 1
            report.bytes += size
            index = load_index(seg.index_path)
            fresh = index is not None and index.data_size == size and index.sealed == seg.sealed
            if n is not None and index is not None and fresh:
                if index.count != n:
                    report.problems.append(
                        Problem(
                            str(seg.index_path),
                            0,
                            None,
                            f"index counts {index.count} records, file has {n}",
                        )
                    )
                indexed = {(e.offset, e.gseq, e.raw_pos) for e in index.entries}
                for off, g, p in sorted(indexed - set(positions))[:10]:
                    report.problems.append(
                        Problem(
                            str(seg.index_path),
                            p,
                            off,
                            f"index entry (offset {off}, gseq {g}) matches no record",
                        )
                    )
            if progress is not None:
                progress(size)
    return report
