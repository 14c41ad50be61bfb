"""The distributed replay: a time authority and one process per actor, via a router.

The time authority (:class:`ReplayCoordinator`, also ``tape clock --mode replay``)
reads the input topics of the source namespace, plans steps with the same
:class:`~tickertape.timeauthority.scheduler.StepPlanner` as the in-process host, and
runs each step's waves over the router (docs/protocol.md §8):

1. it announces the wave on ``system.replay.step`` (ephemeral, on the source
   namespace, so that the run's output subscribers never receive it): wave 0 carries
   the step's input records (read in (ts_event, gseq) order: gseq order is not time
   order across topics), wave n ≥ 1 the run-namespace gseq range of wave n-1's
   outputs and their count per topic;
2. every actor it addresses runs the wave
   (:class:`~tickertape.actors.runtime.remote.RemoteReplayHost`), taking a wave n ≥ 1's
   records from its own subscription to the run namespace, publishes its outputs
   *staged* under ``<run>:<step>:<wave>`` and reports ``system.replay.done`` with its
   outputs per topic and its next timer;
3. the authority commits the stage (``commit``, ``ts_log`` = the step's time): the
   router appends it as one batch sorted by (``ts_event``, ``source``,
   ``source_seq``) — the same bytes the in-process host writes — and delivers it to
   the actors subscribed. The next wave's announcement goes right behind the commit,
   without waiting for its answer: only this authority writes the run namespace, so
   the stage takes the gseqs after the last commit's, known in advance (checked
   against the commit's answer before the wave's dones are awaited);
4. a step ends with an empty wave.

Actors that die are restarted by the driver's :class:`~tickertape.replay.supervision.Supervisor`;
a restarted actor says ``hello`` with the epoch of its newest snapshot and gets
the announcements since then (the authority keeps them from the second-to-last
snapshot on), replays the committed ones without publishing, and rejoins the wave
in progress. Snapshots are taken on ``snapshot`` announcements every
``snapshot_every_steps`` steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import structlog

from tickertape import loop
from tickertape.actors.runtime.resolution import ActorSpec, config_hash
from tickertape.client import Client, RemoteSubscription
from tickertape.errors import ConfigError, RouterError
from tickertape.eventlog import LogReader
from tickertape.replay.control import (
    DONE_TOPIC,
    HELLO_TOPIC,
    REPLAY_PROTOCOL,
    STEP_TOPIC,
    WELCOME_TOPIC,
    BatchStep,
    Done,
    Hello,
    Phase,
    StepAnnounce,
    Welcome,
    batch_stage,
    step_topic,
)
from tickertape.replay.inprocess import PACE_SLICE_S, ReplayResult, input_positions, read_inputs
from tickertape.replay.manifest import (
    ALERT_TOPIC,
    DRIVER_SOURCE,
    MANIFEST_TOPIC,
    SUMMARY_TOPIC,
    RunSettings,
    alert_envelope,
    driver_envelope,
    family_counts,
    manifest_envelope,
    summary_envelope,
)
from tickertape.replay.supervision import Supervisor, tape_command
from tickertape.roles import may_publish_into
from tickertape.router.protocol import Committed
from tickertape.schemas.envelope import Envelope, Record
from tickertape.schemas.registry import decode_payload
from tickertape.schemas.system import Divergence
from tickertape.timeauthority.control import CONTROL_TOPIC as CLOCK_CONTROL_TOPIC
from tickertape.timeauthority.control import ClockControl
from tickertape.timeauthority.pacing import Pacer
from tickertape.timeauthority.scheduler import Step, StepPlanner
from tickertape.timeauthority.timers import ScheduledTimer
from tickertape.topics import matches_any

_log = structlog.get_logger("tickertape.timeauthority")

REANNOUNCE_S = 2.0
"""Re-send an announcement when an actor has not answered within this many seconds
(ephemeral messages are best effort; actors answer a repeated one idempotently)."""

BATCH_STEPS = 512
"""Most steps in one ``batch`` announcement."""

BATCH_INPUTS = 2_000
"""Most input records in one ``batch`` announcement (about 1 MB of JSON, well under
the router's 8 MiB frame limit, and bounded history for a restarted actor)."""


class RemoteTimers:
    """The authority's view of the actors' timers: each actor's earliest, as reported.

    The actors fire their own timers; :meth:`pop_due` returns nothing.
    """

    def __init__(self) -> None:
        self.next: dict[str, int | None] = {}
        self.silent = False

    def next_due(self) -> int | None:
        """The earliest timer any actor reported, or None (always None while
        ``silent``: a batch's actors run their timer steps themselves)."""
        if self.silent:
            return None
        due = [t for t in self.next.values() if t is not None]
        return min(due) if due else None

    def pop_due(self, until_ns: int) -> list[ScheduledTimer]:
        """Nothing: the actors fire their own timers."""
        return []


StepHook = Callable[[int, int], None]
"""Called as ``hook(step_index, time_ns)`` after each step (tests, progress), and
with index -1 once every actor has started."""


class ReplayCoordinator:
    """The replay time authority over a router.

    Args:
        client: a started client (identity ``replay``, ACL with ``commit``).
        data_dir: the data directory holding the source namespace (read locally)
            and the run namespace (read for the summary).
        settings: the run.
        actors: the identities of the actors taking part.
        config_digest: the configuration hash for the manifest.
        pacer: paces steps (``--speed``).
        snapshot_every_steps: steps between snapshot announcements (≥ 1).
        on_step: hook after each step.
        batch_steps: most steps per ``batch`` announcement when the actors cannot
            feed one another; 1 runs every step on its own.
    """

    def __init__(
        self,
        client: Client,
        data_dir: str | Path,
        settings: RunSettings,
        actors: list[str],
        *,
        config_digest: str,
        pacer: Pacer | None = None,
        snapshot_every_steps: int = 1_000,
        on_step: StepHook | None = None,
        batch_steps: int = BATCH_STEPS,
    ) -> None:
        self.client = client
        self.data_dir = Path(data_dir)
        self.settings = settings
        self.actors = sorted(actors)
        self.config_digest = config_digest
        self.pacer = pacer
        self.snapshot_every_steps = max(1, snapshot_every_steps)
        self.on_step = on_step
        self.batch_steps = max(1, batch_steps)
        self.namespace = settings.namespace
        self.timers = RemoteTimers()
        self._seq = 0
        self._ctl_seq = 0
        self._history: list[StepAnnounce] = []
        # Snapshot epochs (their announcement's seq) -> their time; 0: the run's start.
        self._epochs: dict[int, int] = {0: settings.start_ns}
        self._committed_seq = 0
        self._nonces: dict[str, str] = {}
        self._patterns: dict[str, tuple[str, ...]] = {}
        self._direct: set[str] = set()
        self._readers: dict[str, frozenset[str]] = {}
        self._dones: dict[int, dict[str, Done]] = {}
        self._ctl: RemoteSubscription | None = None
        # The run namespace's last gseq after the commits made or in flight (only this
        # authority writes it), and the commit in flight with the range it must get.
        self._run_head = 0
        self._inflight: tuple[asyncio.Task[Committed], int, int, int] | None = None
        self.steps = 0
        self.inputs = 0
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.now_ns = settings.start_ns
        self.seek_to: int | None = None
        self.rewind_to: int | None = None
        self.independent = False
        self.divergences: list[Divergence] = []
        self.commits = 0
        self._confirmed_step = False
        self._snapshot_due = self.snapshot_every_steps

    def control(self, command: ClockControl) -> None:
        """Apply a ``tape clock ctl`` command (between steps).

        ``seek TIME`` ahead of the clock runs the steps up to ``TIME`` unpaced (as fast
        as the actors go: every step still runs, so the run's files are unchanged),
        then paces again from there; a seek to the clock or behind it rewinds to the
        newest snapshot at or before ``TIME`` (:meth:`_rewind`).
        """
        if command.run_id is not None and command.run_id != self.settings.run_id:
            return
        _log.info("clock_control", command=command.command, speed=command.speed)
        if command.command == "pause":
            self.pause()
        elif command.command == "resume":
            self.resume()
        elif command.command == "speed":
            if self.pacer is None:
                self.pacer = Pacer(command.speed)
            else:
                self.pacer.set_speed(command.speed)
        elif command.time_ns is not None and command.time_ns > self.now_ns:
            self.seek_to = command.time_ns
            self.resume()
        elif command.time_ns is not None:
            self.rewind_to = command.time_ns  # taken between steps (_rewind)
            self.resume()

    async def _rewind(self, target_ns: int) -> None:
        """Seek behind the clock: every actor restores the snapshot of the newest
        snapshot announcement at or before ``target_ns``, then the waves announced
        since are announced again as ``rerun`` (in order, their ``seq`` renewed, unpaced
        before ``target_ns`` and paced from it). The actors run them without publishing
        and compare what they regenerate with the log: the run's files do not change.
        The steps the planner has not reached yet follow as usual.

        The authority keeps the announcements since its second-to-last snapshot; a
        target before that snapshot (or before the first one) is refused with a log
        line.
        """
        kept = [(t, e) for e, t in self._epochs.items() if e]
        usable = [(t, e) for t, e in kept if t <= target_ns]
        if not usable:
            _log.warning(
                "seek_refused",
                reason="no snapshot at or before the target among those the authority keeps "
                "(the last two); start a new run with --from to replay from there",
                time_ns=target_ns,
                oldest_ns=min((t for t, _ in kept), default=None),
            )
            return
        epoch_ns, epoch = max(usable)
        waves = [a for a in self._history if a.seq > epoch and a.phase in ("step", "batch")]
        _log.info("rewind", time_ns=target_ns, epoch=epoch, waves=len(waves))
        self._answered(await self._announce("rewind", -6, 0, epoch_ns, epoch=epoch))
        # From here a restarted actor restores at most this epoch (newer snapshots are
        # gone): the history after it is the waves run again.
        self._history = [a for a in self._history if a.seq <= epoch]
        self._epochs = {e: t for e, t in self._epochs.items() if e <= epoch}
        self._snapshot_due = self.steps + self.snapshot_every_steps
        for wave in waves:
            await self._take_keyboard()  # a pause holds the rerun too (a seek waits for it)
            if self.pacer is not None and wave.time_ns >= target_ns:
                await self._pace(wave.time_ns)
            self._seq += 1
            again = msgspec.structs.replace(wave, seq=self._seq, rerun=True, restage=[])
            self._answered(await self._issue(again))
        if self.pacer is not None:
            self.pacer.resume()  # re-anchor the pace at the clock

    async def _take_keyboard(self) -> None:
        """Apply what the replay command's keyboard asked of the pacer (it runs in
        another thread): a seek goes through :meth:`control`; a pause holds here."""
        if self.pacer is None:
            return
        self._keyboard_seek(self.pacer)
        while self.pacer.paused:  # noqa: ASYNC110 (set by the keyboard's thread)
            await asyncio.sleep(PACE_SLICE_S)

    def _keyboard_seek(self, pacer: Pacer) -> None:
        """Take a seek the keyboard asked of ``pacer`` through :meth:`control`."""
        wanted = pacer.take_seek(self.now_ns)
        if wanted is not None:
            self.control(ClockControl(command="seek", time_ns=wanted))

    def pause(self) -> None:
        """Hold the next step until :meth:`resume` (the wave in progress completes)."""
        self.resumed.clear()
        if self.pacer is not None:
            self.pacer.pause()

    def resume(self) -> None:
        """Release steps again."""
        if self.pacer is not None:
            self.pacer.resume()
        self.resumed.set()

    async def run(self) -> ReplayResult:
        """Run the whole replay; return its counts.

        Raises:
            ConfigError: the run namespace already holds events.
            RouterError: the router refused a commit or a publication.
        """
        started = time.monotonic()
        settings = self.settings
        run_reader = LogReader(self.data_dir, self.namespace)
        if run_reader.head_gseq():
            raise ConfigError(
                f"run namespace {self.namespace!r} already holds {run_reader.head_gseq()} "
                "events: choose another --run-id"
            )
        self._ctl = self.client.subscribe(
            [HELLO_TOPIC, DONE_TOPIC, CLOCK_CONTROL_TOPIC],
            "now",
            ns=settings.source_namespace,
            include_ephemeral=True,
            queue_frames=4096,
        )
        await self._ctl.caught_up.wait()
        reader = LogReader(self.data_dir, settings.source_namespace)
        positions = input_positions(reader, settings)
        manifest = manifest_envelope(
            settings, actors=self.actors, config_hash=self.config_digest, input_positions=positions
        )
        await self._publish_driver(manifest, "manifest", settings.start_ns)
        await self._wait_hellos()

        self.independent = self._actors_independent()
        _log.info("replay_mode", batched=self.independent, actors=self.actors)
        await self._run_step("start", -1, settings.start_ns)
        if self.on_step is not None:
            self.on_step(-1, settings.start_ns)
        planner = StepPlanner(
            read_inputs(reader, settings, head_gseq=positions["head_gseq"]),
            self.timers,
            start_ns=settings.start_ns,
            end_ns=None if settings.end_ns is None else settings.end_ns - 1,
        )
        batched = False
        while True:
            await self._take_keyboard()
            while not self.resumed.is_set():
                await self._handle(await self._next_control())
            if self.rewind_to is not None:
                target, self.rewind_to = self.rewind_to, None
                await self._rewind(target)
            if self._batching():
                batch = self._collect_batch(planner)
                if not batch:
                    break
                batched = True
                await self._run_batch(batch)
                continue
            step = planner.next_step()
            if step is None:
                break
            self.now_ns = step.time_ns
            if self.seek_to is not None and step.time_ns >= self.seek_to:
                self.seek_to = None
                if self.pacer is not None:
                    self.pacer.resume()  # re-anchor the pace at the seek's target
            if self.pacer is not None and self.seek_to is None:
                await self._pace(step.time_ns)
            inputs = [r for r in step.events if self._readers_of(r.topic)]
            due = {a for a, t in self.timers.next.items() if t is not None and t <= step.time_ns}
            await self._run_step(
                "step",
                step.index,
                step.time_ns,
                targets=sorted(due.union(self._targets({r.topic for r in inputs}))),
                inputs=inputs,
            )
            self.steps += 1
            self.inputs += len(step.events)
            if self.on_step is not None:
                self.on_step(step.index, step.time_ns)
            await self._maybe_snapshot(step.time_ns)
        if batched and settings.end_ns is not None:
            # The actors' timers due after the last input, up to --to (inclusive).
            await self._run_batch([], until_ns=settings.end_ns - 1)
        end_ns = max(planner.now_ns, self.now_ns)
        await self._run_step("stop", -2, end_ns)
        await self._announce("end", -3, 0, end_ns, wait=False)
        _log.info("replay_messages", announcements=self._seq, commits=self.commits)
        seq = 2
        for d in self.divergences:
            await self._publish_driver(
                alert_envelope(d.alert(), seq, end_ns), f"alert{seq}", end_ns
            )
            seq += 1
        topics = {t: run_reader.topic_summary(t) for t in run_reader.topics()}
        counts = family_counts({t: s.count for t, s in topics.items()})
        last_ts = max(
            (
                s.last_ts
                for t, s in topics.items()
                if t not in (MANIFEST_TOPIC, SUMMARY_TOPIC, ALERT_TOPIC)
            ),
            default=0,
        )
        summary = summary_envelope(
            settings,
            source_seq=seq,
            ts_ns=end_ns,
            input_events=self.inputs,
            steps=self.steps,
            counts=counts,
            last_ts_event=last_ts,
        )
        await self._publish_driver(summary, "summary", end_ns)
        return ReplayResult(
            run_id=settings.run_id,
            namespace=self.namespace,
            steps=self.steps,
            input_events=self.inputs,
            output_events=sum(counts.values()),
            divergences=len(self.divergences),
            head_gseq=LogReader(self.data_dir, self.namespace).head_gseq(),
            wall_seconds=time.monotonic() - started,
        )

    # ------------------------------------------------------------------ batches

    def _actors_independent(self) -> bool:
        """True when no actor can receive another's (or its own) outputs: every step
        is then a single wave, and steps can be sent in batches."""
        return not any(
            may_publish_into(publisher, pattern)
            for publisher in self.actors
            for patterns in self._patterns.values()
            for pattern in patterns
        )

    def _batching(self) -> bool:
        """Batches are sent while the actors are independent and the pace is max."""
        unpaced = self.pacer is None or self.pacer.speed is None
        return self.independent and unpaced and self.batch_steps > 1

    def _collect_batch(self, planner: StepPlanner) -> list[Step]:
        """The next input steps for one batch (the actors run their own timers)."""
        limit = min(self.batch_steps, max(1, self._snapshot_due - self.steps))
        steps: list[Step] = []
        inputs = 0
        self.timers.silent = True
        try:
            while len(steps) < limit and inputs < BATCH_INPUTS:
                step = planner.next_step()
                if step is None:
                    break
                steps.append(step)
                inputs += len(step.events)
        finally:
            self.timers.silent = False
        return steps

    async def _run_batch(self, steps: list[Step], *, until_ns: int = 0) -> None:
        """Run ``steps`` (and the timer steps up to ``until_ns``) as one announcement.

        Every actor runs the batch; the run's steps are the union of the input steps'
        keys and the timer steps the actors report, and each step's outputs are
        committed in key order, so the run's log is the one the step-by-step rule
        gives (docs/replay.md, "Batches").
        """
        batch = [
            BatchStep(
                time_ns=step.time_ns,
                inputs=[r for r in step.events if self._readers_of(r.topic)],
            )
            for step in steps
        ]
        time_ns = steps[-1].time_ns if steps else until_ns
        announce = await self._announce(
            "batch",
            steps[-1].index if steps else -5,
            0,
            time_ns,
            batch=[b for b in batch if b.inputs],
            until_ns=until_ns,
        )
        dones = self._answered(announce)
        keys = {(step.time_ns, 0) for step in steps}
        expect: dict[tuple[int, int], dict[str, int]] = {}
        for actor, done in sorted(dones.items()):
            for out in done.steps:
                keys.add((out.time_ns, out.ordinal))
                if out.outputs:
                    expect.setdefault((out.time_ns, out.ordinal), {})[actor] = out.outputs
        keys_out = sorted(expect)
        stages = [batch_stage(self.settings.run_id, *key) for key in keys_out]
        for i, key in enumerate(keys_out):
            # A restaging (router restart) asks for every stage not committed yet.
            await self._commit(stages[i], expect[key], key[0], announce, stages[i:])
        self._committed_seq = announce.seq
        self.steps += len(keys)
        if keys:
            self.now_ns = max(self.now_ns, max(keys)[0])
        for step in steps:
            self.inputs += len(step.events)
            if self.on_step is not None:
                self.on_step(step.index, step.time_ns)
        await self._maybe_snapshot(self.now_ns)

    def _answered(self, announce: StepAnnounce) -> dict[str, Done]:
        """Take the actors' answers to ``announce`` (every one it waited for is in):
        keep the divergences they report and their next timers. Without outputs the
        announcement is done (a restarted actor replays it without publishing); with
        outputs, once they are committed (:meth:`_settle_commit`, :meth:`_run_batch`):
        until then a restarted actor publishes them again, as a restaging needs."""
        dones = self._dones.pop(announce.seq)
        for actor, done in sorted(dones.items()):
            self.timers.next[actor] = done.next_timer_ns
            for d in done.divergences:
                _log.error("divergence", actor=actor, id=d.id, fields=d.fields)
                self.divergences.append(d)
        if not any(done.outputs for done in dones.values()):
            self._committed_seq = announce.seq
        return dones

    async def _maybe_snapshot(self, time_ns: int) -> None:
        if self.steps >= self._snapshot_due:
            await self._snapshot(time_ns)
            self._snapshot_due = self.steps + self.snapshot_every_steps

    # ------------------------------------------------------------------ waves

    async def _run_step(
        self,
        phase: Phase,
        step: int,
        time_ns: int,
        *,
        targets: list[str] | None = None,
        inputs: list[Record] | None = None,
    ) -> None:
        if targets is not None and not targets:
            return  # no actor subscribes to these inputs nor has a timer due
        announce = await self._announce(
            phase,
            step,
            0,
            time_ns,
            actors=targets or [],
            inputs=inputs or [],
        )
        while True:
            dones = self._answered(announce)
            expect = {a: d.outputs for a, d in sorted(dones.items()) if d.outputs}
            if not expect:
                return
            topics: Counter[str] = Counter()
            for done in dones.values():
                topics.update(done.topics)
            readers = self._targets(set(topics))
            first, last = self._start_commit(announce.stage, expect, time_ns, announce)
            if not readers:
                await self._settle_commit()
                return
            # Sent right behind the commit (which reaches the actors subscribed as the
            # router appends it); the commit's answer is checked before the dones.
            announce = await self._announce(
                phase,
                step,
                announce.wave + 1,
                time_ns,
                actors=readers,
                run_from=first,
                run_to=last,
                run_topics={t: n for t, n in topics.items() if self._readers_of(t)},
            )

    def _start_commit(
        self, stage: str, expect: dict[str, int], ts_log: int, announce: StepAnnounce
    ) -> tuple[int, int]:
        """Send the commit of ``stage`` without waiting for its answer and return the
        gseqs it will take in the run namespace, ``(first, last)``: the ones after the
        last commit's (:meth:`_settle_commit` checks it). The next announcement is sent
        behind it."""
        assert self._inflight is None, "a commit is in flight already"
        first = self._run_head + 1
        self._run_head += sum(expect.values())
        task = asyncio.create_task(
            self._commit(stage, expect, ts_log, announce), name=f"commit:{stage}"
        )
        self._inflight = (task, first, self._run_head, announce.seq)
        return first, self._run_head

    async def _settle_commit(self) -> None:
        """Wait for the commit in flight, if any.

        Raises:
            RouterError: the commit failed (see :meth:`_commit`), or the router stored
                the stage at other gseqs than the ones announced (code
                ``COMMIT_POSITION``: something else wrote into the run namespace).
        """
        if self._inflight is None:
            return
        task, first, last, seq = self._inflight
        try:
            committed = await task
        finally:
            self._inflight = None
        self._committed_seq = max(self._committed_seq, seq)
        if (committed.first_gseq, committed.last_gseq) != (first, last):
            raise RouterError(
                "COMMIT_POSITION",
                f"run namespace {self.namespace}: the router stored a wave at gseq "
                f"{committed.first_gseq}..{committed.last_gseq}, announced as {first}..{last}; "
                "only the replay's time authority may write into a run namespace",
            )

    def _readers_of(self, topic: str) -> frozenset[str]:
        readers = self._readers.get(topic)
        if readers is None:
            readers = self._readers[topic] = frozenset(
                a for a, patterns in self._patterns.items() if matches_any(patterns, topic)
            )
        return readers

    def _targets(self, topics: set[str]) -> list[str]:
        """The actors subscribed to one of ``topics``, sorted."""
        chosen: set[str] = set()
        for topic in topics:
            chosen |= self._readers_of(topic)
        return sorted(chosen)

    async def _commit(
        self,
        stage: str,
        expect: dict[str, int],
        ts_log: int,
        announce: StepAnnounce | None = None,
        restage: list[str] | None = None,
    ) -> Committed:
        """Commit ``stage``; when the router lost it, have the actors stage it again.

        ``STAGE_INCOMPLETE`` is retried for a second (stagings in flight); then, as for
        ``STAGE_UNKNOWN`` (the router restarted: staged events live in its memory), the
        announcement is sent again with ``restage`` (default: this stage) to the
        actors in ``expect``, which publish those outputs again and answer; then the
        commit is retried. A commit the router applied before dying, retried after,
        finds the events in the log already (same keys) and answers their positions,
        with the divergences among them (staged copies that differ from the stored
        events): they join the run's divergences.

        Raises:
            RouterError: a refusal other than the above, or the stage still cannot be
                committed after 10 restagings (or without ``announce``, after 50
                retries of ``STAGE_INCOMPLETE``).
        """
        incomplete = restaged = 0
        while True:
            try:
                self.commits += 1
                committed = await self.client.commit(stage, expect, ts_log, ns=self.namespace)
                self._run_head = max(self._run_head, committed.last_gseq)
                for d in committed.divergences:
                    _log.error("divergence", stage=stage, id=d.id, fields=d.fields)
                    self.divergences.append(d)
                return committed
            except RouterError as exc:
                if exc.code not in ("STAGE_INCOMPLETE", "STAGE_UNKNOWN"):
                    raise
                if exc.code == "STAGE_INCOMPLETE" and incomplete < 50:
                    incomplete += 1
                    await asyncio.sleep(0.02)
                    continue
                if announce is None or restaged == 10:
                    raise
                restaged += 1
                incomplete = 0
                _log.warning("restage", stage=stage, reason=exc.code, attempt=restaged)
                await self._restage(announce, sorted(expect), restage or [stage])

    async def _restage(self, announce: StepAnnounce, actors: list[str], stages: list[str]) -> None:
        self._dones[announce.seq] = {}
        # Called from the commit in flight: it must not wait for itself.
        await self._send_and_wait(
            msgspec.structs.replace(announce, actors=actors, restage=stages), settle=False
        )
        self._dones.pop(announce.seq, None)

    async def _snapshot(self, time_ns: int) -> None:
        announce = await self._announce("snapshot", -4, 0, time_ns)
        self._answered(announce)
        self._epochs[announce.seq] = time_ns
        if len(self._epochs) > 2:
            last_two = list(self._epochs)[-2:]
            self._history = [a for a in self._history if a.seq > last_two[0]]
            self._epochs = {e: self._epochs[e] for e in last_two}

    async def _announce(
        self,
        phase: Phase,
        step: int,
        wave: int,
        time_ns: int,
        *,
        wait: bool = True,
        actors: list[str] | None = None,
        inputs: list[Record] | None = None,
        batch: list[BatchStep] | None = None,
        run_from: int = 0,
        run_to: int = 0,
        run_topics: dict[str, int] | None = None,
        until_ns: int = 0,
        epoch: int = 0,
    ) -> StepAnnounce:
        self._seq += 1
        addressed = [] if actors is None or len(actors) == len(self.actors) else actors
        announce = StepAnnounce(
            run_id=self.settings.run_id,
            seq=self._seq,
            phase=phase,
            step=step,
            wave=wave,
            time_ns=time_ns,
            actors=addressed,
            inputs=inputs or [],
            batch=batch or [],
            run_from=run_from,
            run_to=run_to,
            run_topics=run_topics or {},
            until_ns=until_ns,
            epoch=epoch,
        )
        return await self._issue(announce, wait=wait)

    async def _issue(self, announce: StepAnnounce, *, wait: bool = True) -> StepAnnounce:
        """Record ``announce`` in the history and send it; settle the commit in flight
        (:meth:`_settle_commit`); with ``wait``, wait until every actor it addresses has
        answered (:meth:`_answered` takes the answers)."""
        self._history.append(announce)
        self._dones[announce.seq] = {}
        await self._send_and_wait(announce, wait=wait)
        return announce

    async def _send_and_wait(
        self, announce: StepAnnounce, *, wait: bool = True, settle: bool = True
    ) -> None:
        """Send ``announce``, settle the commit in flight, and (with ``wait``) wait for
        the answers of the actors it addresses.

        The announcement goes out in a task of its own while the commit in flight is
        settled (a restaging it may need is answered before this announcement's
        records can exist), then the answers are awaited, then the router's puback.
        """
        sending = asyncio.create_task(
            self._send_announce(announce), name=f"announce:{announce.seq}"
        )
        try:
            if settle:
                await self._settle_commit()
            if wait:
                await self._wait_dones(announce)
        finally:
            await sending

    async def _wait_dones(self, announce: StepAnnounce) -> None:
        dones = self._dones[announce.seq]
        expected = len(announce.actors or self.actors)
        while len(dones) < expected:
            try:
                async with asyncio.timeout(REANNOUNCE_S):
                    while len(dones) < expected:
                        await self._handle(await self._next_control())
            except TimeoutError:
                missing = sorted(set(announce.actors or self.actors) - set(dones))
                _log.info("reannounce", seq=announce.seq, waiting_for=missing)
                await self._send_announce(announce)

    async def _wait_hellos(self) -> None:
        while len(self._nonces) < len(self.actors):
            await self._handle(await self._next_control())

    async def _next_control(self) -> Envelope:
        assert self._ctl is not None
        while True:
            item = await anext(self._ctl)
            if isinstance(item, Envelope) and item.topic in (
                HELLO_TOPIC,
                DONE_TOPIC,
                CLOCK_CONTROL_TOPIC,
            ):
                return item

    async def _handle(self, env: Envelope) -> None:
        payload = decode_payload(env.type, env.v, env.payload)
        if isinstance(payload, ClockControl):
            self.control(payload)
        elif isinstance(payload, Hello):
            if payload.run_id != self.settings.run_id or payload.actor not in self.actors:
                return
            if payload.protocol != REPLAY_PROTOCOL:
                raise ConfigError(
                    f"actor {payload.actor} speaks version {payload.protocol} of the replay "
                    f"protocol, this time authority {REPLAY_PROTOCOL}: every process of a "
                    "distributed run must run the same tickertape version"
                )
            self._nonces[payload.actor] = payload.nonce
            if payload.direct:
                self._direct.add(payload.actor)
            else:
                self._direct.discard(payload.actor)
            if self._patterns.get(payload.actor) != tuple(payload.patterns):
                self._patterns[payload.actor] = tuple(payload.patterns)
                self._readers.clear()
            if payload.epoch and payload.epoch not in self._epochs:
                _log.warning("unknown_epoch", actor=payload.actor, epoch=payload.epoch)
            history = [a for a in self._history if a.seq > payload.epoch]
            welcome = Welcome(
                run_id=self.settings.run_id,
                actor=payload.actor,
                nonce=payload.nonce,
                settings=self.settings,
                history=history,
                committed_seq=self._committed_seq,
            )
            _log.info("welcome", actor=payload.actor, epoch=payload.epoch, history=len(history))
            await self._send(WELCOME_TOPIC, welcome, self.settings.start_ns)
        elif isinstance(payload, Done):
            if payload.run_id != self.settings.run_id:
                return
            if self._nonces.get(payload.actor) != payload.nonce:
                return
            waiting = self._dones.get(payload.seq)
            if waiting is not None:
                waiting[payload.actor] = payload

    async def _send_announce(self, announce: StepAnnounce) -> None:
        """Send ``announce`` to the actors it addresses.

        The run's first announcement is confirmed (:meth:`_send`), so that a router
        refusing the authority's control messages fails the run at once instead of
        re-announcing for ever. The others go unconfirmed (:meth:`Client.send_ephemeral`):
        the actors' ``done`` answer them, and one unanswered is sent again after
        :data:`REANNOUNCE_S`. A wave for at most half of the actors, all of which read
        their own step topic (``Hello.direct``), goes to each on :func:`step_topic`
        (one frame, one envelope per actor): the others neither receive nor decode it.
        Otherwise it goes once on :data:`STEP_TOPIC` to every actor, which skips a wave
        not addressed to it.
        """
        if not self._confirmed_step:
            await self._send(STEP_TOPIC, announce, announce.time_ns)
            self._confirmed_step = True
            return
        targets = announce.actors
        if targets and 2 * len(targets) <= len(self.actors) and self._direct.issuperset(targets):
            topics = [step_topic(actor) for actor in targets]
        else:
            topics = [STEP_TOPIC]
        envelopes = []
        for topic in topics:
            self._ctl_seq += 1
            envelopes.append(driver_envelope(topic, announce, self._ctl_seq, announce.time_ns))
        await self.client.send_ephemeral(envelopes, ns=self.settings.source_namespace)

    async def _send(self, topic: str, payload: msgspec.Struct, ts_ns: int) -> None:
        """Publish a control message and wait for the router's acknowledgement."""
        self._ctl_seq += 1
        env = driver_envelope(topic, payload, self._ctl_seq, ts_ns)
        await self.client.publish([env], ns=self.settings.source_namespace, ephemeral=True)

    async def _publish_driver(self, env: Envelope, what: str, ts_log: int) -> None:
        stage = f"{self.settings.run_id}:{what}"
        for attempt in range(10):
            await self.client.publish([env], ns=self.namespace, stage=stage)
            try:
                await self._commit(stage, {DRIVER_SOURCE: 1}, ts_log)
                return
            except RouterError as exc:
                if exc.code != "STAGE_UNKNOWN" or attempt == 9:
                    raise

    async def _pace(self, sim_ns: int) -> None:
        """Wait until the step at ``sim_ns`` (ns) is due at the pacer's speed, at most
        :data:`~tickertape.replay.inprocess.PACE_SLICE_S` at a time, taking meanwhile the
        keyboard's controls (through the pacer, from another thread) and the ``tape clock
        ctl`` ones the router delivers (:meth:`_handle`): a pause from either holds the
        wait until resumed, a speed change applies at once, and a seek ends it (the step
        then runs unpaced; ahead of the clock the steps up to the target follow unpaced,
        behind it the rewind follows the step)."""
        while True:
            pacer = self.pacer
            if pacer is None:
                return
            self._keyboard_seek(pacer)
            held = pacer.paused or not self.resumed.is_set()
            if not held and (self.seek_to is not None or self.rewind_to is not None):
                return
            delay = PACE_SLICE_S if held else pacer.delay(sim_ns)
            if delay <= 0:
                return
            try:
                async with asyncio.timeout(min(delay, PACE_SLICE_S)):
                    env = await self._next_control()
            except TimeoutError:
                continue
            await self._handle(env)


def actor_argv(
    item: str,
    router_url: str,
    settings: RunSettings,
    data_dir: str | Path,
    *,
    log_level: str = "warning",
    token_file: Path | None = None,
) -> list[str]:
    """The command line of one actor process for an ``--actors`` item (with
    ``--token-file`` when ``token_file`` is given)."""
    target, _, config = item.partition("@")
    argv = [*tape_command(), "--log-level", log_level, "actor", target, "--router", router_url]
    argv += ["--replay", settings.run_id, "--source-namespace", settings.source_namespace]
    argv += ["--data-dir", str(data_dir)]
    if config:
        argv += ["--config", str(Path(config).resolve())]
    if token_file is not None:
        argv += ["--token-file", str(token_file)]
    return argv


def token_files(token_dir: Path, identities: list[str]) -> dict[str, Path]:
    """Each identity's token file in ``token_dir``: ``<identity>.token``, holding what
    ``tape token create IDENTITY --role ROLE`` printed (the time authority's identity is
    ``replay``).

    Raises:
        ConfigError: a file is missing, empty or not a single token (naming it), checked
            before any process starts.
    """
    from tickertape.client.inspect import read_token

    files = {identity: token_dir / f"{identity}.token" for identity in identities}
    for path in files.values():
        read_token(None, path)
    return files


async def run_distributed(
    data_dir: str | Path,
    settings: RunSettings,
    specs: list[ActorSpec],
    actor_items: list[str],
    *,
    router_url: str | None = None,
    pacer: Pacer | None = None,
    snapshot_every_steps: int = 1_000,
    on_step: Callable[[Supervisor, int, int], None] | None = None,
    cwd: str | Path | None = None,
    batch_steps: int = BATCH_STEPS,
    token_dir: Path | None = None,
) -> ReplayResult:
    """Run a distributed replay: a router (embedded unless ``router_url``), one
    supervised process per actor, and the time authority in this process.

    Args:
        data_dir: the data directory (the embedded router's log, the snapshots).
        settings: the run.
        specs: the actors, resolved here for names and the configuration hash.
        actor_items: the ``--actors`` items, passed to each actor process.
        router_url: an existing router (its data directory must be ``data_dir``),
            or None to start one in this process on a free loopback port.
        pacer: paces steps.
        snapshot_every_steps: steps between snapshots.
        on_step: hook ``(supervisor, step_index, time_ns)`` after each step.
        cwd: the actor processes' working directory.
        batch_steps: as :class:`ReplayCoordinator`.
        token_dir: for a router with tokens: the folder of each identity's token file
            (:func:`token_files`); the time authority connects as ``replay``.

    Raises:
        ActorGaveUpError: an actor kept dying.
        ConfigError: as :meth:`ReplayCoordinator.run`, or a token file of
            ``token_dir`` is missing or invalid.
        RouterError: as :meth:`ReplayCoordinator.run`.
    """
    from tickertape.router.protocol import Limits
    from tickertape.router.server import Router, RouterConfig

    if len(specs) != len(actor_items):
        raise ConfigError("one --actors item per actor is needed for a distributed replay")
    tokens: dict[str, Path] = {}
    if token_dir is not None:
        tokens = token_files(token_dir, [DRIVER_SOURCE, *(s.name for s in specs)])
    router: Router | None = None
    if router_url is None:
        router = Router(
            RouterConfig(
                port=0,
                data_dir=str(data_dir),
                namespace=settings.source_namespace,
                limits=Limits(max_frames_per_s=1e7, max_events_per_s=1e9),
                health_interval_s=3600.0,
            )
        )
        await router.start()
        router_url = router.url
    supervisor = Supervisor(cwd=cwd)
    from tickertape.client.inspect import read_token

    token = read_token(None, tokens[DRIVER_SOURCE]) if tokens else None
    client = Client(router_url, DRIVER_SOURCE, token=token)
    try:
        await client.start()
        chash = config_hash(specs, {"settings": msgspec.to_builtins(settings)})
        for spec, item in zip(specs, actor_items, strict=True):
            argv = actor_argv(
                item, router_url, settings, data_dir, token_file=tokens.get(spec.name)
            )
            await supervisor.start(spec.name, argv)

        def hook(index: int, time_ns: int) -> None:
            if on_step is not None:
                on_step(supervisor, index, time_ns)

        coordinator = ReplayCoordinator(
            client,
            data_dir,
            settings,
            [s.name for s in specs],
            config_digest=chash,
            pacer=pacer,
            snapshot_every_steps=snapshot_every_steps,
            on_step=hook,
            batch_steps=batch_steps,
        )
        run = asyncio.create_task(coordinator.run(), name="replay-coordinator")
        assert supervisor.failed is not None
        waiting: set[asyncio.Future[Any]] = {run, supervisor.failed}
        done, _ = await asyncio.wait(waiting, return_when="FIRST_COMPLETED")
        if run not in done:
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
            raise supervisor.failed.result()
        result = run.result()
        await supervisor.wait_exited(10.0)
        return result
    finally:
        await supervisor.stop()
        await client.close()
        if router is not None:
            await router.close()


def run_distributed_cli(
    data_dir: Path,
    settings: RunSettings,
    specs: list[ActorSpec],
    *,
    actor_items: tuple[str, ...],
    router_url: str | None,
    pacer: Pacer,
    snapshot_every: int,
    quiet: bool,
    token_dir: Path | None = None,
) -> ReplayResult:
    """``tape replay --distributed | --router URL [--token-dir DIR]``: run
    :func:`run_distributed` (``pacer`` may be driven by the keyboard meanwhile)."""
    items = [i.strip() for item in actor_items for i in item.split(",") if i.strip()]
    if not items:
        items = [s.origin for s in specs]
    # Keep the history a restarted actor is sent (two snapshot intervals) well under a
    # frame: about 2 000 steps per snapshot with the default --snapshot-every.
    every = max(1, snapshot_every // 50) if snapshot_every > 0 else 1_000_000_000
    return loop.run(
        run_distributed(
            data_dir.resolve(),
            settings,
            specs,
            items,
            router_url=router_url,
            pacer=pacer,
            snapshot_every_steps=every,
            cwd=Path.cwd(),
            token_dir=token_dir,
        )
    )


__all__ = [
    "RemoteTimers",
    "ReplayCoordinator",
    "actor_argv",
    "run_distributed",
    "run_distributed_cli",
    "token_files",
]
