"""Subscriptions: which events a subscription takes, and its delivery state (pure).

A subscription is patterns plus a start, and a *cursor*: the last gseq it has
delivered (or skipped as not matching). It is always in one of two states:

.. code-block:: text

    HISTORY ──(cursor reached the router's head)──> LIVE
       ^                                             │
       └───────(its client's send queue was full)────┘

In HISTORY it reads the log by position, from ``cursor + 1`` up to the head; in LIVE
it takes the router's fan-out. Both paths go through :meth:`Subscription.select`,
which only ever lets through gseqs above the cursor and then advances it: that is
what makes delivery exactly-once and in gseq order across the seam.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from tickertape.errors import RouterError
from tickertape.router.fanout import LiveBatch, Selection
from tickertape.router.protocol import Code, Ref, Start, StartAt
from tickertape.schemas.envelope import Record
from tickertape.topics import matches_any, validate_pattern


class SubState(Enum):
    """Delivery state of a subscription."""

    HISTORY = "history"
    LIVE = "live"


class Subscription:
    """One subscription's filter and cursor.

    Args:
        ref: the subscription id (the ``sub`` frame's ref).
        ns: namespace.
        patterns: validated topic patterns.
        start: the requested start.
        head_gseq: the namespace head when the subscription opens (``"now"`` starts
            after it).

    Raises:
        RouterError: ``BAD_PATTERN`` or ``BAD_START``.
    """

    __slots__ = (
        "_match_cache",
        "acked_gseq",
        "cursor",
        "delivered",
        "from_gseq",
        "min_offsets",
        "min_ts",
        "ns",
        "patterns",
        "ref",
        "state",
        "switches_to_log",
    )

    def __init__(
        self, ref: Ref, ns: str, patterns: Sequence[str], start: Start, head_gseq: int
    ) -> None:
        for pattern in patterns:
            problem = validate_pattern(pattern)
            if problem is not None:
                raise RouterError(Code.BAD_PATTERN, problem, str(ref))
        self.ref = ref
        self.ns = ns
        self.patterns = tuple(patterns)
        self.min_ts: int | None = None
        self.min_offsets: dict[str, int] | None = None
        if start == "now":
            self.from_gseq = head_gseq + 1
        elif start == "beginning":
            self.from_gseq = 1
        elif isinstance(start, StartAt):
            if start.gseq is None and start.time is None and start.offsets is None:
                raise RouterError(Code.BAD_START, "start object names no condition", str(ref))
            self.from_gseq = start.gseq if start.gseq is not None else 1
            self.min_ts = start.time
            if start.offsets is not None:
                self.min_offsets = dict(start.offsets)
        else:  # pragma: no cover - the decoder admits nothing else
            raise RouterError(Code.BAD_START, f"invalid start {start!r}", str(ref))
        self.cursor = self.from_gseq - 1
        self.state = SubState.HISTORY
        self.delivered = 0
        self.switches_to_log = 0
        self.acked_gseq = 0
        self._match_cache: dict[str, bool] = {}

    def matches(self, topic: str) -> bool:
        """True when ``topic`` matches one of the patterns (cached per topic)."""
        hit = self._match_cache.get(topic)
        if hit is None:
            hit = matches_any(self.patterns, topic)
            if len(self._match_cache) < 65_536:
                self._match_cache[topic] = hit
        return hit

    def wants(self, record: Record) -> bool:
        """True when ``record`` passes the patterns and the start conditions."""
        if not self.matches(record.topic):
            return False
        if self.min_ts is not None and record.ts_event < self.min_ts:
            return False
        return not (
            self.min_offsets is not None and record.offset < self.min_offsets.get(record.topic, 0)
        )

    def select(self, records: Sequence[Record], upto_gseq: int | None = None) -> list[int]:
        """Pick the records to deliver and advance the cursor past the batch.

        Args:
            records: stamped records in increasing gseq order.
            upto_gseq: the position the caller has covered (read or fanned out up to);
                the cursor advances to it even when nothing matched. Defaults to the
                last record's gseq.

        Returns:
            Indices into ``records`` of the ones to deliver (gseq above the cursor and
            wanted), in order.
        """
        cursor = self.cursor
        picked = [i for i, r in enumerate(records) if r.gseq > cursor and self.wants(r)]
        top = upto_gseq if upto_gseq is not None else (records[-1].gseq if records else cursor)
        self.cursor = max(cursor, top)
        self.delivered += len(picked)
        return picked

    def select_batch(self, batch: LiveBatch) -> Selection:
        """Like :meth:`select` for a live batch, matching each of its topics once.

        Subscriptions that take the same events of ``batch`` get selections with the
        same key, so they share the encoded frames (:meth:`LiveBatch.bodies`).

        Returns:
            (key, indices): the indices into ``batch.records`` to deliver, in order.
        """
        records = batch.records
        if self.min_ts is None and self.min_offsets is None:
            selection = batch.topics_selection([t for t in batch.by_topic if self.matches(t)])
        else:
            picked = [i for i, r in enumerate(records) if self.wants(r)]
            selection = (tuple(picked), picked)
        cursor = self.cursor
        if cursor >= batch.first_gseq:  # overlaps what was already delivered
            picked = [i for i in selection[1] if records[i].gseq > cursor]
            selection = (tuple(picked), picked)
        self.cursor = max(cursor, batch.last_gseq)
        self.delivered += len(selection[1])
        return selection

    def to_log(self) -> None:
        """Switch a live subscription to reading the log (its client fell behind)."""
        if self.state is SubState.LIVE:
            self.state = SubState.HISTORY
            self.switches_to_log += 1

    def go_live(self) -> None:
        """Switch to the live fan-out (the caller checked cursor ≥ head)."""
        self.state = SubState.LIVE

    def resume_start(self) -> StartAt:
        """The start that resumes this subscription exactly after its cursor."""
        return StartAt(gseq=self.cursor + 1, time=self.min_ts, offsets=self.min_offsets)
