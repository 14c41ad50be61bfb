"""Tests of tickertape.eventlog.layout: namespace names that would share a directory."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tickertape.errors import ConfigError
from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog.layout import write_durably

from .envelopes import envelopes


def test_a_namespace_inside_an_existing_one_is_refused(data_dir: Path) -> None:
    """`runs/x` cannot be opened when `runs` is a namespace: it would be one of its topics."""
    with EventLog.open(data_dir, "runs") as lg:
        lg.append(envelopes(3))
    with pytest.raises(ConfigError, match=r"'runs/x' would be inside namespace 'runs'"):
        EventLog.open(data_dir, "runs/x")
    assert not (data_dir / "logs" / "runs" / "x").exists()
    assert LogReader(data_dir, "runs").topics() == ["md.trade.crypto.BTCUSDT"]


def test_a_namespace_holding_an_existing_one_is_refused(data_dir: Path) -> None:
    """`runs` cannot be opened when `runs/<id>` exists: its directory would be a topic."""
    with EventLog.open(data_dir, "runs/r1") as lg:
        lg.append(envelopes(3))
    with pytest.raises(ConfigError, match=r"'runs' would contain namespace 'runs/r1'"):
        EventLog.open(data_dir, "runs")
    assert not (data_dir / "logs" / "runs" / ".lock").exists()
    assert [r.gseq for r in LogReader(data_dir, "runs/r1").read()] == [1, 2, 3]


def test_sibling_and_similar_namespaces_coexist(data_dir: Path) -> None:
    """Namespaces that are not path prefixes of each other open side by side."""
    names = ["main", "runs/r1", "runs/r2", "runs-r1", "backtest/runs"]
    for name in names:
        with EventLog.open(data_dir, name) as lg:
            lg.append(envelopes(2))
    for name in names:
        assert LogReader(data_dir, name).head_gseq() == 2


_OPEN_AT = r"""
import sys, time
from tickertape.errors import ConfigError
from tickertape.eventlog import EventLog
data_dir, namespace, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start_at - time.time() - 0.02))
while time.time() < start_at:  # both processes leave this loop at the same instant
    pass
try:
    EventLog.open(data_dir, namespace).close()
except ConfigError:
    print("refused", flush=True)
else:
    print("opened", flush=True)
"""


@pytest.mark.slow
def test_colliding_namespaces_created_at_the_same_instant(tmp_path: Path) -> None:
    """Two processes creating `runs` and `runs/x` at once: exactly one of them succeeds,
    every time (the name check and the creation of `.lock` are one step under a flock)."""
    root = Path(__file__).resolve().parents[2]
    for attempt in range(12):
        data_dir = tmp_path / f"data{attempt}"
        data_dir.mkdir()
        start_at = time.time() + 1.0  # past both interpreters' start-up
        children = [
            subprocess.Popen(
                [sys.executable, "-c", _OPEN_AT, str(data_dir), name, repr(start_at)],
                cwd=root,
                stdout=subprocess.PIPE,
            )
            for name in ("runs", "runs/x")
        ]
        outcomes = sorted(child.communicate(timeout=60)[0].decode().strip() for child in children)
        assert outcomes == ["opened", "refused"], f"attempt {attempt}: {outcomes}"
        namespaces = [p.parent for p in (data_dir / "logs").rglob(".lock")]
        assert len(namespaces) == 1, namespaces


def test_write_durably_replaces_the_file_whole(tmp_path: Path) -> None:
    """write_durably replaces the content, leaves no temporary file, creates it with
    the mode asked for and keeps the previous content when the write fails."""
    target = tmp_path / "state.json"
    write_durably(target, b"first", mode=0o600)
    assert target.read_bytes() == b"first"
    assert target.stat().st_mode & 0o777 == 0o600
    write_durably(target, b"second" * 100_000)
    assert target.read_bytes() == b"second" * 100_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    with pytest.raises(FileNotFoundError):
        write_durably(target, b"third", tmp=tmp_path / "missing" / "t.tmp")
    assert target.read_bytes() == b"second" * 100_000
