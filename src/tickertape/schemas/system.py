"""System payloads (``system.{kind}``): clock, health, run manifests, alerts, imports."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from tickertape.schemas.envelope import Envelope, Record, unstamp
from tickertape.schemas.registry import register, register_upcaster


@register("system.clock", 1)
class ClockTick(msgspec.Struct, frozen=True, kw_only=True):
    """The time authority's clock state (mode, time, pacing)."""

    mode: Literal["live", "backtest", "replay"]
    now_ns: int
    speed: float | None = None
    state: Literal["running", "paused", "stopped"] = "running"


@register("system.health", 1)
class Health(msgspec.Struct, frozen=True, kw_only=True):
    """Health of one component (ephemeral: published on ``system.health.*``, not logged)."""

    component: str
    head_gseq: int
    connections: list[dict[str, Any]] = msgspec.field(default_factory=list)
    metrics: dict[str, float] = msgspec.field(default_factory=dict)


@register("system.run_manifest", 1)
class RunManifest(msgspec.Struct, frozen=True, kw_only=True):
    """First event of a replay or backtest run: what it read and how it was configured."""

    run_id: str
    source_namespace: str
    start_ns: int
    end_ns: int | None
    topics: list[str]
    actors: list[str]
    config_hash: str
    code_version: str
    seed: int
    input_positions: dict[str, int] = msgspec.field(default_factory=dict)


@register("system.run_summary", 1)
class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Last event of a run: counts per topic family and the head positions."""

    run_id: str
    input_events: int
    output_events: int
    steps: int
    last_ts_event: int
    counts: dict[str, int] = msgspec.field(default_factory=dict)


@register("system.import_manifest", 1)
class ImportManifest(msgspec.Struct, frozen=True, kw_only=True):
    """What one import of a file did: rows read, stored and refused (with reasons)."""

    format: str
    file_name: str
    sha256: str
    rows_read: int
    events_stored: int
    events_duplicate: int
    rows_refused: int
    refused: list[str] = msgspec.field(default_factory=list)


@register("system.alert", 2)
class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """An operational alert (drift, divergence, gap storms...).

    Version 2 replaced v1's free ``level`` with ``severity`` and added a stable
    ``code``; v1 payloads are upcast by :func:`_alert_v1_to_v2`.
    """

    severity: Literal["info", "warning", "critical"]
    code: str
    message: str
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class Divergence(msgspec.Struct, frozen=True, kw_only=True):
    """A regenerated event that differs from the stored one with the same id (an actor
    that is not deterministic, found on a restart or a ``--resume``).

    Attributes:
        id: the shared id ``"{source}:{source_seq}"``.
        fields: names of the fields that differ.
        stored: the stored event (its envelope as JSON-ready builtins).
        regenerated: the regenerated envelope.
    """

    id: str
    fields: list[str]
    stored: dict[str, Any]
    regenerated: dict[str, Any]

    def alert(self) -> Alert:
        """The critical ``DIVERGENCE`` alert naming both events (in ``detail``)."""
        return Alert(
            severity="critical",
            code="DIVERGENCE",
            message=f"regenerated {self.id} differs from the stored event in "
            f"{', '.join(self.fields)}",
            detail={"stored": self.stored, "regenerated": self.regenerated},
        )


@register_upcaster("system.alert", 1)
def _alert_v1_to_v2(obj: dict[str, Any]) -> dict[str, Any]:
    """v1 ``{"level": "warn"|"error"|..., "message": str}`` → v2."""
    level = str(obj.get("level", "info")).lower()
    severity = {
        "warn": "warning",
        "warning": "warning",
        "error": "critical",
        "critical": "critical",
    }
    return {
        "severity": severity.get(level, "info"),
        "code": "UNSPECIFIED",
        "message": obj.get("message", ""),
        "detail": {},
    }


@register("system.clock_drift", 1)
class ClockDrift(msgspec.Struct, frozen=True, kw_only=True):
    """An actor's clock strayed from the authority's by more than the bound."""

    actor: str
    actor_ns: int
    authority_ns: int
    drift_ns: int
    bound_ns: int


@register("system.clock_query", 1)
class ClockQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A process asks the live time authority for its time (ephemeral, on
    ``system.clock.query.<identity>``).

    Attributes:
        query_id: chosen by the asker, echoed in the reply.
        sent_ns: the asker's clock when it sent the query, ns since the epoch.
    """

    query_id: str
    sent_ns: int


@register("system.clock_reply", 1)
class ClockReply(msgspec.Struct, frozen=True, kw_only=True):
    """The live time authority's answer to a :class:`ClockQuery` (ephemeral, on
    ``system.clock.reply.<identity>``).

    Attributes:
        query_id: the query's id.
        requester: the identity that asked.
        sent_ns: the query's ``sent_ns``, echoed.
        authority_ns: the authority's clock when it answered, ns since the epoch.
    """

    query_id: str
    requester: str
    sent_ns: int
    authority_ns: int


_COMPARED = (
    "topic",
    "type",
    "v",
    "market",
    "ts_event",
    "causation_id",
    "correlation_id",
)


def compare(
    regenerated: Envelope, stored: Record, *, compare_ts_event: bool = True
) -> Divergence | None:
    """Return the :class:`Divergence` between an event and its stored twin, or None.

    ``ts_init`` is never compared: it is the producer's clock when the envelope was
    built. A live actor catching up passes ``compare_ts_event=False``: its clock
    (hence a defaulted ``ts_event``) is the wall clock, which differs from the first
    run's; content still must match.
    """
    fields = [
        f
        for f in _COMPARED
        if (compare_ts_event or f != "ts_event") and getattr(regenerated, f) != getattr(stored, f)
    ]
    if bytes(regenerated.payload) != bytes(stored.payload):
        fields.append("payload")
    if not fields:
        return None
    return Divergence(
        id=regenerated.id,
        fields=fields,
        stored=_as_dict(unstamp(stored)),
        regenerated=_as_dict(regenerated),
    )


def _as_dict(envelope: Envelope) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(envelope))
    return decoded
