"""The in-process replay driver: every actor in this process, one run namespace out.

``run_in_process`` reads the input topics of the source namespace from a time
(merged by gseq, bounded by the source's head when the run starts), drives an
:class:`~tickertape.actors.runtime.inprocess.InProcessHost` step by step, and appends
every wave to ``runs/<run-id>`` with ``ts_log`` = the step's simulated time. The
namespace starts with the run manifest and ends with the run summary
(:mod:`tickertape.replay.manifest`). Nothing reads the wall clock except the pacer
(``--speed N``) and the progress display, which never reach the log.

Snapshots of all actors are taken together, at step boundaries, whenever the policy
is due for any of them, with ``positions = {<source namespace>: last input gseq}``;
``resume=True`` restarts a run from the newest common snapshot, and the log drops
the outputs it already has (same ``source``, ``source_seq``), reporting any that
differ as divergences. A resumed run reads up to the source head its stored manifest
names (events appended to the source since are not its inputs); resumed from the
snapshot taken after ``on_stop`` it only stores what the summary needs (``on_stop``
ran already); a run whose summary is stored is complete and left as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import msgspec
import structlog

from tickertape.actors.runtime.inprocess import InProcessHost
from tickertape.actors.runtime.resolution import ActorSpec, config_hash
from tickertape.actors.runtime.sink import Divergence, LogSink, Sink
from tickertape.errors import ConfigError
from tickertape.eventlog import EventLog, LogReader
from tickertape.replay.manifest import (
    ALERT_TOPIC,
    DRIVER_SOURCE,
    MANIFEST_TOPIC,
    SUMMARY_TOPIC,
    OutputCounter,
    RunSettings,
    alert_envelope,
    family_counts,
    manifest_envelope,
    summary_envelope,
)
from tickertape.schemas.envelope import Envelope, Record
from tickertape.schemas.registry import decode_payload
from tickertape.schemas.system import RunManifest, RunSummary
from tickertape.snapshots.codec import Snapshot
from tickertape.snapshots.policy import SnapshotPolicy
from tickertape.snapshots.store import SnapshotStore
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.pacing import Pacer
from tickertape.timeauthority.scheduler import StepPlanner

_log = structlog.get_logger("tickertape.replay")
_T = TypeVar("_T")


class ReplayResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a replay did.

    Attributes:
        run_id: the run.
        namespace: ``runs/<run_id>``.
        steps: steps run.
        input_events: input records read.
        output_events: records the actors produced (stored or found duplicate).
        divergences: regenerated outputs that differed from stored ones.
        head_gseq: the run namespace's head after the summary.
        wall_seconds: elapsed wall time (informational; never stored).
    """

    run_id: str
    namespace: str
    steps: int
    input_events: int
    output_events: int
    divergences: int
    head_gseq: int
    wall_seconds: float


class DriverState(msgspec.Struct, kw_only=True):
    """The driver's own counters, snapshotted with the actors so a resumed run's
    summary equals an uninterrupted one's.

    Attributes:
        steps: steps run.
        inputs: input records read.
        last_ts_event: the largest output ``ts_event`` so far, ns.
        stopped: the actors' ``on_stop`` ran (the snapshot taken at the end): a run
            resumed from it does not run it again.
    """

    steps: int = 0
    inputs: int = 0
    last_ts_event: int = 0
    stopped: bool = False


DRIVER_STATE_VERSION = 1

ProgressFn = Callable[[int, int, int], None]
"""Called as ``progress(sim_ns, input_events, output_events)`` after steps."""


SYNC_EVERY_S = 1.0
"""Wall seconds between syncs of a running replay's namespace (besides snapshots)."""

PACE_SLICE_S = 0.05
"""Longest single wall sleep while pacing (``--speed N``): a pause, speed change or seek
asked meanwhile is taken within it."""


class CountingSink:
    """A sink that counts what passes through it per topic family."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.counter = OutputCounter()

    @property
    def divergences(self) -> list[Divergence]:
        """The inner sink's divergences."""
        return self.inner.divergences

    def append(self, envelopes: Sequence[Envelope], ts_log: int) -> list[Record]:
        """Append through the inner sink and count the stored records."""
        records = self.inner.append(envelopes, ts_log)
        self.counter.add(records)
        return records

    def sync(self) -> None:
        """Sync the inner sink."""
        self.inner.sync()


