"""The main job, end to end: `tape demo` on the bundled real data, in a fresh directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tickertape.eventlog import LogReader

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs_compares_and_reports(tmp_path: Path) -> None:
    """Import, full in-process replay, distributed window == in-process window, report."""
    tape = str(Path(sys.executable).with_name("tape"))
    env = {**os.environ, "PYTHONASYNCIODEBUG": "", "COLUMNS": "200"}
    done = subprocess.run(
        [tape, "demo", "--data-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=600,
        check=False,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, out[-3000:] + done.stderr.decode()[-3000:]
    assert "byte-identical" in out
    assert "distributed / in one process" in out
    head = LogReader(tmp_path, "main").head_gseq()
    assert head > 300_000
    runs = {p.name for p in (tmp_path / "logs" / "runs").iterdir()}
    assert {f"demo-{head}", f"demo-{head}-to-2024-01-02"} <= runs
    assert list((tmp_path / "reports").glob(f"demo-{head}*.png"))
    # The distributed replay ran the log and the router as processes of their own,
    # stopped once it was done: nothing of the demo is left running.
    spine = (tmp_path / "demo-spine.log").read_text()
    assert "eventlog listening on ws://127.0.0.1:" in spine
    assert "router listening on ws://127.0.0.1:" in spine
    assert "$ tape router --port 0 --log-url ws://127.0.0.1:" in out
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, check=False)
    assert left.stdout == b"", left.stdout

    # Running it again stores nothing twice in the imported log.
    again = subprocess.run(
        [tape, "import", "krx-daily", str(REPO / "data/krx-005930-daily/v1_005930_raw_1985_2018.csv"),
         "--symbol", "005930", "--raw", "--data-dir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr.decode()
    assert LogReader(tmp_path, "main").head_gseq() == head
