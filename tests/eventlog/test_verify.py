"""Tests of tickertape.eventlog.verify beside a live writer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog.verify import verify_namespace

from .envelopes import T0, TRADE_TOPIC, day_file, envelopes

_APPENDER = r"""
import sys
from tickertape.eventlog import EventLog
from tests.eventlog.envelopes import envelopes, NS_PER_DAY
envs = envelopes(60000, topics=("md.a.x", "md.b.x", "md.c.x"), step_ns=NS_PER_DAY // 3000)
with EventLog.open(sys.argv[1]) as lg:
    print("open", flush=True)
    for i in range(0, len(envs), 50):
        lg.append(envs[i : i + 50])
"""


@pytest.mark.slow
def test_verify_beside_a_live_writer_reports_nothing(tmp_path: Path) -> None:
    """`verify` run while another process appends finds a healthy log healthy."""
    data_dir = tmp_path / "data"
    root = Path(__file__).resolve().parents[2]
    problems: list[str] = []
    runs = 0
    with subprocess.Popen(
        [sys.executable, "-c", _APPENDER, str(data_dir)], stdout=subprocess.PIPE, cwd=root
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == b"open\n"
        while child.poll() is None or runs == 0:
            report = verify_namespace(data_dir)
            problems += [f"{p.path}:{p.position}: {p.what}" for p in report.problems]
            runs += 1
    assert child.returncode == 0
    assert LogReader(data_dir).head_gseq() == 60000
    assert problems == [], f"{len(problems)} problems in {runs} runs, e.g. {problems[:3]}"


def test_a_torn_last_line_is_in_flight_only_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    """An unterminated last line is 'in flight' beside a live writer and a problem without one."""
    data_dir = tmp_path / "data"
    lg = EventLog.open(data_dir)
    try:
        lg.append(envelopes(10))
        path = day_file(data_dir, TRADE_TOPIC, T0)
        torn = b'{"id":"md:11","topic":"md.tra'  # a write in progress
        with open(path, "ab") as f:
            f.write(torn)
        live = verify_namespace(data_dir)
        assert live.writer_live
        assert live.ok, live.problems
        assert [(p.path, p.position) for p in live.in_flight] == [
            (str(path), path.stat().st_size - len(torn))
        ]
        assert "being written" in live.in_flight[0].what
    finally:
        lg.close()
    offline = verify_namespace(data_dir)
    assert not offline.writer_live
    assert offline.in_flight == []
    assert [p.what for p in offline.problems] == ["torn record at the end"]