def input_positions(reader: LogReader, settings: RunSettings) -> dict[str, int]:
    """The source positions a run reads up to: ``{"head_gseq": ...}`` at its start."""
    return {"head_gseq": reader.head_gseq()}


def stored_driver_event(log: EventLog, topic: str, kind: type[_T]) -> _T | None:
    """The payload of the last event the driver stored on ``topic`` (the manifest or the
    summary) in the run namespace open as ``log``; None when there is none.

    Raises:
        LogError: the log cannot be read (CorruptRecordError...).
    """
    count = log.next_offsets().get(topic, 0)
    if not count:
        return None
    record = next(log.read_topic(topic, count - 1))
    payload = decode_payload(record.type, record.v, record.payload)
    return payload if isinstance(payload, kind) else None


def read_inputs(
    reader: LogReader, settings: RunSettings, *, head_gseq: int, after_ns: int | None = None
) -> Iterator[Record]:
    """The run's input records in (ts_event, gseq) order, with ``gseq ≤ head_gseq``.

    Time order, not gseq order: data imported later may be older than data imported
    before it, and a step is every input sharing the next ts_event (DESIGN §7).

    Args:
        after_ns: on resume, the clock of the snapshot: a step at time T consumed every
            input with ``ts_event ≤ T``, so only later inputs are read.
    """
    start = settings.start_ns if after_ns is None else max(settings.start_ns, after_ns + 1)
    for record in reader.read_in_time_order(settings.topics, start, settings.end_ns):
        if record.gseq <= head_gseq:
            yield record


def run_in_process(
    data_dir: str | Path,
    settings: RunSettings,
    specs: list[ActorSpec],
    *,
    pacer: Pacer | None = None,
    progress: ProgressFn | None = None,
    snapshot_policy: SnapshotPolicy | None = None,
    resume: bool = False,
    respec: Callable[[], list[ActorSpec]] | None = None,
) -> ReplayResult:
    """Replay the source namespace through ``specs`` into ``runs/<run_id>``.

    Seeks (:meth:`Pacer.request_seek`, from the replay's keyboard) are taken between
    steps. Ahead of the clock, the steps up to the target run unpaced, then pacing
    resumes. Behind it, the run restarts from the newest common snapshot at or before
    the target (from the run's start when there is none; the stores keep the last
    few), with actors built anew by ``respec``, and runs unpaced up to the target: the
    log drops the regenerated outputs it already has and reports any that differ as
    divergences, so the run's files are those of a run without the seek.

    Args:
        data_dir: the data directory (logs/ and snapshots/).
        settings: what to read and the run's id and seed.
        specs: the actors (see :mod:`tickertape.actors.runtime.resolution`).
        pacer: paces steps (``--speed``) and carries seek requests; None runs at max
            speed.
        progress: called after steps (at most every 0.1 s of wall time).
        snapshot_policy: when to snapshot (None: never).
        resume: continue an interrupted run from its newest snapshots.
        respec: builds fresh instances of the same actors, for a seek behind the
            clock; without it such a seek is refused with a log line.

    Returns:
        The run's counts. With ``resume``, a run whose summary is stored is complete: it
        is left as it is, and its counts are those of its summary (``divergences``: its
        driver's ``system.alert`` events).

    Raises:
        ConfigError: the run namespace already holds events (without ``resume``),
            or no actor was given.
        BiasError, ActorFailedError, LogError: from the actors and the log; the run
            stops and its namespace holds what was stored so far.
    """
    if not specs:
        raise ConfigError("no actors to replay (give --actors)")
    started = time.monotonic()
    data_dir = Path(data_dir)
    log = EventLog.open(data_dir, settings.namespace, check_payloads=False)  # msgspec-encoded
    try:
        if log.head_gseq and not resume:
            raise ConfigError(
                f"run namespace {settings.namespace!r} already holds {log.head_gseq} events: "
                "choose another --run-id, or resume it"
            )
        if resume and log.next_offsets().get(SUMMARY_TOPIC):
            return _complete(settings, log, started)
        run = _InProcessRun(data_dir, settings, log, pacer, progress, snapshot_policy)
        return run.run(specs, resume=resume, respec=respec, started=started)
    finally:
        log.close()


