"""A `tape replay` of the market-data actor SIGKILLed in a trade silence, then resumed.

The BTCUSDT trades of the bundled capture lose three minutes (23:58–00:01 UTC), are
imported with ``tape import binance-ws`` and replayed through ``tape actor``'s
market-data actor watching the trade stream for silences over 60 s. The killed run
is snapshotted right after the last trade before the silence, killed while its paced
clock is inside the silence, and resumed: its files equal an uninterrupted run's, with
the silence's two ``md.gap`` (open at the deadline, whole at the resumption) published
once each.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from tickertape.cli.system_commands import hash_namespace
from tickertape.eventlog import LogReader
from tickertape.schemas.market import Gap

REPO = Path(__file__).resolve().parents[3]
CAPTURES = [
    REPO / "data" / "binance-spot-ws-2024-08-08" / f"btcusdt_2024080{day}.gz" for day in (8, 9)
]
TAPE = Path(sys.executable).with_name("tape")
SILENCE_FROM = 1_723_161_480_000_000_000  # 2024-08-08 23:58 UTC
SILENCE_NS = 180_000_000_000
START_NS = SILENCE_FROM - 20_000_000_000  # the replays start 20 s before the silence
RUN = "silence"
CONFIG = """\
trade_patterns = []
silence_patterns = ["md.trade.crypto.*"]
[max_silence_s]
crypto = 60
"""


class _Trade(msgspec.Struct):
    T: int


class _Frame(msgspec.Struct):
    stream: str = ""  # the REST depth snapshot lines have none
    data: msgspec.Raw = msgspec.Raw(b"null")


def _write_capture(path: Path) -> list[int]:
    """The capture's trade lines minus the silence, in one file; returns the trade times."""
    lines: list[bytes] = []
    times: list[int] = []
    for capture in CAPTURES:
        for line in gzip.decompress(capture.read_bytes()).splitlines():
            frame = msgspec.json.decode(line.split(b" ", 1)[1], type=_Frame)
            if not frame.stream.endswith("@trade"):
                continue
            ts = msgspec.json.decode(frame.data, type=_Trade).T * 1_000_000
            if not SILENCE_FROM <= ts < SILENCE_FROM + SILENCE_NS:
                lines.append(line)
                times.append(ts)
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    return times


def _tape(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(TAPE), "--log-level", "warning", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"tape {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _replay_args(data_dir: Path, config: Path, snapshot_every: int, *extra: str) -> list[str]:
    return [
        "replay", "--from", str(START_NS), "--topics", "md.trade.crypto.BTCUSDT",
        "--actors", f"marketdata@{config}", "--run-id", RUN, "--data-dir", str(data_dir),
        "--snapshot-every", str(snapshot_every), "--quiet", *extra,
    ]  # fmt: skip


def _run_files(data_dir: Path) -> dict[str, str]:
    return hash_namespace(data_dir, f"runs/{RUN}")


def _gaps(data_dir: Path) -> list[Gap]:
    reader = LogReader(data_dir, f"runs/{RUN}")
    return [msgspec.json.decode(r.payload, type=Gap) for r in reader.read(["md.gap.>"])]


@pytest.mark.slow
def test_sigkill_inside_a_silence_then_resume_publishes_its_gaps_once(tmp_path: Path) -> None:
    """Snapshot after the last trade before the silence, SIGKILL inside it, resume: the open
    gap and the whole gap, once each."""
    capture = tmp_path / "btcusdt_silenced.gz"
    times = _write_capture(capture)
    config = tmp_path / "marketdata.toml"
    config.write_text(CONFIG, encoding="utf-8")
    # The first snapshot comes after the trades of the 20 s before the silence: every
    # input is a trade and the actor publishes nothing until the gap.
    before = [t for t in times if START_NS <= t < SILENCE_FROM]
    last_before = before[-1]
    snapshot_every = len(before)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for data_dir in (clean, killed):
        _tape("import", "binance-ws", str(capture), "--data-dir", str(data_dir))

    _tape(*_replay_args(clean, config, snapshot_every, "--speed", "max"))
    expected = _run_files(clean)
    opened, gap = _gaps(clean)
    assert (opened.kind, opened.stream, opened.last_seen, opened.next_seen) == (
        "time",
        "trade",
        last_before,
        0,
    )
    assert (gap.kind, gap.stream, gap.last_seen) == ("time", "trade", last_before)
    assert gap.next_seen == min(t for t in times if t >= SILENCE_FROM)

    # Paced at 20x: the silence lasts 9 s of wall time.
    command = [str(TAPE), "--log-level", "warning"]
    command += _replay_args(killed, config, snapshot_every, "--speed", "20")
    running = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    snapshots = killed / "snapshots" / "runs" / RUN / "marketdata"
    deadline = time.monotonic() + 60
    try:
        while not (snapshots.is_dir() and list(snapshots.glob("*.snap"))):
            assert running.poll() is None, "the replay ended before it could be killed"
            assert time.monotonic() < deadline, "no snapshot within 60 s"
            time.sleep(0.02)
        os.kill(running.pid, signal.SIGKILL)
    finally:
        if running.poll() is None:
            running.kill()
        running.wait(timeout=10)
    (snapshot,) = snapshots.glob("*.snap")
    clock_ns = int(snapshot.name.split("-")[0])
    assert clock_ns == last_before, "the snapshot must hold the stream's last trade time"
    assert all(g.next_seen == 0 for g in _gaps(killed)), "killed before the silence ended"

    _tape(*_replay_args(killed, config, snapshot_every, "--speed", "max", "--resume"))
    assert _run_files(killed) == expected
    assert _gaps(killed) == [opened, gap]
