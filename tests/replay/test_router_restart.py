"""A distributed replay outlives its router: staged outputs lost with it are staged again.

Staged events live in router memory. When the router dies between an actor's staging
and the time authority's commit, the commit answers ``STAGE_UNKNOWN`` (or the stage is
incomplete); the authority re-sends the announcement with ``restage`` and the actors
publish those outputs again. The run's files must equal an uninterrupted run's.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.replay.conftest import write_source
from tests.replay.test_distributed import ITEMS, REPO, START
from tests.router.support import free_port, kill, tape, wait_port
from tickertape.actors.runtime.resolution import resolve
from tickertape.cli.system_commands import hash_namespace
from tickertape.replay import RunSettings, run_in_process
from tickertape.replay.distributed import run_distributed
from tickertape.router.server import Router, RouterConfig
from tickertape.router.staging import StageBook


def reference(data: Path, tmp_path: Path, settings: RunSettings) -> dict[str, str]:
    ref = tmp_path / "ref"
    shutil.copytree(data, ref)
    run_in_process(ref, settings, [resolve(i) for i in ITEMS])
    return hash_namespace(ref, f"runs/{settings.run_id}")


class ForgetfulStages(StageBook):
    """A stage book that loses every stage once, at the ``nth`` commit of a wave's outputs
    (what a router restart between staging and commit does to them)."""

    def __init__(self, nth: int) -> None:
        super().__init__()
        self.nth = nth
        self.commits = 0
        self.forgotten: list[str] = []

    def take(self, ns: str, stage: str, expect: dict[str, int]) -> list:  # type: ignore[type-arg]
        if any(expect.values()) and not stage.endswith((":manifest", ":summary")):
            self.commits += 1
            if self.commits == self.nth:
                for key in [k for k in self._stages if k[0] == ns]:
                    self._drop(key)
                self.forgotten.append(stage)
        return super().take(ns, stage, expect)


@pytest.mark.slow
async def test_stages_lost_before_commit_are_staged_again(source_dir: Path, tmp_path: Path) -> None:
    settings = RunSettings(run_id="r1", start_ns=START)
    expected = reference(source_dir, tmp_path, settings)
    router = Router(RouterConfig(port=0, data_dir=str(source_dir), health_interval_s=3600.0))
    forgetful = ForgetfulStages(nth=40)
    router.stages = forgetful
    await router.start()
    try:
        specs = [resolve(i) for i in ITEMS]
        await run_distributed(source_dir, settings, specs, ITEMS, router_url=router.url, cwd=REPO)
    finally:
        await router.close()
    assert forgetful.forgotten  # the 40th commit found its stage gone
    assert hash_namespace(source_dir, "runs/r1") == expected


@pytest.mark.slow
async def test_router_sigkilled_mid_replay_and_restarted(tmp_path: Path) -> None:
    """Three SIGKILLs of a real router process during a run; the run equals an uninterrupted one."""
    data = tmp_path / "data"
    write_source(data, n=1_200)
    settings = RunSettings(run_id="r2", start_ns=START)
    expected = reference(data, tmp_path, settings)
    port = free_port()
    args = ("router", "--port", str(port), "--data-dir", str(data))
    holder = {"router": tape(*args, log=tmp_path / "router.log")}
    wait_port(port)
    started = threading.Event()
    stop = threading.Event()
    kills: list[float] = []

    def killer() -> None:
        started.wait()
        for _ in range(3):
            if stop.wait(0.7):
                return
            kill(holder["router"])
            kills.append(time.monotonic())
            holder["router"] = tape(*args, log=tmp_path / "router.log")
            wait_port(port)

    def hook(_supervisor: object, index: int, _time_ns: int) -> None:
        if index == -1:
            started.set()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        await run_distributed(
            data,
            settings,
            [resolve(i) for i in ITEMS],
            ITEMS,
            router_url=f"ws://127.0.0.1:{port}",
            cwd=REPO,
            on_step=hook,
        )
        finished = time.monotonic()
    finally:
        stop.set()
        thread.join(30)
        kill(holder["router"])
    assert len(kills) == 3
    assert kills[-1] < finished  # all three during the run
    assert hash_namespace(data, "runs/r2") == expected
