"""Batched distributed replay: actors that cannot feed one another get many steps at once.

The run's files must be byte-identical to the in-process run's, timer steps included
(a timer between two inputs is a step of its own; a timer set for "now" is a second
step at the same time), also when an actor is SIGKILLed mid-run and with a ``--to``
bound that makes timers fire after the last input.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest

from tests.replay.conftest import KillAt
from tests.replay.test_distributed import REPO, START
from tickertape.actors.runtime.resolution import resolve
from tickertape.cli.system_commands import hash_namespace
from tickertape.eventlog import LogReader
from tickertape.replay import RunSettings, run_in_process
from tickertape.replay.distributed import run_distributed
from tickertape.replay.manifest import SUMMARY_TOPIC
from tickertape.roles import may_publish_into
from tickertape.topics import covers, overlaps

ITEMS = [
    "tests.actors.runtime.sample_actors:MeanActor",
    "tests.replay.batch_actors:TimerEcho",
]


def reference(source_dir: Path, tmp_path: Path, settings: RunSettings) -> dict[str, str]:
    return reference_run(source_dir, tmp_path, settings)[0]


def reference_run(
    source_dir: Path, tmp_path: Path, settings: RunSettings
) -> tuple[dict[str, str], int]:
    """The in-process run's file hashes and step count."""
    ref = tmp_path / "ref"
    shutil.copytree(source_dir, ref)
    result = run_in_process(ref, settings, [resolve(i) for i in ITEMS])
    return hash_namespace(ref, f"runs/{settings.run_id}"), result.steps


def summary(data_dir: Path, run_id: str) -> dict[str, object]:
    (record,) = LogReader(data_dir, f"runs/{run_id}").read([SUMMARY_TOPIC])
    payload: dict[str, object] = msgspec.json.decode(record.payload)
    return payload


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("md.trade.>", "md.*.crypto.BTC", True),
        ("md.bar.>", "md.trade.>", False),
        ("md.*", "md.a.b", False),
        ("md.>", "md", False),
        ("*.x", "y.*", True),
        ("a.b", "a.b", True),
    ],
)
def test_overlaps(a: str, b: str, expected: bool) -> None:
    assert overlaps(a, b) is expected
    assert overlaps(b, a) is expected


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("md.>", "md.trade.*", True),
        ("md.*", "md.>", False),
        ("md.*.x", "md.*.x", True),
        ("md.a.x", "md.*.x", False),
        ("md.>", "md", False),
    ],
)
def test_covers(outer: str, inner: str, expected: bool) -> None:
    assert covers(outer, inner) is expected


def test_which_identities_can_feed_a_subscription() -> None:
    assert may_publish_into("indicators", "indicator.>")
    assert not may_publish_into("indicators", "md.trade.crypto.*")
    assert may_publish_into("strategy.x", "strategy.intent.>")
    assert not may_publish_into("strategy.x", "strategy.intent.y")
    # no built-in role: anything outside the reserved families
    assert not may_publish_into("echo", "md.trade.crypto.*")
    assert may_publish_into("echo", "echo.>")
    assert may_publish_into("echo", ">")


@pytest.mark.slow
async def test_batched_run_equals_in_process(source_dir: Path, tmp_path: Path) -> None:
    settings = RunSettings(run_id="b1", start_ns=START)
    expected, steps = reference_run(source_dir, tmp_path, settings)
    result = await run_distributed(
        source_dir, settings, [resolve(i) for i in ITEMS], ITEMS, cwd=REPO
    )
    assert hash_namespace(source_dir, "runs/b1") == expected
    # 150 input times (two symbols per time) plus the timer steps between them
    inputs = len({r.ts_event for r in LogReader(source_dir, "main").read(["md.>"])})
    assert result.steps == steps > inputs
    assert summary(source_dir, "b1")["steps"] == steps
    echoes = list(LogReader(source_dir, "runs/b1").read(["echo.>"]))
    assert {r.topic for r in echoes} == {"echo.trade", "echo.timer"}


@pytest.mark.slow
async def test_batched_run_with_an_end_bound_fires_the_last_timers(
    source_dir: Path, tmp_path: Path
) -> None:
    # 300 trades 10 ms apart end at START + 2.99 s; --to one second later.
    settings = RunSettings(run_id="b2", start_ns=START, end_ns=START + 4 * 10**9)
    expected = reference(source_dir, tmp_path, settings)
    await run_distributed(source_dir, settings, [resolve(i) for i in ITEMS], ITEMS, cwd=REPO)
    assert hash_namespace(source_dir, "runs/b2") == expected
    last = max(r.ts_event for r in LogReader(source_dir, "runs/b2").read(["echo.timer"]))
    assert last > START + 3 * 10**9


@pytest.mark.slow
async def test_batched_run_survives_a_sigkilled_actor(source_dir: Path, tmp_path: Path) -> None:
    settings = RunSettings(run_id="b3", start_ns=START)
    expected = reference(source_dir, tmp_path, settings)
    hook = KillAt("echo", 100)

    await run_distributed(
        source_dir,
        settings,
        [resolve(i) for i in ITEMS],
        ITEMS,
        cwd=REPO,
        snapshot_every_steps=40,
        on_step=hook,
    )
    assert hook.killed
    assert hook.restarts() == 1
    assert hash_namespace(source_dir, "runs/b3") == expected


@pytest.mark.slow
@pytest.mark.parametrize("batch_steps", [512, 1])
async def test_a_restarted_actor_that_regenerates_other_outputs_is_a_divergence(
    source_dir: Path, batch_steps: int
) -> None:
    """An actor whose outputs depend on its process: after a SIGKILL, the outputs it
    regenerates while catching up differ from the stored ones; each difference becomes a
    critical DIVERGENCE alert before the summary, and the result counts them."""
    items = ["tests.replay.batch_actors:PidEcho"]
    hook = KillAt("pidecho", 100)

    result = await run_distributed(
        source_dir,
        RunSettings(run_id="d1", start_ns=START),
        [resolve(i) for i in items],
        items,
        cwd=REPO,
        snapshot_every_steps=40,
        on_step=hook,
        batch_steps=batch_steps,
    )
    assert hook.killed
    assert result.divergences > 0
    reader = LogReader(source_dir, "runs/d1")
    alerts = [msgspec.json.decode(r.payload) for r in reader.read(["system.alert"])]
    assert len(alerts) == result.divergences
    assert {a["code"] for a in alerts} == {"DIVERGENCE"}
    assert all(a["detail"]["stored"]["source"] == "pidecho" for a in alerts)
    assert summary(source_dir, "d1")["steps"] == result.steps
