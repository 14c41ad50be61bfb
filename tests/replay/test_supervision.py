"""Tests of the actor-process supervisor (real processes, real signals)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from tickertape.replay.supervision import ActorGaveUpError, Supervisor


async def test_a_killed_process_is_restarted() -> None:
    """SIGKILL on a supervised process starts a new one (another pid)."""
    sup = Supervisor(max_backoff_s=0.05)
    await sup.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    first = sup.pid("sleeper")
    assert first is not None
    os.kill(first, signal.SIGKILL)
    async with asyncio.timeout(10):
        while sup.pid("sleeper") in (None, first):  # noqa: ASYNC110 (polls a process table)
            await asyncio.sleep(0.02)
    assert sup.restarts("sleeper") == 1
    await sup.stop()
    assert sup.pid("sleeper") is None


async def test_gives_up_after_max_restarts() -> None:
    """A process that keeps failing is reported with its exit status after max_restarts."""
    sup = Supervisor(max_restarts=2, max_backoff_s=0.01)
    await sup.start("crasher", [sys.executable, "-c", "raise SystemExit(3)"])
    assert sup.failed is not None
    async with asyncio.timeout(20):
        error = await sup.failed
    assert isinstance(error, ActorGaveUpError)
    assert (error.actor, error.restarts, error.returncode) == ("crasher", 2, 3)
    await sup.stop()


async def test_clean_exit_is_not_restarted() -> None:
    """Exit status 0 ends supervision of that process."""
    sup = Supervisor(max_backoff_s=0.01)
    await sup.start("ok", [sys.executable, "-c", "pass"])
    await sup.wait_exited(10)
    assert sup.restarts("ok") == 0
    await sup.stop()
