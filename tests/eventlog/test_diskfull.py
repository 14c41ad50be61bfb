"""Disk full, for real: RLIMIT_FSIZE in a child process, and ENOSPC on a small tmpfs."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog.verify import verify_namespace

from .envelopes import T0, envelope_json, envelopes, snapshot_bytes, verify_clean

TOPIC_A = "md.trade.crypto.BTCUSDT"
TOPIC_B = "md.quote.crypto.BTCUSDT"
TOPIC_NEW = "md.trade.us.AAPL"

_CHILD = r"""
import json, sys
import msgspec
from tickertape.errors import DiskFullError
from tickertape.eventlog import EventLog
from tickertape.schemas.envelope import Envelope

data_dir, big_path, small_path = sys.argv[1:4]
dec = msgspec.json.Decoder(Envelope)
big = [dec.decode(x) for x in open(big_path, "rb")]
small = [dec.decode(x) for x in open(small_path, "rb")]
log = EventLog.open(data_dir)
head = log.head_gseq
try:
    log.append(big)
except DiskFullError as exc:
    out = {"error": type(exc).__name__, "message": str(exc), "path": exc.path,
           "head_before": head, "head_after": log.head_gseq}
else:
    out = {"error": None}
res = log.append(small) if small else []
out["small"] = [[r.gseq, r.error] for r in res]
log.close()
print(json.dumps(out), flush=True)
"""


def write_jsonl(path: Path, envs: list[object]) -> Path:
    path.write_bytes(b"".join(envelope_json(e) for e in envs))  # type: ignore[arg-type]
    return path


def run_child(
    data_dir: Path, big: Path, small: Path, fsize: int | None = None
) -> dict[str, object]:
    """Run the appending child, with RLIMIT_FSIZE = ``fsize`` bytes when given."""

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data_dir), str(big), str(small)],
        capture_output=True,
        preexec_fn=limit,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def seed_log(data_dir: Path) -> None:
    """Topic A small, topic B larger: 30 records."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(5, topics=(TOPIC_A,)))
        lg.append(envelopes(25, topics=(TOPIC_B,), start_seq=6))


def largest_file(data_dir: Path) -> int:
    return max(p.stat().st_size for p in (data_dir / "logs").rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "topics",
    [(TOPIC_B,), (TOPIC_A, TOPIC_B), (TOPIC_NEW, TOPIC_A, TOPIC_B)],
    ids=["one_topic", "two_topics", "new_topic_file"],
)
def test_file_size_limit_refuses_the_batch_and_leaves_files_unchanged(
    tmp_path: Path, data_dir: Path, topics: tuple[str, ...]
) -> None:
    """Past RLIMIT_FSIZE the append raises DiskFullError, every file is byte-identical to before, and the log goes on."""
    seed_log(data_dir)
    before = snapshot_bytes(data_dir)
    head = LogReader(data_dir).head_gseq()
    big = write_jsonl(
        tmp_path / "big.jsonl", envelopes(60, topics=topics, start_seq=100, start_ns=T0 + 10**6)
    )
    small = write_jsonl(
        tmp_path / "small.jsonl",
        envelopes(1, topics=(TOPIC_A,), start_seq=1000, start_ns=T0 + 10**7),
    )
    out = run_child(data_dir, big, small, fsize=largest_file(data_dir) + 200)
    assert out["error"] == "DiskFullError"
    assert "no space left" in str(out["message"])
    assert "nothing of the batch was stored" in str(out["message"])
    assert out["head_before"] == out["head_after"] == head
    # the log stays usable: a small append that fits is stored right after
    assert out["small"] == [[head + 1, None]]
    after = snapshot_bytes(data_dir)
    a_file = next(k for k in after if k.startswith(TOPIC_A))
    assert after[a_file].startswith(before[a_file])
    for name, content in before.items():
        if name != a_file:
            assert after[name] == content, name
    assert set(after) == set(before)
    with EventLog.open(data_dir) as lg:
        assert lg.recovery.dropped == []
        assert lg.head_gseq == head + 1
    verify_clean(data_dir)


def test_failed_append_then_retry_without_limit_stores_everything(
    tmp_path: Path, data_dir: Path
) -> None:
    """After DiskFullError the producer retries the same batch once space is back: stored once."""
    seed_log(data_dir)
    envs = envelopes(60, topics=(TOPIC_A, TOPIC_B), start_seq=100, start_ns=T0 + 10**6)
    big = write_jsonl(tmp_path / "big.jsonl", envs)
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    assert run_child(data_dir, big, empty, fsize=largest_file(data_dir) + 200)["error"]
    assert run_child(data_dir, big, empty)["error"] is None
    records = list(LogReader(data_dir).read())
    assert [r.source_seq for r in records][30:] == [e.source_seq for e in envs]
    assert verify_namespace(data_dir).ok


