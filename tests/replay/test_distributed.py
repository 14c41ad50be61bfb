"""Distributed replay over a real router and real actor processes."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.replay.conftest import KillAt, PauseInRerun, SeekBackOnce
from tickertape.actors.runtime.resolution import resolve
from tickertape.cli.system_commands import hash_namespace
from tickertape.eventlog import LogReader
from tickertape.replay import RunSettings, distributed, run_in_process
from tickertape.replay.control import StepAnnounce
from tickertape.replay.distributed import run_distributed
from tickertape.replay.inprocess import ReplayResult
from tickertape.timeauthority.pacing import Pacer

START = 1_704_067_200 * 10**9
REPO = Path(__file__).resolve().parents[2]
ITEMS = [
    "tests.actors.runtime.sample_actors:MeanActor",
    "tests.actors.runtime.sample_actors:SignalActor",
]


def in_process_reference(
    source_dir: Path, tmp_path: Path, items: list[str] = ITEMS
) -> dict[str, str]:
    ref = tmp_path / "ref"
    shutil.copytree(source_dir, ref)
    specs = [resolve(i) for i in items]
    run_in_process(ref, RunSettings(run_id="r1", start_ns=START), specs)
    return hash_namespace(ref, "runs/r1")


@pytest.mark.slow
async def test_distributed_equals_in_process(source_dir: Path, tmp_path: Path) -> None:
    """Actors in their own processes through the router write the in-process run's bytes."""
    expected = in_process_reference(source_dir, tmp_path)
    specs = [resolve(i) for i in ITEMS]
    result = await run_distributed(
        source_dir, RunSettings(run_id="r1", start_ns=START), specs, ITEMS, cwd=REPO
    )
    assert result.input_events == 300
    assert hash_namespace(source_dir, "runs/r1") == expected


@pytest.mark.slow
async def test_sigkill_mid_replay_resumes_byte_identical(source_dir: Path, tmp_path: Path) -> None:
    """SIGKILL one actor mid-run: the supervisor restarts it from its snapshot; same bytes."""
    expected = in_process_reference(source_dir, tmp_path)
    specs = [resolve(i) for i in ITEMS]
    hook = KillAt("strategy.test", 70)

    await run_distributed(
        source_dir,
        RunSettings(run_id="r1", start_ns=START),
        specs,
        ITEMS,
        cwd=REPO,
        snapshot_every_steps=25,
        on_step=hook,
    )
    assert hook.killed
    assert hook.restarts() == 1
    assert hash_namespace(source_dir, "runs/r1") == expected


BATCHED_ITEMS = [
    "tests.actors.runtime.sample_actors:MeanActor",
    "tests.replay.batch_actors:TimerEcho",
]


async def _run_paced(
    source_dir: Path, items: list[str], pacer: Pacer, on_step: KillAt | None = None
) -> ReplayResult:
    """Run ``items`` distributed as run ``r1``, a snapshot every 25 steps, driven by
    ``pacer`` (and ``on_step``); at most 60 s (an actor that cannot rewind never ends)."""
    run = run_distributed(
        source_dir,
        RunSettings(run_id="r1", start_ns=START),
        [resolve(i) for i in items],
        items,
        cwd=REPO,
        snapshot_every_steps=25,
        pacer=pacer,
        on_step=on_step,
    )
    return await asyncio.wait_for(run, 60)


