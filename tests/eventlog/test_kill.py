"""SIGKILL fault tests: a real writer process killed at random moments, then restarted."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog.verify import verify_namespace
from tickertape.schemas.envelope import Envelope, Record

from .envelopes import NS_PER_DAY, TAPE, envelope_json, envelopes, verify_clean

pytestmark = pytest.mark.slow

TOPICS = tuple(f"md.trade.crypto.S{i}" for i in range(8))
KILLS = 20

_WRITER = r"""
import sys, time
import msgspec
from tickertape.eventlog import EventLog, writer
from tickertape.schemas.envelope import Envelope

writer.MAX_OPEN_FILES = 4  # more topics than open files: exercise closing and reopening
data_dir, input_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
dec = msgspec.json.Decoder(Envelope)
with open(input_path, "rb") as f:
    envs = [dec.decode(line) for line in f]
log = EventLog.open(data_dir)
print("open", log.head_gseq, flush=True)
for i in range(0, len(envs), batch):
    chunk = envs[i : i + batch]
    results = log.append(chunk)
    assert all(r.error is None for r in results), results
    print("ack", chunk[-1].source_seq, max(r.gseq for r in results), flush=True)
    time.sleep(0.001)
log.close()
print("done", flush=True)
"""


def write_input(path: Path, count: int) -> list[Envelope]:
    """Write ``count`` envelopes over three topics as JSON lines; return them."""
    # about five UTC days: kills also land on day rolls
    envs = envelopes(count, topics=TOPICS, step_ns=5 * NS_PER_DAY // count)
    path.write_bytes(b"".join(envelope_json(e) for e in envs))
    return envs


def check_log(data_dir: Path, envs: list[Envelope], acknowledged: int) -> list[Record]:
    """Recover, then check: every acknowledged envelope stored once, nothing partial, positions contiguous."""
    # Before any recovery, a reader sees only committed records: a gseq prefix with every ack.
    seen = [r.gseq for r in LogReader(data_dir).read()]
    assert seen == list(range(1, len(seen) + 1))
    assert len(seen) >= acknowledged
    with EventLog.open(data_dir) as lg:
        head = lg.head_gseq
    records = list(LogReader(data_dir).read())
    seqs = [r.source_seq for r in records]
    # Appends are in input order, so what is stored is exactly a prefix of the input.
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= acknowledged
    assert [r.gseq for r in records] == list(range(1, head + 1))
    for topic in TOPICS:
        offsets = [r.offset for r in records if r.topic == topic]
        assert offsets == list(range(len(offsets)))
    for rec in records:
        env = envs[rec.source_seq - 1]
        assert msgspec.structs.asdict(env) | {"payload": bytes(env.payload)} == {
            f: getattr(rec, f) if f != "payload" else bytes(rec.payload)
            for f in Envelope.__struct_fields__
        }
    report = verify_namespace(data_dir)
    assert report.ok, report.problems
    return records


def test_writer_killed_20_times_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """A writer SIGKILLed 20 times while appending keeps every acknowledged record exactly once."""
    rng = random.Random(20240101)
    data_dir = tmp_path / "data"
    input_path = tmp_path / "input.jsonl"
    envs = write_input(input_path, 6000)
    acknowledged = 0
    kills = 0
    for _ in range(KILLS):
        with subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(data_dir), str(input_path), "40"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline().startswith(b"open")
            time.sleep(rng.uniform(0.0, 0.25))
            child.send_signal(signal.SIGKILL)
            out = child.stdout.read().decode()
            child.wait()
        kills += child.returncode == -signal.SIGKILL
        for line in out.splitlines():
            if line.startswith("ack"):
                acknowledged = max(acknowledged, int(line.split()[1]))
        check_log(data_dir, envs, acknowledged)
    assert kills >= KILLS // 2, "the writer finished before most kills: make the input larger"
    proc = subprocess.run(
        [sys.executable, "-c", _WRITER, str(data_dir), str(input_path), "500"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    assert proc.stdout.endswith(b"done\n")
    records = check_log(data_dir, envs, len(envs))
    assert len(records) == len(envs)
    verify_clean(data_dir)


def test_tape_append_killed_and_rerun_stores_everything_once(tmp_path: Path) -> None:
    """`tape append` killed at random moments and re-run on the same input stores each envelope once."""
    rng = random.Random(7)
    data_dir = tmp_path / "data"
    input_path = tmp_path / "input.jsonl"
    envs = write_input(input_path, 40000)
    cmd = [TAPE, "append", "--batch", "200", "--data-dir", str(data_dir)]
    kills = 0
    for _ in range(KILLS):
        with (
            open(input_path, "rb") as stdin,
            subprocess.Popen(
                cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            ) as child,
        ):
            # Re-runs skip what is stored quickly: kill early enough to land mid-run.
            time.sleep(rng.uniform(0.2, 0.9))
            child.send_signal(signal.SIGKILL)
            child.wait()
        kills += child.returncode == -signal.SIGKILL
        check_log(data_dir, envs, 0)
    assert kills >= KILLS // 2
    with open(input_path, "rb") as stdin:
        proc = subprocess.run(cmd, stdin=stdin, capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"refused 0" in proc.stderr
    records = check_log(data_dir, envs, len(envs))
    assert len(records) == len(envs)
    verify_clean(data_dir)


_COMPACT = r"""
import sys
from tickertape.eventlog import EventLog
from tickertape.eventlog.sealing import compact
log = EventLog.open(sys.argv[1])
print("open", flush=True)
compact(log, include_open=True)
log.close()
print("done", flush=True)
"""


def test_compaction_killed_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    """Sealing killed at random moments leaves every record readable exactly once after reopen."""
    rng = random.Random(11)
    data_dir = tmp_path / "data"
    input_path = tmp_path / "input.jsonl"
    envs = write_input(input_path, 30_000)
    with EventLog.open(data_dir) as lg:
        lg.append(envs)
    total = len(list(data_dir.rglob("*.jsonl")))
    progress: list[int] = []
    for _ in range(KILLS):
        with subprocess.Popen(
            [sys.executable, "-c", _COMPACT, str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline() == b"open\n"
            time.sleep(rng.uniform(0.0, 0.15))
            child.send_signal(signal.SIGKILL)
            child.stdout.read()
            child.wait()
        records = check_log(data_dir, envs, len(envs))
        assert len(records) == len(envs)
        assert list(data_dir.rglob("*.tmp")) == []
        progress.append(len(list(data_dir.rglob("*.jsonl.zst"))))
        if progress[-1] == total:
            break
    # the kills landed between seals of different files, not only before or after all of them
    assert any(0 < n < total for n in progress), progress
    verify_clean(data_dir)
