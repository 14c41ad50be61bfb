"""Live fan-out of freshly appended records (pure: values in, frame bytes out).

A :class:`LiveBatch` holds the records of one append, in gseq order, and builds
their ``events`` frame bodies lazily. The JSON of a chunk of records is encoded by
one msgspec call (one call per frame is several times cheaper than one per event),
and the bodies are cached by *selection*: every subscription that takes the same
events of the batch (the same topics, in the common case) shares the same bytes;
only the short ``{"op":"events","sub":<ref>,"events":`` head differs per
subscription.

Selections are computed per distinct topic of the batch, not per record: a batch
of thousands of events usually spans a handful of topics, and
:meth:`tickertape.router.subscriptions.Subscription.select_batch` matches each topic
once.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Sequence

import msgspec

from tickertape.schemas.envelope import Record

_ENCODER = msgspec.json.Encoder()

Selection = tuple[Hashable, Sequence[int]]
"""A subscription's pick of a batch: a cache key naming it, and the record indices.

Keys: None for the whole batch, a topic for one topic, a tuple of topics for
several, a tuple of indices for any other pick (equal keys, equal picks)."""


class FrameBody(msgspec.Struct, frozen=True, gc=False):
    """One frame's worth of a selection.

    Attributes:
        body: the JSON array of the records (``[{...},{...}]``).
        count: how many records it holds.
        last_gseq: the gseq of its last record.
    """

    body: bytes
    count: int
    last_gseq: int


class LiveBatch:
    """The records of one append, ready to be fanned out.

    Args:
        records: stamped records in increasing gseq order (not empty).
        per_frame: most records per ``events`` frame.
    """

    __slots__ = ("_bodies", "_by_topic", "first_gseq", "last_gseq", "per_frame", "records")

    def __init__(self, records: Sequence[Record], per_frame: int) -> None:
        self.records = records
        self.per_frame = per_frame
        self.first_gseq = records[0].gseq
        self.last_gseq = records[-1].gseq
        self._by_topic: dict[str, list[int]] | None = None
        self._bodies: dict[Hashable, list[FrameBody]] = {}

    def __len__(self) -> int:
        return len(self.records)

    @property
    def by_topic(self) -> dict[str, list[int]]:
        """Indices of the records of each topic, in order (computed once)."""
        by_topic = self._by_topic
        if by_topic is None:
            by_topic = {}
            for i, record in enumerate(self.records):
                indices = by_topic.get(record.topic)
                if indices is None:
                    by_topic[record.topic] = [i]
                else:
                    indices.append(i)
            self._by_topic = by_topic
        return by_topic

    def topics_selection(self, topics: Sequence[str]) -> Selection:
        """The selection of every record whose topic is one of ``topics`` (of this batch)."""
        by_topic = self.by_topic
        if not topics:
            return ((), ())
        if len(topics) == len(by_topic):
            return (None, range(len(self.records)))
        if len(topics) == 1:
            return (topics[0], by_topic[topics[0]])
        key = tuple(topics)
        return (key, list(heapq.merge(*(by_topic[t] for t in topics))))

    def bodies(self, selection: Selection) -> list[FrameBody]:
        """The frame bodies of a selection, chunked by ``per_frame`` (cached by its key)."""
        key, picked = selection
        cached = self._bodies.get(key)
        if cached is not None:
            return cached
        records = self.records
        out: list[FrameBody] = []
        per_frame = self.per_frame
        for start in range(0, len(picked), per_frame):
            chunk = picked[start : start + per_frame]
            if isinstance(chunk, range) and chunk.step == 1:
                part: Sequence[Record] = records[chunk.start : chunk.stop]
            else:
                part = [records[i] for i in chunk]
            out.append(FrameBody(_ENCODER.encode(part), len(part), part[-1].gseq))
        self._bodies[key] = out
        return out