@pytest.mark.slow
@pytest.mark.parametrize("items", [ITEMS, BATCHED_ITEMS], ids=["waves", "batches"])
async def test_a_seek_behind_the_clock_reruns_and_leaves_the_files_unchanged(
    source_dir: Path, tmp_path: Path, items: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seeking from 1.2 s back to 1.0 s: every actor restores the newest snapshot at or
    before 1.0 s and runs the waves (or batches) since again without publishing; the
    run's files are the in-process run's, with no divergence."""
    expected = in_process_reference(source_dir, tmp_path, items)
    pacer = SeekBackOnce(at_ns=START + 1_200_000_000, to_ns=START + 1_000_000_000)
    # The authority's own log calls (a logger another test configured may be cached).
    log = structlog.testing.CapturingLogger()
    monkeypatch.setattr(distributed, "_log", log)
    result = await _run_paced(source_dir, items, pacer)
    assert pacer.asked
    (rewind,) = [c.kwargs for c in log.calls if c.args == ("rewind",)]
    assert rewind["waves"] > 0
    assert result.divergences == 0
    assert hash_namespace(source_dir, "runs/r1") == expected


@pytest.mark.slow
async def test_a_pause_from_the_keyboard_holds_a_rerun(
    source_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Space pressed while the waves since the snapshot run again: no wave is announced
    until it is pressed again, and the run still equals the in-process one."""
    expected = in_process_reference(source_dir, tmp_path, ITEMS)
    pacer = PauseInRerun(at_ns=START + 1_200_000_000, to_ns=START + 1_000_000_000)
    reruns: list[tuple[float, bool]] = []  # (when, paused) of each rerun announced
    issue = distributed.ReplayCoordinator._issue

    async def recording(self: Any, announce: StepAnnounce, *, wait: bool = True) -> Any:
        if announce.rerun:
            reruns.append((time.monotonic(), pacer.paused))
        return await issue(self, announce, wait=wait)

    monkeypatch.setattr(distributed.ReplayCoordinator, "_issue", recording)
    result = await _run_paced(source_dir, ITEMS, pacer)
    assert pacer.paused_at is not None
    assert pacer.held_s is not None
    assert pacer.held_s >= 0.3
    assert not any(paused for _, paused in reruns)
    assert any(t >= pacer.paused_at + 0.3 for t, _ in reruns)  # the pause came mid-rerun
    assert result.divergences == 0
    assert hash_namespace(source_dir, "runs/r1") == expected


@pytest.mark.slow
async def test_older_data_imported_later_replays_in_time_order(tmp_path: Path) -> None:
    """Inputs are replayed in time order even when older data was stored later; both modes agree."""
    import msgspec

    from tests.actors.runtime.sample_actors import trade_envelopes
    from tickertape.eventlog import EventLog

    older = START - 86_400 * 10**9
    data = tmp_path / "data"
    log = EventLog.open(data, "main")
    log.append(trade_envelopes(100), ts_log=1)
    archive = [
        msgspec.structs.replace(
            e, id=f"archive:{e.source_seq}", source="archive", topic=e.topic + "OLD"
        )
        for e in trade_envelopes(100, start_ns=older)
    ]
    log.append(archive, ts_log=2)
    log.close()
    ref = tmp_path / "ref"
    shutil.copytree(data, ref)
    settings = RunSettings(run_id="r1", start_ns=older)
    result = run_in_process(ref, settings, [resolve(i) for i in ITEMS])
    assert result.input_events == 200
    first = next(iter(LogReader(ref, "runs/r1").read(["indicator.>"])))
    assert first.ts_event < START
    await run_distributed(data, settings, [resolve(i) for i in ITEMS], ITEMS, cwd=REPO)
    assert hash_namespace(data, "runs/r1") == hash_namespace(ref, "runs/r1")


class KillOnIssue:
    """Wraps :meth:`ReplayCoordinator._issue`: SIGKILLs ``actor`` just before the
    ``nth`` announcement that ``match`` accepts goes out (the supervisor is taken from
    the run's ``on_step`` hook, which never kills by itself)."""

    def __init__(self, actor: str, match: Any, nth: int = 1) -> None:
        self.hook = KillAt(actor, index=10**9)
        self.actor, self.match, self.nth = actor, match, nth
        self.seen = 0
        self.killed: list[StepAnnounce] = []

    def wrap(self, issue: Any) -> Any:
        async def issuing(coordinator: Any, announce: StepAnnounce, *, wait: bool = True) -> Any:
            if not self.killed and self.match(announce):
                self.seen += 1
                if self.seen == self.nth:
                    self.hook.kill()
                    self.killed.append(announce)
            return await issue(coordinator, announce, wait=wait)

        return issuing


@pytest.mark.slow
@pytest.mark.parametrize(
    ("match", "nth", "newer"),
    [
        (lambda a: a.phase == "rewind", 1, True),
        (lambda a: a.rerun, 3, False),
    ],
    ids=["at-the-rewind", "mid-rerun"],
)
async def test_an_actor_killed_during_a_seek_back_rejoins_the_rerun(
    source_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    match: Any,
    nth: int,
    newer: bool,
) -> None:
    """An actor SIGKILLed as the rewind goes out (its newest snapshot is then newer
    than the one the seek restores) or in the middle of the rerun: restarted, it
    restores the seek's snapshot, runs the rest of the rerun and answers it; the run
    ends equal to the in-process one, with no divergence."""
    expected = in_process_reference(source_dir, tmp_path)
    # 150 steps 10 ms apart, a snapshot every 25 (0.25 s): at 1.4 s the authority keeps
    # those near 1.0 and 1.25 s; a seek to 1.1 s restores the older one.
    pacer = SeekBackOnce(at_ns=START + 1_400_000_000, to_ns=START + 1_100_000_000)
    killer = KillOnIssue("strategy.test", match, nth)
    log = structlog.testing.CapturingLogger()
    monkeypatch.setattr(distributed, "_log", log)
    issue = killer.wrap(distributed.ReplayCoordinator._issue)
    monkeypatch.setattr(distributed.ReplayCoordinator, "_issue", issue)
    result = await _run_paced(source_dir, ITEMS, pacer, killer.hook)
    assert pacer.asked
    assert killer.killed
    assert killer.hook.restarts() == 1
    (rewind,) = [c.kwargs for c in log.calls if c.args == ("rewind",)]
    welcomes = [c.kwargs for c in log.calls if c.args == ("welcome",)]
    rejoined = [w["epoch"] for w in welcomes if w["actor"] == "strategy.test"][-1]
    assert (rejoined > rewind["epoch"]) if newer else (rejoined == rewind["epoch"])
    assert result.divergences == 0
    assert hash_namespace(source_dir, "runs/r1") == expected
