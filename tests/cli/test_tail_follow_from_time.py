"""`tape tail --from TIME --follow` on the files: each topic from its first record
stamped at or after TIME, as without --follow (a real follower process)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from pathlib import Path

import msgspec
import pytest

from tests.eventlog.envelopes import NS_PER_DAY, T0, TAPE, envelope
from tickertape.eventlog import EventLog

pytestmark = pytest.mark.slow

LIVE = "md.trade.crypto.AAA"
HISTORY = "md.trade.crypto.BBB"
DAY2 = T0 + NS_PER_DAY


def append(data_dir: Path, items: list[tuple[str, str, int, int]]) -> None:
    """Append (topic, source, source_seq, ts_event) records durably."""
    with EventLog.open(data_dir) as lg:
        res = lg.append(
            [envelope(seq, topic=t, source=src, ts_event=ts) for t, src, seq, ts in items]
        )
        assert all(r.error is None for r in res), res


def ids(lines: list[bytes]) -> list[str]:
    return [msgspec.json.decode(line)["id"] for line in lines]


def test_follow_from_a_time_starts_each_topic_at_that_time(tmp_path: Path) -> None:
    """Records stamped before --from are not printed, whether stored before the follow
    started or appended while it runs, also when a later gseq of another topic is
    stamped after it (they used to be: the follow started at the first gseq at TIME
    and printed everything after it)."""
    data_dir = tmp_path / "data"
    # day 2 on the live topic (gseq 1-3), then an import of day 1 on another (gseq 4-6)
    append(data_dir, [(LIVE, "a", i, DAY2 + i) for i in (1, 2, 3)])
    append(data_dir, [(HISTORY, "b", i, T0 + i) for i in (1, 2, 3)])
    plain = subprocess.run(
        [TAPE, "tail", "--json", "--from", "2024-01-02", "--data-dir", str(data_dir)],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert ids(plain.stdout.splitlines()) == ["a:1", "a:2", "a:3"]
    follower = subprocess.Popen(
        [TAPE, "tail", "--json", "--follow", "--from", "2024-01-02", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    lines: queue.Queue[bytes] = queue.Queue()

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            lines.put(line)

    reader = threading.Thread(target=read, name="follower-stdout", daemon=True)
    reader.start()
    printed: list[bytes] = []
    try:
        printed += [lines.get(timeout=30) for _ in range(3)]
        # while it follows: more history before TIME, then records at or after it
        append(data_dir, [(HISTORY, "b", 4, T0 + 4), (LIVE, "a", 4, DAY2 + 4)])
        append(data_dir, [(HISTORY, "b", 5, DAY2 + 5)])
        while not any(b'"b:5"' in line for line in printed):
            printed.append(lines.get(timeout=30))
    finally:
        follower.send_signal(signal.SIGINT)
        _out, err = follower.communicate(timeout=30)
        reader.join(timeout=10)
    assert follower.returncode == 0, err.decode()
    while not lines.empty():
        printed.append(lines.get())
    assert ids(printed) == ["a:1", "a:2", "a:3", "a:4", "b:5"]