_RETRY_IN_PROCESS = r"""
import json, resource, sys
from tickertape.errors import DiskFullError
from tickertape.eventlog import EventLog
from tests.eventlog.envelopes import T0, envelopes

log = EventLog.open(sys.argv[1])
topics = ("md.trade.crypto.BTCUSDT", "md.quote.crypto.BTCUSDT")
batch = envelopes(60, topics=topics, start_seq=100, start_ns=T0 + 10**6)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), hard))
try:
    log.append(batch)
    refused = False
except DiskFullError:
    refused = True
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
# another source takes the gseq the refused group had
log.append(envelopes(1, topics=topics, source="other", start_ns=T0 + 10**6))
stored = log.append(batch)
again = log.append(batch)
log.close()
print(json.dumps({
    "refused": refused,
    "stored": [[r.gseq, r.duplicate] for r in stored],
    "again": [[r.gseq, r.duplicate] for r in again],
}))
"""


def test_a_refused_group_retried_in_the_same_process_is_stored_once(data_dir: Path) -> None:
    """The dedupe state forgets a group refused for lack of space: the same batch retried
    in the same process is stored (not taken for duplicates), then deduplicated."""
    seed_log(data_dir)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _RETRY_IN_PROCESS, str(data_dir), str(largest_file(data_dir) + 200)],
        cwd=root,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert out["refused"] is True
    assert out["stored"] == [[32 + i, False] for i in range(60)]
    assert out["again"] == [[32 + i, True] for i in range(60)]
    assert [r.source_seq for r in LogReader(data_dir).read()][31:] == list(range(100, 160))
    verify_clean(data_dir)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for the test (skipped when mounting is not permitted)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_enospc_on_a_full_tmpfs(tmpfs: Path, tmp_path: Path) -> None:
    """On a full filesystem the append raises DiskFullError and what was stored stays intact."""
    data_dir = tmpfs / "data"
    seed_log(data_dir)
    before = snapshot_bytes(data_dir)
    head = LogReader(data_dir).head_gseq()
    # fill the filesystem, leaving a few KiB
    filler = tmpfs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(filler.stat().st_size - 8192, 0))
    big = write_jsonl(
        tmp_path / "big.jsonl",
        envelopes(200, topics=(TOPIC_A, TOPIC_B), start_seq=100, start_ns=T0 + 10**6),
    )
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    out = run_child(data_dir, big, empty)
    assert out["error"] == "DiskFullError"
    assert out["head_after"] == head
    assert snapshot_bytes(data_dir) == before
    filler.unlink()
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == head
        assert lg.recovery.dropped == []
    assert verify_namespace(data_dir).ok
    out = run_child(data_dir, big, empty)
    assert out["error"] is None
    assert LogReader(data_dir).head_gseq() == head + 200
    assert verify_namespace(data_dir).ok


_ASYNC_CHILD = r"""
import asyncio, json, sys
import msgspec
from tickertape.errors import DiskFullError
from tickertape.eventlog import AsyncEventLog
from tickertape.schemas.envelope import Envelope

data_dir, big_path, small_path = sys.argv[1:4]
dec = msgspec.json.Decoder(Envelope)
big = [dec.decode(x) for x in open(big_path, "rb")]
small = [dec.decode(x) for x in open(small_path, "rb")]

async def main() -> dict:
    alog = await AsyncEventLog.open(data_dir)
    out = {}
    try:
        await alog.append(big)
    except DiskFullError as exc:
        out["error"] = type(exc).__name__
    out["small"] = [[r.gseq, r.error] for r in await alog.append(small)]
    await alog.close()
    return out

print(json.dumps(asyncio.run(main())), flush=True)
"""


def test_async_log_survives_a_refused_group(tmp_path: Path, data_dir: Path) -> None:
    """Through AsyncEventLog, a group past RLIMIT_FSIZE raises DiskFullError; the next append is stored."""
    seed_log(data_dir)
    before = snapshot_bytes(data_dir)
    big = write_jsonl(
        tmp_path / "big.jsonl", envelopes(60, topics=(TOPIC_B,), start_seq=100, start_ns=T0 + 10**6)
    )
    small = write_jsonl(
        tmp_path / "small.jsonl",
        envelopes(1, topics=(TOPIC_A,), start_seq=1000, start_ns=T0 + 10**7),
    )
    limit = largest_file(data_dir) + 200

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [sys.executable, "-c", _ASYNC_CHILD, str(data_dir), str(big), str(small)],
        capture_output=True,
        preexec_fn=preexec,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert out == {"error": "DiskFullError", "small": [[31, None]]}
    after = snapshot_bytes(data_dir)
    for name, content in before.items():
        assert after[name].startswith(content)
    assert verify_namespace(data_dir).ok
