"""The remote host: one actor in its own process, through the router.

:class:`HostedActor` is the single-actor core (context, clock, timers, delivery,
snapshots) shared by the replay and live loops; it does no I/O.

:class:`RemoteReplayHost` runs an actor in a distributed replay
(docs/replay.md, "Distributed replay"): it restores its newest snapshot, says
``hello`` to the time authority, receives the run's settings and the announcements
it missed, then runs each announced wave exactly as the in-process host would:

- wave 0 of a step: its timers due by the step's time, then the step's inputs
  (carried by the announcement, as the time authority read them from the source
  namespace in (ts_event, gseq) order: never an input of a later step);
- wave n ≥ 1: the records of wave n-1's outputs it subscribes to, which the router
  delivers on the actor's own subscription to the run namespace as it commits them
  (the announcement gives their gseq range and count per topic, and comes right
  behind the commit);
- its outputs are published *staged* under the wave's stage id, then it reports
  ``done`` with their count per topic and its next timer;
- a ``batch`` announcement (actors that cannot feed one another) carries several
  steps: the actor runs them in order, with the timer steps its own timers call for
  in between, and stages each step's outputs apart (:meth:`RemoteReplayHost._run_batch`).

Announcements already committed (catch-up after a restart) are replayed without
publishing: their outputs are in the log with the same ``(source, source_seq)``.

:class:`RemoteHost` runs an actor live (snapshot → subscribe → history → caught up →
live), through the router, on the machine's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections import Counter, deque
from collections.abc import Callable, Container, Mapping, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import structlog

from tickertape.actors.base import Actor, Event, Timer
from tickertape.actors.runtime.context import ActorContext
from tickertape.actors.runtime.errors import (
    ActorFailedError,
    FutureEventError,
    report_undeliverable,
)
from tickertape.actors.runtime.sink import Divergence, compare
from tickertape.client import Client, RemoteSubscription, StartAt
from tickertape.errors import SchemaError, SnapshotError, TickertapeError
from tickertape.loop import unless_stopped
from tickertape.replay.control import (
    DONE_TOPIC,
    HELLO_TOPIC,
    REPLAY_PROTOCOL,
    STEP_TOPIC,
    WELCOME_TOPIC,
    Done,
    Hello,
    StepAnnounce,
    StepOutputs,
    Welcome,
    batch_stage,
    step_topic,
)
from tickertape.replay.manifest import RunSettings
from tickertape.roles import publish_rule
from tickertape.schemas.envelope import Envelope, Record
from tickertape.schemas.registry import decode_payload, make_envelope
from tickertape.snapshots.codec import Snapshot
from tickertape.snapshots.policy import SnapshotPolicy
from tickertape.snapshots.store import SnapshotStore, snapshot_dir
from tickertape.timeauthority.clock import ActorClock, LiveClock, SimulatedClock, TimeSource
from tickertape.timeauthority.timers import TimerQueue
from tickertape.topics import matches_any

_log = structlog.get_logger("tickertape.remote")


RECENT_ANSWERS = 4
"""Announcements whose ``done`` and staged outputs a replay actor keeps for a repeat
or a restaging (the authority has at most one commit in flight, so two would do)."""

ALERT_SEQ_BASE = 1 << 62
"""Divergence alerts of a live actor take ``source_seq`` = this + the actor's clock (ns):
outside the actor's own output sequence, unique across restarts, within int64."""


class HostedActor:
    """One actor with its context, clock and timers; no I/O.

    Args:
        actor: the actor.
        name: its source identity.
        source: its time source (a :class:`SimulatedClock` in replays).
        seed: the run's seed.
    """

    def __init__(self, actor: Actor, name: str, source: TimeSource, *, seed: int = 0) -> None:
        self.actor = actor
        self.name = name
        self.source = source
        self.timers = TimerQueue()
        self.ctx = ActorContext(
            name,
            ActorClock(name, source, self.timers),
            seed=seed,
            publish_rule=publish_rule(name),
        )
        self.patterns = tuple(actor.subscriptions)
        self._skipped: set[tuple[str, int]] = set()
        self._wanted: dict[str, bool] = {}

    def wants(self, topic: str) -> bool:
        """True when the actor subscribes to ``topic`` (cached per topic)."""
        wanted = self._wanted.get(topic)
        if wanted is None:
            wanted = self._wanted[topic] = matches_any(self.patterns, topic)
        return wanted

    def call(self, handler: str) -> None:
        """Call ``on_start`` or ``on_stop``."""
        try:
            getattr(self.actor, handler)(self.ctx)
        except TickertapeError:
            raise
        except Exception as exc:
            raise ActorFailedError(self.name, handler, None, exc) from exc

    def fire_timers(self, until_ns: int) -> None:
        """Fire the timers due at or before ``until_ns`` (ns) in canonical order.

        One that a handler earlier in the call cancelled or replaced does not fire (as
        in the in-process host).
        """
        timers = self.timers
        for t in timers.pop_due(until_ns):
            if timers.withdrawn(t):
                continue
            try:
                self.actor.on_timer(Timer(t.name, t.due_ns), self.ctx)
            except TickertapeError:
                raise
            except Exception as exc:
                raise ActorFailedError(self.name, "on_timer", None, exc) from exc
            self.ctx.events_handled += 1

    def deliver(self, records: Sequence[Record]) -> int:
        """Deliver the records the actor subscribes to, in order; return how many.

        A record of an unknown type or version is reported and skipped.

        Raises:
            FutureEventError: a record is dated after the actor's clock.
            ActorFailedError: the handler raised something other than a tickertape error.
        """
        now = self.source.now_ns()
        wanted, actor, ctx = self._wanted, self.actor, self.ctx
        n = 0
        for record in records:
            want = wanted.get(record.topic)
            if want is None:
                want = self.wants(record.topic)
            if not want:
                continue
            try:
                payload = decode_payload(record.type, record.v, record.payload)
            except SchemaError as exc:  # UnknownTypeError included
                report_undeliverable(record, exc, self._skipped)
                continue
            if record.ts_event > now:
                raise FutureEventError(self.name, record.id, record.ts_event, now)
            try:
                actor.on_event(Event(record, payload), ctx)
            except TickertapeError:
                raise
            except Exception as exc:
                raise ActorFailedError(self.name, "on_event", record.id, exc) from exc
            n += 1
        ctx.events_handled += n
        return n

    def take_snapshot(self, positions: Mapping[str, int]) -> Snapshot:
        """The actor's snapshot with the given positions."""
        state = self.actor.snapshot()
        return Snapshot(
            actor=self.name,
            state_version=type(self.actor).state_version,
            state=None if state is None else msgspec.msgpack.encode(state),
            positions=dict(sorted(positions.items())),
            clock_ns=self.source.now_ns(),
            timers=self.timers.timers_of(self.name),
            **self.ctx.runtime_state(),
        )

    def restore(self, snapshot: Snapshot) -> None:
        """Restore state, counters and timers from ``snapshot``."""
        if snapshot.state is not None:
            self.actor.restore(snapshot.state)
        self.ctx.restore_runtime_state(snapshot)
        self.timers.restore(snapshot.timers)


