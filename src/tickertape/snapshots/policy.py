"""When to take a snapshot: every N events or T ns of the actor's clock (DESIGN §8)."""

from __future__ import annotations

import msgspec


class SnapshotPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Snapshot cadence; a configuration Struct.

    Attributes:
        every_events: take one after this many handled events (None: never by count).
        every_ns: take one when the actor's clock moved this far since the last one
            (None: never by time). Time is the actor's clock, never the wall clock,
            so a replay snapshots at the same points every time.
        keep: how many snapshots to keep.
        on_stop: take one on a clean stop.
    """

    every_events: int | None = 10_000
    every_ns: int | None = 60 * 1_000_000_000
    keep: int = 3
    on_stop: bool = True

    def due(self, events_since: int, clock_ns: int, last_clock_ns: int) -> bool:
        """True when a snapshot is due after ``events_since`` events since the last one."""
        if events_since <= 0:
            return False
        if self.every_events is not None and events_since >= self.every_events:
            return True
        return self.every_ns is not None and clock_ns - last_clock_ns >= self.every_ns
