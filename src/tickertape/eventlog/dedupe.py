"""Positions of recently stored records by (source, source_seq), in bounded memory.

Deduplication itself needs one number per source: an append whose ``source_seq`` is
at or below the highest stored for its source is a duplicate (DESIGN §5). Answering
the duplicate *with the position it already has* needs more: this module keeps, per
source, the ``source_seq``, ``gseq``, ``offset`` and topic of its most recent stored
records. The log stores a source's records only with increasing ``source_seq`` (and
gives them increasing ``gseq``), so each source's entries are sorted arrays, appended
at the end and trimmed at the front, and a lookup is a binary search:

- a ``source_seq`` at or above the source's oldest entry is either in its arrays (its
  position) or was never stored (refused when sent, or skipped by the producer);
- a ``source_seq`` below it (or of a source with no entries: nothing stored since the
  log was opened) is :data:`OLDER`: the writer finds its position in the files.

Memory: 28 bytes per entry (three ``int64`` and one ``uint32`` array items) and a
bounded overhead per source, against about 170 bytes per entry for a dict of tuples.
:meth:`RecentPositions.trim` keeps at most ``limit`` entries' worth, dropping the
oldest (by gseq) first; each source with entries counts as :data:`SOURCE_COST` entries.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from typing import Final

SOURCE_COST = 16
"""Entries' worth of memory charged for each source holding entries: its four arrays
(80 bytes each when empty), its :class:`SourcePositions` and its slot in the sources dict
come to about 400 bytes in CPython 3.11 (measured with ``tracemalloc``), about 460 with a
short name as key: some 16 entries of 28 bytes."""


class _Older:
    """The type of :data:`OLDER`."""

    def __repr__(self) -> str:
        return "OLDER"


OLDER: Final = _Older()
"""Returned by :meth:`RecentPositions.find` for a ``source_seq`` older than the window."""


class SourcePositions:
    """One source's recent entries: parallel arrays sorted by ``seq`` (and ``gseq``)."""

    __slots__ = ("gseqs", "offsets", "seqs", "topics")

    def __init__(self) -> None:
        self.seqs = array("q")
        self.gseqs = array("q")
        self.offsets = array("q")
        self.topics = array("I")

    def append(self, seq: int, gseq: int, offset: int, topic_id: int) -> None:
        """Add the newest entry (``seq`` and ``gseq`` above every entry held)."""
        self.seqs.append(seq)
        self.gseqs.append(gseq)
        self.offsets.append(offset)
        self.topics.append(topic_id)

    def drop_through(self, gseq: int) -> None:
        """Drop the entries with gseq ≤ ``gseq`` (the oldest)."""
        i = bisect_right(self.gseqs, gseq)
        if i:
            del self.seqs[:i], self.gseqs[:i], self.offsets[:i], self.topics[:i]


class RecentPositions:
    """Where the most recently stored (source, source_seq) pairs are, per source.

    Not thread-safe (the writer's thread only). Once a group is written, the writer
    appends its records to their sources' :class:`SourcePositions` (in gseq order),
    then calls :meth:`added`.

    Args:
        limit: most entries kept (a source holding entries counts as
            :data:`SOURCE_COST` more); ≥ 2 * :data:`SOURCE_COST`.

    Raises:
        ValueError: ``limit`` is below 2 * :data:`SOURCE_COST`.
    """

    def __init__(self, limit: int) -> None:
        if limit < 2 * SOURCE_COST:
            raise ValueError(f"RecentPositions limit must be at least {2 * SOURCE_COST}")
        self.limit = limit
        self.sources: dict[str, SourcePositions] = {}
        self._topic_ids: dict[str, int] = {}
        self._topic_names: list[str] = []
        self._entries = 0

    def topic_id(self, topic: str) -> int:
        """The small integer standing for ``topic`` in the arrays (assigned on first use)."""
        tid = self._topic_ids.get(topic)
        if tid is None:
            tid = self._topic_ids[topic] = len(self._topic_names)
            self._topic_names.append(topic)
        return tid

    def source(self, source: str) -> SourcePositions:
        """The entries of ``source`` (created empty when it has none)."""
        positions = self.sources.get(source)
        if positions is None:
            positions = self.sources[source] = SourcePositions()
        return positions

    def find(self, source: str, seq: int) -> tuple[str, int, int] | _Older | None:
        """Where (source, seq) was stored.

        Returns:
            ``(topic, offset, gseq)`` when it is in the window; None when it is within
            the window's range of its source but was never stored; :data:`OLDER` when
            it is older than the window (look in the files).
        """
        positions = self.sources.get(source)
        if positions is None or not positions.seqs or seq < positions.seqs[0]:
            return OLDER
        seqs = positions.seqs
        i = bisect_left(seqs, seq)
        if i < len(seqs) and seqs[i] == seq:
            return (
                self._topic_names[positions.topics[i]],
                positions.offsets[i],
                positions.gseqs[i],
            )
        return None

    def clear(self) -> None:
        """Forget every entry (the log is being rebuilt from its files)."""
        self.sources.clear()
        self._entries = 0

    def cost(self) -> int:
        """Entries held plus :data:`SOURCE_COST` per source holding some."""
        return self._entries + SOURCE_COST * len(self.sources)

    def added(self, count: int, head: int) -> None:
        """Account for ``count`` entries just appended (gseq up to ``head``); past the
        limit, drop the oldest until at most half of it is used."""
        self._entries += count
        if self.cost() > self.limit:
            self.trim(head, self.limit // 2)

    def trim(self, head: int, budget: int) -> None:
        """Drop the oldest entries (lowest gseq) until :meth:`cost` ≤ ``budget``."""
        span = max(budget, 1)
        while True:
            cut = head - span
            entries = 0
            for name in list(self.sources):
                positions = self.sources[name]
                positions.drop_through(cut)
                if not positions.seqs:
                    del self.sources[name]
                else:
                    entries += len(positions.seqs)
            self._entries = entries
            if self.cost() <= budget or span <= 1:
                return
            span //= 2
