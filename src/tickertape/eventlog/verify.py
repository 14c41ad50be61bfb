"""``tape verify``: check every record of every file of a namespace.

Checks, per record: framing and CRC, that it parses, that its offset continues its
topic's sequence (across day files), that gseq increases within the topic and is
unique in the namespace, that ts_event never decreases within the topic, and that the
record lies in the file of its ts_event's UTC day. Per file: that a saved index that
claims to be fresh agrees with the records. Every problem is reported with file, byte
position and offset; verification goes on after a bad record.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec

from tickertape.errors import CorruptRecordError
from tickertape.eventlog.codec import CodecError, decode_line
from tickertape.eventlog.index import INDEX_EVERY, load_index
from tickertape.eventlog.layout import Segment, day_name, day_of
from tickertape.eventlog.reader import LogReader
from tickertape.eventlog.segment import iter_lines


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong: where (file, byte position, offset) and what."""

    path: str
    position: int
    offset: int | None
    what: str


class VerifyReport(msgspec.Struct):
    """The outcome of :func:`verify_namespace`."""

    namespace: str
    files: int = 0
    records: int = 0
    bytes: int = 0
    head_gseq: int = 0
    problems: list[Problem] = msgspec.field(default_factory=list)

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


def _check_segment(
    seg: Segment,
    state: _TopicState,
    report: VerifyReport,
    seen: bytearray,
    positions: list[tuple[int, int, int]],
) -> int:
    """Check one day file; return its record count. Raises CorruptRecordError on a bad frame."""
    n = 0
    for pos, line in iter_lines(seg):
        if not line.endswith(b"\n") and not seg.sealed:
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
        if not seg.sealed and rec.gseq > report.head_gseq:
            break  # appended by a live writer after verification started
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
        else:
            report.problems.append(
                Problem(*where, f"gseq {rec.gseq} beyond the committed head {report.head_gseq}")
            )
        if n % INDEX_EVERY == 0:
            positions.append((rec.offset, rec.gseq, pos))
        n += 1
        state.expected_offset = rec.offset + 1
        state.last_gseq = max(state.last_gseq, rec.gseq)
        state.last_ts = max(state.last_ts, rec.ts_event)
    return n


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
    report = VerifyReport(namespace=namespace, head_gseq=reader.head_gseq())
    seen = bytearray(report.head_gseq + 1)
    for topic in reader.topics():
        state = _TopicState(topic)
        for seg in reader.segments(topic):
            report.files += 1
            size = seg.path.stat().st_size
            report.bytes += size
            positions: list[tuple[int, int, int]] = []
            try:
                n = _check_segment(seg, state, report, seen, positions)
            except CorruptRecordError as exc:
                report.problems.append(Problem(exc.path, exc.position, exc.offset, exc.reason))
                n = -1
            index = load_index(seg.index_path)
            fresh = index is not None and index.data_size == size and index.sealed == seg.sealed
            if n >= 0 and index is not None and fresh:
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
