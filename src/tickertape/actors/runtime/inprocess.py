"""The in-process host: many actors in one process, driven step by step (DESIGN §7).

The host owns a simulated clock, a timer queue shared by its actors, and a
:class:`~tickertape.actors.runtime.sink.Sink` for outputs. For each
:class:`~tickertape.timeauthority.scheduler.Step` it runs the waves:

- wave 0: the step's timers (each to its owner, canonical order; one that a handler
  earlier in the step cancelled or replaced does not fire), then the step's input
  records (each to every actor subscribed to its topic, in gseq order);
- wave n+1: every output of wave n, ordered by ``(ts_event, source, source_seq)``,
  appended to the sink as one batch with ``ts_log`` = the step's time, then
  delivered like the inputs;
- the step ends when a wave is empty.

Outputs of one actor never depend on the order in which actors handle the same
wave (each actor has its own state and ``source_seq``), and the wave is sorted before
it is stored, so the stored log is the same whatever the registration order.

The per-event path is kept lean, because a replay runs it for every record: the
actors' name order and each topic's subscribers are computed once and cached
(:meth:`InProcessHost.add` clears the caches), payloads are decoded once per record
whatever the number of subscribers, and a wave reuses the list its first publisher's
outputs were buffered in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import structlog

from tickertape.actors.base import Actor, Event, Timer
from tickertape.actors.runtime.context import ActorContext
from tickertape.actors.runtime.errors import (
    ActorFailedError,
    FutureEventError,
    report_undeliverable,
)
from tickertape.actors.runtime.sink import Sink
from tickertape.errors import ConfigError, SchemaError, TickertapeError
from tickertape.roles import publish_rule
from tickertape.schemas.envelope import Envelope, Record
from tickertape.schemas.registry import decode_payload
from tickertape.snapshots.codec import Snapshot
from tickertape.snapshots.policy import SnapshotPolicy
from tickertape.snapshots.store import SnapshotStore
from tickertape.timeauthority.clock import ActorClock, SimulatedClock
from tickertape.timeauthority.scheduler import Step, StepPlanner, wave_key
from tickertape.timeauthority.timers import TimerQueue
from tickertape.topics import matches_any, validate_pattern

_log = structlog.get_logger("tickertape.host")


@dataclass(slots=True)
class _Slot:
    name: str
    actor: Actor
    ctx: ActorContext
    patterns: tuple[str, ...]
    on_event: Callable[[Event, ActorContext], None]
    store: SnapshotStore | None = None
    events_at_snapshot: int = 0
    clock_at_snapshot: int = 0
    skipped_types: set[tuple[str, int]] = field(default_factory=set)


class StepResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one step did.

    Attributes:
        waves: waves run after wave 0 that had events (0 when nothing was published).
        outputs: records stored (or found duplicate) by the step.
        deliveries: handler calls made.
    """

    waves: int
    outputs: int
    deliveries: int


