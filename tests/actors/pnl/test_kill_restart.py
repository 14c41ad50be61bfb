"""SIGKILL the risk, orders and pnl processes of a distributed replay: same final PnL.

Everything goes through the command line, as a user would run it: ``tape import`` of a
day of the bundled CME 6E bars, ``tape replay --in-process`` for the reference, and
``tape replay --distributed`` (a router and one supervised process per actor) for the
run whose actor processes are killed, one after another at different points of the
run, found by their command lines in ``/proc``. The supervisor restarts each one from
its newest snapshot; the run's files, ``pnl.update`` included, must be the reference's
byte for byte. The chain trades 6E contracts (the examples' instrument specifications:
125,000 EUR per contract, margined), so the snapshots carry contract multipliers and
the margined futures books of the gate and the pnl actor.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.actors.orders.harness import REPO, write_6e_csv
from tickertape.cli.system_commands import hash_namespace
from tickertape.eventlog import LogReader

TAPE = Path(sys.executable).with_name("tape")
RUN = "kill"
WINDOW = ("2024-01-02T00:00:00", "2024-01-02T10:00:00")
KILLS = (("risk", 0.25), ("orders", 0.5), ("pnl", 0.75))
"""Each actor is killed once the run namespace holds this share of its final events."""


def write_configs(directory: Path) -> str:
    """Configuration files of the chain; returns the ``--actors`` argument."""
    instruments = (REPO / "examples" / "actors" / "orders.toml").read_text(encoding="utf-8")
    (directory / "risk.toml").write_text(
        f'limits_file = "{REPO / "examples" / "risk.toml"}"\n'
        + (REPO / "examples" / "actors" / "risk.toml").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    (directory / "orders.toml").write_text(
        'bar_intervals = ["1m"]\n'
        "[markets.us]\nparticipation_rate = 0.5\n[markets.us.latency]\nbase_ns = 40_000_000\n"
        "jitter_ns = 20_000_000\n" + instruments,
        encoding="utf-8",
    )
    (directory / "pnl.toml").write_text(
        "update_interval_ns = 300_000_000_000\n"
        + (REPO / "examples" / "actors" / "pnl.toml").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    strategy = REPO / "examples" / "strategies" / "sma_cross.toml"
    return ",".join(
        [
            f"examples.strategies.sma_cross:SmaCross@{strategy}",
            f"risk@{directory / 'risk.toml'}",
            f"orders@{directory / 'orders.toml'}",
            f"pnl@{directory / 'pnl.toml'}",
        ]
    )


def tape(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(TAPE), "--log-level", "warning", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"tape {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def import_day(data_dir: Path) -> None:
    """Import the bundled 6E bars of 2024-01-01/02 (a day and a half) with ``tape import``."""
    short = write_6e_csv(data_dir.parent / "6EH4-short.csv", "2024-01-02 12:00:00")
    tape(
        "import", "ohlcv-csv", str(short), "--market", "us", "--symbol", "6EH4",
        "--interval", "1m", "--stamp", "end", "--data-dir", str(data_dir),
    )  # fmt: skip


def replay_args(data_dir: Path, actors: str, mode: str) -> list[str]:
    return [
        "replay", "--from", WINDOW[0], "--to", WINDOW[1], "--actors", actors,
        "--run-id", RUN, "--data-dir", str(data_dir), "--snapshot-every", "5000",
        "--quiet", mode,
    ]  # fmt: skip


def run_files(data_dir: Path) -> dict[str, str]:
    return hash_namespace(data_dir, f"runs/{RUN}")


def actor_pids(parent: int) -> dict[str, int]:
    """Actor name → pid of the live ``tape actor NAME`` children of ``parent``."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = [a.decode() for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue  # exited meanwhile
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) != parent or fields[0] == "Z" or "actor" not in argv:
            continue
        target = argv[argv.index("actor") + 1]
        found[target] = int(entry.name)
    return found


@pytest.mark.slow
def test_killing_risk_orders_and_pnl_gives_the_uninterrupted_pnl(tmp_path: Path) -> None:
    """SIGKILL risk, orders and pnl mid-run, each at another point: run files byte-identical."""
    reference = tmp_path / "reference"
    import_day(reference)
    actors = write_configs(tmp_path)
    killed_dir = tmp_path / "killed"
    shutil.copytree(reference, killed_dir)

    tape(*replay_args(reference, actors, "--in-process"))
    expected = run_files(reference)
    total = LogReader(reference, f"runs/{RUN}").head_gseq()
    fills = [t for t in expected if t.startswith(("order.filled", "order.partially_filled"))]
    assert fills, "the window must trade for the test to mean anything"
    filled = next(LogReader(reference, f"runs/{RUN}").read(["order.filled.>"]))
    assert b'"multiplier":125000.0' in bytes(filled.payload)
    assert any(t.startswith("pnl.update.sma") for t in expected)

    stderr = tmp_path / "distributed.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [str(TAPE), "--log-level", "info", *replay_args(killed_dir, actors, "--distributed")],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    reader = LogReader(killed_dir, f"runs/{RUN}")
    killed: dict[str, tuple[int, int]] = {}  # name → (pid, run head gseq when killed)
    restarted: dict[str, int] = {}
    deadline = time.monotonic() + 180
    try:
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the distributed replay did not finish"
            pids = actor_pids(proc.pid)
            head = reader.head_gseq() if reader.dir.exists() else 0
            for name, pid in pids.items():
                if name in killed and pid != killed[name][0]:
                    restarted.setdefault(name, pid)
            for name, share in KILLS:
                if name not in killed and name in pids and head >= share * total:
                    os.kill(pids[name], signal.SIGKILL)
                    killed[name] = (pids[name], head)
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log = stderr.read_text()
    assert proc.returncode == 0, log[-4000:]
    assert sorted(killed) == ["orders", "pnl", "risk"], killed
    for name, (_, head) in killed.items():
        assert head < total, f"{name} was killed after the run's last event"
    assert sorted(restarted) == ["orders", "pnl", "risk"], restarted
    assert run_files(killed_dir) == expected
