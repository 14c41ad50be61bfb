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

from tickertape.eventlog.codec import CodecError, decode_line
from tickertape.eventlog.index import INDEX_EVERY, load_index
from tickertape.eventlog.layout import day_name, day_of
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
        return not self.problems


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
    seen = bytearray(report.head_gseq + 2)
    for topic in reader.topics():
        expected_offset: int | None = None
        last_gseq = 0
        last_ts = -1
        for seg in reader.segments(topic):
            report.files += 1
            size = seg.path.stat().st_size
            report.bytes += size
            positions: list[tuple[int, int, int]] = []  # offset, gseq, raw_pos of indexed records
            n = 0
            for pos, line in iter_lines(seg):
                if not line.endswith(b"\n") and not seg.sealed:
                    report.problems.append(
                        Problem(str(seg.path), pos, expected_offset, "torn record at the end")
                    )
                    break
                try:
                    rec = decode_line(line)
                except CodecError as exc:
                    report.problems.append(Problem(str(seg.path), pos, expected_offset, exc.reason))
                    if expected_offset is not None:
                        expected_offset += 1
                    continue
                report.records += 1
                where = (str(seg.path), pos, rec.offset)
                if expected_offset is not None and rec.offset != expected_offset:
                    report.problems.append(
                        Problem(*where, f"offset {rec.offset} where {expected_offset} was expected")
                    )
                if rec.gseq <= last_gseq:
                    report.problems.append(
                        Problem(
                            *where, f"gseq {rec.gseq} not above the topic's previous {last_gseq}"
                        )
                    )
                if rec.ts_event < last_ts:
                    report.problems.append(
                        Problem(*where, f"ts_event {rec.ts_event} below the previous {last_ts}")
                    )
                if day_of(rec.ts_event) != seg.day:
                    report.problems.append(
                        Problem(
                            *where,
                            f"ts_event is on {day_name(day_of(rec.ts_event))}, not the file's day",
                        )
                    )
                if rec.topic != topic:
                    report.problems.append(
                        Problem(*where, f"topic {rec.topic!r} in the file of {topic!r}")
                    )
                if 0 < rec.gseq < len(seen):
                    if seen[rec.gseq]:
                        report.problems.append(Problem(*where, f"gseq {rec.gseq} appears twice"))
                    seen[rec.gseq] = 1
                elif rec.gseq >= len(seen):
                    report.problems.append(
                        Problem(
                            *where, f"gseq {rec.gseq} beyond the committed head {report.head_gseq}"
                        )
                    )
                if n % INDEX_EVERY == 0:
                    positions.append((rec.offset, rec.gseq, pos))
                n += 1
                expected_offset = rec.offset + 1
                last_gseq = max(last_gseq, rec.gseq)
                last_ts = max(last_ts, rec.ts_event)
            index = load_index(seg.index_path)
            if index is not None and index.data_size == size and index.sealed == seg.sealed:
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
                actual = {(o, g, p) for (o, g, p) in positions}
                stray = sorted(indexed - actual)
                for off, g, p in stray[:10]:
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
