"""Iteration helpers shared by the command line and the client library."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

from tickertape.schemas.envelope import Record

T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Group ``items`` into lists of ``size`` (the last one may be shorter), lazily.

    ``itertools.batched`` of Python 3.12, returning lists; kept while 3.11 is supported.

    Raises:
        ValueError: ``size`` < 1.
    """
    if size < 1:
        raise ValueError(f"batch size must be ≥ 1, got {size}")
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def follow_ended(record: Record, to_gseq: int | None, to_ns: int | None) -> bool:
    """Whether following ends before ``record``: its gseq is past ``to_gseq``
    (inclusive bound), or it is stamped at or after ``to_ns`` (exclusive bound, ns).

    Live events arrive in gseq order, not in time order across topics: a time bound
    ends the following at the first record at or after it, without waiting for
    topics still behind it.
    """
    if to_gseq is not None and record.gseq > to_gseq:
        return True
    return to_ns is not None and record.ts_event >= to_ns
