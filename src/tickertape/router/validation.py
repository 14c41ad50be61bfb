"""The router's checks of a published batch, envelope by envelope (pure).

:func:`check_envelopes` answers, for a ``pub`` whose topics were already checked
(name, ACL, single writer: once per distinct topic, by the server), whether every
envelope is acceptable: its ``source`` is the connection's identity, its ``id`` is
``"{source}:{source_seq}"``, and its payload validates against the schema of its
(``type``, ``v``). It is the router's per-event hot path: one pass, one typed msgspec
decode per payload with the decoder looked up once per run of equal (type, v).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from tickertape.errors import SchemaError
from tickertape.router.protocol import Code
from tickertape.schemas.envelope import Envelope
from tickertape.schemas.registry import decode_payload, is_known, schemas

Problem = tuple[str, str]
"""An error code and what was wrong."""

_DECODERS: dict[tuple[str, int], msgspec.json.Decoder[Any] | None] = {}


def _decoder(type_: str, v: int) -> msgspec.json.Decoder[Any] | None:
    """The typed decoder of a registered (type, v); None for upcast-only or unknown ones."""
    key = (type_, v)
    try:
        return _DECODERS[key]
    except KeyError:
        cls = schemas().get(key)
        decoder = _DECODERS[key] = None if cls is None else msgspec.json.Decoder(cls)
        return decoder


def payload_problem(env: Envelope) -> str | None:
    """Why ``env``'s payload fails its schema, or None; (type, v) must be known.

    A registered (type, v) costs one typed decode of the raw bytes; older versions go
    through :func:`~tickertape.schemas.registry.decode_payload` and its upcasters, and
    so does any failure, for its message.
    """
    decoder = _decoder(env.type, env.v)
    if decoder is not None:
        try:
            decoder.decode(env.payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
        else:
            return None
    try:
        decode_payload(env.type, env.v, env.payload)
    except SchemaError as exc:
        return str(exc)
    return None


def check_envelopes(
    envelopes: Sequence[Envelope],
    identity: str,
    topic_problems: Mapping[str, Problem | None],
    *,
    accept_unknown: bool = False,
) -> list[Problem | None] | None:
    """Check a batch; None when every envelope is acceptable, else one entry per envelope.

    When the batch is acceptable, its equal ``source`` and ``topic`` strings are made
    one object each (the identity's and an interned topic): the log keeps
    (source, source_seq) → (topic, offset, gseq) for its recent events, and with the
    decoder's fresh copies each entry would hold two strings of its own. The values
    are equal, so the envelopes (just decoded, owned by the router) do not change.

    Args:
        envelopes: the batch, as decoded from the ``pub`` frame.
        identity: the connection's authenticated identity.
        topic_problems: every topic of the batch → its problem (invalid name,
            forbidden, owned by another writer) or None.
        accept_unknown: let through a (type, v) without a schema.

    Returns:
        None, or per envelope its problem (``SOURCE_MISMATCH``, ``BAD_ID``, the
        topic's, ``SCHEMA_INVALID``, ``UNKNOWN_TYPE``) or None for a fine one.
    """
    prefix = identity + ":"
    problems: list[Problem | None] | None = None
    last_type: str | None = None
    last_v = -1
    decoder: msgspec.json.Decoder[Any] | None = None
    known = False
    for i, env in enumerate(envelopes):
        problem = topic_problems[env.topic]
        if env.source != identity:
            problem = (
                Code.SOURCE_MISMATCH,
                f"source {env.source!r} is not the authenticated identity {identity!r}",
            )
        elif env.id != prefix + str(env.source_seq):
            problem = (Code.BAD_ID, f"id {env.id!r} must be {env.source}:{env.source_seq}")
        elif problem is None:
            if env.type != last_type or env.v != last_v:
                last_type, last_v = env.type, env.v
                known = is_known(last_type, last_v)
                decoder = _decoder(last_type, last_v) if known else None
            if known:
                reason: str | None = None
                if decoder is None:
                    reason = payload_problem(env)
                else:
                    try:
                        decoder.decode(env.payload)
                    except (msgspec.ValidationError, msgspec.DecodeError):
                        reason = payload_problem(env)
                if reason is not None:
                    problem = (Code.SCHEMA_INVALID, reason)
            elif not accept_unknown:
                problem = (Code.UNKNOWN_TYPE, f"no schema for {env.type} v{env.v} on this router")
        if problem is not None:
            if problems is None:
                problems = [None] * len(envelopes)
            problems[i] = problem
    if problems is None:
        _share_strings(envelopes, identity, topic_problems)
    return problems


def _share_strings(
    envelopes: Sequence[Envelope], identity: str, topics: Mapping[str, object]
) -> None:
    canonical = {topic: sys.intern(topic) for topic in topics}
    force_setattr = msgspec.structs.force_setattr
    for env in envelopes:
        force_setattr(env, "source", identity)
        force_setattr(env, "topic", canonical[env.topic])
