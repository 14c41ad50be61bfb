"""Write parsed historical files into the event log, merged in ``ts_event`` order.

:func:`build_envelopes` turns parsed files into envelopes (pure); :func:`import_files`
appends them to an :class:`~tickertape.eventlog.EventLog` in batches and records one
``system.import_manifest`` event per file.

Ordering: the files' sources are merged by (``ts_event``, source, ``source_seq``), so
the log receives every topic in time order across files and symbols, whatever the
order the files were given in. Each source's ``source_seq`` is its events' rank in the
file (1, 2, ...), strictly increasing in append order, so importing a file again
stores nothing new: the log answers each event as a duplicate.

Historical envelopes carry ``ts_init`` = ``ts_event`` (the importer's clock is the
data's own time), which keeps re-imports byte-identical.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import msgspec

from tickertape.actors.marketdata.importers import ParsedEvent, ParsedFile
from tickertape.errors import ImportDataError, LogError
from tickertape.eventlog import AppendResult
from tickertape.schemas.envelope import Envelope
from tickertape.schemas.registry import make_envelope
from tickertape.schemas.system import ImportManifest

BATCH_SIZE = 5_000
"""Envelopes per append call (the log group-commits within it)."""

MANIFEST_TOPIC = "system.import_manifest"
MAX_REFUSALS_LISTED = 100
"""Refusal reasons kept in a manifest (the count is always exact)."""


class AppendLog(Protocol):
    """The part of :class:`~tickertape.eventlog.EventLog` the importer uses."""

    def append(
        self, envelopes: Sequence[Envelope], *, ts_log: int | None = None
    ) -> list[AppendResult]: ...

    def last_ts_event(self, topic: str) -> int | None: ...

    def last_source_seq(self, source: str) -> int: ...


class FileReport(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of importing one file (also published as its manifest)."""

    manifest: ImportManifest
    sources: list[str]


def _envelope(source: str, seq: int, event: ParsedEvent) -> Envelope:
    return make_envelope(
        event.payload,
        topic=event.topic,
        source=source,
        source_seq=seq,
        ts_event=event.ts_event,
        market=event.market,
    )


def _keyed(source: str, events: list[ParsedEvent]) -> Iterator[tuple[int, str, int, ParsedEvent]]:
    for seq, event in enumerate(events, start=1):
        yield (event.ts_event, source, seq, event)


def build_envelopes(files: Sequence[ParsedFile]) -> Iterator[Envelope]:
    """Yield the envelopes of every file, merged by (ts_event, source, source_seq).

    Raises:
        ImportDataError: two files map to the same source (same format and name).
    """
    seen: dict[str, str] = {}
    streams: list[Iterator[tuple[int, str, int, ParsedEvent]]] = []
    for parsed in files:
        for source, events in parsed.streams.items():
            if source in seen:
                raise ImportDataError(
                    parsed.path, None, f"same source {source!r} as {seen[source]}: rename one file"
                )
            seen[source] = parsed.path
            streams.append(_keyed(source, events))
    for _, source, seq, event in heapq.merge(*streams, key=lambda item: item[:3]):
        yield _envelope(source, seq, event)


def import_files(
    log: AppendLog,
    files: Sequence[ParsedFile],
    *,
    batch_size: int = BATCH_SIZE,
    now_ns: Callable[[], int] = time.time_ns,
    progress: Callable[[int], None] | None = None,
) -> list[FileReport]:
    """Append the files' events to the log durably, then one manifest per file.

    Args:
        log: an open event log.
        files: parsed files (:mod:`tickertape.actors.marketdata.importers`).
        batch_size: envelopes per append.
        now_ns: the clock stamping manifests (they are operational events).
        progress: called with the number of envelopes handled after each batch.

    Returns:
        One report per file, in the order given.

    Raises:
        LogError: the log refused an event (``TS_REGRESSION`` when a topic already
            holds later data, ``INVALID_TOPIC``...); events before it are stored,
            and importing again resumes idempotently.
        ImportDataError: two files map to the same source.
    """
    stored: dict[str, int] = {}
    duplicate: dict[str, int] = {}
    source_file: dict[str, str] = {}
    for parsed in files:
        for source in parsed.streams:
            source_file[source] = parsed.path
    # What the log already holds of a source is a duplicate by definition: count it
    # here instead of asking the log one event at a time.
    known = {source: log.last_source_seq(source) for source in source_file}
    batch: list[Envelope] = []
    for envelope in build_envelopes(files):
        if envelope.source_seq <= known[envelope.source]:
            path = source_file[envelope.source]
            duplicate[path] = duplicate.get(path, 0) + 1
            continue
        batch.append(envelope)
        if len(batch) >= batch_size:
            _flush(log, batch, source_file, stored, duplicate, progress)
    _flush(log, batch, source_file, stored, duplicate, progress)

    reports: list[FileReport] = []
    manifests: list[Envelope] = []
    last = log.last_ts_event(MANIFEST_TOPIC) or 0
    for parsed in files:
        manifest = ImportManifest(
            format=parsed.format,
            file_name=parsed.path.rsplit("/", 1)[-1],
            sha256=parsed.sha256,
            rows_read=parsed.rows_read,
            events_stored=stored.get(parsed.path, 0),
            events_duplicate=duplicate.get(parsed.path, 0),
            rows_refused=len(parsed.refused),
            refused=[str(e) for e in parsed.refused[:MAX_REFUSALS_LISTED]],
        )
        reports.append(FileReport(manifest=manifest, sources=sorted(parsed.streams)))
        last = max(last, now_ns())
        source = f"import.manifest.{parsed.format}.{parsed.sha256[:16]}"
        manifests.append(
            make_envelope(
                manifest, topic=MANIFEST_TOPIC, source=source, source_seq=1, ts_event=last
            )
        )
    for result in log.append(manifests):
        if result.error is not None:
            raise LogError(
                f"import manifest {result.id} refused: [{result.error}] {result.message}"
            )
    return reports


def _flush(
    log: AppendLog,
    batch: list[Envelope],
    source_file: dict[str, str],
    stored: dict[str, int],
    duplicate: dict[str, int],
    progress: Callable[[int], None] | None,
) -> None:
    if not batch:
        return
    results = log.append(batch)
    for envelope, result in zip(batch, results, strict=True):
        path = source_file[envelope.source]
        if result.error is not None:
            raise LogError(
                f"{path}: event {result.id} on {envelope.topic} refused by the log: "
                f"[{result.error}] {result.message}"
            )
        if result.duplicate:
            duplicate[path] = duplicate.get(path, 0) + 1
        else:
            stored[path] = stored.get(path, 0) + 1
    if progress is not None:
        progress(len(batch))
    batch.clear()
