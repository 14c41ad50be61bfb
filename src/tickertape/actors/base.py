"""The actor contract (DESIGN §8): synchronous handlers, hosted by a runtime that owns I/O.

An actor is a plain class. A host (in-process or remote, see
:mod:`tickertape.actors.runtime`) feeds it events in gseq order, drives its timers from
its :class:`Clock`, collects what it publishes, and snapshots it.

.. code-block:: python

    class Echo(Actor):
        name = "echo"
        subscriptions = ("md.trade.crypto.*",)

        def on_event(self, event: Event, ctx: Context) -> None:
            ctx.publish(f"echo.{event.topic}", event.payload, market=event.market)

Handlers never read the wall clock (``ctx.clock.now_ns()`` is the only time), never
use unseeded randomness (``ctx.random``), and never iterate unordered collections
into output: that is what makes replays byte-identical.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import msgspec

from tickertape.schemas.envelope import Market, Record


class Event(msgspec.Struct, frozen=True):
    """A stored event as an actor sees it: the record and its decoded payload.

    One is made per event and actor handed it (a Struct: 60 ns to make, against
    350 ns for the frozen dataclass it was).

    Attributes:
        record: the stored record (offset, gseq, ts_event, raw payload...).
        payload: the payload decoded to its registered Struct.
    """

    record: Record
    payload: Any

    @property
    def topic(self) -> str:
        """The record's topic."""
        return self.record.topic

    @property
    def type(self) -> str:
        """The payload schema name."""
        return self.record.type

    @property
    def market(self) -> Market | None:
        """The market scope, or None for system events."""
        return self.record.market

    @property
    def ts_event(self) -> int:
        """When it happened, ns since the epoch."""
        return self.record.ts_event

    @property
    def id(self) -> str:
        """``{source}:{source_seq}``."""
        return self.record.id

    @property
    def gseq(self) -> int:
        """Position in the namespace."""
        return self.record.gseq

    @property
    def source(self) -> str:
        """The producer's identity."""
        return self.record.source

    @property
    def correlation_id(self) -> str | None:
        """``id`` of the first event of the chain, or None."""
        return self.record.correlation_id


@dataclass(frozen=True, slots=True)
class Timer:
    """A timer firing: its name and the simulated or live time it was due at (ns)."""

    name: str
    due_ns: int


class Clock(Protocol):
    """An actor's only source of time (DESIGN §7). Monotonic; ns since the epoch."""

    def now_ns(self) -> int:
        """Current time in ns since the Unix epoch (UTC)."""
        ...

    def set_timer(
        self, name: str, *, at_ns: int | None = None, interval_ns: int | None = None
    ) -> None:
        """Fire ``on_timer`` once at ``at_ns``, or every ``interval_ns`` from now.

        Setting a timer with an existing name replaces it.

        Raises:
            ClockError: both or neither of ``at_ns``/``interval_ns`` given, ``at_ns`` in
                the past, or ``interval_ns`` ≤ 0.
        """
        ...

    def cancel_timer(self, name: str) -> None:
        """Cancel the named timer; no error when it does not exist."""
        ...


class Context(Protocol):
    """What a host gives an actor's handlers."""

    @property
    def clock(self) -> Clock:
        """The actor's only source of time (simulated in replays)."""
        ...

    @property
    def random(self) -> random.Random:
        """A generator seeded from the run's seed and the actor's name."""
        ...

    @property
    def log(self) -> Any:
        """A structlog logger bound with ``actor=<name>``."""
        ...

    @property
    def actor_name(self) -> str:
        """The actor's identity: the ``source`` of everything it publishes."""
        ...

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

        ``ts_event`` defaults to ``clock.now_ns()``; ``correlation_id`` defaults to the
        causation's correlation id, or the causation's own id when it has none.

        Raises:
            BiasError: ``ts_event`` is later than the actor's clock (look-ahead).
            SchemaError: ``payload`` is not a registered payload Struct.
        """
        ...


class Actor:
    """Base class of every actor. Override the handlers you need.

    Class attributes:
        name: default identity (the envelope ``source``); a host may override it
            per instance (``strategy.sma``...).
        subscriptions: topic patterns (NATS wildcards) the actor consumes.
        state_version: bump when :meth:`snapshot`'s shape changes; snapshots of another
            version are ignored and the actor rebuilds from the log.
    """

    name: ClassVar[str] = "actor"
    subscriptions: tuple[str, ...] = ()
    state_version: ClassVar[int] = 1

    def on_start(self, ctx: Context) -> None:
        """Called once, before any event (after a snapshot was restored)."""

    def on_event(self, event: Event, ctx: Context) -> None:
        """Called for each subscribed event, in gseq order."""

    def on_timer(self, timer: Timer, ctx: Context) -> None:
        """Called when a timer set through ``ctx.clock`` is due."""

    def on_stop(self, ctx: Context) -> None:
        """Called once on a clean stop, before the final snapshot."""

    def snapshot(self) -> msgspec.Struct | None:
        """Return the actor's state as a msgspec Struct, or None if stateless."""
        return None

    def restore(self, state: bytes) -> None:
        """Restore from the msgpack bytes of a Struct returned by :meth:`snapshot`.

        Decode with ``msgspec.msgpack.decode(state, type=MyState)``.
        """