class RemoteReplayHost:
    """Runs one actor of a distributed replay through a router.

    Args:
        client: a started :class:`tickertape.client.Client` whose identity is the
            actor's name (control messages and publications).
        actor: the actor.
        name: its identity.
        run_id: the run to join.
        data_dir: where its snapshots live (``snapshots/runs/<run-id>/<name>``).
        control_namespace: where the control messages travel: the run's source
            namespace (ephemeral messages on the run namespace would reach every
            subscriber of the run's outputs).
        keep: snapshots kept.
    """

    def __init__(
        self,
        client: Client,
        actor: Actor,
        name: str,
        run_id: str,
        data_dir: str | Path,
        *,
        control_namespace: str = "main",
        keep: int = 3,
    ) -> None:
        self.client = client
        self.control_namespace = control_namespace
        self.actor = actor
        self.name = name
        self.run_id = run_id
        self.namespace = f"runs/{run_id}"
        self.store = SnapshotStore(snapshot_dir(data_dir, self.namespace, name), keep=keep)
        self.nonce = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.clock = SimulatedClock(0)
        self.hosted = HostedActor(actor, name, self.clock)
        self.settings = RunSettings(run_id=run_id)
        self.run_pos = 0
        self.last_seq = 0
        self._ctl_seq = 0
        # The last announcements answered: seq -> (their done, their stages' outputs),
        # for a repeated announcement or a restaging (a router restart lost a stage).
        self._recent: dict[int, tuple[Envelope, dict[str, list[Envelope]]]] = {}
        self._ctl: RemoteSubscription | None = None
        self._steps: tuple[str, ...] = ()
        self._pending: deque[StepAnnounce] = deque()
        # The run namespace's records on this actor's topics, from its own subscription.
        self._run_sub: RemoteSubscription | None = None
        self._pump: asyncio.Task[None] | None = None
        self._records: deque[Record] = deque()
        self._records_ready = asyncio.Event()
        self._records_error: BaseException | None = None
        self._regenerated: list[Envelope] = []
        self._divergences: list[Divergence] = []
        self._in_flight: list[asyncio.Future[Any]] = []
        self._step_time: int | None = None
        self._step_ordinal = 0

    async def run(self) -> None:
        """Join the run, catch up, run every announced wave until ``end``.

        Raises:
            BiasError, ActorFailedError: from the actor (the process should exit
                non-zero; the driver's supervisor restarts it from its snapshot).
            RouterError: the router refused a publication, or the actor's subscription
                to the run namespace (its token must allow its own patterns, as for a
                live actor).
            TickertapeError: the run subscription ended, or went past a wave with
                records of it missing.
        """
        try:
            await self._run()
        finally:
            await self._unfollow_run()

    async def _run(self) -> None:
        # The waves for every actor, the welcome, and the waves for this actor alone
        # (a token made before that topic was part of the actor roles lacks it: then
        # without, and the authority sends this actor's waves to every actor).
        for steps in ((STEP_TOPIC, step_topic(self.name)), (STEP_TOPIC,)):
            ctl = self.client.subscribe(
                [*steps, WELCOME_TOPIC],
                "now",
                ns=self.control_namespace,
                include_ephemeral=True,
                queue_frames=1024,
            )
            if await ctl.established():
                break
        direct = len(steps) == 2
        self._ctl, self._steps = ctl, steps
        snapshot = self.store.load_latest(type(self.actor).state_version)
        epoch = 0 if snapshot is None else snapshot.positions.get("epoch", 0)
        hello = Hello(
            run_id=self.run_id,
            actor=self.name,
            nonce=self.nonce,
            epoch=epoch,
            patterns=list(self.actor.subscriptions),
            direct=direct,
            protocol=REPLAY_PROTOCOL,
        )
        welcome: Welcome | None = None
        pending = self._pending
        while welcome is None:
            await self._send(HELLO_TOPIC, hello)
            try:
                async with asyncio.timeout(1.0):
                    while welcome is None:
                        item = await anext(ctl)
                        if not isinstance(item, Envelope):
                            continue
                        if item.topic == WELCOME_TOPIC:
                            w = decode_payload(item.type, item.v, item.payload)
                            if w.actor == self.name and w.nonce == self.nonce:
                                welcome = w
                        elif item.topic in steps:
                            pending.append(decode_payload(item.type, item.v, item.payload))
            except TimeoutError:
                continue
        self.settings = welcome.settings
        self._restore(snapshot)
        await self._follow_run()
        self.last_seq = epoch
        _log.info("joined", actor=self.name, epoch=epoch, history=len(welcome.history))
        for announce in welcome.history:
            if announce.seq <= self.last_seq or not announce.addresses(self.name):
                continue
            # What is committed is run again without publishing; the rest (the
            # announcement in progress) is answered as if it came now.
            if not await self._step(announce, answer=announce.seq > welcome.committed_seq):
                return
        while True:
            while pending:
                if not await self._handle(pending.popleft()):
                    return
            item = await anext(ctl)
            if isinstance(item, Envelope) and item.topic in steps:
                pending.append(decode_payload(item.type, item.v, item.payload))

    async def _handle(self, announce: StepAnnounce) -> bool:
        if announce.run_id != self.run_id or not announce.addresses(self.name):
            return True
        if announce.seq <= self.last_seq:
            recent = self._recent.get(announce.seq)
            if recent is not None:
                done, staged = recent
                await self._restage(staged, announce.restage)
                await self.client.publish([done], ns=self.control_namespace, ephemeral=True)
            return True
        return await self._step(announce, answer=True)

    async def _step(self, announce: StepAnnounce, *, answer: bool) -> bool:
        """Run ``announce`` (not run yet); with ``answer``, publish its outputs and
        answer it, else only rebuild the state it leads to (its outputs are committed
        already: they are compared with the log's at the next wave answered).
        Returns False on ``end``."""
        if announce.phase == "rewind" or announce.rerun:
            # A seek behind the clock: restore, or run again without publishing (the
            # outputs are in the log; they are compared after the last rerun wave).
            if announce.phase == "rewind":
                await self._rewind(announce)
            else:
                await self._run_announce(announce, publish=False)
            if answer:
                await self._settle()
                self._stage_and_report(announce, {})
            return True
        if not answer:
            return await self._run_announce(announce, publish=False)
        # The wave's records first: once they are here, every earlier commit is applied,
        # so the stored twins of regenerated outputs can be fetched.
        records = await self._wave_records(announce)
        if self._regenerated:
            await self._compare_regenerated()
        return await self._run_announce(announce, publish=True, records=records)

    # ------------------------------------------------------------ run records

    async def _follow_run(self) -> None:
        """(Re)subscribe to the run namespace on the actor's topics from just after its
        run position (a restored snapshot's, or 0): waves ≥ 1 take their records from
        this subscription (:meth:`_wave_records`)."""
        await self._unfollow_run()
        if not self.hosted.patterns:
            return
        sub = self.client.subscribe(
            list(self.hosted.patterns),
            StartAt(gseq=self.run_pos + 1),
            ns=self.namespace,
            queue_frames=256,
        )
        self._run_sub = sub
        self._pump = asyncio.create_task(self._pump_records(sub), name=f"run-records:{self.name}")

    async def _unfollow_run(self) -> None:
        pump, sub = self._pump, self._run_sub
        self._pump = self._run_sub = None
        self._records.clear()
        self._records_error = None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if sub is not None:
            await sub.close()

    async def _pump_records(self, sub: RemoteSubscription) -> None:
        try:
            async for frame in sub.batches():
                self._records.extend(frame)  # type: ignore[arg-type]  # no ephemeral ones
                self._records_ready.set()
        except Exception as exc:  # the router refused the subscription
            self._records_error = exc
        else:
            self._records_error = TickertapeError(
                f"{self.name}: its subscription to {self.namespace} ended"
            )
        self._records_ready.set()

    async def _wave_records(self, a: StepAnnounce) -> list[Record]:
        """The records of wave ``a`` (≥ 1) on the actor's topics, in gseq order: those of
        ``a.run_from..a.run_to`` from its run subscription, as many as ``a.run_topics``
        counts on its topics. Empty for the other announcements.

        While waiting, an earlier announcement repeated with ``restage`` is answered
        (the commit this wave waits for may need it); later ones are kept for after.

        Raises:
            RouterError: the run subscription was refused.
            TickertapeError: the subscription went past ``a.run_to`` with records of
                the wave missing.
        """
        if a.wave == 0 or a.phase not in ("start", "step", "stop"):
            return []
        wants = self.hosted.wants
        want = sum(n for topic, n in a.run_topics.items() if wants(topic))
        taken: list[Record] = []
        buffered = self._records
        while True:
            self._records_ready.clear()
            while buffered and len(taken) < want:
                record = buffered[0]
                if record.gseq > a.run_to:
                    break
                buffered.popleft()
                if record.gseq >= a.run_from:
                    taken.append(record)
            if len(taken) == want:
                return taken
            if self._records_error is not None:
                raise self._records_error
            if buffered:
                raise TickertapeError(
                    f"{self.name}: wave {a.stage} announced {want} records on its topics in "
                    f"run gseq {a.run_from}..{a.run_to}, its subscription delivered "
                    f"{len(taken)} before gseq {buffered[0].gseq}"
                )
            await self._await_records_or_control(a)

    async def _await_records_or_control(self, a: StepAnnounce) -> None:
        """Wait for more run records, answering control messages meanwhile."""
        assert self._ctl is not None
        got, item = await unless_stopped(
            self._records_ready, self._ctl.__anext__(), name=f"{self.name}:control"
        )
        if got and isinstance(item, Envelope) and item.topic in self._steps:
            other: StepAnnounce = decode_payload(item.type, item.v, item.payload)
            if other.seq <= self.last_seq:
                await self._handle(other)  # a restaging the commit may need
            elif other.seq != a.seq:
                self._pending.append(other)

    # ------------------------------------------------------------ snapshots

    async def _rewind(self, a: StepAnnounce) -> None:
        """Restore the snapshot of epoch ``a.epoch`` and delete the newer ones, so that a
        restart from here on finds it as the newest.

        Raises:
            SnapshotError: no readable snapshot of that epoch in this actor's store.
        """
        snapshot = self.store.load_latest(
            type(self.actor).state_version,
            where=lambda s: s.positions.get("epoch", 0) == a.epoch,
        )
        if snapshot is None:
            raise SnapshotError(
                self.store.directory, f"{self.name} has no snapshot of epoch {a.epoch} to rewind to"
            )
        self.store.discard_newer(snapshot)
        self._restore(snapshot)
        await self._follow_run()
        self._regenerated = []
        self.last_seq = a.seq
        _log.info("rewound", actor=self.name, epoch=a.epoch, clock_ns=snapshot.clock_ns)

    def _restore(self, snapshot: Snapshot | None) -> None:
        """A fresh clock and context for the actor, restored from ``snapshot`` when given
        (state, counters, timers, its run position and the step it was in)."""
        self.clock = SimulatedClock(0 if snapshot is None else snapshot.clock_ns)
        self.hosted = HostedActor(self.actor, self.name, self.clock, seed=self.settings.seed)
        if snapshot is None:
            return
        self.hosted.restore(snapshot)
        self.run_pos = snapshot.positions.get(self.namespace, 0)
        step_time = snapshot.positions.get("step_time", -1)
        self._step_time = None if step_time < 0 else step_time
        self._step_ordinal = snapshot.positions.get("step_ordinal", 0)

    async def _run_announce(
        self, a: StepAnnounce, *, publish: bool, records: list[Record] | None = None
    ) -> bool:
        """Run announcement ``a``; with ``publish``, stage its outputs and answer.
        ``records``: its wave's records when already taken (:meth:`_wave_records`).
        Returns False on ``end``."""
        hosted = self.hosted
        if a.phase == "batch":
            return await self._run_batch(a, publish=publish)
        if a.phase == "end":
            self.last_seq = a.seq
            await self._settle()
            return False
        if a.phase == "snapshot":
            positions = {
                self.namespace: self.run_pos,
                "epoch": a.seq,
                "step_time": -1 if self._step_time is None else self._step_time,
                "step_ordinal": self._step_ordinal,
            }
            self.store.save(hosted.take_snapshot(positions))
        else:
            self.clock.advance_to(a.time_ns)
            if a.phase == "start" and a.wave == 0:
                hosted.call("on_start")
            elif a.phase == "stop" and a.wave == 0:
                hosted.call("on_stop")
            elif a.wave == 0:
                self._begin_step(a.time_ns)
                hosted.fire_timers(a.time_ns)
                hosted.deliver(a.inputs)
            if a.wave > 0:
                if records is None:
                    records = await self._wave_records(a)
                hosted.deliver(records)
                self.run_pos = max(self.run_pos, a.run_to)
        outputs = hosted.ctx.drain()
        self.last_seq = a.seq
        if not publish:
            self._regenerated += outputs
            return True
        await self._settle()
        self._stage_and_report(a, {a.stage: outputs} if outputs else {})
        return True

    def _begin_step(self, time_ns: int) -> tuple[int, int]:
        """Enter a step at ``time_ns``: advance the clock; return the step's key.

        The key is ``(time_ns, ordinal)``, ordinal counting this actor's steps at the
        same time (a timer set for "now" makes a second step at the same time).
        """
        if time_ns == self._step_time:
            self._step_ordinal += 1
        else:
            self._step_time, self._step_ordinal = time_ns, 0
        self.clock.advance_to(time_ns)
        return time_ns, self._step_ordinal

    def _timer_steps(
        self, limit_ns: int, staged: dict[tuple[int, int], list[Envelope]], *, inclusive: bool
    ) -> list[tuple[int, int]]:
        """Run the timer steps due before ``limit_ns`` (or at it, when ``inclusive``).

        Each is a step of its own at its due time (at the clock, when due earlier), as
        the in-process planner makes it; its outputs go to ``staged`` under its key.
        Returns the keys of the steps run.
        """
        keys: list[tuple[int, int]] = []
        timers, clock = self.hosted.timers, self.clock
        while (due := timers.next_due()) is not None and (
            due < limit_ns or (inclusive and due == limit_ns)
        ):
            key = self._begin_step(max(due, clock.now_ns()))
            self.hosted.fire_timers(key[0])
            keys.append(key)
            self._stage_step(key, staged)
        return keys

    def _stage_step(
        self, key: tuple[int, int], staged: dict[tuple[int, int], list[Envelope]]
    ) -> None:
        outputs = self.hosted.ctx.drain()
        if outputs:
            staged[key] = outputs

    async def _run_batch(self, a: StepAnnounce, *, publish: bool) -> bool:
        """Run a ``batch`` announcement: its steps in order, timer steps in between.

        Each step's outputs are staged under :func:`batch_stage` of its key; ``done``
        lists every step with outputs or run for a timer (the authority counts the
        run's steps from the keys and commits the stages in key order).

        The batch ends with the timer steps due by its last planned step's time
        (``a.time_ns``; the next batch's steps are all later), or by ``a.until_ns``
        when given: a timer set for "now" in the run's last step fires, as in-process.
        """
        hosted = self.hosted
        staged: dict[tuple[int, int], list[Envelope]] = {}  # in step order
        ran: list[tuple[int, int]] = []
        for step in a.batch:
            ran += self._timer_steps(step.time_ns, staged, inclusive=False)
            key = self._begin_step(step.time_ns)
            hosted.fire_timers(key[0])
            hosted.deliver(step.inputs)
            self._stage_step(key, staged)
        ran += self._timer_steps(max(a.time_ns, a.until_ns), staged, inclusive=True)
        self.last_seq = a.seq
        if not publish:
            for outputs in staged.values():
                self._regenerated += outputs
            return True
        await self._settle()
        self._stage_and_report(
            a,
            {batch_stage(self.run_id, *key): outputs for key, outputs in staged.items()},
            [
                StepOutputs(time_ns=t, ordinal=o, outputs=len(staged.get((t, o), ())))
                for t, o in sorted(staged.keys() | set(ran))
            ],
        )
        return True

    def _stage_and_report(
        self,
        a: StepAnnounce,
        staged: dict[str, list[Envelope]],
        steps: list[StepOutputs] | None = None,
    ) -> None:
        """Publish each stage's outputs (``stage id -> outputs``, in order), then
        ``done`` for ``a``; both kept for the last :data:`RECENT_ANSWERS` announcements,
        for a restaging (:meth:`_restage`) and a repeated announcement (:meth:`_handle`).
        Their acknowledgements are awaited by :meth:`_settle`."""
        for stage, outputs in staged.items():
            sending = self.client.publish(outputs, ns=self.namespace, stage=stage)
            self._in_flight.append(asyncio.ensure_future(sending))
        topics = Counter(env.topic for envs in staged.values() for env in envs)
        done = Done(
            run_id=self.run_id,
            actor=self.name,
            nonce=self.nonce,
            seq=a.seq,
            outputs=topics.total(),
            next_timer_ns=self.hosted.timers.next_due(),
            topics=dict(sorted(topics.items())),
            divergences=self._take_divergences(),
            steps=steps or [],
        )
        self._recent[a.seq] = (self._send_done(done), staged)
        if len(self._recent) > RECENT_ANSWERS:
            del self._recent[next(iter(self._recent))]

    async def _compare_regenerated(self) -> None:
        """Compare the outputs regenerated while catching up with the stored ones.

        Called before the first announcement after catching up (every commit before
        it has been applied): the stored twins are fetched from the run namespace by
        topic, from the earliest regenerated ``ts_event``. A difference is a
        divergence, logged and reported to the time authority in the next ``done``;
        a regenerated output with no stored twin is logged (it cannot be compared).
        """
        regenerated, self._regenerated = self._regenerated, []
        wanted = {(env.source, env.source_seq): env for env in regenerated}
        stored = await _fetch_stored_twins(
            self.client,
            self.namespace,
            regenerated,
            StartAt(time=min(env.ts_event for env in regenerated)),
            wanted,
            attrgetter("source", "source_seq"),
        )
        for key, env in sorted(wanted.items()):
            record = stored.get(key)
            if record is None:
                _log.warning("regenerated_not_stored", actor=self.name, id=env.id)
                continue
            divergence = compare(env, record)
            if divergence is not None:
                _log.error("divergence", actor=self.name, id=env.id, fields=divergence.fields)
                self._divergences.append(divergence)
        _log.info("regenerated_compared", actor=self.name, outputs=len(wanted))

    def _take_divergences(self) -> list[Divergence]:
        taken, self._divergences = self._divergences, []
        return taken

    async def _restage(self, staged: dict[str, list[Envelope]], stages: list[str]) -> None:
        """Publish again an announcement's outputs (``staged``) under ``stages``.

        The authority asks for this when a commit finds the stage gone or incomplete
        (the router restarted: staged events live in its memory). A resend under the
        same (``source``, ``source_seq``) replaces, never doubles.
        """
        await self._settle()
        for stage in stages:
            outputs = staged.get(stage)
            if outputs:
                _log.info("restage", actor=self.name, stage=stage, events=len(outputs))
                await self.client.publish(outputs, ns=self.namespace, stage=stage)

    async def _settle(self) -> None:
        """Wait for the previous wave's publications (and raise their errors).

        A wave's staged outputs and its ``done`` are sent back to back without
        waiting for the first acknowledgement: the router handles one connection's
        frames in order, so the stage is complete before the ``done`` is forwarded.
        Their acknowledgements are awaited here, while the authority plans the next
        wave, instead of on the wave's critical path.
        """
        if self._in_flight:
            pending, self._in_flight = self._in_flight, []
            await asyncio.gather(*pending)

    def _send_done(self, done: Done) -> Envelope:
        """Send ``done`` unconfirmed (:meth:`Client.send_ephemeral`), after the wave's
        staged outputs: tasks start in order and take the client's send lock in order,
        so the router receives the stage before the ``done``. The authority's next
        announcement is the answer; a ``done`` lost on the way is sent again when the
        authority repeats the announcement (:meth:`_handle`)."""
        env = self._control_envelope(DONE_TOPIC, done)
        sending = self.client.send_ephemeral([env], ns=self.control_namespace)
        self._in_flight.append(asyncio.ensure_future(sending))
        return env

    def _control_envelope(self, topic: str, payload: msgspec.Struct) -> Envelope:
        self._ctl_seq += 1
        return make_envelope(
            payload,
            topic=topic,
            source=self.name,
            source_seq=self._ctl_seq,
            ts_event=self.clock.now_ns(),
        )

    async def _send(self, topic: str, payload: msgspec.Struct) -> Envelope:
        env = self._control_envelope(topic, payload)
        await self.client.publish([env], ns=self.control_namespace, ephemeral=True)
        return env


