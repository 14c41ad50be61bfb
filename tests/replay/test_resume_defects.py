"""`--resume` after the stop snapshot, against a source that grew, of a complete run and
with a distributed replay; controls taken while `--speed N` waits for a distant step."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from tests.actors.runtime.sample_actors import MeanActor, trade_envelopes
from tests.replay.test_inprocess import CrashingMean, settings
from tests.router.support import running_router
from tickertape.actors.base import Context, Event
from tickertape.actors.runtime import ActorFailedError
from tickertape.actors.runtime.resolution import ActorSpec
from tickertape.cli.main import cli
from tickertape.cli.system_commands import hash_namespace
from tickertape.client import Client
from tickertape.eventlog import EventLog, LogReader
from tickertape.replay import RunSettings, inprocess, run_in_process
from tickertape.replay.distributed import ReplayCoordinator
from tickertape.replay.manifest import DRIVER_SOURCE
from tickertape.schemas.indicator import IndicatorValue
from tickertape.schemas.registry import make_envelope
from tickertape.snapshots import SnapshotPolicy
from tickertape.timeauthority.control import CONTROL_TOPIC, ClockControl
from tickertape.timeauthority.pacing import Pacer

START = 1_704_067_200 * 10**9
FINAL = "indicator.final.v1.crypto.ALL"
POLICY = SnapshotPolicy(every_events=50, every_ns=None)


class StopPublisher(MeanActor):
    """MeanActor that publishes one last value in ``on_stop`` (as pnl does)."""

    def on_stop(self, ctx: Context) -> None:
        n = float(sum(len(v) for v in self.state.prices.values()))
        value = IndicatorValue(
            symbol="ALL",
            name="final",
            interval="tick",
            params={},
            values={"n": n},
            bar_ts=ctx.clock.now_ns(),
        )
        ctx.publish(FINAL, value, market="crypto")


def stop_specs() -> list[ActorSpec]:
    return [ActorSpec(name="indicators", actor=StopPublisher(), origin="t", config=None)]


def append_trades(data_dir: Path, n: int, *, start_ns: int, first_seq: int) -> None:
    """Append ``n`` trades from ``start_ns`` to namespace main, numbered from ``first_seq``."""
    envelopes = [
        msgspec.structs.replace(
            e,
            id=f"marketdata:{e.source_seq + first_seq - 1}",
            source_seq=e.source_seq + first_seq - 1,
        )
        for e in trade_envelopes(n, start_ns=start_ns)
    ]
    log = EventLog.open(data_dir, "main")
    try:
        assert all(r.error is None for r in log.append(envelopes, ts_log=1))
    finally:
        log.close()


def finals(data_dir: Path) -> list[str]:
    return [r.id for r in LogReader(data_dir, "runs/r1").read() if r.topic == FINAL]


class Crash(Exception):
    """The process dying between the stop snapshot and the summary."""


def test_a_resume_after_the_stop_snapshot_does_not_run_on_stop_again(
    source_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after on_stop and its snapshot, before the summary: the resumed run stores
    the summary only (on_stop's outputs once), as an uninterrupted run."""
    clean = tmp_path / "clean"
    shutil.copytree(source_dir, clean)
    run_in_process(clean, settings(), stop_specs(), snapshot_policy=POLICY)

    def crash(*args: object, **kwargs: object) -> None:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(inprocess, "summary_envelope", crash)
        with pytest.raises(Crash):
            run_in_process(source_dir, settings(), stop_specs(), snapshot_policy=POLICY)
    assert finals(source_dir) == ["indicators:301"]
    result = run_in_process(
        source_dir, settings(), stop_specs(), snapshot_policy=POLICY, resume=True
    )
    assert result.divergences == 0
    assert finals(source_dir) == ["indicators:301"]
    assert hash_namespace(source_dir, "runs/r1") == hash_namespace(clean, "runs/r1")


class MustNotRun(StopPublisher):
    """Fails the replay if it is handed any event."""

    def on_event(self, event: Event, ctx: Context) -> None:
        raise AssertionError("a complete run was replayed again")


def test_a_resume_of_a_complete_run_leaves_it_as_it_is(source_dir: Path) -> None:
    """--resume of a run whose summary is stored changes nothing and gives its counts.
    No snapshot at the stop (its `stopped` flag would also spare the run), and the
    resumed actor fails on any event: the run is not replayed at all."""
    policy = SnapshotPolicy(every_events=50, every_ns=None, on_stop=False)
    first = run_in_process(source_dir, settings(), stop_specs(), snapshot_policy=policy)
    files = hash_namespace(source_dir, "runs/r1")
    untouched = [ActorSpec(name="indicators", actor=MustNotRun(), origin="t", config=None)]
    again = run_in_process(source_dir, settings(), untouched, snapshot_policy=policy, resume=True)
    assert hash_namespace(source_dir, "runs/r1") == files
    assert finals(source_dir) == ["indicators:301"]
    fields = ("steps", "input_events", "output_events", "divergences", "head_gseq")
    assert [getattr(again, f) for f in fields] == [getattr(first, f) for f in fields]