def _complete(settings: RunSettings, log: EventLog, started: float) -> ReplayResult:
    """The counts of a complete run (its summary is stored), read from its log."""
    summary = stored_driver_event(log, SUMMARY_TOPIC, RunSummary)
    if summary is None:
        raise ConfigError(f"run namespace {settings.namespace!r}: its summary is unreadable")
    _log.info("resume_complete", run_id=settings.run_id, reason="its summary is stored")
    return ReplayResult(
        run_id=settings.run_id,
        namespace=settings.namespace,
        steps=summary.steps,
        input_events=summary.input_events,
        output_events=summary.output_events,
        divergences=log.next_offsets().get(ALERT_TOPIC, 0),
        head_gseq=log.head_gseq,
        wall_seconds=time.monotonic() - started,
    )


class _InProcessRun:
    """One :func:`run_in_process`: the run namespace's sink and the driver's counters,
    over one or more passes (a seek behind the clock starts a new pass with actors
    built anew)."""

    def __init__(
        self,
        data_dir: Path,
        settings: RunSettings,
        log: EventLog,
        pacer: Pacer | None,
        progress: ProgressFn | None,
        snapshot_policy: SnapshotPolicy | None,
    ) -> None:
        self.settings = settings
        self.log = log
        self.pacer = pacer
        self.progress = progress
        self.snapshot_policy = snapshot_policy
        self.reader = LogReader(data_dir, settings.source_namespace)
        # A resumed run reads up to the head its manifest names, not the source's head
        # now (a feed may have appended since): the same inputs as the run it continues.
        stored = stored_driver_event(log, MANIFEST_TOPIC, RunManifest)
        self.positions = (
            input_positions(self.reader, settings)
            if stored is None or "head_gseq" not in stored.input_positions
            else dict(stored.input_positions)
        )
        # The run namespace is made durable at each snapshot (which refers to it), every
        # SYNC_EVERY_S of wall time (so that `tape tail --follow` sees it move) and at
        # the end, not after every wave: a crash loses at most what the snapshots let
        # `--resume` regenerate.
        self.sink = CountingSink(LogSink(log, durable=False))
        self.snapshot_root = (
            None if snapshot_policy is None else data_dir / "snapshots" / settings.namespace
        )
        self.driver_store = (
            None
            if self.snapshot_root is None
            else SnapshotStore(self.snapshot_root / DRIVER_SOURCE)
        )
        self.state = DriverState()
        self.seek_to: int | None = None  # ahead of the clock: run unpaced up to it
        self.last_input_gseq = 0

    def run(
        self,
        specs: list[ActorSpec],
        *,
        resume: bool,
        respec: Callable[[], list[ActorSpec]] | None,
        started: float,
    ) -> ReplayResult:
        """The manifest, the passes, then the alerts and the summary."""
        settings = self.settings
        chash = config_hash(specs, {"settings": msgspec.to_builtins(settings)})
        manifest = manifest_envelope(
            settings,
            actors=sorted(spec.name for spec in specs),
            config_hash=chash,
            input_positions=self.positions,
        )
        self.sink.inner.append([manifest], settings.start_ns)
        restore, restore_at = resume, None
        while True:
            host, restored = self._host(specs, restore=restore, at_or_before_ns=restore_at)
            if self.state.stopped:
                # Restored after on_stop (a crash before the summary): no step is left.
                _log.info("resumed_after_stop", clock_ns=host.clock.now_ns())
                break
            rewind = self._steps(host, restored=restored, can_rewind=respec is not None)
            if rewind is None:
                break
            # Behind the clock: the actors are built anew and restored from the newest
            # snapshots at or before the target (or start over); up to the target the
            # steps run unpaced and their outputs are found in the log already.
            _log.info("seek_back", time_ns=rewind, clock_ns=host.clock.now_ns())
            assert respec is not None
            specs = respec()
            restore, restore_at, self.seek_to = True, rewind, rewind
        return self._finish(host, started)

    def _host(
        self, specs: list[ActorSpec], *, restore: bool, at_or_before_ns: int | None
    ) -> tuple[InProcessHost, bool]:
        """A host of ``specs``, restored from the newest common snapshots (at or before
        ``at_or_before_ns``) when ``restore`` and there are some, then started; and
        whether it was restored."""
        host = InProcessHost(
            self.sink,
            clock=SimulatedClock(self.settings.start_ns),
            seed=self.settings.seed,
            snapshot_policy=self.snapshot_policy,
            snapshot_root=self.snapshot_root,
        )
        for spec in specs:
            host.add(spec.actor, spec.name)
        restored, self.last_input_gseq = False, 0
        if restore:
            restored, self.last_input_gseq = self._restore(host, at_or_before_ns)
        if not restored:
            self.state = DriverState()
        host.start(call_on_start=not restored)
        return host, restored

    def _steps(self, host: InProcessHost, *, restored: bool, can_rewind: bool) -> int | None:
        """Run the steps from the host's clock (after it, when ``restored``) to the end
        of the range; return the target of a seek behind the clock, which stops the
        pass (None: the range ended)."""
        settings, sink, state, pacer = self.settings, self.sink, self.state, self.pacer
        planner = StepPlanner(
            read_inputs(
                self.reader,
                settings,
                head_gseq=self.positions["head_gseq"],
                after_ns=host.clock.now_ns() if restored else None,
            ),
            host.timers,
            start_ns=host.clock.now_ns(),
            end_ns=None if settings.end_ns is None else settings.end_ns - 1,
        )
        last_progress = 0.0
        last_sync = time.monotonic()
        handled_at_snapshot = state.inputs + sink.counter.total
        clock_at_snapshot = host.clock.now_ns()
        policy = self.snapshot_policy
        while (step := planner.next_step()) is not None:
            if pacer is not None:
                rewind = self._pace(pacer, step.time_ns, host.clock.now_ns(), can_rewind)
                if rewind is not None:
                    return rewind
            host.run_step(step)
            state.steps += 1
            state.inputs += len(step.events)
            state.last_ts_event = max(state.last_ts_event, sink.counter.last_ts_event)
            if step.events:
                self.last_input_gseq = step.events[-1].gseq
            if policy is not None:
                handled = state.inputs + sink.counter.total
                if policy.due(handled - handled_at_snapshot, step.time_ns, clock_at_snapshot):
                    self._snapshot(host)
                    handled_at_snapshot = handled
                    clock_at_snapshot = step.time_ns
            now = time.monotonic()
            if now - last_sync >= SYNC_EVERY_S:
                last_sync = now
                sink.sync()
            if self.progress is not None and now - last_progress >= 0.1:
                last_progress = now
                self.progress(step.time_ns, state.inputs, sink.counter.total)
        return None

    def _pace(self, pacer: Pacer, step_ns: int, clock_ns: int, can_rewind: bool) -> int | None:
        """Hold the step at ``step_ns`` until it is due at the pacer's speed (the clock
        at ``clock_ns``), taking the seeks asked before it or while it waits: one ahead
        of the clock runs the steps unpaced up to its target (:attr:`seek_to`, the pace
        re-anchored there); one behind it is returned, the time to rewind to (refused
        with a warning when ``can_rewind`` is false). None: run the step."""
        wanted = pacer.take_seek(clock_ns)
        while True:
            if wanted is not None:
                if wanted > clock_ns:
                    self.seek_to = wanted
                elif not can_rewind:
                    _log.warning(
                        "seek_refused", reason="this replay cannot rebuild its actors",
                        time_ns=wanted,
                    )  # fmt: skip
                else:
                    return wanted
            if self.seek_to is not None:
                if step_ns < self.seek_to:
                    return None
                self.seek_to = None
                pacer.resume()  # re-anchor the pace at the seek's target
            # A seek asked while waiting is taken before the step runs.
            wanted = _wait(pacer, step_ns, clock_ns)
            if wanted is None:
                return None

    def _snapshot(self, host: InProcessHost) -> None:
        """Snapshot every actor and the driver together, at the host's clock, with
        ``positions = {<source namespace>: last input gseq}``."""
        positions = {self.settings.source_namespace: self.last_input_gseq}
        host.maybe_snapshot(positions, force=True)
        if self.driver_store is not None:
            self.driver_store.save(
                Snapshot(
                    actor=DRIVER_SOURCE,
                    state_version=DRIVER_STATE_VERSION,
                    state=msgspec.msgpack.encode(self.state),
                    positions=positions,
                    source_seq=0,
                    clock_ns=host.clock.now_ns(),
                    events_handled=self.state.inputs + self.sink.counter.total,
                )
            )

    def _restore(self, host: InProcessHost, at_or_before_ns: int | None) -> tuple[bool, int]:
        """Restore ``host`` and the driver's counters from the newest snapshots common to
        every actor and the driver (taken at or before ``at_or_before_ns`` when given);
        return whether it did and the last input gseq they had consumed."""
        if self.driver_store is None:
            return False, 0
        source = self.settings.source_namespace
        snaps = host.load_snapshots(at_or_before_ns=at_or_before_ns)
        driver = self.driver_store.load_latest(
            DRIVER_STATE_VERSION, at_or_before_ns=at_or_before_ns
        )
        if sorted(snaps) != host.actor_names or driver is None:
            missing = sorted(set(host.actor_names) - set(snaps))
            _log.info("resume_from_start", reason="no snapshot", actors=missing)
            return False, 0
        everything = [*snaps.values(), driver]
        positions = {s.positions.get(source, 0) for s in everything}
        clocks = {s.clock_ns for s in everything}
        if len(positions) != 1 or len(clocks) != 1:
            _log.info("resume_from_start", reason="snapshots are not from the same step")
            return False, 0
        host.clock.advance_to(clocks.pop())
        for name, snap in sorted(snaps.items()):
            host.restore(name, snap)
        assert driver.state is not None
        self.state = msgspec.msgpack.decode(driver.state, type=DriverState)
        position = positions.pop()
        _log.info("resumed", after_gseq=position, clock_ns=host.clock.now_ns())
        return True, position

    def _finish(self, host: InProcessHost, started: float) -> ReplayResult:
        """Stop the actors unless a resumed run's snapshot says they were (then a last
        snapshot when the policy asks), store the alerts of the divergences and the
        summary, sync; return the counts."""
        settings, sink, state = self.settings, self.sink, self.state
        if not state.stopped:
            host.stop()
            state.stopped = True
            state.last_ts_event = max(state.last_ts_event, sink.counter.last_ts_event)
            if self.snapshot_policy is not None and self.snapshot_policy.on_stop:
                self._snapshot(host)
        end_ns = host.clock.now_ns()
        seq = 2
        divergences = list(sink.divergences)
        for d in divergences:
            _log.error("divergence", id=d.id, fields=d.fields)
            sink.inner.append([alert_envelope(d.alert(), seq, end_ns)], end_ns)
            seq += 1
        counts = family_counts(self.log.next_offsets())
        summary = summary_envelope(
            settings,
            source_seq=seq,
            ts_ns=end_ns,
            input_events=state.inputs,
            steps=state.steps,
            counts=counts,
            last_ts_event=state.last_ts_event,
        )
        sink.inner.append([summary], end_ns)
        sink.sync()
        if self.progress is not None:
            self.progress(end_ns, state.inputs, sink.counter.total)
        return ReplayResult(
            run_id=settings.run_id,
            namespace=settings.namespace,
            steps=state.steps,
            input_events=state.inputs,
            output_events=sum(counts.values()),
            divergences=len(divergences),
            head_gseq=self.log.head_gseq,
            wall_seconds=time.monotonic() - started,
        )


def _wait(pacer: Pacer, sim_ns: int, now_ns: int) -> int | None:
    """Wait until the step at ``sim_ns`` (ns) is due at the pacer's speed, sleeping at most
    :data:`PACE_SLICE_S` at a time: a pause holds the wait and a speed change applies
    within a slice. Return the target of a seek asked meanwhile (ns; a relative one
    counted from ``now_ns``, the clock) as soon as there is one, else None once due."""
    while True:
        if pacer.paused:
            time.sleep(PACE_SLICE_S)
            continue
        wanted = pacer.take_seek(now_ns)
        if wanted is not None:
            return wanted
        delay = pacer.delay(sim_ns)
        if delay <= 0:
            return None
        time.sleep(min(delay, PACE_SLICE_S))
