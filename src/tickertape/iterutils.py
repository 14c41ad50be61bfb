"""Iteration helpers (the command line, the client library and the log reader use them)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Group ``items`` into lists of ``size`` (the last one may be shorter), lazily.

    ``itertools.batched`` of Python 3.12, returning lists; kept while 3.11 is supported.

    Raises:
        ValueError: ``size`` < 1 (on the first item asked for: it is a generator).
    """
    if size < 1:
        raise ValueError(f"batch size must be ≥ 1, got {size}")
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