def test_a_resume_reads_the_source_head_the_run_started_with(
    source_dir: Path, tmp_path: Path
) -> None:
    """Trades appended to the source after a crash are not inputs of the resumed run: it
    ends as the uninterrupted run, without a divergence."""
    clean = tmp_path / "clean"
    shutil.copytree(source_dir, clean)
    expected = run_in_process(
        clean,
        settings(),
        [ActorSpec(name="indicators", actor=MeanActor(), origin="t", config=None)],
    )
    crashing = [ActorSpec(name="indicators", actor=CrashingMean(), origin="t", config=None)]
    with pytest.raises(ActorFailedError):
        run_in_process(source_dir, settings(), crashing, snapshot_policy=POLICY)
    append_trades(source_dir, 10, start_ns=START + 10 * 10**9, first_seq=301)
    result = run_in_process(
        source_dir,
        settings(),
        [ActorSpec(name="indicators", actor=MeanActor(), origin="t", config=None)],
        snapshot_policy=POLICY,
        resume=True,
    )
    assert result.divergences == 0
    assert result.input_events == expected.input_events == 300
    assert hash_namespace(source_dir, "runs/r1") == hash_namespace(clean, "runs/r1")


@pytest.mark.parametrize("control", ["max", "seek"])
def test_a_control_during_a_long_pacing_wait_is_taken_at_once(tmp_path: Path, control: str) -> None:
    """At --speed 1 with 8 s between steps, 'm' (max speed) or a seek past the last
    step asked 0.3 s into the first wait ends it then, not 8 s later, and the steps up
    to the seek's target run unpaced too (a seek that only ended the wait would leave
    the third step 8 s later)."""
    data = tmp_path / "data"
    append_trades(data, 2, start_ns=START, first_seq=1)
    append_trades(data, 2, start_ns=START + 8 * 10**9, first_seq=3)
    append_trades(data, 2, start_ns=START + 16 * 10**9, first_seq=5)
    pacer = Pacer(1.0)

    def press() -> None:
        if control == "max":
            pacer.set_speed(None)  # what the keyboard's 'm' does
        else:
            pacer.request_seek(START + 17 * 10**9)

    threading.Timer(0.3, press).start()
    started = time.monotonic()
    result = run_in_process(
        data,
        settings(),
        [ActorSpec(name="indicators", actor=MeanActor(), origin="t", config=None)],
        pacer=pacer,
    )
    assert result.steps == 3
    assert time.monotonic() - started < 3.0


async def test_the_distributed_pacing_wait_takes_keyboard_and_clock_ctl_controls(
    tmp_path: Path,
) -> None:
    """The time authority waiting 8 s for a step at --speed 1 goes on within about a
    second when the keyboard asks for max speed, and likewise for a `tape clock ctl
    speed max` arriving through the router; a `pause` from it holds the wait."""
    async with (
        running_router(tmp_path) as router,
        Client(router.url, DRIVER_SOURCE) as driver,
        Client(router.url, "clockctl") as ctl,
    ):
        pacer = Pacer(1.0)
        c = ReplayCoordinator(
            driver, tmp_path, RunSettings(run_id="r1"), ["a"], config_digest="0", pacer=pacer
        )
        c._ctl = driver.subscribe([CONTROL_TOPIC], "now", ns="main", include_ephemeral=True)
        await c._ctl.caught_up.wait()
        seq = 0

        async def send(control: ClockControl) -> None:
            nonlocal seq
            seq += 1
            env = make_envelope(
                control, topic=CONTROL_TOPIC, source="clockctl", source_seq=seq, ts_event=seq
            )
            await ctl.publish([env], ns="main", ephemeral=True)

        async def waited(sim_ns: int) -> float:
            started = time.monotonic()
            await asyncio.wait_for(c._pace(sim_ns), 20)
            return time.monotonic() - started

        # The keyboard (another thread) asks for max speed.
        await c._pace(START)  # anchors the pace
        asyncio.get_running_loop().call_later(0.3, pacer.set_speed, None)
        assert await waited(START + 8 * 10**9) < 1.5
        # `tape clock ctl speed max`, then `pause` (held) and `resume`.
        pacer.set_speed(1.0)
        await c._pace(START + 8 * 10**9)
        asyncio.get_running_loop().call_later(
            0.3, lambda: asyncio.ensure_future(send(ClockControl(command="speed")))
        )
        assert await waited(START + 16 * 10**9) < 1.5
        assert pacer.speed is None
        pacer.set_speed(1.0)
        await c._pace(START + 16 * 10**9)
        pacing = asyncio.create_task(c._pace(START + 16 * 10**9 + 5 * 10**8))  # 0.5 s on
        await send(ClockControl(command="pause"))
        await asyncio.sleep(1.0)
        assert not pacing.done()
        await send(ClockControl(command="resume"))
        await asyncio.wait_for(pacing, 5)


@pytest.mark.parametrize("mode", [["--distributed"], ["--router", "ws://127.0.0.1:9"]])
def test_resume_with_a_distributed_replay_is_refused(source_dir: Path, mode: list[str]) -> None:
    """--resume goes with an in-process run only: with --distributed or --router it is a
    usage error naming the combination, before anything runs."""
    result = CliRunner().invoke(
        cli,
        [
            "replay",
            "--from",
            "2024-01-01",
            "--actors",
            "tests.actors.runtime.sample_actors:MeanActor",
            "--run-id",
            "r1",
            "-d",
            str(source_dir),
            "-q",
            "--resume",
            *mode,
        ],
    )
    assert result.exit_code == 2, result.output
    assert "--resume continues an in-process run only" in result.output
    assert not (source_dir / "logs" / "runs").exists()
