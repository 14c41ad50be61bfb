"""Payloads of the distributed replay's control messages (``system.replay.*``) and
the run settings they carry.

The time authority and the actor processes exchange these as ephemeral envelopes
through the router (docs/protocol.md §8, docs/replay.md "Distributed replay"); the
topics and the protocol's description are in :mod:`tickertape.replay.control`.
They live with the other payload schemas so that every process (the router
included) validates them and ``tape schemas export`` lists them.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from tickertape.schemas.envelope import Record
from tickertape.schemas.registry import register
from tickertape.schemas.system import Divergence


class RunSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What defines a run (everything that goes into its manifest).

    Attributes:
        run_id: the run's id; outputs go to namespace ``runs/<run_id>``.
        source_namespace: the namespace read.
        start_ns: first input time (inclusive), ns.
        end_ns: end of the inputs (exclusive), ns, or None for everything stored.
        topics: input topic patterns.
        seed: the seed of every actor's ``ctx.random``.
    """

    run_id: str
    source_namespace: str = "main"
    start_ns: int = 0
    end_ns: int | None = None
    topics: list[str] = msgspec.field(default_factory=lambda: ["md.>"])
    seed: int = 0

    @property
    def namespace(self) -> str:
        """The run's namespace, ``runs/<run_id>``."""
        return f"runs/{self.run_id}"


REPLAY_PROTOCOL = 2
"""The version of the authority ↔ actor exchange. 2: a wave ≥ 1's records reach each
actor through its own subscription to the run namespace, not in the announcement."""

Phase = Literal["start", "step", "batch", "stop", "snapshot", "rewind", "end"]


class BatchStep(msgspec.Struct, frozen=True, kw_only=True):
    """One input step of a ``batch`` announcement.

    Attributes:
        time_ns: the step's time.
        inputs: its input records that some actor subscribes to, (ts_event, gseq) order.
    """

    time_ns: int
    inputs: list[Record] = msgspec.field(default_factory=list)


class StepOutputs(msgspec.Struct, frozen=True, kw_only=True):
    """What one actor did in one step of a batch.

    A step is keyed by ``(time_ns, ordinal)``: ordinal 0 is the first step at that
    time, 1 a timer step at the same time after it (a timer set for "now"), and so on.

    Attributes:
        time_ns: the step's time.
        ordinal: its rank among the steps at ``time_ns``.
        outputs: events staged under :func:`batch_stage`.
    """

    time_ns: int
    ordinal: int = 0
    outputs: int = 0


def batch_stage(run_id: str, time_ns: int, ordinal: int) -> str:
    """The stage id of a batch step's outputs: ``<run>:t<time_ns>.<ordinal>``."""
    return f"{run_id}:t{time_ns}.{ordinal}"


@register("system.replay.step", 1)
class StepAnnounce(msgspec.Struct, frozen=True, kw_only=True):
    """One wave for every actor to run.

    Attributes:
        run_id: the run.
        seq: announcement number, from 1, strictly increasing.
        phase: ``start`` (wave 0 calls ``on_start``), ``step``, ``stop`` (wave 0
            calls ``on_stop``), ``batch`` (several steps at once, see ``batch``),
            ``snapshot`` (take a snapshot, epoch = ``seq``), ``rewind`` (a seek behind
            the clock: restore the snapshot of epoch ``epoch``, drop newer ones) or
            ``end`` (exit).
        step: the step index (-1 for start, -2 for stop).
        wave: the wave within the step (0 = inputs and timers).
        time_ns: the step's simulated time.
        inputs: wave 0: the step's input records that an actor subscribes to, in
            (ts_event, gseq) order, as the time authority read them from the source
            namespace (an actor never sees an input of a later step). Empty in waves
            ≥ 1: their records come from each actor's own subscription to the run
            namespace (see ``run_topics``).
        run_from: wave ≥ 1: the first gseq of the wave in the run namespace.
        run_to: wave ≥ 1: the last gseq of the wave (an actor's run position after it).
        run_topics: wave ≥ 1: the wave's records per topic, for the topics some
            actor of the run reads (the previous wave's outputs, which the authority
            commits as it sends this announcement). An
            actor takes from its run subscription the records of ``run_from..run_to``
            on the topics it subscribes to, and runs the wave once it has them all:
            their number is the sum of these counts over those topics.
        actors: the actors that run this wave (the others could not receive anything
            in it: no subscribed topic, no timer due); empty means every actor.
        batch: phase ``batch`` only: consecutive input steps, sent at once because no
            actor of the run can receive another's outputs (so every step is a single
            wave). Each actor runs them in order, and before each step the timer steps
            its own timers call for (a timer due before the step's time is a step of
            its own at its due time, as in one process); it stages each step's outputs
            under :func:`batch_stage` and reports them in ``Done.steps``.
        until_ns: phase ``batch``: after the steps, run the timer steps due at or
            before this time (the run's ``--to`` bound on the last batch; 0: none).
        restage: on a repeated announcement: the stage ids whose outputs the actor
            must publish again before answering (a router restart lost them).
        epoch: phase ``rewind``: the ``seq`` of the snapshot announcement to restore.
        rerun: a wave announced again after a ``rewind``: the actor runs it without
            publishing (its outputs are in the log), compares what it regenerates with
            the stored events before its next ordinary wave, and answers ``done``.
    """

    run_id: str
    seq: int
    phase: Phase
    step: int
    wave: int
    time_ns: int
    inputs: list[Record] = msgspec.field(default_factory=list)
    run_from: int = 0
    run_to: int = 0
    run_topics: dict[str, int] = msgspec.field(default_factory=dict)
    actors: list[str] = msgspec.field(default_factory=list)
    batch: list[BatchStep] = msgspec.field(default_factory=list)
    until_ns: int = 0
    restage: list[str] = msgspec.field(default_factory=list)
    epoch: int = 0
    rerun: bool = False

    def addresses(self, actor: str) -> bool:
        """True when ``actor`` runs this wave."""
        return not self.actors or actor in self.actors

    @property
    def stage(self) -> str:
        """The stage id of this wave's outputs: ``<run>:<step>:<wave>``."""
        return f"{self.run_id}:{self.step}:{self.wave}"


