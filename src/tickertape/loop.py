"""One way to run a process's event loop (uvloop when it is installed, else asyncio),
and one way to run work unless a stop comes first (:func:`unless_stopped`).

uvloop's socket I/O costs far less per frame than asyncio's selector loop: the
distributed replay, whose every wave is a handful of small WebSocket frames between
processes, runs about 1.5× as many steps per second with the time authority on uvloop
(benchmarks/bench_replay.py, docs/replay.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion in a new event loop (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run(main)
    return uvloop.run(main)


async def unless_stopped(
    stop: asyncio.Event, work: Coroutine[Any, Any, T], *, name: str = "tape-work"
) -> tuple[bool, T | None]:
    """Run ``work`` (as a task named ``name``) unless ``stop`` is set first, in which
    case cancel it.

    Returns:
        ``(True, result)`` when ``work`` finished, ``(False, None)`` when ``stop`` came
        first (``work`` was cancelled and awaited).

    Raises:
        Whatever ``work`` raises.
    """
    task = asyncio.create_task(work, name=name)
    waiter = asyncio.create_task(stop.wait(), name="tape-stop-wait")
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return False, None
    return True, task.result()


__all__ = ["run", "unless_stopped"]
