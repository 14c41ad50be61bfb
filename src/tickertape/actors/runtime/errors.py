"""Errors of the actor runtime: bias guards (DESIGN §1.5) and actor failures.

.. code-block:: text

    BiasError (tickertape.errors)
    ├── LookAheadError          an actor published with ts_event later than its clock
    ├── TopicTimeRegressionError    an actor's ts_event went backwards on a topic
    ├── FutureEventError        an event past the actor's clock was about to be delivered
    └── ZeroLatencyError        a latency model of zero (or less)
    TickertapeError
    └── ActorFailedError        an actor's handler raised; the host stopped
"""

from __future__ import annotations

import structlog

from tickertape.errors import BiasError, SchemaError, TickertapeError, UnknownTypeError
from tickertape.schemas.envelope import Record

_log = structlog.get_logger("tickertape.host")


class LookAheadError(BiasError):
    """An actor published an event dated after its own clock.

    Attributes:
        actor: the publishing actor.
        topic: the topic it published to.
        ts_event: the event's time, ns.
        clock_ns: the actor's clock, ns.
    """

    def __init__(self, actor: str, topic: str, ts_event: int, clock_ns: int) -> None:
        self.actor = actor
        self.topic = topic
        self.ts_event = ts_event
        self.clock_ns = clock_ns
        super().__init__(
            f"look-ahead: actor {actor!r} published on {topic!r} with ts_event {ts_event} "
            f"later than its clock {clock_ns} (+{ts_event - clock_ns} ns)"
        )


class TopicTimeRegressionError(BiasError):
    """An actor's ``ts_event`` went backwards on one of its topics.

    Attributes:
        actor: the publishing actor.
        topic: the topic.
        last_ts_event: the last ts_event it published there, ns.
        ts_event: the new, earlier one, ns.
    """

    def __init__(self, actor: str, topic: str, last_ts_event: int, ts_event: int) -> None:
        self.actor = actor
        self.topic = topic
        self.last_ts_event = last_ts_event
        self.ts_event = ts_event
        super().__init__(
            f"backwards time: actor {actor!r} published on {topic!r} with ts_event {ts_event} "
            f"earlier than its last {last_ts_event}"
        )


class FutureEventError(BiasError):
    """An event dated after the actor's clock was about to be delivered (look-ahead).

    Attributes:
        actor: the receiving actor.
        event_id: the event's id.
        ts_event: the event's time, ns.
        clock_ns: the actor's clock, ns.
    """

    def __init__(self, actor: str, event_id: str, ts_event: int, clock_ns: int) -> None:
        self.actor = actor
        self.event_id = event_id
        self.ts_event = ts_event
        self.clock_ns = clock_ns
        super().__init__(
            f"look-ahead: event {event_id!r} (ts_event {ts_event}) reached actor {actor!r} "
            f"whose clock is {clock_ns}"
        )


class ZeroLatencyError(BiasError):
    """A latency model of zero or less: every modeled delay must be positive.

    Attributes:
        what: which latency (``"order_to_venue"``...).
        latency_ns: the refused value, ns.
    """

    def __init__(self, what: str, latency_ns: int) -> None:
        self.what = what
        self.latency_ns = latency_ns
        super().__init__(f"zero latency refused: {what} is {latency_ns} ns; it must be > 0")


def require_latency(what: str, latency_ns: int) -> int:
    """Return ``latency_ns`` when positive.

    Use it when loading any latency model (order to venue, venue to fill...).

    Raises:
        ZeroLatencyError: ``latency_ns`` ≤ 0.
    """
    if latency_ns <= 0:
        raise ZeroLatencyError(what, latency_ns)
    return latency_ns


class ActorFailedError(TickertapeError):
    """An actor's handler raised; the host stops (the cause is chained).

    Attributes:
        actor: the actor.
        handler: ``on_event``, ``on_timer``, ``on_start`` or ``on_stop``.
        event_id: the event being handled, or None.
    """

    def __init__(
        self, actor: str, handler: str, event_id: str | None, cause: BaseException
    ) -> None:
        self.actor = actor
        self.handler = handler
        self.event_id = event_id
        on = f" on event {event_id!r}" if event_id else ""
        super().__init__(
            f"actor {actor!r} failed in {handler}{on}: {type(cause).__name__}: {cause}"
        )


class PublishNotAllowedError(TickertapeError):
    """An actor published on a topic its role does not allow (``tickertape.roles``).

    Attributes:
        actor: the actor's identity.
        topic: the refused topic.
        allowed: what its role allows, in words.
    """

    def __init__(self, actor: str, topic: str, allowed: str) -> None:
        self.actor = actor
        self.topic = topic
        self.allowed = allowed
        super().__init__(f"actor {actor!r} may not publish on {topic!r}: its role allows {allowed}")


def report_undeliverable(
    record: Record, exc: SchemaError, seen_types: set[tuple[str, int]]
) -> None:
    """Log a record a host skips instead of delivering (DESIGN §3: readers skip what
    they cannot decode, never fail on it).

    An unknown type or newer ``v`` (:class:`~tickertape.errors.UnknownTypeError`) is
    logged once per (type, v), tracked in ``seen_types``; a payload failing its schema
    is logged every time, with its id and gseq.
    """
    if isinstance(exc, UnknownTypeError):
        key = (record.type, record.v)
        if key not in seen_types:
            seen_types.add(key)
            _log.warning("unknown_type_skipped", type=record.type, v=record.v, id=record.id)
    else:
        _log.error("invalid_payload_skipped", id=record.id, gseq=record.gseq, error=str(exc))
