"""The envelope (DESIGN §3): one event, on the wire and on disk.

Two Structs share the producer's fields:

- :class:`Envelope` is what a producer publishes (no log fields).
- :class:`Record` is what the log stores and serves: the envelope plus ``offset``,
  ``gseq`` and ``ts_log`` stamped by the log. On disk each record is followed by
  a ``crc`` member (see :mod:`tickertape.eventlog.codec`).

The payload is kept as :class:`msgspec.Raw` (its exact JSON bytes): the log and the
router never re-encode a payload, which is what keeps replays byte-identical.
Decode it with :func:`tickertape.schemas.decode_payload`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Market = Literal["kr", "us", "crypto"]
"""An explicit market scope (DESIGN §1.6)."""

MARKETS: tuple[str, ...] = ("kr", "us", "crypto")

NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PosInt = Annotated[int, msgspec.Meta(ge=1)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class Envelope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=False, gc=False):
    """An event as a producer publishes it.

    Attributes:
        id: ``"{source}:{source_seq}"``, unique and deterministic.
        topic: dotted topic name (DESIGN §4).
        type: payload schema name, e.g. ``md.trade``.
        v: payload schema version (≥ 1).
        market: ``"kr"``, ``"us"``, ``"crypto"``, or None for system events.
        ts_event: when it happened, ns since the Unix epoch (UTC).
        ts_init: when the producer created the envelope, ns, on its clock.
        source: producer identity; the router checks it equals the authenticated one.
        source_seq: ≥ 1, strictly increasing per source; (source, source_seq) is
            the idempotency key.
        causation_id: ``id`` of the event that caused this one, or None.
        correlation_id: ``id`` of the first event of the chain, or None.
        payload: the payload's JSON bytes, typed by (type, v).
    """

    id: Name
    topic: Name
    type: Name
    v: PosInt
    market: Market | None
    ts_event: NonNegInt
    ts_init: NonNegInt
    source: Name
    source_seq: PosInt
    causation_id: str | None = None
    correlation_id: str | None = None
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))


class Record(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A stored event: the envelope plus the log's fields.

    Attributes:
        offset: position within the topic, contiguous from 0.
        gseq: position within the namespace, contiguous from 1: the total order.
        ts_log: append time in ns (the simulated time in backtest namespaces).
        (other fields as :class:`Envelope`)
    """

    id: str
    topic: str
    type: str
    v: int
    market: Market | None
    ts_event: int
    ts_init: int
    source: str
    source_seq: int
    causation_id: str | None
    correlation_id: str | None
    payload: msgspec.Raw
    offset: int
    gseq: int
    ts_log: int

    def key(self) -> tuple[str, int]:
        """The idempotency key ``(source, source_seq)``."""
        return (self.source, self.source_seq)


class StoredRecord(Record, frozen=True, kw_only=True):
    """A :class:`Record` as decoded from disk, with the line's ``crc`` member."""

    crc: int


def stamp(envelope: Envelope, offset: int, gseq: int, ts_log: int) -> Record:
    """Return the record the log stores for ``envelope`` at the given positions."""
    return Record(
        id=envelope.id,
        topic=envelope.topic,
        type=envelope.type,
        v=envelope.v,
        market=envelope.market,
        ts_event=envelope.ts_event,
        ts_init=envelope.ts_init,
        source=envelope.source,
        source_seq=envelope.source_seq,
        causation_id=envelope.causation_id,
        correlation_id=envelope.correlation_id,
        payload=envelope.payload,
        offset=offset,
        gseq=gseq,
        ts_log=ts_log,
    )


def unstamp(record: Record) -> Envelope:
    """Return the producer's envelope of a stored record (log fields removed)."""
    return Envelope(
        id=record.id,
        topic=record.topic,
        type=record.type,
        v=record.v,
        market=record.market,
        ts_event=record.ts_event,
        ts_init=record.ts_init,
        source=record.source,
        source_seq=record.source_seq,
        causation_id=record.causation_id,
        correlation_id=record.correlation_id,
        payload=record.payload,
    )
