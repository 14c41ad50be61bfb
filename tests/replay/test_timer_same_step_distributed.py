"""Timers touched in the step they fall due, and timers set for "now" in the last step,
in a distributed replay: the actors fire their own timers (step by step, or their own
timer steps in batches), and the run's files must be the in-process run's, byte for
byte (the actors and the expected firings: tests/timeauthority/test_timer_same_step.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest

from tests.replay.conftest import write_source
from tests.replay.test_distributed import REPO
from tests.timeauthority.test_timer_same_step import ACTORS, FIRED, MS, START, TRADES
from tickertape.actors.runtime.resolution import resolve
from tickertape.cli.system_commands import hash_namespace
from tickertape.eventlog import LogReader
from tickertape.replay import RunSettings, run_in_process
from tickertape.replay.distributed import run_distributed

ITEMS = [f"tests.timeauthority.test_timer_same_step:{cls.__name__}" for cls in ACTORS]


def fired(data_dir: Path, run_id: str) -> dict[str, list[tuple[str, int]]]:
    """Each actor's timer firings as stored: (name, ms after START), in firing order."""
    out: dict[str, list[tuple[str, int]]] = {}
    for record in LogReader(data_dir, f"runs/{run_id}").read(["echo.>"]):
        value = msgspec.json.decode(record.payload)
        out.setdefault(record.source, []).append((value["symbol"], (value["bar_ts"] - START) // MS))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("batch_steps", [512, 1], ids=["batches", "steps"])
async def test_same_step_timers_and_last_now_timers_fire_as_in_process(
    tmp_path: Path, batch_steps: int
) -> None:
    """A timer cancelled or replaced by a handler earlier in its step does not fire from
    its old arming, and a timer set for "now" in the last input step fires (no --to),
    in batches and step by step alike: the same files as in-process."""
    data = tmp_path / "data"
    write_source(data, TRADES)
    settings = RunSettings(run_id="t1", start_ns=START)
    ref = tmp_path / "ref"
    shutil.copytree(data, ref)
    reference = run_in_process(ref, settings, [resolve(i) for i in ITEMS])
    assert fired(ref, "t1") == FIRED

    result = await run_distributed(
        data, settings, [resolve(i) for i in ITEMS], ITEMS, cwd=REPO, batch_steps=batch_steps
    )
    assert fired(data, "t1") == FIRED
    assert result.steps == reference.steps
    assert hash_namespace(data, "runs/t1") == hash_namespace(ref, "runs/t1")
