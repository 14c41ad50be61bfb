"""Tests of the in-process replay driver over a real event log."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.actors.runtime.sample_actors import MeanActor, SignalActor
from tests.replay.conftest import SeekBackOnce
from tickertape.actors.base import Context, Event
from tickertape.actors.runtime import ActorFailedError
from tickertape.actors.runtime.resolution import ActorSpec
from tickertape.cli.system_commands import hash_namespace
from tickertape.errors import ConfigError
from tickertape.eventlog import LogReader
from tickertape.replay import RunSettings, run_in_process
from tickertape.snapshots import SnapshotPolicy

START = 1_704_067_200 * 10**9


def specs() -> list[ActorSpec]:
    return [
        ActorSpec(name="indicators", actor=MeanActor(), origin="t", config=None),
        ActorSpec(name="strategy.test", actor=SignalActor(), origin="t", config=None),
    ]


def settings(run_id: str = "r1", **kw: object) -> RunSettings:
    return RunSettings(run_id=run_id, start_ns=START, **kw)  # type: ignore[arg-type]


def test_two_runs_are_byte_identical(source_dir: Path, tmp_path: Path) -> None:
    """The same source and configuration give the same run files, hash for hash."""
    other = tmp_path / "other"
    shutil.copytree(source_dir, other)
    a = run_in_process(source_dir, settings(), specs())
    b = run_in_process(other, settings(), specs())
    assert a.output_events == b.output_events > 0
    ha, hb = hash_namespace(source_dir, "runs/r1"), hash_namespace(other, "runs/r1")
    assert ha == hb
    assert len(ha) >= 4


def test_manifest_first_summary_last(source_dir: Path) -> None:
    """The run namespace starts with the manifest and ends with the summary, at simulated times."""
    result = run_in_process(source_dir, settings(), specs())
    records = list(LogReader(source_dir, "runs/r1").read())
    assert records[0].type == "system.run_manifest"
    assert records[-1].type == "system.run_summary"
    assert len(records) == result.head_gseq == result.output_events + 2
    assert records[0].ts_log == START
    assert all(r.ts_log >= r.ts_event for r in records)
    assert result.input_events == 300


def test_existing_run_is_not_overwritten(source_dir: Path) -> None:
    """A second run into the same namespace is refused without resume."""
    run_in_process(source_dir, settings(), specs())
    with pytest.raises(ConfigError, match="already holds"):
        run_in_process(source_dir, settings(), specs())


def test_to_bound_limits_inputs(source_dir: Path) -> None:
    """--to is exclusive: only inputs before it are replayed."""
    result = run_in_process(source_dir, settings(end_ns=START + 100 * 10**6), specs())
    assert result.input_events == 20


class CountingMean(MeanActor):
    """MeanActor counting the events it handled (this instance only)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_event(self, event: Event, ctx: Context) -> None:
        self.count += 1
        super().on_event(event, ctx)


class CrashingMean(CountingMean):
    """MeanActor that fails on its 200th event (a crash in the middle of a run)."""

    def on_event(self, event: Event, ctx: Context) -> None:
        if self.count == 199:
            raise RuntimeError("crash")
        super().on_event(event, ctx)


def test_resume_after_a_crash_is_byte_identical(source_dir: Path, tmp_path: Path) -> None:
    """A run that crashed resumes from its snapshots and ends byte-identical to a clean run."""
    clean = tmp_path / "clean"
    shutil.copytree(source_dir, clean)
    run_in_process(clean, settings(), specs())

    policy = SnapshotPolicy(every_events=50, every_ns=None)
    crashing = [
        ActorSpec(name="indicators", actor=CrashingMean(), origin="t", config=None),
        ActorSpec(name="strategy.test", actor=SignalActor(), origin="t", config=None),
    ]
    with pytest.raises(ActorFailedError):
        run_in_process(source_dir, settings(), crashing, snapshot_policy=policy)
    assert (source_dir / "snapshots" / "runs" / "r1" / "indicators").is_dir()
    result = run_in_process(source_dir, settings(), specs(), snapshot_policy=policy, resume=True)
    assert result.divergences == 0
    assert hash_namespace(source_dir, "runs/r1") == hash_namespace(clean, "runs/r1")


@pytest.mark.parametrize("snapshots", [True, False], ids=["from-a-snapshot", "from-the-start"])
def test_a_seek_behind_the_clock_reruns_and_leaves_the_run_unchanged(
    source_dir: Path, tmp_path: Path, snapshots: bool
) -> None:
    """Seeking from 1.2 s back to 1.0 s rebuilds the actors, restores the newest snapshots at
    or before 1.0 s (or starts over without any) and runs on: the run's files and counts
    are an uninterrupted run's, with no divergence."""
    clean = tmp_path / "clean"
    shutil.copytree(source_dir, clean)
    expected = run_in_process(clean, settings(), specs())
    built: list[CountingMean] = []

    def respec() -> list[ActorSpec]:
        built.append(CountingMean())
        return [
            ActorSpec(name="indicators", actor=built[-1], origin="t", config=None),
            ActorSpec(name="strategy.test", actor=SignalActor(), origin="t", config=None),
        ]

    pacer = SeekBackOnce(at_ns=START + 1_200_000_000, to_ns=START + 1_000_000_000)
    policy = SnapshotPolicy(every_events=50, every_ns=None) if snapshots else None
    result = run_in_process(
        source_dir, settings(), respec(), pacer=pacer, snapshot_policy=policy, respec=respec
    )
    assert pacer.asked
    assert len(built) == 2
    assert result.divergences == 0
    assert (result.steps, result.input_events, result.output_events) == (
        expected.steps,
        expected.input_events,
        expected.output_events,
    )
    assert hash_namespace(source_dir, "runs/r1") == hash_namespace(clean, "runs/r1")
    # What the rebuilt actor handled: the inputs after its restore point, which is at or
    # before 1.0 s (49 steps of 2 trades come after 1.0 s), or all 300.
    rerun = built[1].count
    assert 98 <= rerun < 300 if snapshots else rerun == 300


def test_a_seek_behind_the_clock_without_respec_is_refused(source_dir: Path) -> None:
    """Without a way to rebuild the actors, a seek back is refused and the run goes on."""
    pacer = SeekBackOnce(at_ns=START + 1_200_000_000, to_ns=START + 1_000_000_000)
    result = run_in_process(source_dir, settings(), specs(), pacer=pacer)
    assert pacer.asked
    assert pacer.take_seek(0) is None
    assert result.steps == 150
