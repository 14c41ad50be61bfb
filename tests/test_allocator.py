"""The services' fixed mmap threshold gives freed frame-sized buffers back to the system.

Each case runs in a fresh interpreter (the threshold is per process and cannot be
undone): it frees one 8 MB buffer (which, unfixed, raises glibc's threshold to 8 MB),
then allocates 64 buffers of 300 KB (an ``events`` frame's size), keeps the last one
(it pins the top of the heap, as live objects do in the router) and frees the rest,
and reports how much of that memory stayed resident.
"""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys

import pytest

from tickertape.allocator import fix_mmap_threshold

PROBE = r"""
import json, sys
from pathlib import Path
from tickertape.allocator import fix_mmap_threshold

def rss_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

fixed = fix_mmap_threshold() if sys.argv[1] == "fix" else False
big = bytearray(8 << 20)
del big
before = rss_kb()
blocks = [bytearray(300 * 1024) for _ in range(64)]
for b in blocks:
    b[::4096] = b"x" * len(range(0, len(b), 4096))  # touch every page
last = blocks[-1]
del blocks
print(json.dumps({"fixed": fixed, "kept_kb": rss_kb() - before}))
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None,
    reason="glibc's mallopt",
)


def _probe(mode: str) -> dict[str, int]:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_* or GLIBC_TUNABLES from the caller
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env=env, capture_output=True, check=True, timeout=60
    )
    result: dict[str, int] = json.loads(out.stdout)
    return result


@glibc
def test_fixed_threshold_returns_freed_frames_to_the_system() -> None:
    fixed, unfixed = _probe("fix"), _probe("none")
    assert fixed["fixed"]
    # 64 × 300 KB = 19.2 MB touched, one block kept.
    assert fixed["kept_kb"] < 2_000, fixed
    # Without it the freed blocks stay in the heap below the kept one (what the fix is
    # for; this also shows the probe can tell the two apart).
    assert unfixed["kept_kb"] > 15_000, unfixed


def test_an_operators_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert fix_mmap_threshold() is False
