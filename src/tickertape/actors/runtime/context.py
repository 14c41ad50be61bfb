"""The :class:`~tickertape.actors.base.Context` a host gives an actor.

:class:`ActorContext` owns everything that makes an actor's output deterministic:
its ``source_seq`` counter (so ids are ``"{source}:{source_seq}"`` and the same every
replay), a random generator seeded from the run's seed and the actor's name, id
counters, and the bias guards on publish (no ``ts_event`` after the clock, no
``ts_event`` going backwards on a topic). Published envelopes are buffered in
:attr:`ActorContext.outputs`; the host drains them after each handler.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec
import structlog

from tickertape.actors.base import Event
from tickertape.actors.runtime.errors import (
    LookAheadError,
    PublishNotAllowedError,
    TopicTimeRegressionError,
)
from tickertape.errors import SchemaError
from tickertape.roles import PublishRule
from tickertape.schemas.envelope import Envelope, Market
from tickertape.schemas.registry import envelope_of
from tickertape.snapshots.codec import Snapshot
from tickertape.timeauthority.clock import ActorClock
from tickertape.topics import validate_topic


def seeded_random(seed: int, actor: str) -> random.Random:
    """Return the generator of ``actor`` in a run seeded with ``seed``.

    Seeded from the string ``"{seed}:{actor}"`` (hashed with SHA-512 by
    :meth:`random.Random.seed`, so independent of ``PYTHONHASHSEED`` and of the process).
    """
    return random.Random(f"{seed}:{actor}")


class ActorContext:
    """The context of one actor in one host.

    Args:
        actor_name: the actor's source identity.
        clock: the actor's clock.
        seed: the run's seed.
        source_seq: the last ``source_seq`` already used (0 for a fresh actor).

    Attributes:
        outputs: envelopes published since the host last drained them.
        source_seq: the last ``source_seq`` used.
        events_handled: events and timers handled so far (drives the snapshot policy).
    """

    def __init__(
        self,
        actor_name: str,
        clock: ActorClock,
        *,
        seed: int = 0,
        source_seq: int = 0,
        publish_rule: PublishRule | None = None,
    ) -> None:
        self._name = actor_name
        self._rule = publish_rule
        self._clock = clock
        self._seed = seed
        self._random = seeded_random(seed, actor_name)
        self._log = structlog.get_logger("tickertape.actor").bind(actor=actor_name)
        self._topic_ts: dict[str, int] = {}
        self._id_counters: dict[str, int] = {}
        self._checked_topics: set[str] = set()
        self.outputs: list[Envelope] = []
        self.source_seq = source_seq
        self.events_handled = 0

    @property
    def clock(self) -> ActorClock:
        """The actor's clock (``now_ns()``, timers)."""
        return self._clock

    @property
    def random(self) -> random.Random:
        """A generator seeded from the run's seed and the actor's name."""
        return self._random

    @property
    def log(self) -> Any:
        """A structlog logger bound with ``actor=<name>``."""
        return self._log

    @property
    def actor_name(self) -> str:
        """The actor's source identity."""
        return self._name

    def next_id(self, kind: str) -> str:
        """Return a deterministic id ``"{actor}:{kind}:{n}"``, n counting from 1 per kind.

        For ids the actor hands to the outside world (client order ids): the counters
        are part of the snapshot, so a restarted actor never reuses one.
        """
        n = self._id_counters.get(kind, 0) + 1
        self._id_counters[kind] = n
        return f"{self._name}:{kind}:{n}"

    def publish(
        self,
        topic: str,
        payload: msgspec.Struct,
        *,
        market: Market | None,
        ts_event: int | None = None,
        causation: Event | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Emit an event; returns its deterministic ``id`` (``"{source}:{source_seq}"``).

        ``ts_event`` defaults to ``clock.now_ns()``; ``ts_init`` is always the clock;
        ``correlation_id`` defaults to the causation's correlation id, or the
        causation's own id when it has none.

        Raises:
            LookAheadError: ``ts_event`` is later than the actor's clock.
            TopicTimeRegressionError: ``ts_event`` is earlier than the last one the
                actor published on ``topic``.
            SchemaError: ``payload`` is not a registered payload Struct, or ``topic``
                is not a valid topic name.
            PublishNotAllowedError: the actor's role does not allow ``topic``
                (:func:`tickertape.roles.publish_rule`).
        """
        now = self._clock.now_ns()
        if ts_event is None:
            ts_event = now
        elif ts_event > now:
            raise LookAheadError(self._name, topic, ts_event, now)
        last = self._topic_ts.get(topic)
        if last is None:
            if topic not in self._checked_topics:
                problem = validate_topic(topic)
                if problem is not None:
                    raise SchemaError(problem)
                if self._rule is not None and not self._rule.permits(topic):
                    raise PublishNotAllowedError(self._name, topic, self._rule.describe())
                self._checked_topics.add(topic)
        elif ts_event < last:
            raise TopicTimeRegressionError(self._name, topic, last, ts_event)
        causation_id = None
        if causation is not None:
            causation_id = causation.id
            if correlation_id is None:
                correlation_id = causation.correlation_id or causation.id
        self.source_seq += 1
        envelope = envelope_of(
            payload,
            topic,
            self._name,
            self.source_seq,
            ts_event,
            now,
            market,
            causation_id,
            correlation_id,
        )
        self._topic_ts[topic] = ts_event
        self.outputs.append(envelope)
        return envelope.id

    def drain(self) -> list[Envelope]:
        """Return and clear the buffered outputs."""
        outputs = self.outputs
        self.outputs = []
        return outputs

    def discard_outputs(self) -> None:
        """Drop buffered outputs and give back their ``source_seq`` numbers."""
        self.source_seq -= len(self.outputs)
        self.outputs = []

    def runtime_state(self) -> dict[str, Any]:
        """Return the context's part of a snapshot (keyword arguments of :class:`Snapshot`)."""
        _, internal, gauss = self._random.getstate()
        return {
            "source_seq": self.source_seq,
            "events_handled": self.events_handled,
            "random_state": list(internal),
            "random_gauss": gauss,
            "id_counters": dict(sorted(self._id_counters.items())),
            "topic_ts": dict(sorted(self._topic_ts.items())),
        }

    def restore_runtime_state(self, snapshot: Snapshot) -> None:
        """Restore counters, guards and the random generator from ``snapshot``."""
        self.source_seq = snapshot.source_seq
        self.events_handled = snapshot.events_handled
        if snapshot.random_state:
            self._random.setstate((3, tuple(snapshot.random_state), snapshot.random_gauss))
        self._id_counters = dict(snapshot.id_counters)
        self._topic_ts = dict(snapshot.topic_ts)
