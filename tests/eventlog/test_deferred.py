"""Deferred durability (EventLog.append(durable=False), EventLog.sync) and its recovery.

Crashes are real: a child process appends without fsync and is SIGKILLed (or exits
without closing). A power loss, which can drop or damage any page written after the
last fsync in any order, is simulated by truncating, zeroing and garbling the files
past the published HEAD before the next open.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tickertape.errors import CorruptRecordError
from tickertape.eventlog import EventLog, LogReader, writer
from tickertape.eventlog.codec import CodecError, decode_line
from tickertape.eventlog.verify import verify_namespace
from tickertape.schemas.envelope import Envelope

from .envelopes import (
    NS_PER_DAY,
    T0,
    TRADE_TOPIC,
    day_file,
    envelope_json,
    envelopes,
    published_head,
)

QUOTE_TOPIC = "md.quote.crypto.BTCUSDT"
ROOT = Path(__file__).resolve().parents[2]


def check_contiguous(data_dir: Path, envs: list[Envelope], at_least: int) -> int:
    """Reopen: gseq is 1..head, the records are the input's prefix, head ≥ ``at_least``,
    verify is clean. Returns the head."""
    with EventLog.open(data_dir) as lg:
        head = lg.head_gseq
        assert lg.recovery.corrupt == []
    assert head >= at_least
    records = list(LogReader(data_dir).read())
    assert [r.gseq for r in records] == list(range(1, head + 1))
    assert [r.source_seq for r in records] == list(range(1, head + 1))
    for rec in records:
        env = envs[rec.source_seq - 1]
        assert (rec.topic, rec.ts_event, bytes(rec.payload)) == (
            env.topic,
            env.ts_event,
            bytes(env.payload),
        )
    report = verify_namespace(data_dir)
    assert report.ok, report.problems[:5]
    assert report.records == head
    return head


# ------------------------------------------------------------------ the API


def test_unsynced_records_are_visible_to_the_writer_only_until_sync(data_dir: Path) -> None:
    """durable=False writes without publishing; sync() publishes; close() syncs."""
    other = LogReader(data_dir)
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(5))
        res = lg.append(envelopes(10, start_seq=6, start_ns=T0 + 10**6), durable=False)
        assert [r.gseq for r in res] == list(range(6, 16))
        assert (lg.head_gseq, lg.synced_gseq) == (15, 5)
        assert [r.gseq for r in lg.read()] == list(range(1, 16))
        assert other.head_gseq() == 5
        assert [r.gseq for r in other.read()] == list(range(1, 6))
        assert [r.offset for r in other.read_topic(TRADE_TOPIC)] == list(range(5))
        lg.sync()
        assert lg.synced_gseq == 15
        assert [r.gseq for r in other.read()] == list(range(1, 16))
        lg.append(envelopes(3, start_seq=16, start_ns=T0 + 2 * 10**6), durable=False)
        assert other.head_gseq() == 15
    assert [r.gseq for r in other.read()] == list(range(1, 19))
    assert verify_namespace(data_dir).ok


def test_a_durable_append_makes_earlier_unsynced_records_durable(data_dir: Path) -> None:
    """A durable append (even one of duplicates only) syncs what was written before it."""
    with EventLog.open(data_dir) as lg:
        first = envelopes(10)
        lg.append(first, durable=False)
        res = lg.append(first)
        assert all(r.duplicate for r in res)
        assert [r.gseq for r in res] == list(range(1, 11))
        assert lg.synced_gseq == 10
        lg.append(envelopes(4, start_seq=11, start_ns=T0 + 10**6), durable=False)
        lg.append(envelopes(1, start_seq=15, start_ns=T0 + 2 * 10**6))
        assert (lg.head_gseq, lg.synced_gseq) == (15, 15)
        assert LogReader(data_dir).head_gseq() == 15


def test_unsynced_records_never_exceed_max_group(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append that would leave more than MAX_GROUP records unsynced syncs first."""
    monkeypatch.setattr(writer, "MAX_GROUP", 50)
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(30), durable=False)
        assert lg.synced_gseq == 0
        lg.append(envelopes(30, start_seq=31, start_ns=T0 + 10**6), durable=False)
        assert (lg.head_gseq, lg.synced_gseq) == (60, 30)
        lg.append(envelopes(120, start_seq=61, start_ns=T0 + 2 * 10**6), durable=False)
        # groups of 50: a sync before the 2nd and the 3rd group
        assert (lg.head_gseq, lg.synced_gseq) == (180, 160)
        assert LogReader(data_dir).head_gseq() == 160