@register("system.replay.hello", 1)
class Hello(msgspec.Struct, frozen=True, kw_only=True):
    """An actor process is ready.

    Attributes:
        run_id: the run it joins.
        actor: its identity.
        nonce: unique per process start (a restart is a new nonce).
        epoch: the ``seq`` of the snapshot announcement its restored snapshot answers,
            0 when it starts without a snapshot.
        patterns: the actor's subscription patterns (the authority addresses each wave
            to the actors that subscribe to what it carries).
        direct: the actor also reads its own step topic, ``system.replay.step.<actor>``
            (:func:`step_topic`): a wave for a few actors is sent there, to them alone,
            instead of to every actor (False for a token without that topic, or an
            actor of an earlier version).
        protocol: the version of this exchange the actor speaks
            (:data:`REPLAY_PROTOCOL`); the authority refuses an actor that speaks
            another (absent: 1, an actor that expects each wave's records in its
            announcement).
    """

    run_id: str
    actor: str
    nonce: str
    epoch: int = 0
    patterns: list[str] = msgspec.field(default_factory=list)
    direct: bool = False
    protocol: int = 1


@register("system.replay.welcome", 1)
class Welcome(msgspec.Struct, frozen=True, kw_only=True):
    """The time authority's answer to a hello.

    Attributes:
        run_id: the run.
        actor: the actor addressed.
        nonce: the hello's nonce.
        settings: the run's settings.
        history: announcements after the actor's epoch, oldest first.
        committed_seq: announcements up to this ``seq`` are done: their outputs are
            committed (in the log), so the actor replays them without publishing; the
            one whose commit is in flight is not among them.
    """

    run_id: str
    actor: str
    nonce: str
    settings: RunSettings
    history: list[StepAnnounce] = msgspec.field(default_factory=list)
    committed_seq: int = 0


@register("system.replay.done", 2)
class Done(msgspec.Struct, frozen=True, kw_only=True):
    """An actor ran announcement ``seq`` and staged ``outputs`` events.

    Version 2 counts the outputs per topic (``topics``; version 1 listed the topics).
    Version 1 has no upcaster: its counts cannot be recovered, and an actor that sends
    it speaks replay protocol 1, which the time authority refuses at its hello.

    Attributes:
        run_id: the run.
        actor: the actor.
        nonce: its process nonce.
        seq: the announcement.
        outputs: events staged under the wave's stage id.
        next_timer_ns: the actor's earliest armed timer, or None.
        topics: the staged outputs per topic (the authority addresses the next wave
            to the actors subscribed to one of them and tells each how many records
            to wait for).
        steps: phase ``batch``: every step the actor ran with outputs or for its own
            timers, in order (``outputs`` is then the batch's total).
        divergences: outputs the actor regenerated after a restart that differ from
            the stored ones, sent once, with its first answer after catching up.
    """

    run_id: str
    actor: str
    nonce: str
    seq: int
    outputs: int
    next_timer_ns: int | None = None
    topics: dict[str, int] = msgspec.field(default_factory=dict)
    steps: list[StepOutputs] = msgspec.field(default_factory=list)
    divergences: list[Divergence] = msgspec.field(default_factory=list)
