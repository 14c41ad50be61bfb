"""Allocator settings for the long-running services (``tape router``, ``tape eventlog``).

The router's fan-out and the log's batches are short-lived buffers of a few hundred
KB (an ``events`` frame of 1,000 ~300-byte events is ~350 KB). glibc's malloc serves
a block that large with ``mmap`` at first, but each ``munmap`` raises its mmap
threshold to the freed size ("dynamic mmap threshold", mallopt(3)), up to 32 MB on
64-bit. After a few frames every such buffer comes from the heap instead, where
fragmentation keeps the pages resident: the router's RSS grew by 31 MB over 1 M events
to 16 subscribers, then stayed there. Fixing the threshold (which also fixes the trim
threshold) gives those pages back when each frame is freed: 20 MB peak, 14.5 MB at
the end (benchmarks/bench_router.py, memory row).

Sources: mallopt(3) (``M_MMAP_THRESHOLD``: "Setting this parameter also disables
dynamic adjustment"); glibc ``malloc/malloc.c`` (``DEFAULT_MMAP_THRESHOLD_MAX``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3
"""mallopt(3) parameter number (``malloc.h``)."""

MMAP_THRESHOLD_BYTES = 128 * 1024
"""Blocks of this size or more are mmap'd and unmapped when freed: glibc's initial
threshold, kept fixed."""

_ENV_OVERRIDES = ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes for this process.

    Call it at the start of a long-running service, before its threads start. It does
    nothing (and returns False) off Linux, on a C library other than glibc, or when the
    environment already sets the threshold (``MALLOC_MMAP_THRESHOLD_`` or
    ``GLIBC_TUNABLES``): an operator's setting wins.

    Returns:
        True when the threshold was set.
    """
    if not sys.platform.startswith("linux") or any(v in os.environ for v in _ENV_OVERRIDES):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


__all__ = ["MMAP_THRESHOLD_BYTES", "fix_mmap_threshold"]
