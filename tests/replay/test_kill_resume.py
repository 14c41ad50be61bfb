"""A `tape replay` process killed with SIGKILL mid-run, then resumed: the same files.

The in-process replay appends its run namespace without an fsync per wave and syncs
before each snapshot, so a kill can lose the tail written after the last sync; the
resumed run regenerates it from the snapshots (docs/replay.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.replay.conftest import write_source
from tickertape.cli.system_commands import hash_namespace
from tickertape.eventlog import LogReader

REPO = Path(__file__).resolve().parents[2]
ACTORS = (
    "tests.actors.runtime.sample_actors:MeanActor,tests.actors.runtime.sample_actors:SignalActor"
)
FROM = "2024-01-01"


def replay(
    data_dir: Path, *extra: str
) -> subprocess.CompletedProcess[bytes] | subprocess.Popen[bytes]:
    command = [
        str(Path(sys.executable).with_name("tape")),
        "--log-level",
        "warning",
        "replay",
        "--from",
        FROM,
        "--in-process",
        "--actors",
        ACTORS,
        "--run-id",
        "r1",
        "--data-dir",
        str(data_dir),
        "--snapshot-every",
        "500",
        *extra,
    ]
    env = {**os.environ, "PYTHONASYNCIODEBUG": "", "PYTHONPATH": str(REPO)}
    if "--speed" in extra and extra[extra.index("--speed") + 1] == "max":
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, timeout=120)
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def test_sigkill_mid_replay_then_resume_gives_the_clean_files(tmp_path: Path) -> None:
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    for d in (clean, crashed):
        write_source(d, n=6_000)  # 60 s of simulated trades, 10 ms apart
    done = replay(clean, "--speed", "max")
    assert isinstance(done, subprocess.CompletedProcess)
    assert done.returncode == 0, done.stderr.decode()

    # Paced at 20x: about 3 s of wall time, killed once snapshots exist.
    running = replay(crashed, "--speed", "20")
    assert isinstance(running, subprocess.Popen)
    snapshots = crashed / "snapshots" / "runs" / "r1" / "indicators"
    deadline = time.monotonic() + 60
    while not (snapshots.is_dir() and len(list(snapshots.glob("*.snap"))) >= 2):
        assert running.poll() is None, "the replay ended before it could be killed"
        assert time.monotonic() < deadline, "no snapshots within 60 s"
        time.sleep(0.05)
    running.send_signal(signal.SIGKILL)
    running.wait(timeout=10)
    stored = LogReader(crashed, "runs/r1").head_gseq()
    assert 0 < stored < LogReader(clean, "runs/r1").head_gseq()

    resumed = replay(crashed, "--speed", "max", "--resume")
    assert isinstance(resumed, subprocess.CompletedProcess)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert hash_namespace(crashed, "runs/r1") == hash_namespace(clean, "runs/r1")
