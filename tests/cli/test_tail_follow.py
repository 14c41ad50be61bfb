"""`tape tail --follow` as a user runs it: rows as events arrive, Ctrl-C stops it quietly.

Real processes: a router (for ``--router``), `tape append` publishing, and the
follower, whose stdout is read line by line while it runs.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tests.cli.support import connected
from tests.router.support import free_port, kill, tape, trade, wait_port
from tests.system.processes import TAPE, eventually

pytestmark = pytest.mark.slow


class Follower:
    """A running `tape tail ...`; its stdout lines collected by a thread."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONASYNCIODEBUG": ""}
        self.process = subprocess.Popen(
            [str(TAPE), "tail", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="follower-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(raw.decode(errors="replace"))

    def rows_with(self, needles: list[str], timeout: float = 15.0) -> list[str]:
        """Wait for one printed line containing each of ``needles`` (in any order)."""
        found: list[str] = []
        wanted = list(needles)
        while wanted:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no row with {wanted} within {timeout} s") from None
            for needle in wanted:
                if needle in line:
                    found.append(line)
                    wanted.remove(needle)
                    break
        return found

    def stop(self, sig: signal.Signals) -> tuple[int, str]:
        """Send ``sig``; return the exit status and everything written on stderr."""
        self.process.send_signal(sig)
        _, stderr = self.process.communicate(timeout=30)
        self._reader.join(timeout=10)
        return self.process.returncode, stderr.decode(errors="replace")


def _append(data: bytes, *args: str) -> None:
    proc = subprocess.run(
        [str(TAPE), "append", *args], input=data, capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()


def _envelopes(first: int, last: int) -> bytes:
    """md.trade envelopes from source ``md`` with source_seq first..last (trade ids = seq)."""
    return b"".join(msgspec.json.encode(trade("md", i)) + b"\n" for i in range(first, last + 1))


def _trade_id(seq: int) -> str:
    return f'"trade_id":"{seq}"'


@pytest.fixture
def router_url(tmp_path: Path) -> Iterator[str]:
    """A `tape router` process on a free port."""
    port = free_port()
    process = tape("router", "--port", str(port), "--data-dir", str(tmp_path / "router"))
    try:
        wait_port(port)
        yield f"ws://127.0.0.1:{port}"
    finally:
        kill(process, signal.SIGTERM)


def test_follow_through_a_router_prints_rows_as_they_come(router_url: str) -> None:
    """Through a router, each event is printed as a row when it arrives, not held back
    until 200 rows have gathered."""
    _append(_envelopes(1, 3), "--router", router_url, "--identity", "md")
    follower = Follower("md.trade.>", "--router", router_url, "--from", "1", "--follow")
    try:
        follower.rows_with([_trade_id(1), _trade_id(2), _trade_id(3)])
        _append(_envelopes(4, 5), "--router", router_url, "--identity", "md")
        follower.rows_with([_trade_id(4), _trade_id(5)])
    finally:
        follower.stop(signal.SIGINT)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
@pytest.mark.parametrize("output", ["--json", "--table"])
def test_follow_through_a_router_stops_quietly(
    router_url: str, sig: signal.Signals, output: str
) -> None:
    """Ctrl-C (or SIGTERM) on `tape tail --router --follow` exits 0 with nothing on
    stderr (it used to print an "Event loop is closed" traceback)."""
    _append(_envelopes(1, 3), "--router", router_url, "--identity", "md")
    args = ["md.trade.>", "--router", router_url, "--from", "1", "--follow"]
    follower = Follower(*args, *([output] if output == "--json" else []))
    try:
        eventually(connected(router_url, "inspector", subscribed=True), 30, "the subscription")
    finally:
        rc, stderr = follower.stop(sig)
    assert rc in (0, 130)
    assert "Traceback" not in stderr, stderr
    assert "Event loop is closed" not in stderr, stderr
    assert "never awaited" not in stderr, stderr
    assert "destroyed but it is pending" not in stderr, stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_follow_on_files_prints_rows_as_they_come_and_stops_quietly(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """On the files, each appended event is printed as a row within a poll (it used to
    be held until 200 rows had gathered), and Ctrl-C or SIGTERM ends it quietly (exit
    0, at the next poll: the signal no longer lands as a KeyboardInterrupt anywhere in
    the reader, which once left it running)."""
    data_dir = str(tmp_path / "data")
    _append(_envelopes(1, 2), "--data-dir", data_dir)
    follower = Follower("md.trade.>", "--data-dir", data_dir, "--follow")
    try:
        follower.rows_with([_trade_id(1), _trade_id(2)])
        _append(_envelopes(3, 3), "--data-dir", data_dir)
        follower.rows_with([_trade_id(3)])
    finally:
        rc, stderr = follower.stop(sig)
    assert rc == 0
    assert "Traceback" not in stderr, stderr


def test_limit_through_a_router_prints_exactly_that_many(router_url: str) -> None:
    """`--limit N --follow` through a router prints N rows and exits 0 by itself."""
    _append(_envelopes(1, 6), "--router", router_url, "--identity", "md")
    args = ["tail", "--json", "--router", router_url, "--from", "1", "--follow", "--limit", "4"]
    proc = subprocess.run(
        [str(TAPE), *args],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.splitlines()
    assert [msgspec.json.decode(line)["gseq"] for line in lines] == [1, 2, 3, 4]


@pytest.mark.parametrize("bound", ["5", "2023-11-14T22:13:20.000006Z"], ids=["gseq", "time"])
@pytest.mark.parametrize("where", ["files", "router"])
def test_follow_stops_by_itself_at_to(
    tmp_path: Path, router_url: str, where: str, bound: str
) -> None:
    """`--follow --to` prints what the bound admits and exits 0 by itself once a later
    event arrives: at gseq 5 (inclusive), or before the first event stamped at or
    after the time (event n is stamped n µs after 22:13:20, so 1–5 are before it).
    It used to ignore --to and follow forever (and through the router, a gseq bound
    past the head ended it at the head, before the events still to come)."""
    if where == "files":
        place = ["--data-dir", str(tmp_path / "data")]
        publish = place
    else:
        place = ["--router", router_url]
        publish = [*place, "--identity", "md"]
    _append(_envelopes(1, 3), *publish)
    follower = Follower("--json", *place, "--from", "1", "--to", bound, "--follow")
    try:
        follower.rows_with([_trade_id(1), _trade_id(3)])
        _append(_envelopes(4, 8), *publish)
        assert follower.process.wait(timeout=30) == 0
    finally:
        if follower.process.poll() is None:
            follower.stop(signal.SIGTERM)
    follower._reader.join(timeout=10)
    for pipe in (follower.process.stdout, follower.process.stderr):
        assert pipe is not None
        pipe.close()
    rest = []
    while not follower.lines.empty():
        rest.append(msgspec.json.decode(follower.lines.get())["source_seq"])
    assert rest == [4, 5]


def test_follow_on_files_ends_at_a_gseq_bound_that_other_topics_pass(tmp_path: Path) -> None:
    """`--follow --to 5` on the files ends once the log's head has passed gseq 5, even
    when no event of the followed topic is past it (topic A holds gseqs 1–3, topic B
    4–10): it used to wait for an event of A past the bound, forever."""
    data_dir = str(tmp_path / "data")
    a = b"".join(msgspec.json.encode(trade("md", i, "A")) + b"\n" for i in range(1, 4))
    b = b"".join(msgspec.json.encode(trade("md", i, "B")) + b"\n" for i in range(4, 11))
    _append(a + b, "--data-dir", data_dir)
    proc = subprocess.run(
        [str(TAPE), "tail", "md.trade.crypto.A", "--json", "--data-dir", data_dir,
         "--from", "1", "--to", "5", "--follow"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert [msgspec.json.decode(line)["source_seq"] for line in proc.stdout.splitlines()] == [
        1,
        2,
        3,
    ]
