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
