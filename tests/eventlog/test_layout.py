"""Tests of tickertape.eventlog.layout: namespace names that would share a directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickertape.errors import ConfigError
from tickertape.eventlog import EventLog, LogReader

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
