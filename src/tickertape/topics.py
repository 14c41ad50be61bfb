"""Topic names and NATS-style subscription patterns (DESIGN §4).

A topic is dotted tokens (``md.trade.crypto.BTCUSDT``). A pattern may use ``*`` for
exactly one token and ``>`` (last token only) for one or more trailing tokens, with
the semantics of NATS subjects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")
MAX_TOPIC_LENGTH = 255


def validate_topic(topic: str) -> str | None:
    """Return None when ``topic`` is a valid concrete topic, else what is wrong.

    Valid: 1–255 characters, dotted tokens of letters, digits, ``_`` and ``-``
    (no wildcards, no empty token).
    """
    if not topic:
        return "topic is empty"
    if len(topic) > MAX_TOPIC_LENGTH:
        return f"topic is longer than {MAX_TOPIC_LENGTH} characters"
    for token in topic.split("."):
        if not _TOKEN.match(token):
            return f"topic {topic!r} has an invalid token {token!r} (letters, digits, _ and - only)"
    return None


def validate_pattern(pattern: str) -> str | None:
    """Return None when ``pattern`` is a valid subscription pattern, else what is wrong."""
    if not pattern:
        return "pattern is empty"
    tokens = pattern.split(".")
    for i, token in enumerate(tokens):
        if token == "*":
            continue
        if token == ">":
            if i != len(tokens) - 1:
                return f"pattern {pattern!r}: '>' must be the last token"
            continue
        if not _TOKEN.match(token):
            return f"pattern {pattern!r} has an invalid token {token!r}"
    return None


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.split("."))


def matches(pattern: str, topic: str) -> bool:
    """True when ``topic`` matches ``pattern`` (NATS semantics)."""
    ptoks = _compile(pattern)
    ttoks = topic.split(".")
    for i, p in enumerate(ptoks):
        if p == ">":
            return len(ttoks) > i
        if i >= len(ttoks):
            return False
        if p != "*" and p != ttoks[i]:
            return False
    return len(ttoks) == len(ptoks)


def matches_any(patterns: Iterable[str], topic: str) -> bool:
    """True when ``topic`` matches at least one of ``patterns``."""
    return any(matches(p, topic) for p in patterns)


def overlaps(a: str, b: str) -> bool:
    """True when some topic matches both patterns ``a`` and ``b`` (NATS semantics).

    ``md.trade.>`` and ``md.*.crypto.BTC`` overlap; ``md.bar.>`` and ``md.trade.>`` do
    not. Used to decide whether one actor's publications can reach another.
    """
    ta, tb = _compile(a), _compile(b)
    for x, y in zip(ta, tb, strict=False):
        if x == ">" or y == ">":
            return True
        if x != "*" and y != "*" and x != y:
            return False
    return len(ta) == len(tb)


def covers(outer: str, inner: str) -> bool:
    """True when every topic matching ``inner`` also matches ``outer``.

    ``md.>`` covers ``md.trade.*``; ``md.*`` does not cover ``md.>`` (which also
    matches ``md.a.b``).
    """
    to, ti = _compile(outer), _compile(inner)
    for i, o in enumerate(to):
        if o == ">":
            return i < len(ti)
        if i >= len(ti):
            return False
        t = ti[i]
        if t == ">":
            return False
        if o != "*" and (t == "*" or o != t):
            return False
    return len(ti) == len(to)
