"""One way to run a process's event loop: uvloop when it is installed, else asyncio.

uvloop's socket I/O costs far less per frame than asyncio's selector loop: the
distributed replay, whose every wave is a handful of small WebSocket frames between
processes, runs about 1.5× as many steps per second with the time authority on uvloop
(benchmarks/bench_replay.py, docs/replay.md).
"""

from __future__ import annotations

import asyncio
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


__all__ = ["run"]
