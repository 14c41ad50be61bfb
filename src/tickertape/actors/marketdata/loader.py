"""Write parsed historical files into the event log, merged in ``ts_event`` order.

:func:`build_envelopes` turns parsed files into envelopes (pure); :func:`import_files`
checks them against what the log holds, appends them to an
:class:`~tickertape.eventlog.EventLog` in batches and records one
``system.import_manifest`` event per file.

Ordering: the files' sources are merged by (``ts_event``, source, ``source_seq``), so
the log receives every topic in time order across files and symbols, whatever the
order the files were given in. Each source's ``source_seq`` is its events' rank in the
file (1, 2, ...), strictly increasing in append order.

Identity and idempotency (docs/marketdata.md, "Importing historical files"):

- A file's content is its bytes' sha256 plus the options that shape its events
  (:attr:`~tickertape.actors.marketdata.importers.ParsedFile.options`); its manifest's
  source, :func:`manifest_source`, is derived from them alone. Content already
  imported — under this name or another, earlier or by an earlier file of the same
  call — is not stored again: the file is reported ``same_as`` that import.
- A source (:func:`~tickertape.actors.marketdata.importers.source_name`: the file's
  path and options) the log already holds events of is only appended to when those
  events are exactly the file's first ones (read back and compared): a file that
  grew stores its new rows; a file that changed otherwise is refused.
- Before anything is appended, every topic's new events are checked against the
  log's last ``ts_event`` of that topic and against the other files of the call: an
  event older than what its topic holds, or a bar or a file's time span overlapping
  another source's on the same topic, refuses the whole call with file and line
  (:class:`~tickertape.errors.ImportDataError`). The log therefore never refuses
  part of an import for its times, and a refused row is never later taken for one
  already stored.

Historical envelopes carry ``ts_init`` = ``ts_event`` (the importer's clock is the
data's own time), which keeps re-imports byte-identical.

Throughput: the log appends one batch on a background thread (fsync waits release
the GIL) while the next batch is built, so at most two batches are in memory;
nothing after a refused batch is appended. Envelopes are built in the merge loop
itself, with each payload class's (``type``, ``v``) looked up once per import rather
than through :func:`~tickertape.schemas.registry.make_envelope` per event: the same
envelope (tested), about 0.45 µs less per event.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from operator import attrgetter, itemgetter
from typing import Protocol

import msgspec

from tickertape.actors.marketdata.importers import ParsedEvent, ParsedFile, paused_gc
from tickertape.errors import ImportDataError, LogError
from tickertape.eventlog import AppendResult
from tickertape.schemas.envelope import Envelope, Record
from tickertape.schemas.market import Bar
from tickertape.schemas.registry import make_envelope, schema_key
from tickertape.schemas.system import ImportManifest
from tickertape.topics import validate_topic

BATCH_SIZE = 10_000
"""Envelopes per append call (one group commit: written, then fsync'd once)."""

MANIFEST_TOPIC = "system.import_manifest"
MAX_REFUSALS_LISTED = 100
"""Refusal reasons kept in a manifest (the count is always exact)."""

_SOURCE = attrgetter("source")
_PAYLOAD_ENCODER = msgspec.json.Encoder()  # as registry.encode_payload's
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AppendLog(Protocol):
    """The part of :class:`~tickertape.eventlog.EventLog` the importer uses."""

    def append(
        self, envelopes: Sequence[Envelope], *, ts_log: int | None = None
    ) -> list[AppendResult]: ...

    def last_ts_event(self, topic: str) -> int | None: ...

    def last_source_seq(self, source: str) -> int: ...

    def read_topic(
        self, topic: str, from_offset: int = 0, to_offset: int | None = None
    ) -> Iterator[Record]: ...

    def read_from_time(
        self, patterns: Sequence[str] | None, ts_ns: int, to_ns: int | None = None
    ) -> Iterator[Record]: ...


class FileReport(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of importing one file (also published as its manifest).

    Attributes:
        manifest: what the file's ``system.import_manifest`` event says (rows read,
            events stored and duplicate, refusals).
        sources: the file's sources.
        same_as: the file name of the import that already stored this content (same
            bytes, same options: earlier, or an earlier file of the same call), when
            nothing of this file was stored for that reason; None otherwise.
    """

    manifest: ImportManifest
    sources: list[str]
    same_as: str | None = None


class _ManifestName(msgspec.Struct):
    """The part of a stored manifest the importer reads back."""

    file_name: str = ""


_MANIFEST_NAME = msgspec.json.Decoder(_ManifestName)


def manifest_source(parsed: ParsedFile) -> str:
    """Return the source of a file's manifest, derived from its content alone.

    ``import.manifest.{format}.{sha256[:16]}``, plus ``.{8 hex digits}`` of the
    options' sha256 when the file has options
    (:attr:`~tickertape.actors.marketdata.importers.ParsedFile.options`): the same
    bytes imported with the same options have the same manifest source whatever the
    file is called, which is how content already imported is recognised.
    """
    base = f"import.manifest.{parsed.format}.{parsed.sha256[:16]}"
    if not parsed.options:
        return base
    return f"{base}.{hashlib.sha256(parsed.options.encode()).hexdigest()[:8]}"


def _when(ns: int) -> str:
    """An instant in ns since the epoch as ISO 8601 UTC text (µs precision)."""
    return (_EPOCH + timedelta(microseconds=ns // 1_000)).isoformat().replace("+00:00", "Z")


def _start_ns(event: ParsedEvent) -> int:
    """When an event's time span starts: a bar's open, otherwise its ``ts_event``."""
    payload = event.payload
    return payload.start_ns if isinstance(payload, Bar) else event.ts_event


def _refusal(parsed: ParsedFile, event: ParsedEvent, reason: str) -> ImportDataError:
    return ImportDataError(parsed.path, event.line or None, f"{reason} (nothing was stored)")


def _check_held(
    log: AppendLog, parsed: ParsedFile, source: str, events: Sequence[ParsedEvent], held: int
) -> None:
    """Check that the ``held`` events the log has of ``source`` are the file's first ones.

    They are read back (the topics of the file's first ``held`` events, over their
    time span) and compared by topic, ``ts_event`` and payload bytes. A file that
    holds fewer events than the log (it lost rows at its end) passes when those are
    the log's first ones.

    Raises:
        ImportDataError: an event the log should hold for ``source`` is missing or
            different: the file changed other than by rows added at its end, or an
            earlier import stored events after one the log refused.
    """
    count = min(held, len(events))
    if count == 0:
        return
    expected = events[:count]
    found = bytearray(count)
    encode = _PAYLOAD_ENCODER.encode
    raw = msgspec.Raw
    wrong = count  # the lowest seq found different
    topics = sorted({e.topic for e in expected})
    for record in log.read_from_time(topics, expected[0].ts_event, expected[-1].ts_event + 1):
        seq = record.source_seq
        if record.source != source or seq > count:
            continue
        event = expected[seq - 1]
        if (
            record.topic != event.topic
            or record.ts_event != event.ts_event
            or record.payload != raw(encode(event.payload))
        ):
            wrong = min(wrong, seq - 1)
        found[seq - 1] = 1
    missing = found.find(0)
    first = min(wrong, count if missing < 0 else missing)
    if first < count:
        event = expected[first]
        raise _refusal(
            parsed,
            event,
            f"the log holds {held} events of source {source} from an earlier import of this "
            f"file, and its event #{first + 1} ({event.topic} at {_when(event.ts_event)}) "
            "is not this row's: the file changed other than by rows added at its end, or "
            "that import lost an event the log refused; import it into another namespace",
        )


def _check_times(log: AppendLog, files: Sequence[ParsedFile], held: Mapping[str, int]) -> None:
    """Check the events to store against what their topics hold and against each other.

    Per topic, each source's events to store (those after ``held[source]``) span
    from the first one's start (a bar's open, else its ``ts_event``) to the last
    one's ``ts_event``. Refused: a topic name the log would refuse; a first event
    older than the topic's last stored ``ts_event`` (the log would refuse it); a
    first bar that starts before that (it overlaps a stored bar: the same bars from
    another file, or raw and adjusted prices); two sources whose spans on one topic
    overlap (touching ends are fine). Events of one source are in ``ts_event`` order,
    so its first event on a topic is its earliest there.

    Raises:
        ImportDataError: the first such event, with its file and line.
    """
    spans: dict[str, list[tuple[int, int, ParsedFile, ParsedEvent]]] = {}
    for parsed in files:
        for source, events in parsed.streams.items():
            start = held.get(source, 0)
            first: dict[str, int] = {}
            last: dict[str, int] = {}
            for i in range(start, len(events)):
                topic = events[i].topic
                if topic not in first:
                    first[topic] = i
                last[topic] = i
            for topic, i in first.items():
                event = events[i]
                end = events[last[topic]].ts_event
                spans.setdefault(topic, []).append((_start_ns(event), end, parsed, event))
    for topic, items in spans.items():
        problem = validate_topic(topic)
        if problem is not None:
            _, _, parsed, event = items[0]
            raise _refusal(parsed, event, f"topic {topic!r}: {problem}")
        stored = log.last_ts_event(topic)
        if stored is not None:
            for start, _, parsed, event in items:
                if event.ts_event < stored:
                    raise _refusal(
                        parsed,
                        event,
                        f"{topic} already holds events up to {_when(stored)} and this row's "
                        f"is at {_when(event.ts_event)}, earlier: import older files first, "
                        "or into another namespace",
                    )
                if start < stored:
                    raise _refusal(
                        parsed,
                        event,
                        f"this bar ({_when(start)} to {_when(event.ts_event)}) overlaps "
                        f"what {topic} already holds (up to {_when(stored)}): the same bars "
                        "from another file, or raw and adjusted prices (they go to "
                        "different topics)?",
                    )
        reach: tuple[int, int, ParsedFile] | None = None  # (end, start, file) furthest
        for start, end, parsed, event in sorted(items, key=itemgetter(0)):
            if reach is not None and start < reach[0]:
                raise _refusal(
                    parsed,
                    event,
                    f"its events on {topic} ({_when(start)} to {_when(end)}) overlap those "
                    f"of {reach[2].path} ({_when(reach[1])} to {_when(reach[0])}): the same "
                    "data twice, or raw and adjusted prices of one instrument?",
                )
            if reach is None or end > reach[0]:
                reach = (end, start, parsed)


def _merged(
    files: Sequence[ParsedFile],
    known: Mapping[str, int] | None = None,
    skipped: Counter[str] | None = None,
) -> Iterator[Envelope]:
    """Yield the envelopes of every file, by (ts_event, source, source_seq).

    The sources' events are laid end to end in source-name order and stably sorted
    by ``ts_event`` alone: ties keep that order, which is (source, source_seq). Each
    envelope is what :func:`~tickertape.schemas.registry.make_envelope` builds for
    (payload, topic, source, source_seq, ts_event, market), with ``ts_init`` =
    ``ts_event``.

    Args:
        files: the parsed files.
        known: per source, the last ``source_seq`` the log holds; events up to it
            are not yielded but counted in ``skipped`` (the log would call them
            duplicates).
        skipped: per source, the events left out because of ``known``.

    Raises:
        ImportDataError: two files map to the same source, or a source's events are
            not in ``ts_event`` order.
        SchemaError: a payload is not a registered payload Struct.
    """
    origin: dict[str, str] = {}
    streams: dict[str, list[ParsedEvent]] = {}
    for parsed in files:
        for source, events in parsed.streams.items():
            if source in origin:
                raise ImportDataError(
                    parsed.path,
                    None,
                    f"same source {source!r} as {origin[source]}: the same file twice?",
                )
            origin[source] = parsed.path
            streams[source] = events
    names = sorted(streams)
    flat: list[ParsedEvent] = []
    stamps: list[int] = []  # per position in flat: its ts_event
    starts: list[int] = []
    owner: list[int] = []  # per position in flat: its source's index in names
    for k, name in enumerate(names):
        events = streams[name]
        source_stamps = [e.ts_event for e in events]
        if source_stamps != sorted(source_stamps):
            raise ImportDataError(
                origin[name], None, f"events of source {name!r} are not in ts_event order"
            )
        starts.append(len(flat))
        flat += events
        stamps += source_stamps
        owner += [k] * len(events)
    last_known = [0 if known is None else known.get(name, 0) for name in names]
    id_prefix = [name + ":" for name in names]
    type_v: dict[type, tuple[str, int]] = {}  # payload class -> (type, v)
    encode = _PAYLOAD_ENCODER.encode
    raw = msgspec.Raw
    for i in sorted(range(len(flat)), key=stamps.__getitem__):
        k = owner[i]
        seq = i - starts[k] + 1
        if seq <= last_known[k]:
            if skipped is not None:
                skipped[names[k]] += 1
            continue
        event = flat[i]
        payload = event.payload
        key = type_v.get(type(payload))
        if key is None:
            key = type_v[type(payload)] = schema_key(payload)
        ts = event.ts_event
        yield Envelope(
            id=id_prefix[k] + str(seq),
            topic=event.topic,
            type=key[0],
            v=key[1],
            market=event.market,
            ts_event=ts,
            ts_init=ts,
            source=names[k],
            source_seq=seq,
            payload=raw(encode(payload)),
        )


def build_envelopes(files: Sequence[ParsedFile]) -> Iterator[Envelope]:
    """Yield the envelopes of every file, merged by (ts_event, source, source_seq).

    Raises:
        ImportDataError: two files map to the same source (the same file and options
            twice), or a source's events are not in ``ts_event`` order.
    """
    return _merged(files)


class _Tally:
    """Per-file counts (by position in the call) of stored and duplicate events."""

    def __init__(self, files: Mapping[int, ParsedFile]) -> None:
        self.file = {source: i for i, parsed in files.items() for source in parsed.streams}
        self.path = {i: parsed.path for i, parsed in files.items()}
        self.stored: Counter[int] = Counter()
        self.duplicate: Counter[int] = Counter()

    def account(self, batch: list[Envelope], results: list[AppendResult]) -> None:
        """Count a batch's results by file.

        Raises:
            LogError: the log refused an event of the batch.
        """
        unusual = [i for i, r in enumerate(results) if r.error is not None or r.duplicate]
        for i in unusual:
            envelope, result = batch[i], results[i]
            index = self.file[envelope.source]
            if result.error is not None:
                raise LogError(
                    f"{self.path[index]}: event {result.id} on {envelope.topic} refused by "
                    f"the log: [{result.error}] {result.message}"
                )
            self.duplicate[index] += 1
        for source, count in Counter(map(_SOURCE, batch)).items():
            self.stored[self.file[source]] += count
        for i in unusual:
            self.stored[self.file[batch[i].source]] -= 1


def _imported(log: AppendLog) -> dict[str, str]:
    """Per manifest source stored in the log, the file name its manifest gives."""
    return {
        record.source: _MANIFEST_NAME.decode(record.payload).file_name
        for record in log.read_topic(MANIFEST_TOPIC)
    }


def import_files(
    log: AppendLog,
    files: Sequence[ParsedFile],
    *,
    batch_size: int = BATCH_SIZE,
    now_ns: Callable[[], int] = time.time_ns,
    progress: Callable[[int], None] | None = None,
) -> list[FileReport]:
    """Append the files' events to the log durably, then one manifest per file.

    In order: a file whose content (sha256 and options) the log's manifests already
    list, or an earlier file of the call has, is set aside (reported ``same_as``,
    nothing stored, no new manifest). For every other file's sources, the events
    the log already holds are read back and must be the file's first ones: those
    are counted as duplicates and the rest is to be stored. Then the events to store
    are checked against the last ``ts_event`` of their topics and against each
    other's time spans (bars span their open to their close); only then is anything
    appended. Every file not set aside gets a manifest (source
    :func:`manifest_source`).

    The log must not be used by anyone else during the call: batches are appended
    from one background thread, one at a time, in order.

    Args:
        log: an open event log.
        files: parsed files (:mod:`tickertape.actors.marketdata.importers`).
        batch_size: envelopes per append.
        now_ns: the clock stamping manifests (they are operational events).
        progress: called with the number of envelopes handled after each batch.

    Returns:
        One report per file, in the order given.

    Raises:
        ImportDataError: refused before anything was stored: a source's stored events
            are not the file's first ones, an event is older than its topic's last
            one, two sources overlap in time on a topic, or two files map to the
            same source.
        LogError: the log refused an event for a reason the checks cannot foresee
            (a damaged topic, a full disk): the batches before it are stored, and
            importing again checks them and resumes after them.
    """
    imported = _imported(log)
    same_as: dict[int, str] = {}
    first_with: dict[str, int] = {}  # manifest source -> first file of the call with it
    for i, parsed in enumerate(files):
        key = manifest_source(parsed)
        if key in imported:
            same_as[i] = imported[key]
        elif key in first_with:
            same_as[i] = _file_name(files[first_with[key]])
        else:
            first_with[key] = i
    chosen = {i: parsed for i, parsed in enumerate(files) if i not in same_as}
    # What the log already holds of a source is checked to be the file's beginning,
    # then counted as duplicates here instead of asking the log one event at a time.
    known: dict[str, int] = {}
    for parsed in chosen.values():
        for source, events in parsed.streams.items():
            known[source] = log.last_source_seq(source)
            _check_held(log, parsed, source, events, known[source])
    _check_times(log, list(chosen.values()), known)

    tally = _Tally(chosen)
    with paused_gc(), ThreadPoolExecutor(1, thread_name_prefix="import-append") as appender:
        pending: tuple[list[Envelope], Future[list[AppendResult]]] | None = None

        def settle() -> None:
            if pending is not None:
                done, future = pending
                tally.account(done, future.result())
                if progress is not None:
                    progress(len(done))

        batch: list[Envelope] = []
        skipped: Counter[str] = Counter()
        for envelope in _merged(list(chosen.values()), known, skipped):
            batch.append(envelope)
            if len(batch) >= batch_size:
                settle()
                pending = (batch, appender.submit(log.append, batch))
                batch = []
        settle()
        pending = None
        if batch:
            tally.account(batch, log.append(batch))
            if progress is not None:
                progress(len(batch))
        for source, count in skipped.items():
            tally.duplicate[tally.file[source]] += count

    reports: list[FileReport] = []
    manifests: list[Envelope] = []
    last = log.last_ts_event(MANIFEST_TOPIC) or 0
    for i, parsed in enumerate(files):
        if i in same_as:
            stored, duplicate = 0, sum(len(events) for events in parsed.streams.values())
        else:
            stored, duplicate = tally.stored[i], tally.duplicate[i]
        manifest = ImportManifest(
            format=parsed.format,
            file_name=_file_name(parsed),
            sha256=parsed.sha256,
            rows_read=parsed.rows_read,
            events_stored=stored,
            events_duplicate=duplicate,
            rows_refused=len(parsed.refused),
            refused=[str(e) for e in parsed.refused[:MAX_REFUSALS_LISTED]],
        )
        reports.append(
            FileReport(manifest=manifest, sources=sorted(parsed.streams), same_as=same_as.get(i))
        )
        if i in same_as:
            continue
        last = max(last, now_ns())
        manifests.append(
            make_envelope(
                manifest,
                topic=MANIFEST_TOPIC,
                source=manifest_source(parsed),
                source_seq=1,
                ts_event=last,
            )
        )
    for result in log.append(manifests):
        if result.error is not None:
            raise LogError(
                f"import manifest {result.id} refused: [{result.error}] {result.message}"
            )
    return reports


def _file_name(parsed: ParsedFile) -> str:
    return parsed.path.rsplit("/", 1)[-1]
