"""Opening a namespace for writing (``EventLog.open``) when it holds many open day files.

Builds, in a temporary directory, a namespace of daily bars (``md.bar.1d.us.S<k>``):
``--topics`` topics with one record per UTC day each, so ``files / topics`` days per
topic, every day file left open (``.jsonl``, not sealed) as an import of daily history
leaves them. Then times ``EventLog.open`` (recovery included; the close that follows is
not timed) in two states:

- ``clean``: the last writer closed normally (every open day's ``.idx`` saved);
- ``killed``: the last writer appended one more day durably and was SIGKILLed before
  closing, so each topic's newest day has records its saved index does not describe.

Prints a table (median of ``--repeat`` opens per row). Each ``killed`` open starts from
a fresh copy of the killed state (the copy is not timed); the ``clean`` opens reopen
the same directory (a clean open and close leave it as it was). Run:
``python benchmarks/bench_log_open.py`` (``--files 1000 5000 --topics 10``);
``PYTHONPATH=<other checkout>/src`` measures another version of the log alike. The
machine is shared: compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tickertape.eventlog import EventLog
from tickertape.eventlog.layout import NS_PER_DAY
from tickertape.schemas import Envelope, encode_payload
from tickertape.schemas.market import Bar

DAY0 = 16_071  # 2014-01-01 (UTC day number)


def bar_envelope(topic_no: int, day: int, seq: int) -> Envelope:
    """The daily bar of ``S<topic_no>`` for UTC day ``day`` (ts_event: the day's last ns)."""
    symbol = f"S{topic_no}"
    close_ns = (day + 1) * NS_PER_DAY - 1
    bar = Bar(
        symbol=symbol,
        interval="1d",
        open=100.0 + day % 7,
        high=101.0 + day % 7,
        low=99.0 + day % 7,
        close=100.5 + day % 7,
        volume=1_000_000.0 + day,
        start_ns=day * NS_PER_DAY,
    )
    return Envelope(
        id=f"bars:{seq}",
        topic=f"md.bar.1d.us.{symbol}",
        type="md.bar",
        v=1,
        market="us",
        ts_event=close_ns,
        ts_init=close_ns,
        source="bars",
        source_seq=seq,
        payload=encode_payload(bar),
    )


def build(data_dir: Path, topics: int, days: int) -> None:
    """``topics`` × ``days`` daily bars, appended day by day, closed cleanly."""
    seq = 0
    with EventLog.open(data_dir) as log:
        for day in range(DAY0, DAY0 + days):
            batch = []
            for k in range(topics):
                seq += 1
                batch.append(bar_envelope(k, day, seq))
            log.append(batch, durable=False)
        log.sync()


_KILLED_WRITER = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[4])
from bench_log_open import bar_envelope
from tickertape.eventlog import EventLog
topics, day = int(sys.argv[2]), int(sys.argv[3])
log = EventLog.open(sys.argv[1])
seq = log.last_source_seq("bars")
log.append([bar_envelope(k, day, seq + 1 + k) for k in range(topics)])
os.kill(os.getpid(), signal.SIGKILL)
"""


def kill_after_append(data_dir: Path, topics: int, day: int) -> None:
    """A writer process appends one more day (durably) and is SIGKILLed before closing."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILLED_WRITER,
            str(data_dir),
            str(topics),
            str(day),
            str(Path(__file__).resolve().parent),
        ],
        check=False,
        timeout=600,
    )
    if proc.returncode != -signal.SIGKILL:
        raise SystemExit(f"the killed writer exited with {proc.returncode}")


def time_open(data_dir: Path) -> float:
    """Seconds spent in ``EventLog.open`` (the close after it is not timed)."""
    t = time.perf_counter()
    log = EventLog.open(data_dir)
    spent = time.perf_counter() - t
    log.close()
    return spent


def count_day_files(data_dir: Path) -> int:
    """Open and sealed day files of the namespace ``main``."""
    root = data_dir / "logs" / "main"
    return sum(
        1
        for _dir, _subdirs, names in os.walk(root)
        for n in names
        if n.endswith((".jsonl", ".zst"))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, nargs="+", default=[1_000, 5_000, 20_000])
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    table = Table(
        title=(
            f"EventLog.open of a namespace of daily bars, {args.topics} topics, "
            f"median of {args.repeat}"
        )
    )
    for col in ("day files", "state", "open (s)", "per file (µs)"):
        table.add_column(col, justify="left" if col == "state" else "right")
    for files in args.files:
        days = max(1, files // args.topics)
        with tempfile.TemporaryDirectory() as tmp:
            clean = Path(tmp) / "clean"
            build(clean, args.topics, days)
            killed = Path(tmp) / "killed"
            shutil.copytree(clean, killed)
            kill_after_append(killed, args.topics, DAY0 + days)
            for state, template in (("clean", clean), ("killed", killed)):
                n = count_day_files(template)
                times = []
                for _ in range(args.repeat):
                    if state == "clean":  # (a clean open and close leave it clean)
                        times.append(time_open(template))
                        continue
                    work = Path(tmp) / "work"
                    shutil.rmtree(work, ignore_errors=True)
                    shutil.copytree(template, work)
                    times.append(time_open(work))
                median = statistics.median(times)
                table.add_row(f"{n:,}", state, f"{median:.3f}", f"{median / n * 1e6:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
