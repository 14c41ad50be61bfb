"""Builders shared by the event-log and CLI tests: envelopes, files on disk, the tape command."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec
import pytest

from tickertape.eventlog.codec import decode_line
from tickertape.eventlog.layout import day_name, day_of
from tickertape.schemas.envelope import Envelope, Record

NS_PER_DAY = 86_400 * 1_000_000_000
T0 = 1_704_067_200_000_000_000
"""2024-01-01T00:00:00Z in ns."""

TAPE = str(Path(sys.executable).parent / "tape")
"""The venv's ``tape`` entry point."""

TRADE_TOPIC = "md.trade.crypto.BTCUSDT"


def trade_payload(n: int) -> msgspec.Raw:
    """A valid ``md.trade`` v1 payload with a distinct trade id."""
    return msgspec.Raw(
        b'{"symbol":"BTCUSDT","price":%d.5,"size":0.01,"side":"buy","trade_id":"%d"}'
        % (60_000 + n % 1000, n)
    )


def envelope(
    seq: int,
    *,
    topic: str = TRADE_TOPIC,
    source: str = "md",
    ts_event: int | None = None,
    payload: msgspec.Raw | None = None,
) -> Envelope:
    """A valid ``md.trade`` envelope; ``ts_event`` defaults to T0 + seq µs."""
    ts = T0 + seq * 1_000 if ts_event is None else ts_event
    return Envelope(
        id=f"{source}:{seq}",
        topic=topic,
        type="md.trade",
        v=1,
        market="crypto",
        ts_event=ts,
        ts_init=ts,
        source=source,
        source_seq=seq,
        payload=trade_payload(seq) if payload is None else payload,
    )


def envelopes(
    count: int,
    *,
    topics: Sequence[str] = (TRADE_TOPIC,),
    source: str = "md",
    start_seq: int = 1,
    step_ns: int = 1_000,
    start_ns: int = T0,
) -> list[Envelope]:
    """``count`` envelopes of one source, round-robin over ``topics``, time increasing."""
    return [
        envelope(
            seq,
            topic=topics[(seq - start_seq) % len(topics)],
            source=source,
            ts_event=start_ns + (seq - start_seq) * step_ns,
        )
        for seq in range(start_seq, start_seq + count)
    ]


def envelope_json(env: Envelope) -> bytes:
    """One input line of ``tape append``."""
    return msgspec.json.encode(env) + b"\n"


def head_file(data_dir: Path) -> Path:
    """``<data-dir>/logs/main/HEAD``: the head the writer publishes after each fsync
    (little-endian int64; not itself fsync'd)."""
    return data_dir / "logs" / "main" / "HEAD"


def published_head(data_dir: Path) -> int:
    """The head in ``logs/main/HEAD`` (what other processes see)."""
    return int(struct.unpack("<q", head_file(data_dir).read_bytes()[:8])[0])


def crash_head(data_dir: Path, head: int) -> None:
    """Put back the committed head the writer had published before the group (a crash
    mid-group, or a power loss: ``HEAD`` is never fsync'd, so it may lag).

    The writer publishes its head (``logs/<ns>/HEAD``, little-endian int64) only after a
    group's fsync, so a crash while writing a group leaves the previous value there.
    """
    head_file(data_dir).write_bytes(struct.pack("<q", head))


def topic_dir(data_dir: Path, topic: str, namespace: str = "main") -> Path:
    """``<data-dir>/logs/<namespace>/<topic>``."""
    return data_dir / "logs" / namespace / topic


def day_file(data_dir: Path, topic: str, ts_ns: int, namespace: str = "main") -> Path:
    """The open day file holding ``ts_ns`` for ``topic``."""
    return topic_dir(data_dir, topic, namespace) / f"{day_name(day_of(ts_ns))}.jsonl"


def stored_lines(path: Path) -> list[bytes]:
    """The lines of an open day file, newline included."""
    with open(path, "rb") as f:
        return list(f)


def stored_records(path: Path) -> list[Record]:
    """Decode every line of an open day file (CRC checked)."""
    return [decode_line(line) for line in stored_lines(path)]


def bytes_read() -> int:
    """Bytes this process has read through read() syscalls so far (Linux /proc/self/io rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


needs_proc_io = pytest.mark.skipif(
    not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io"
)
"""Skip a test that measures reads with :func:`bytes_read` where /proc/self/io is missing."""


def day_files(data_dir: Path, namespace: str = "main") -> list[Path]:
    """Every data file (open and sealed) of a namespace, sorted."""
    root = data_dir / "logs" / namespace
    return sorted(p for p in root.rglob("*.jsonl*") if not p.name.endswith(".tmp"))


def snapshot_bytes(data_dir: Path, namespace: str = "main") -> dict[str, bytes]:
    """The content of every data file of a namespace, by relative path."""
    root = data_dir / "logs" / namespace
    return {str(p.relative_to(root)): p.read_bytes() for p in day_files(data_dir, namespace)}


def keys(records: Iterable[Record]) -> list[tuple[str, int]]:
    """The (source, source_seq) of each record, in order."""
    return [(r.source, r.source_seq) for r in records]


def run_tape(
    *args: str, data_dir: Path, stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """Run the real ``tape`` command on ``data_dir``; never raises on a non-zero exit."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("TAPE_DATA_DIR", None)
    env.pop("TAPE_NAMESPACE", None)
    return subprocess.run(
        [TAPE, *args, "--data-dir", str(data_dir)],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def verify_clean(data_dir: Path, namespace: str = "main") -> None:
    """Assert that ``tape verify`` (the real command) exits 0."""
    proc = run_tape("verify", "--namespace", namespace, data_dir=data_dir)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