async def run_replay_actor(
    router_url: str,
    actor: Actor,
    name: str,
    run_id: str,
    data_dir: str | Path,
    *,
    token: str | None = None,
    control_namespace: str = "main",
) -> None:
    """Connect to ``router_url`` as ``name`` and run :class:`RemoteReplayHost`."""
    client = Client(router_url, name, token)
    await client.start()
    try:
        process = RemoteReplayHost(
            client, actor, name, run_id, data_dir, control_namespace=control_namespace
        )
        await process.run()
    finally:
        await client.close()


PUBLISH_CHUNK = 1_000
"""Most outputs a live actor publishes in one ``pub`` (the router takes up to 10 000 by
default and 8 MiB a frame; 1 000 outputs of a few KiB each stay well inside both). A
router whose ``max_batch_events`` is lower (its ``welcome`` says) gets that many."""


class LiveTime:
    """The time of a live actor: event time while it catches up, then the machine's clock.

    While catching up (replaying the log's history after a start), ``now_ns()`` is the
    latest ``ts_event`` handled (or the snapshot's clock): the history is handled at
    the times it happened, so a restart rebuilds the state the first run had (an
    order's arrival at the venue, a rate-limit window, a bar's close), not one where
    every past event happened "now". Once live (:meth:`go_live`), ``now_ns()`` is
    ``max(LiveClock, the latest ts_event delivered or being delivered)``: a record
    stamped by a slightly faster machine never reaches the actor "in the future" (the
    drift itself is the time authority's business: ``system.clock.drift``).

    Attributes:
        catching_up: True until :meth:`go_live`.
    """

    def __init__(self) -> None:
        self._live = LiveClock()
        self._floor = 0
        self.catching_up = True

    def now_ns(self) -> int:
        """The actor's time, ns."""
        if self.catching_up:
            return self._floor
        return max(self._live.now_ns(), self._floor)

    def machine_ns(self) -> int:
        """The machine's clock (never behind the data), ns, catching up or not: for
        what is not the actor's business (clock reports, alert numbering)."""
        return max(self._live.now_ns(), self._floor)

    def observe(self, ts_event: int) -> None:
        """Raise the floor to ``ts_event``."""
        if ts_event > self._floor:
            self._floor = ts_event

    def go_live(self) -> None:
        """Switch to the machine's clock (the history is handled)."""
        self.catching_up = False


