"""Random bit flips in real files: detected by verify, never returned as valid data by readers."""

from __future__ import annotations

import random
from pathlib import Path

from tickertape.errors import CorruptRecordError
from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog.sealing import compact
from tickertape.eventlog.verify import verify_namespace
from tickertape.schemas.envelope import Record

from .conftest import FixedClock
from .envelopes import NS_PER_DAY, T0, envelopes

TOPICS = ("md.trade.crypto.BTCUSDT", "md.quote.crypto.BTCUSDT")
FLIPS = 120


def build(data_dir: Path, *, sealed: bool) -> dict[int, Record]:
    """Two topics over two days (80 records); the first day sealed when ``sealed``."""
    with EventLog.open(data_dir, now_ns=FixedClock()) as lg:
        lg.append(envelopes(40, topics=TOPICS))
        lg.append(envelopes(40, topics=TOPICS, start_seq=41, start_ns=T0 + NS_PER_DAY))
        if sealed:
            compact(lg)
    return {r.gseq: r for r in LogReader(data_dir).read()}


def comparable(rec: Record) -> tuple[object, ...]:
    return tuple(
        bytes(getattr(rec, f)) if f == "payload" else getattr(rec, f)
        for f in Record.__struct_fields__
    )


def read_all_ways(
    data_dir: Path, rng: random.Random
) -> list[tuple[list[Record], CorruptRecordError | None]]:
    """Read by gseq, by topic from a random offset and by time; each read may end in an error."""
    reader = LogReader(data_dir)
    runs: list[tuple[list[Record], CorruptRecordError | None]] = []
    for make in (
        lambda: reader.read(),
        lambda: reader.read(from_gseq=rng.randint(1, 80)),
        lambda: reader.read_topic(rng.choice(TOPICS), from_offset=rng.randint(0, 39)),
        lambda: reader.read_from_time(None, T0 + rng.randint(0, 2 * NS_PER_DAY)),
    ):
        got: list[Record] = []
        error: CorruptRecordError | None = None
        try:
            got.extend(make())
        except CorruptRecordError as exc:
            error = exc
        runs.append((got, error))
    return runs


def flip_and_check(data_dir: Path, targets: list[Path], seed: int, bits: range) -> None:
    """Flip FLIPS random bits one at a time (restoring each), checking readers and verify."""
    rng = random.Random(seed)
    originals = {r.gseq: comparable(r) for r in LogReader(data_dir).read()}
    for _ in range(FLIPS):
        path = rng.choice(targets)
        data = path.read_bytes()
        pos = rng.randrange(len(data))
        damaged = bytearray(data)
        damaged[pos] ^= 1 << rng.choice(bits)
        path.write_bytes(bytes(damaged))
        try:
            errors = 0
            for records, error in read_all_ways(data_dir, rng):
                for rec in records:
                    assert comparable(rec) == originals[rec.gseq], (path, pos)
                if error is not None:
                    errors += 1
                    assert error.path == str(path)
                    assert error.position >= 0
            report = verify_namespace(data_dir)
            if errors:
                assert not report.ok, (path, pos)
            if path.suffix == ".jsonl":
                # every byte of an open file belongs to a record: always detected
                assert not report.ok, (path, pos)
        finally:
            path.write_bytes(data)
    assert verify_namespace(data_dir).ok


def test_bit_flips_in_open_files(data_dir: Path) -> None:
    """Flips (bits 0–6) anywhere in open day files: verify reports each; readers return originals or raise."""
    build(data_dir, sealed=False)
    targets = sorted(data_dir.rglob("*.jsonl"))
    flip_and_check(data_dir, targets, seed=1, bits=range(7))


def test_bit_flips_in_sealed_files(data_dir: Path) -> None:
    """Flips anywhere in sealed (zstd) day files: readers return originals or raise CorruptRecordError."""
    build(data_dir, sealed=True)
    targets = sorted(data_dir.rglob("*.jsonl.zst"))
    assert len(targets) == 2
    flip_and_check(data_dir, targets, seed=2, bits=range(8))


def test_bit_flips_in_index_files(data_dir: Path) -> None:
    """A damaged index is a cache miss: readers still return exactly the original records."""
    build(data_dir, sealed=True)
    targets = sorted(data_dir.rglob("*.idx"))
    flip_and_check_index(data_dir, targets)


def flip_and_check_index(data_dir: Path, targets: list[Path]) -> None:
    rng = random.Random(3)
    originals = [comparable(r) for r in LogReader(data_dir).read()]
    for _ in range(60):
        path = rng.choice(targets)
        data = path.read_bytes()
        damaged = bytearray(data)
        damaged[rng.randrange(len(data))] ^= 1 << rng.randint(0, 7)
        path.write_bytes(bytes(damaged))
        try:
            assert [comparable(r) for r in LogReader(data_dir).read()] == originals
        finally:
            path.write_bytes(data)


def test_high_bit_flips_in_open_files(data_dir: Path) -> None:
    """Flips of the high bit (invalid UTF-8 in strings) in open files are detected as corruption."""
    build(data_dir, sealed=False)
    targets = sorted(data_dir.rglob("*.jsonl"))
    flip_and_check(data_dir, targets, seed=4, bits=range(7, 8))