def test_unsynced_appends_roll_days_and_reopen_cleanly(data_dir: Path) -> None:
    """Day rolls and many topics while unsynced: after close, every file and index is consistent."""
    topics = tuple(f"md.trade.crypto.S{i}" for i in range(12))  # > SYNCFS_THRESHOLD files
    envs = envelopes(3000, topics=topics, step_ns=3 * NS_PER_DAY // 3000)
    with EventLog.open(data_dir) as lg:
        for i in range(0, len(envs), 10):
            lg.append(envs[i : i + 10], durable=False)
            if i % 500 == 0:
                lg.sync()
    assert check_contiguous(data_dir, envs, len(envs)) == len(envs)
    with EventLog.open(data_dir) as lg:
        assert lg.recovery.dropped == []
        assert lg.next_offsets() == dict.fromkeys(sorted(topics), 250)


# ------------------------------------------------- crashes: kill and power loss

_EXIT_UNSYNCED = r"""
import os, sys
from tickertape.eventlog import EventLog
from tests.eventlog.envelopes import envelopes
lg = EventLog.open(sys.argv[1])
topics = ("md.trade.crypto.BTCUSDT", "md.quote.crypto.BTCUSDT")
envs = envelopes(30, topics=topics)
lg.append(envs[:10])
lg.append(envs[10:], durable=False)
os._exit(0)  # no sync, no close: what was written is in the page cache only
"""


@pytest.fixture
def unsynced_crash(tmp_path: Path) -> Path:
    """A log whose writer died with gseq 1–10 synced and 11–30 written without fsync.

    Two topics alternate: the trade topic (A) holds the odd gseqs, the quote topic (B)
    the even ones.
    """
    data_dir = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-c", _EXIT_UNSYNCED, str(data_dir)], cwd=ROOT, check=True, timeout=60
    )
    assert published_head(data_dir) == 10
    return data_dir


def zero_record(path: Path, gseq: int) -> int:
    """Overwrite the record ``gseq`` of a file with zeros (its newline kept); return its position."""
    data = bytearray(path.read_bytes())
    pos = 0
    for line in data.splitlines(keepends=True):
        if decode_line(bytes(line)).gseq == gseq:
            data[pos : pos + len(line) - 1] = bytes(len(line) - 1)
            path.write_bytes(bytes(data))
            return pos
        pos += len(line)
    raise AssertionError(f"gseq {gseq} not in {path}")


def test_a_kill_keeps_every_unsynced_record_and_makes_it_durable(unsynced_crash: Path) -> None:
    """After a kill the page cache still holds the unsynced records: all are kept."""
    with EventLog.open(unsynced_crash) as lg:
        assert lg.head_gseq == 30
        assert lg.recovery.dropped == []
    assert published_head(unsynced_crash) == 30
    assert [r.gseq for r in LogReader(unsynced_crash).read()] == list(range(1, 31))


@pytest.mark.parametrize(
    ("topic", "gseq", "head"),
    [
        (TRADE_TOPIC, 11, 10),  # the first unsynced record lost: nothing past HEAD stays
        (QUOTE_TOPIC, 20, 19),
        (TRADE_TOPIC, 29, 28),
    ],
)
def test_damaged_unsynced_records_are_cut_to_a_contiguous_prefix(
    unsynced_crash: Path, topic: str, gseq: int, head: int
) -> None:
    """Zeros in the middle of the unsynced part (a page not flushed) cut back to contiguous gseq."""
    path = day_file(unsynced_crash, topic, T0)
    pos = zero_record(path, gseq)
    with EventLog.open(unsynced_crash) as lg:
        assert lg.head_gseq == head
        assert lg.recovery.corrupt == []
        assert (lg.recovery.dropped[0].path, lg.recovery.dropped[0].from_pos) == (str(path), pos)
        nxt = lg.append([envelopes(1, start_seq=31, start_ns=T0 + 10**9)[0]])
        assert nxt[0].gseq == head + 1
    assert [r.gseq for r in LogReader(unsynced_crash).read()] == list(range(1, head + 2))
    assert verify_namespace(unsynced_crash).ok


def test_damage_at_or_below_the_published_head_is_corruption_never_cut(
    unsynced_crash: Path,
) -> None:
    """A bad record that may be one fsync'd before HEAD is reported, and nothing is cut."""
    path = day_file(unsynced_crash, TRADE_TOPIC, T0)
    pos = zero_record(path, 9)
    with EventLog.open(unsynced_crash) as lg:
        assert lg.head_gseq == 30
        assert lg.recovery.dropped == []
        assert len(lg.recovery.corrupt) == 1
        assert lg.recovery.corrupt[0].startswith(f"{path}: byte {pos}:")
    with pytest.raises(CorruptRecordError) as err:
        list(LogReader(unsynced_crash).read_topic(TRADE_TOPIC))
    assert (err.value.path, err.value.position) == (str(path), pos)
    report = verify_namespace(unsynced_crash)
    assert [(p.path, p.position) for p in report.problems] == [(str(path), pos)]