class RemoteHost:
    """Runs one actor live (DESIGN §8 lifecycle) through a router.

    Start → newest valid snapshot (state, position, ``source_seq``) → subscribe from
    that position → handle history → ``caught_up`` → live. Outputs are published
    with their deterministic ``(source, source_seq)``: while catching up, those the
    log already has come back as duplicates; each duplicate is fetched and compared
    (all but its times, which come from the live clock), and a differing one is
    reported as a ``DIVERGENCE`` alert naming both events (ephemeral, on
    ``system.alert.<actor>``, plus an error log line). Snapshots follow ``policy`` (actor
    clock) and are taken on a clean stop. Every second the actor publishes its clock
    (``system.clock.actor.<name>``, ephemeral) for the time authority's drift check.

    Args:
        client: a started client whose identity is ``name``.
        actor: the actor.
        name: its identity.
        data_dir: where its snapshots live (``snapshots/<namespace>/<name>``).
        namespace: the namespace it consumes and writes.
        policy: snapshot cadence.
    """

    def __init__(
        self,
        client: Client,
        actor: Actor,
        name: str,
        data_dir: str | Path,
        *,
        namespace: str = "main",
        policy: SnapshotPolicy | None = None,
    ) -> None:
        self.client = client
        self.actor = actor
        self.name = name
        self.namespace = namespace
        self.policy = policy or SnapshotPolicy()
        self.store = SnapshotStore(snapshot_dir(data_dir, namespace, name), keep=self.policy.keep)
        self.time = LiveTime()
        self.hosted = HostedActor(actor, name, self.time)
        self.position = 0
        self.divergences: list[Divergence] = []
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._alert_seq = 0
        self._unacked: list[Envelope] = []
        self._unchecked: deque[tuple[Envelope, int]] = deque()
        self._alerts: deque[Envelope] = deque()
        self._flushing = asyncio.Lock()
        self._events_at_snapshot = 0
        self._clock_at_snapshot = 0
        self._started = False

    def stop(self) -> None:
        """Ask :meth:`run` to stop cleanly (on_stop, final snapshot)."""
        self._stop.set()

    async def run(self) -> None:
        """Run until :meth:`stop`; see the class docstring.

        Raises:
            BiasError, ActorFailedError: from the actor.
            RouterError: the router refused a publication or the subscription.
        """
        snapshot = self.store.load_latest(type(self.actor).state_version)
        if snapshot is not None:
            self.hosted.restore(snapshot)
            self.time.observe(snapshot.clock_ns)
            self.position = snapshot.positions.get(self.namespace, 0)
            self._events_at_snapshot = snapshot.events_handled
            self._clock_at_snapshot = snapshot.clock_ns
        _log.info(
            "starting", actor=self.name, position=self.position, snapshot=snapshot is not None
        )
        if snapshot is not None:
            await self._start()  # at the snapshot's clock
        # Without a snapshot, on_start runs at the first history event's time, or on the
        # machine's clock when there is no history (_consume, _go_live).
        sub = self.client.subscribe(
            list(self.hosted.patterns) or ["system.none"],
            StartAt(gseq=self.position + 1),
            ns=self.namespace,
        )
        tasks = [
            asyncio.create_task(self._consume(sub), name=f"{self.name}:consume"),
            asyncio.create_task(self._timers(), name=f"{self.name}:timers"),
            asyncio.create_task(self._clock_reports(), name=f"{self.name}:clock"),
            asyncio.create_task(self._caught_up(sub), name=f"{self.name}:caught-up"),
        ]
        stop = asyncio.create_task(self._stop.wait(), name=f"{self.name}:stop")
        try:
            done, _ = await asyncio.wait([*tasks, stop], return_when="FIRST_COMPLETED")
            for task in done:
                error = None if task is stop else task.exception()
                if error is not None:
                    raise error
        finally:
            for task in [*tasks, stop]:
                task.cancel()
            await asyncio.gather(*tasks, stop, return_exceptions=True)
            await sub.close()
        if not self._started:  # (then still catching up)
            await self._go_live()
        self.hosted.call("on_stop")
        await self._flush()
        if self.policy.on_stop:
            self._save()

    async def _start(self) -> None:
        self._started = True
        self.hosted.call("on_start")
        await self._flush()

    async def _caught_up(self, sub: RemoteSubscription) -> None:
        await sub.caught_up.wait()
        _log.info("caught_up", actor=self.name, position=self.position)
        if self._history_done(sub):
            await self._go_live()
        await asyncio.Event().wait()

    def _history_done(self, sub: RemoteSubscription) -> bool:
        """True once every record of the history the router had at the subscription
        (up to its first ``caught_up`` gseq) is handled."""
        return sub.caught_up_gseq is not None and self.position >= sub.caught_up_gseq

    async def _go_live(self) -> None:
        if not self.time.catching_up:
            return
        self.time.go_live()
        self._wake.set()  # the timers now fall due on the machine's clock
        if not self._started:
            await self._start()

    async def _consume(self, sub: RemoteSubscription) -> None:
        # A frame at a time: its outputs are published together after it, and the
        # snapshot policy is checked once per frame (catch-up frames hold up to a few
        # thousand events; live ones are small). History (up to the subscription's
        # first caught_up gseq) runs on event time, timers firing between the events at
        # their due times, as in a replay. Live, time is the machine's: timers due by it
        # fire before a frame, and one falling due while a frame is handled fires after
        # it, as it would after any handler that ran long.
        hosted, ctx, timers, clock = self.hosted, self.hosted.ctx, self.hosted.timers, self.time
        async for batch in sub.batches():
            if not batch or not isinstance(batch[0], Record):
                continue  # ephemeral envelopes come in frames of their own
            records = batch
            if clock.catching_up:
                history = sub.caught_up_gseq is None or records[0].gseq <= sub.caught_up_gseq
                if history:
                    if not self._started:
                        clock.observe(records[0].ts_event)
                        await self._start()
                    self._run_history(records)
                else:
                    await self._go_live()
            due = timers.next_due()
            if not clock.catching_up:
                # Timers due by the frame's first event fire before it; the floor then
                # rises to the frame's latest stamp (data stamped ahead of this
                # machine's clock: a timer falling due between its stamps fires after).
                clock.observe(records[0].ts_event)
                now = clock.now_ns()
                if due is not None and due <= now:
                    hosted.fire_timers(now)
                clock.observe(max(r.ts_event for r in records))
                hosted.deliver(records)
            self.position = records[-1].gseq
            if ctx.outputs:
                await self._flush()
            if timers.next_due() != due:
                self._wake.set()
            self._maybe_snapshot()
            if clock.catching_up and self._history_done(sub):
                await self._go_live()

    def _run_history(self, records: Sequence[Record]) -> None:
        """Handle history records on event time: each run of records sharing a
        ``ts_event`` at that time, after the timers due by then (each at its due time,
        canonical order)."""
        hosted, timers, clock = self.hosted, self.hosted.timers, self.time
        i, n = 0, len(records)
        while i < n:
            ts = records[i].ts_event
            while (due := timers.next_due()) is not None and due <= ts:
                clock.observe(due)
                hosted.fire_timers(due)
            j = i + 1
            while j < n and records[j].ts_event == ts:
                j += 1
            clock.observe(ts)
            hosted.deliver(records[i:j])
            i = j

    async def _timers(self) -> None:
        while True:
            due = self.hosted.timers.next_due()
            now = self.time.now_ns()
            if due is not None and due <= now:
                self.hosted.fire_timers(now)
                await self._flush()
                continue
            delay = 3600.0 if due is None else (due - now) / 1e9
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _clock_reports(self) -> None:
        from tickertape.timeauthority.report import report_clock

        await report_clock(self.client, self.time.machine_ns, namespace=self.namespace)

    async def _flush(self) -> None:
        # Outputs stay in _unacked until the log acknowledges them: a flush cancelled
        # mid-publish (a clean stop) leaves them for the final flush, which resends them
        # with the same keys. Dropping them would lose them for good: the position and
        # the snapshot taken on stop are already past the events that produced them.
        # One flush at a time (the consumer and the timer loop both flush): a second
        # one would publish again the outputs the first has in flight.
        self._unacked.extend(self.hosted.ctx.drain())
        # A regenerated output the log already held is compared with the stored one;
        # the comparisons wait in _unchecked until each is done, and the alerts of
        # divergences in _alerts until stored, so that a flush cancelled among them (a
        # clean stop) leaves the rest to the final flush, each done exactly once.
        async with self._flushing:
            while self._unacked:
                # A frame can make more outputs than one pub may carry (the router's
                # max_batch_events): they go out PUBLISH_CHUNK at a time (at most
                # max_batch_events), in order.
                welcome = self.client.welcome
                chunk = PUBLISH_CHUNK if welcome is None else welcome.limits.max_batch_events
                outputs = self._unacked[: min(PUBLISH_CHUNK, chunk)]
                acks = await self.client.publish(outputs, ns=self.namespace)
                del self._unacked[: len(outputs)]
                self._unchecked.extend(
                    (env, ack.gseq)
                    for env, ack in zip(outputs, acks, strict=True)
                    if ack.duplicate and ack.gseq is not None
                )
            if self._unchecked:
                checked = list(self._unchecked)
                divergences = await self._compare_stored(checked)
                for _ in checked:
                    self._unchecked.popleft()
                for divergence in divergences:
                    self.divergences.append(divergence)
                    self._alerts.append(self._alert_envelope(divergence))
            while self._alerts:
                await self.client.publish([self._alerts[0]], ns=self.namespace, ephemeral=True)
                self._alerts.popleft()

    async def _compare_stored(self, regenerated: list[tuple[Envelope, int]]) -> list[Divergence]:
        """Compare regenerated outputs with the records the log holds at their gseqs
        (``(envelope, gseq)`` pairs): one fetch of their topics over the gseq range,
        not one per output. Returns the divergences, in the order given."""
        wanted = {gseq: env for env, gseq in regenerated}
        first, last = min(wanted), max(wanted)
        stored = await _fetch_stored_twins(
            self.client,
            self.namespace,
            [env for env, _ in regenerated],
            StartAt(gseq=first),
            wanted,
            attrgetter("gseq"),
            to_gseq=last,
        )
        return [
            d
            for env, gseq in regenerated
            if (record := stored.get(gseq)) is not None
            and (d := compare(env, record, compare_ts_event=False)) is not None
        ]

    def _alert_envelope(self, d: Divergence) -> Envelope:
        """The DIVERGENCE alert of ``d`` (published ephemeral: fanned out to live
        subscribers of ``system.alert.>``, not logged), and an error log line.

        Not stored: under the actor's own source, any ``source_seq`` above its outputs'
        would make the log take every later output for a duplicate (DESIGN §5), and
        one from its deterministic sequence would shift every output after it. The
        evidence stays in the log all the same: the stored event, which the alert and
        the log line name, differs from what the actor regenerates from the log.
        Its ``source_seq`` is ALERT_SEQ_BASE + the actor's clock in ns (unique)."""
        _log.error("divergence", actor=self.name, id=d.id, fields=d.fields)
        now = self.time.machine_ns()
        self._alert_seq = max(now, self._alert_seq + 1)
        return make_envelope(
            d.alert(),
            topic=f"system.alert.{self.name}",
            source=self.name,
            source_seq=ALERT_SEQ_BASE + self._alert_seq,
            ts_event=now,
        )

    def _maybe_snapshot(self) -> None:
        since = self.hosted.ctx.events_handled - self._events_at_snapshot
        if self.policy.due(since, self.time.now_ns(), self._clock_at_snapshot):
            self._save()

    def _save(self) -> None:
        self.store.save(self.hosted.take_snapshot({self.namespace: self.position}))
        self._events_at_snapshot = self.hosted.ctx.events_handled
        self._clock_at_snapshot = self.time.now_ns()


_K = TypeVar("_K")


async def _fetch_stored_twins(
    client: Client,
    namespace: str,
    outputs: Sequence[Envelope],
    start: StartAt,
    wanted: Container[_K],
    key: Callable[[Record], _K],
    *,
    to_gseq: int | None = None,
) -> dict[_K, Record]:
    """The stored twins of regenerated ``outputs`` (a restarted actor's catch-up, a
    rerun), to compare them with (:func:`~tickertape.schemas.system.compare`).

    One fetch of ``outputs``' topics in ``namespace`` from ``start`` (to ``to_gseq``,
    else to the head), closed however it ends.

    Returns:
        ``{key(record): record}`` for the fetched records whose key is in ``wanted``.

    Raises:
        RouterError: the router refused the fetch.
    """
    topics = sorted({env.topic for env in outputs})
    fetch = client.fetch(topics, start, to_gseq=to_gseq, ns=namespace, queue_frames=64)
    found: dict[_K, Record] = {}
    try:
        async for item in fetch:
            if isinstance(item, Record) and (k := key(item)) in wanted:
                found[k] = item
    finally:
        await fetch.close()
    return found