class InProcessHost:
    """Runs many actors in one process with the deterministic step/wave scheduler.

    Args:
        sink: where outputs are stored.
        clock: the simulated clock (the host advances it to each step's time).
        seed: the run's seed (each actor's ``ctx.random`` derives from it).
        snapshot_policy: when to snapshot, or None for never.
        snapshot_root: directory holding one snapshot directory per actor
            (``<data-dir>/snapshots/<namespace>``), or None for no snapshots.

    Raises:
        ConfigError: from :meth:`add`, for a duplicate name or an invalid pattern.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        clock: SimulatedClock | None = None,
        seed: int = 0,
        snapshot_policy: SnapshotPolicy | None = None,
        snapshot_root: str | Path | None = None,
    ) -> None:
        self.sink = sink
        self.clock = clock if clock is not None else SimulatedClock()
        self.timers = TimerQueue()
        self.seed = seed
        self._policy = snapshot_policy
        self._snapshot_root = None if snapshot_root is None else Path(snapshot_root)
        self._slots: dict[str, _Slot] = {}
        self._order: tuple[_Slot, ...] = ()
        self._routes: dict[str, tuple[_Slot, ...]] = {}
        self._started = False

    # ---------------------------------------------------------------- set-up

    def add(self, actor: Actor, name: str | None = None) -> ActorContext:
        """Register ``actor`` under ``name`` (default ``actor.name``); return its context.

        Raises:
            ConfigError: the name is taken, the host has started, or a subscription
                pattern is invalid.
        """
        name = name or actor.name
        if self._started:
            raise ConfigError(f"cannot add actor {name!r}: the host has started")
        if name in self._slots:
            raise ConfigError(f"two actors named {name!r}")
        for pattern in actor.subscriptions:
            problem = validate_pattern(pattern)
            if problem is not None:
                raise ConfigError(f"actor {name!r}: {problem}")
        ctx = ActorContext(
            name,
            ActorClock(name, self.clock, self.timers),
            seed=self.seed,
            publish_rule=publish_rule(name),
        )
        slot = _Slot(
            name=name,
            actor=actor,
            ctx=ctx,
            patterns=tuple(actor.subscriptions),
            on_event=actor.on_event,
        )
        if self._snapshot_root is not None:
            keep = self._policy.keep if self._policy is not None else 3
            slot.store = SnapshotStore(self._snapshot_root / name, keep=keep)
        self._slots[name] = slot
        self._order = tuple(self._slots[n] for n in sorted(self._slots))
        self._routes.clear()
        return ctx

    @property
    def actor_names(self) -> list[str]:
        """Names of the registered actors, sorted."""
        return sorted(self._slots)

    def subscriptions(self) -> list[str]:
        """Every pattern some actor subscribes to, sorted and unique."""
        return sorted({p for slot in self._slots.values() for p in slot.patterns})

    def context(self, name: str) -> ActorContext:
        """Return the context of actor ``name`` (KeyError when unknown)."""
        return self._slots[name].ctx

    # ------------------------------------------------------------- snapshots

    def restore(self, name: str, snapshot: Snapshot) -> None:
        """Restore actor ``name`` (state, counters, timers) from ``snapshot``.

        Call before :meth:`start`; the caller moves the clock to ``snapshot.clock_ns``.
        """
        slot = self._slots[name]
        if snapshot.state is not None:
            slot.actor.restore(snapshot.state)
        slot.ctx.restore_runtime_state(snapshot)
        self.timers.restore(snapshot.timers)
        slot.events_at_snapshot = snapshot.events_handled
        slot.clock_at_snapshot = snapshot.clock_ns

    def load_snapshots(self, *, at_or_before_ns: int | None = None) -> dict[str, Snapshot]:
        """Load every actor's newest valid snapshot from its store (no restore).

        Returns:
            ``{actor name: snapshot}`` for the actors that have one.
        """
        found: dict[str, Snapshot] = {}
        for name, slot in sorted(self._slots.items()):
            if slot.store is None:
                continue
            snap = slot.store.load_latest(
                type(slot.actor).state_version, at_or_before_ns=at_or_before_ns
            )
            if snap is not None:
                found[name] = snap
        return found

    def take_snapshot(self, name: str, positions: Mapping[str, int]) -> Snapshot:
        """Return a snapshot of actor ``name`` with the given input ``positions``."""
        slot = self._slots[name]
        state = slot.actor.snapshot()
        return Snapshot(
            actor=name,
            state_version=type(slot.actor).state_version,
            state=None if state is None else msgspec.msgpack.encode(state),
            positions=dict(sorted(positions.items())),
            clock_ns=self.clock.now_ns(),
            timers=self.timers.timers_of(name),
            **slot.ctx.runtime_state(),
        )

    def maybe_snapshot(self, positions: Mapping[str, int], *, force: bool = False) -> int:
        """Write the snapshots the policy says are due (all when ``force``).

        Call between steps, with the positions of everything consumed so far.

        Returns:
            How many snapshots were written.
        """
        if self._snapshot_root is None:
            return 0
        policy = self._policy or SnapshotPolicy()
        now = self.clock.now_ns()
        written = 0
        for name, slot in sorted(self._slots.items()):
            since = slot.ctx.events_handled - slot.events_at_snapshot
            if not force and not policy.due(since, now, slot.clock_at_snapshot):
                continue
            if not written:
                self.sink.sync()  # a snapshot never refers to outputs not yet durable
            assert slot.store is not None
            slot.store.save(self.take_snapshot(name, positions))
            slot.events_at_snapshot = slot.ctx.events_handled
            slot.clock_at_snapshot = now
            written += 1
        return written

    # ------------------------------------------------------------- lifecycle

    def start(self, *, call_on_start: bool = True) -> StepResult:
        """Call every actor's ``on_start`` (sorted by name) and run the waves of its outputs.

        Args:
            call_on_start: False when resuming a replay from snapshots: ``on_start``
                ran when the run started, and the snapshots hold its effects (timers).
        """
        self._started = True
        if not call_on_start:
            return StepResult(waves=0, outputs=0, deliveries=0)
        for slot in self._order:
            self._call(slot, "on_start", None, slot.actor.on_start, slot.ctx)
        return self._run_output_waves(self.clock.now_ns(), 0)

    def stop(self) -> StepResult:
        """Call every actor's ``on_stop`` and run the waves of what they publish."""
        for slot in self._order:
            self._call(slot, "on_stop", None, slot.actor.on_stop, slot.ctx)
        return self._run_output_waves(self.clock.now_ns(), 0)

    def run_step(self, step: Step) -> StepResult:
        """Advance the clock to ``step.time_ns`` and run the step's waves.

        A timer of ``step`` that a handler earlier in the step cancelled or replaced
        (:meth:`TimerQueue.withdrawn`) does not fire.

        Raises:
            ActorFailedError: a handler raised something other than a tickertape error.
            BiasError: a bias guard tripped (look-ahead, backwards time).
            LogError: the sink refused a wave.
        """
        self.clock.advance_to(step.time_ns)
        deliveries = 0
        timers = self.timers
        for scheduled in step.timers:
            slot = self._slots.get(scheduled.owner)
            if slot is None or timers.withdrawn(scheduled):
                continue  # cancelled or replaced by a handler earlier in the step
            timer = Timer(scheduled.name, scheduled.due_ns)
            self._call(slot, "on_timer", None, slot.actor.on_timer, timer, slot.ctx)
            slot.ctx.events_handled += 1
            deliveries += 1
        deliveries += self._deliver(step.events)
        result = self._run_output_waves(step.time_ns, deliveries)
        return result

    def run(
        self,
        planner: StepPlanner,
        *,
        on_step: Callable[[Step, StepResult], None] | None = None,
    ) -> int:
        """Run every step ``planner`` yields; return how many ran."""
        steps = 0
        while (step := planner.next_step()) is not None:
            result = self.run_step(step)
            steps += 1
            if on_step is not None:
                on_step(step, result)
        return steps

    # -------------------------------------------------------------- internals

    def _run_output_waves(self, t: int, deliveries: int) -> StepResult:
        waves = 0
        outputs_total = 0
        order = self._order
        while True:
            # The first publisher's buffer becomes the wave (drain hands it over), so a
            # wave with one publisher allocates nothing more.
            outputs: list[Envelope] | None = None
            for slot in order:
                ctx = slot.ctx
                if ctx.outputs:
                    if outputs is None:
                        outputs = ctx.drain()
                    else:
                        outputs.extend(ctx.drain())
            if outputs is None:
                break
            waves += 1
            if len(outputs) > 1:
                outputs.sort(key=wave_key)
            stored = self.sink.append(outputs, t)
            outputs_total += len(stored)
            deliveries += self._deliver(stored)
        return StepResult(waves=waves, outputs=outputs_total, deliveries=deliveries)

    def _route(self, topic: str) -> tuple[_Slot, ...]:
        slots = self._routes.get(topic)
        if slots is None:
            slots = tuple(s for s in self._order if matches_any(s.patterns, topic))
            self._routes[topic] = slots
        return slots

    def _deliver(self, records: Iterable[Record]) -> int:
        now = self.clock.now_ns()
        deliveries = 0
        routes = self._routes
        for record in records:
            slots = routes.get(record.topic)
            if slots is None:
                slots = self._route(record.topic)
            if not slots:
                continue
            try:
                payload = decode_payload(record.type, record.v, record.payload)
            except SchemaError as exc:  # UnknownTypeError included
                report_undeliverable(record, exc, slots[0].skipped_types)
                continue
            if record.ts_event > now:
                raise FutureEventError(slots[0].name, record.id, record.ts_event, now)
            event = Event(record, payload)
            for slot in slots:
                try:
                    slot.on_event(event, slot.ctx)
                except TickertapeError:
                    raise
                except Exception as exc:
                    raise ActorFailedError(slot.name, "on_event", record.id, exc) from exc
                slot.ctx.events_handled += 1
            deliveries += len(slots)
        return deliveries

    @staticmethod
    def _call(
        slot: _Slot,
        handler: str,
        event_id: str | None,
        fn: Callable[..., None],
        *args: object,
    ) -> None:
        try:
            fn(*args)
        except TickertapeError:
            raise
        except Exception as exc:
            raise ActorFailedError(slot.name, handler, event_id, exc) from exc