_WRITER = r"""
import sys
import msgspec
from tickertape.eventlog import EventLog
from tickertape.schemas.envelope import Envelope
data_dir, input_path, sync_every = sys.argv[1], sys.argv[2], int(sys.argv[3])
dec = msgspec.json.Decoder(Envelope)
with open(input_path, "rb") as f:
    envs = [dec.decode(line) for line in f]
log = EventLog.open(data_dir)
print("open", log.head_gseq, flush=True)
# The input is stored in order, one source: the head is how much of it is stored.
for n, at in enumerate(range(log.head_gseq, len(envs), 10)):
    log.append(envs[at : at + 10], durable=False)
    if n % sync_every == sync_every - 1:
        log.sync()
        print("synced", log.synced_gseq, flush=True)
log.close()
print("done", flush=True)
"""

TOPICS = tuple(f"md.trade.crypto.S{i}" for i in range(5))


def unsynced_start(path: Path, head: int) -> int:
    """Where the records past ``head`` start in an open day file (its size if none)."""
    pos = 0
    with open(path, "rb") as f:
        for line in f:
            try:
                if decode_line(line).gseq > head:
                    break
            except CodecError:
                break
            pos += len(line)
    return pos


def lose_unsynced_pages(data_dir: Path, head: int, rng: random.Random) -> list[str]:
    """Damage each open day file past ``head`` as a power loss could, independently per
    file; return what was done."""
    done: list[str] = []
    for path in sorted((data_dir / "logs" / "main").rglob("*.jsonl")):
        start = unsynced_start(path, head)
        size = path.stat().st_size
        if start >= size:
            continue
        data = bytearray(path.read_bytes())
        kind = rng.choice(["keep", "truncate", "page", "zeros", "garbage"])
        a = rng.randrange(start, size)
        if kind == "truncate":
            del data[a:]
        elif kind == "page":
            # a 4 KiB page never written back (only its bytes past the durable part)
            lo = max(start, a - a % 4096)
            data[lo : a - a % 4096 + 4096] = bytes(len(data[lo : a - a % 4096 + 4096]))
        elif kind == "zeros":
            # the file grew, its last pages were not written back
            data[a:] = bytes(size - a)
        elif kind == "garbage":
            n = min(size - a, rng.randrange(1, 600))
            data[a : a + n] = bytes(rng.randrange(256) for _ in range(n))
        path.write_bytes(bytes(data))
        done.append(f"{path.parent.name}/{path.name}: {kind} at {a} (unsynced from {start})")
    return done


def check_after_lost_pages(
    data_dir: Path, copy: Path, envs: list[Envelope], head: int, rng: random.Random
) -> list[str]:
    """Copy ``data_dir`` to ``copy``, damage the copy as :func:`lose_unsynced_pages` does,
    and :func:`check_contiguous` it (holding at least ``head``); return what was done."""
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(data_dir, copy)
    what = lose_unsynced_pages(copy, head, rng)
    try:
        check_contiguous(copy, envs, head)
    except AssertionError as exc:
        raise AssertionError(f"after {what}: {exc}") from exc
    return what


@pytest.mark.slow
def test_writer_killed_while_appending_unsynced_then_pages_lost(tmp_path: Path) -> None:
    """SIGKILL during durable=False appends, then unsynced pages lost or damaged in any
    order: reopen gives a contiguous, verified log holding at least everything synced."""
    rng = random.Random(31)
    data_dir = tmp_path / "data"
    input_path = tmp_path / "input.jsonl"
    envs = envelopes(20_000, topics=TOPICS, step_ns=3 * NS_PER_DAY // 20_000)
    input_path.write_bytes(b"".join(envelope_json(e) for e in envs))
    kills = 0
    damaged = 0
    for _round in range(6):
        with subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(data_dir), str(input_path), "7"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline().startswith(b"open")
            # Kill after a random number of syncs and a little more (a random time let a
            # fast writer finish the input before most kills).
            seen = [child.stdout.readline() for _ in range(rng.randrange(1, 40))]
            time.sleep(rng.uniform(0, 0.01))
            child.send_signal(signal.SIGKILL)
            out = b"".join(seen).decode() + child.stdout.read().decode()
            child.wait()
        kills += child.returncode == -signal.SIGKILL
        # a line cut by the kill understates what was synced: safe
        synced = max((int(m) for m in re.findall(r"^synced (\d+)$", out, re.M)), default=0)
        head = published_head(data_dir)
        assert head >= synced
        for variant in range(4):
            what = check_after_lost_pages(data_dir, tmp_path / f"copy{variant}", envs, head, rng)
            damaged += any("keep" not in w for w in what)
        check_contiguous(data_dir, envs, head)  # the kill alone loses nothing written
    assert kills >= 4, "the writer finished before most kills: make the input larger"
    assert damaged >= 10
    proc = subprocess.run(
        [sys.executable, "-c", _WRITER, str(data_dir), str(input_path), "7"],
        capture_output=True,
        check=True,
        timeout=300,
    )
    assert proc.stdout.endswith(b"done\n")
    assert check_contiguous(data_dir, envs, len(envs)) == len(envs)
