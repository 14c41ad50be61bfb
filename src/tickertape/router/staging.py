"""Staged publishing for distributed replay (pure; docs/protocol.md, "Staged publish").

A ``pub`` with a ``stage`` id is validated but not appended: its envelopes are held
per (namespace, stage), keyed by (source, source_seq) so a resend after a reconnect
counts once. ``commit`` checks the per-source counts against what the driver
expects, then releases the stage as one batch sorted by (ts_event, source,
source_seq): the wave order of DESIGN §7, identical on every machine.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable

from tickertape.errors import RouterError
from tickertape.router.protocol import Code
from tickertape.schemas.envelope import Envelope
from tickertape.timeauthority.scheduler import wave_order

MAX_STAGED_EVENTS = 1_000_000
"""Most events held across all stages of one router (memory bound)."""

MAX_STAGED_PER_SOURCE = 250_000
"""Most events one source holds across all stages, so that one stager cannot take the
whole router's room. A replay's largest stage is far smaller: a batch announcement
carries at most 2 000 inputs (``replay.distributed.BATCH_INPUTS``) and the indicators
actor publishes ten outputs per bar."""

MAX_STAGED_BYTES = 256 * 1024 * 1024
"""Most bytes held across all stages of one router (:func:`footprint` of each event):
the count bound alone would let 1 M events of up to a frame each hold gigabytes."""

MAX_STAGED_BYTES_PER_SOURCE = 64 * 1024 * 1024
"""Most bytes one source holds across all stages (a replay's largest stage, 2 000
inputs' outputs of a few hundred bytes each, is a few MB)."""

ENVELOPE_OVERHEAD = 256
"""Bytes counted per staged event on top of its variable-size fields: the envelope
object, its small fields and its keys in the stage (an estimate of CPython's cost,
not a measurement of each)."""

STAGE_IDLE_S = 600.0
"""A stage nobody has added to for this many seconds is dropped (its committer is gone:
a time authority that died, a replay that was stopped). A commit that comes later gets
``STAGE_UNKNOWN``, as after a router restart, and has the stagers publish again."""


def footprint(env: Envelope) -> int:
    """The bytes a staged event counts for: its payload, id and topic, plus
    :data:`ENVELOPE_OVERHEAD`."""
    return len(env.payload) + len(env.id) + len(env.topic) + ENVELOPE_OVERHEAD


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
    """Staged envelopes per (namespace, stage), bounded in events and in bytes
    (:func:`footprint`), per router and per source.

    Args:
        max_events: most events held in all (:data:`MAX_STAGED_EVENTS`).
        max_per_source: most events one source holds (:data:`MAX_STAGED_PER_SOURCE`).
        max_bytes: most bytes held in all (:data:`MAX_STAGED_BYTES`).
        max_bytes_per_source: most bytes one source holds
            (:data:`MAX_STAGED_BYTES_PER_SOURCE`).
        idle_s: seconds after its last addition a stage is dropped
            (:data:`STAGE_IDLE_S`; :meth:`expire` drops them).
        monotonic: the clock of ``idle_s``, in seconds.
    """

    def __init__(
        self,
        max_events: int = MAX_STAGED_EVENTS,
        *,
        max_per_source: int = MAX_STAGED_PER_SOURCE,
        max_bytes: int = MAX_STAGED_BYTES,
        max_bytes_per_source: int = MAX_STAGED_BYTES_PER_SOURCE,
        idle_s: float = STAGE_IDLE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stages: dict[tuple[str, str], dict[tuple[str, int], Envelope]] = {}
        self._touched: dict[tuple[str, str], float] = {}
        self._per_source: Counter[str] = Counter()
        self._per_source_bytes: Counter[str] = Counter()
        self._count = 0
        self._bytes = 0
        self._max_events = max_events
        self._max_per_source = max_per_source
        self._max_bytes = max_bytes
        self._max_bytes_per_source = max_bytes_per_source
        self._idle_s = idle_s
        self._monotonic = monotonic

    @property
    def idle_s(self) -> float:
        """Seconds after its last addition a stage is dropped."""
        return self._idle_s

    @property
    def staged_events(self) -> int:
        """How many envelopes are held in all stages."""
        return self._count

    @property
    def staged_bytes(self) -> int:
        """The :func:`footprint` of every envelope held."""
        return self._bytes

    def add(self, ns: str, stage: str, envelopes: Iterable[Envelope]) -> None:
        """Hold ``envelopes`` under (``ns``, ``stage``); a repeated key replaces the old one.

        The events before the one that finds no room are held (a resend of the batch
        replaces them).

        Raises:
            RouterError: ``RATE_LIMITED`` when the event does not fit in the router's
                ``max_events`` / ``max_bytes`` (after dropping idle stages) or in its
                source's ``max_per_source`` / ``max_bytes_per_source``: retry after
                committing.
        """
        key_stage = (ns, stage)
        held = self._stages.setdefault(key_stage, {})
        self._touched[key_stage] = self._monotonic()
        for env in envelopes:
            key = (env.source, env.source_seq)
            old = held.get(key)
            new = old is None
            grow = footprint(env) - (0 if old is None else footprint(old))
            if new or grow > 0:
                self._make_room(env.source, int(new), grow)
            self._count += new
            self._bytes += grow
            self._per_source[env.source] += new
            self._per_source_bytes[env.source] += grow
            held[key] = env

    def _make_room(self, source: str, events: int, nbytes: int) -> None:
        """Raise ``RATE_LIMITED`` unless ``events`` more events of ``nbytes`` fit (idle
        stages are dropped first when the router is full)."""
        full = self._count + events > self._max_events or self._bytes + nbytes > self._max_bytes
        if full and not (self.expire() and self._fits(events, nbytes)):
            raise RouterError(
                Code.RATE_LIMITED,
                f"{self._count} events ({self._bytes:,} bytes) already staged; "
                "commit before staging more",
            )
        if (
            self._per_source[source] + events > self._max_per_source
            or self._per_source_bytes[source] + nbytes > self._max_bytes_per_source
        ):
            raise RouterError(
                Code.RATE_LIMITED,
                f"source {source!r} already has {self._per_source[source]} events "
                f"({self._per_source_bytes[source]:,} bytes) staged; commit before staging more",
            )

    def _fits(self, events: int, nbytes: int) -> bool:
        return self._count + events <= self._max_events and self._bytes + nbytes <= self._max_bytes

    def expire(self) -> int:
        """Drop the stages nobody added to for ``idle_s`` seconds; return how many events
        went with them."""
        cutoff = self._monotonic() - self._idle_s
        dropped = 0
        for key in [k for k, t in self._touched.items() if t <= cutoff]:
            dropped += self._drop(key)
        return dropped

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
        held = self._stages.get((ns, stage), {})
        self._drop((ns, stage))
        return wave_order(held.values())  # the replay's wave rule: the in-process bytes

    def restore(self, ns: str, stage: str, envelopes: Iterable[Envelope]) -> None:
        """Put back events taken by :meth:`take` whose append failed."""
        self.add(ns, stage, envelopes)

    def _drop(self, key: tuple[str, str]) -> int:
        """Forget one stage; return how many events it held."""
        held = self._stages.pop(key, {})
        self._touched.pop(key, None)
        counts: Counter[str] = Counter()
        sizes: Counter[str] = Counter()
        for env in held.values():
            counts[env.source] += 1
            sizes[env.source] += footprint(env)
        for source, n in counts.items():
            self._per_source[source] -= n
            self._per_source_bytes[source] -= sizes[source]
            if self._per_source[source] <= 0:
                del self._per_source[source], self._per_source_bytes[source]
        self._count -= len(held)
        self._bytes -= sum(sizes.values())
        return len(held)
