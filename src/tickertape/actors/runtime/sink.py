"""Where a host's outputs go: a sink appends a wave and returns the stored records.

A :class:`Sink` takes one wave of envelopes (already in canonical order) and the
step's time, stores them as one batch, and returns a :class:`~tickertape.schemas.Record`
per envelope: the stored one for new events, and for duplicates (same ``source`` and
``source_seq`` as an event already stored, as happens when an actor regenerates its
outputs while catching up) the *stored* record. A duplicate whose content differs from
the stored event is a divergence: the actor is not deterministic. Sinks report it
through :attr:`Sink.divergences` rather than raising, so the run continues and the
alert names both events.

:class:`MemorySink` keeps records in memory (tests, benchmarks); :class:`LogSink`
appends to an event log (``tickertape.eventlog.EventLog``'s documented API).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from tickertape.errors import LogError
from tickertape.schemas.envelope import Envelope, Record, stamp
from tickertape.schemas.system import Divergence as Divergence  # re-exported
from tickertape.schemas.system import compare as compare  # re-exported


class Sink(Protocol):
    """Stores one wave at a time."""

    @property
    def divergences(self) -> list[Divergence]:
        """Duplicates whose content differed from the stored event, in order found."""
        ...

    def append(self, envelopes: Sequence[Envelope], ts_log: int) -> list[Record]:
        """Store ``envelopes`` as one batch with ``ts_log``; return their records.

        Raises:
            LogError: the batch was refused (nothing stored).
        """
        ...

    def sync(self) -> None:
        """Make everything appended so far durable (before a snapshot refers to it)."""
        ...


class MemorySink:
    """An in-memory log of one namespace, with the log's duplicate rule.

    Attributes:
        records: every stored record, in gseq order.
        divergences: duplicates whose content differed from the stored event.
    """

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.divergences: list[Divergence] = []
        self._offsets: dict[str, int] = {}
        self._by_key: dict[tuple[str, int], Record] = {}
        self._last_seq: dict[str, int] = {}

    def append(self, envelopes: Sequence[Envelope], ts_log: int) -> list[Record]:
        """Store ``envelopes``; duplicates return the stored record (see :class:`Sink`)."""
        out: list[Record] = []
        for env in envelopes:
            if env.source_seq <= self._last_seq.get(env.source, 0):
                stored = self._by_key[(env.source, env.source_seq)]
                divergence = compare(env, stored)
                if divergence is not None:
                    self.divergences.append(divergence)
                out.append(stored)
                continue
            offset = self._offsets.get(env.topic, 0)
            record = stamp(env, offset, len(self.records) + 1, ts_log)
            self._offsets[env.topic] = offset + 1
            self._last_seq[env.source] = env.source_seq
            self._by_key[(env.source, env.source_seq)] = record
            self.records.append(record)
            out.append(record)
        return out

    def sync(self) -> None:
        """Nothing to do: memory is all there is."""


class AppendLog(Protocol):
    """The part of ``tickertape.eventlog.EventLog`` a :class:`LogSink` uses."""

    def append(
        self, envelopes: Sequence[Envelope], *, ts_log: int | None = None, durable: bool = True
    ) -> list[Any]: ...

    def sync(self) -> None: ...

    def read(
        self,
        patterns: Sequence[str] | None = None,
        from_gseq: int = 1,
        to_gseq: int | None = None,
    ) -> Iterator[Record]: ...


class AppendRefusedError(LogError):
    """The event log refused an event of a wave.

    Attributes:
        id: the refused event.
        code: the log's error code (``TS_REGRESSION``, ``INVALID_TOPIC``, ``DISK_FULL``).
        detail: the log's message.
    """

    def __init__(self, id: str, code: str, detail: str | None) -> None:
        self.id = id
        self.code = code
        self.detail = detail
        super().__init__(f"the log refused {id!r}: [{code}] {detail or ''}".rstrip())


class LogSink:
    """Appends waves to an event log; duplicates are read back and compared.

    Args:
        log: an open ``EventLog`` (one writer per namespace).
        durable: fsync every wave (True), or leave it to :meth:`sync` (a replay's
            run namespace, which its snapshots can regenerate: synced before each
            snapshot and at the end; see ``EventLog.append(durable=False)``).
    """

    def __init__(self, log: AppendLog, *, durable: bool = True) -> None:
        self._log = log
        self.durable = durable
        self.divergences: list[Divergence] = []
        self._cursor: Iterator[Record] | None = None
        self._cursor_gseq = 0

    def sync(self) -> None:
        """Make every wave appended so far durable (a no-op when each already was)."""
        if not self.durable:
            self._log.sync()

    def append(self, envelopes: Sequence[Envelope], ts_log: int) -> list[Record]:
        """Append ``envelopes`` with ``ts_log`` (see :class:`Sink`), durably unless
        the sink was made with ``durable=False``.

        Raises:
            AppendRefusedError: the log refused an event.
        """
        if not envelopes:
            return []
        results = self._log.append(list(envelopes), ts_log=ts_log, durable=self.durable)
        twins = self._stored_twins(results)
        out: list[Record] = []
        for env, result in zip(envelopes, results, strict=True):
            if result.error is not None:
                raise AppendRefusedError(env.id, result.error, result.message)
            if result.duplicate:
                stored = twins.get(result.gseq)
                if stored is None:
                    out.append(stamp(env, result.offset, result.gseq, ts_log))
                    continue
                divergence = compare(env, stored)
                if divergence is not None:
                    self.divergences.append(divergence)
                out.append(stored)
            else:
                out.append(stamp(env, result.offset, result.gseq, ts_log))
        return out

    def _stored_twins(self, results: list[Any]) -> dict[int, Record]:
        """The stored records of a wave's duplicates (``results``: the log's append
        results), by gseq.

        They come from one forward read of the whole namespace, kept open between
        waves: a rerun (a resume, a seek back) asks for the stored twins in gseq
        order, so it reads the namespace once instead of once per wave. The read
        starts again when asked for a gseq it has passed.
        """
        wanted = {r.gseq for r in results if r.error is None and r.duplicate}
        if not wanted:
            return {}
        first, last = min(wanted), max(wanted)
        if self._cursor is None or self._cursor_gseq >= first:
            self._cursor = iter(self._log.read(None, first))
            self._cursor_gseq = first - 1
        found: dict[int, Record] = {}
        for record in self._cursor:
            self._cursor_gseq = record.gseq
            if record.gseq in wanted:
                found[record.gseq] = record
            if record.gseq >= last:
                break
        else:
            self._cursor = None  # read to the end
        return found
