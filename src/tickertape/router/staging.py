"""Staged publishing for distributed replay (pure; docs/protocol.md, "Staged publish").

A ``pub`` with a ``stage`` id is validated but not appended: its envelopes are held
per (namespace, stage), keyed by (source, source_seq) so a resend after a reconnect
counts once. ``commit`` checks the per-source counts against what the driver
expects, then releases the stage as one batch sorted by (ts_event, source,
source_seq): the wave order of DESIGN §7, identical on every machine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tickertape.errors import RouterError
from tickertape.router.protocol import Code
from tickertape.schemas.envelope import Envelope
from tickertape.timeauthority.scheduler import wave_order

MAX_STAGED_EVENTS = 1_000_000
"""Most events held across all stages of one router (memory bound)."""


class StageIncompleteError(RouterError):
    """A commit's expected counts differ from the staged ones (nothing appended).

    Attributes:
        stage: the stage id.
        expected: per source, the counts the committer expected.
        staged: per source, the counts actually staged.
    """

    def __init__(self, stage: str, expected: dict[str, int], staged: dict[str, int]) -> None:
        self.stage = stage
        self.expected = expected
        self.staged = staged
        diff = {
            s: (staged.get(s, 0), expected.get(s, 0))
            for s in sorted(set(expected) | set(staged))
            if staged.get(s, 0) != expected.get(s, 0)
        }
        detail = ", ".join(
            f"{s}: staged {have}, expected {want}" for s, (have, want) in diff.items()
        )
        super().__init__(Code.STAGE_INCOMPLETE, f"stage {stage!r} incomplete: {detail}")


class StageUnknownError(RouterError):
    """A commit expects events under a stage that holds none (nothing appended).

    Staged events live in router memory: after a router restart (or for a stage id
    that was never used, or was committed already) the router holds nothing for it.

    Attributes:
        stage: the stage id.
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage
        super().__init__(
            Code.STAGE_UNKNOWN,
            f"stage {stage!r} holds no events on this router (staged events are lost when "
            "the router restarts): publish them again, then commit",
        )


class StageBook:
    """Staged envelopes per (namespace, stage)."""

    def __init__(self, max_events: int = MAX_STAGED_EVENTS) -> None:
        self._stages: dict[tuple[str, str], dict[tuple[str, int], Envelope]] = {}
        self._count = 0
        self._max_events = max_events

    @property
    def staged_events(self) -> int:
        """How many envelopes are held in all stages."""
        return self._count

    def add(self, ns: str, stage: str, envelopes: Iterable[Envelope]) -> None:
        """Hold ``envelopes`` under (``ns``, ``stage``); a repeated key replaces the old one.

        Raises:
            RouterError: ``RATE_LIMITED`` when the router already holds
                :data:`MAX_STAGED_EVENTS` (retry after committing).
        """
        held = self._stages.setdefault((ns, stage), {})
        for env in envelopes:
            key = (env.source, env.source_seq)
            if key not in held:
                if self._count >= self._max_events:
                    raise RouterError(
                        Code.RATE_LIMITED,
                        f"{self._count} events already staged; commit before staging more",
                    )
                self._count += 1
            held[key] = env

    def counts(self, ns: str, stage: str) -> dict[str, int]:
        """Distinct staged events per source."""
        held = self._stages.get((ns, stage), {})
        return dict(Counter(source for source, _seq in held))

    def take(self, ns: str, stage: str, expect: dict[str, int]) -> list[Envelope]:
        """Remove and return the stage's events in (ts_event, source, source_seq) order.

        Raises:
            StageUnknownError: nothing is staged under ``stage`` but ``expect`` names
                events.
            StageIncompleteError: the per-source counts differ from ``expect`` (sources
                expected with 0 may be absent); the stage is kept.
        """
        staged = self.counts(ns, stage)
        wanted = {s: n for s, n in expect.items() if n}
        if wanted and (ns, stage) not in self._stages:
            raise StageUnknownError(stage)
        if staged != wanted:
            raise StageIncompleteError(stage, wanted, staged)
        held = self._stages.pop((ns, stage), {})
        self._count -= len(held)
        return wave_order(held.values())  # the replay's wave rule: the in-process bytes

    def restore(self, ns: str, stage: str, envelopes: Iterable[Envelope]) -> None:
        """Put back events taken by :meth:`take` whose append failed."""
        self.add(ns, stage, envelopes)
