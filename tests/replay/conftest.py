"""Fixtures of the replay tests: a source log of trades in a data directory."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.actors.runtime.sample_actors import trade_envelopes
from tickertape.eventlog import EventLog
from tickertape.replay.supervision import Supervisor
from tickertape.timeauthority.pacing import Pacer


def write_source(data_dir: Path, n: int = 300) -> None:
    """Append ``n`` trades (2 symbols, 10 ms apart) to namespace main of ``data_dir``."""
    log = EventLog.open(data_dir, "main")
    try:
        results = log.append(trade_envelopes(n), ts_log=1)
        assert all(r.error is None for r in results)
    finally:
        log.close()


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    """A data directory whose main namespace holds 300 trades."""
    d = tmp_path / "data"
    write_source(d)
    return d


class KillAt:
    """An ``on_step`` hook of :func:`run_distributed` that SIGKILLs one actor's process
    once, at the first step whose index reaches ``index``.

    Attributes:
        killed: the pids killed (one at most).
        supervisor: the driver's supervisor, once a step has run.
    """

    def __init__(self, actor: str, index: int) -> None:
        self.actor = actor
        self.index = index
        self.killed: list[int] = []
        self.supervisor: Supervisor | None = None

    def __call__(self, supervisor: Supervisor, index: int, time_ns: int) -> None:
        self.supervisor = supervisor
        if index >= self.index and not self.killed:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the actor's process now (the supervisor is known: a step has run)."""
        assert self.supervisor is not None
        pid = self.supervisor.pid(self.actor)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        self.killed.append(pid)

    def restarts(self) -> int:
        """How many times the supervisor restarted the actor."""
        assert self.supervisor is not None
        return self.supervisor.restarts(self.actor)


class SeekBackOnce(Pacer):
    """Max speed; once the clock reaches ``at_ns``, a seek to ``to_ns`` is requested, as
    the replay's keyboard does (the request is taken between steps)."""

    def __init__(self, at_ns: int, to_ns: int) -> None:
        super().__init__(None)
        self.at_ns, self.to_ns = at_ns, to_ns
        self.asked = False

    def take_seek(self, now_ns: int) -> int | None:
        if not self.asked and now_ns >= self.at_ns:
            self.asked = True
            self.request_seek(self.to_ns)
        return super().take_seek(now_ns)


class PauseInRerun(SeekBackOnce):
    """:class:`SeekBackOnce`, then paused from the keyboard at the first look at it
    after the seek (during the rerun) and resumed 0.3 s later by another thread, as
    the replay's keyboard does; ``held_s`` is how long the replay waited."""

    def __init__(self, at_ns: int, to_ns: int) -> None:
        super().__init__(at_ns, to_ns)
        self.paused_at: float | None = None
        self.held_s: float | None = None

    def take_seek(self, now_ns: int) -> int | None:
        wanted = super().take_seek(now_ns)
        if wanted is None and self.asked and self.held_s is None:
            if self.paused_at is None:
                self.paused_at = time.monotonic()
                self.pause()
                threading.Timer(0.3, self.resume).start()
            elif not self.paused:
                self.held_s = time.monotonic() - self.paused_at
        return wanted
