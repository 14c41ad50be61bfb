"""Supervision of actor processes: restart a dead one with exponential backoff.

A :class:`Supervisor` starts one OS process per actor and watches them. When one
exits while the run is going on (a crash, ``SIGKILL``, an out-of-memory kill), it
is started again after a backoff (0.1 s, doubling, at most ``max_backoff_s``); a
restarted actor resumes from its newest snapshot (see
:class:`~tickertape.actors.runtime.remote.RemoteReplayHost`). After
``max_restarts`` restarts of one actor the supervisor gives up and reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from tickertape.errors import TickertapeError

_log = structlog.get_logger("tickertape.supervisor")


class ActorGaveUpError(TickertapeError):
    """An actor process died more often than the supervisor allows.

    Attributes:
        actor: the actor.
        restarts: how many times it was restarted.
        returncode: its last exit status (negative: killed by that signal).
    """

    def __init__(self, actor: str, restarts: int, returncode: int | None) -> None:
        self.actor = actor
        self.restarts = restarts
        self.returncode = returncode
        super().__init__(
            f"actor {actor!r} died {restarts + 1} times (last exit status {returncode}); "
            "see its log lines for the cause"
        )


def tape_command() -> list[str]:
    """The argv prefix that runs ``tape`` with this interpreter."""
    return [sys.executable, "-c", "from tickertape.cli.main import main; main()"]


@dataclass(slots=True)
class _Child:
    name: str
    argv: list[str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    returncodes: list[int] = field(default_factory=list)


class Supervisor:
    """Starts and restarts actor processes.

    Args:
        cwd: the children's working directory.
        env: extra environment variables for the children.
        max_restarts: restarts allowed per actor before giving up.
        max_backoff_s: ceiling of the restart backoff.
    """

    def __init__(
        self,
        *,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        max_restarts: int = 10,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._cwd = None if cwd is None else str(cwd)
        self._env = {**os.environ, **(env or {})}
        self._max_restarts = max_restarts
        self._max_backoff_s = max_backoff_s
        self._children: dict[str, _Child] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self.failed: asyncio.Future[ActorGaveUpError] | None = None

    def pid(self, name: str) -> int | None:
        """The running process id of actor ``name``, or None."""
        child = self._children.get(name)
        if child is None or child.process is None or child.process.returncode is not None:
            return None
        return child.process.pid

    def restarts(self, name: str) -> int:
        """How many times actor ``name`` was restarted."""
        return self._children[name].restarts

    async def start(self, name: str, argv: Sequence[str]) -> None:
        """Start actor ``name`` as ``argv`` and watch it."""
        if self.failed is None:
            self.failed = asyncio.get_running_loop().create_future()
        child = _Child(name=name, argv=list(argv))
        self._children[name] = child
        await self._spawn(child)
        self._watchers[name] = asyncio.create_task(self._watch(child), name=f"supervise:{name}")

    async def _spawn(self, child: _Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            *child.argv, cwd=self._cwd, env=self._env, stdin=asyncio.subprocess.DEVNULL
        )
        _log.info("actor_started", actor=child.name, pid=child.process.pid, restarts=child.restarts)

    async def _watch(self, child: _Child) -> None:
        backoff = 0.1
        while True:
            assert child.process is not None
            code = await child.process.wait()
            if self._stopping or code == 0:
                return
            child.returncodes.append(code)
            _log.warning("actor_died", actor=child.name, returncode=code, restarts=child.restarts)
            if child.restarts >= self._max_restarts:
                if self.failed is not None and not self.failed.done():
                    self.failed.set_result(ActorGaveUpError(child.name, child.restarts, code))
                return
            await asyncio.sleep(backoff)
            backoff = min(self._max_backoff_s, backoff * 2)
            if self._stopping:
                return
            child.restarts += 1
            await self._spawn(child)

    async def wait_exited(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for every child to exit by itself."""
        self._stopping = True
        procs = [c.process for c in self._children.values() if c.process is not None]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for p in procs:
                    await p.wait()

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Stop supervising; terminate children still running (SIGTERM, then SIGKILL)."""
        self._stopping = True
        for child in self._children.values():
            p = child.process
            if p is not None and p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        await self.wait_exited(timeout)
        for child in self._children.values():
            p = child.process
            if p is not None and p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
        for task in self._watchers.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
