"""Tests of tickertape.eventlog.sealing: sealing, interrupted seals, compaction, retention."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog.layout import list_segments
from tickertape.eventlog.sealing import apply_retention, compact, seal_segment
from tickertape.eventlog.verify import verify_namespace

from .envelopes import NS_PER_DAY, T0, TRADE_TOPIC, envelopes, keys, topic_dir, verify_clean

QUOTE_TOPIC = "md.quote.crypto.BTCUSDT"


def three_days(data_dir: Path, per_day: int = 5) -> list[tuple[str, int]]:
    """Write ``per_day`` records a day for 3 days on two topics; return the stored keys."""
    with EventLog.open(data_dir) as lg:
        for day in range(3):
            lg.append(
                envelopes(
                    per_day,
                    topics=(TRADE_TOPIC, QUOTE_TOPIC),
                    start_seq=1 + day * per_day,
                    start_ns=T0 + day * NS_PER_DAY,
                )
            )
        return keys(lg.read())


def names(data_dir: Path, topic: str = TRADE_TOPIC) -> list[str]:
    """The file names of a topic's directory, sorted."""
    return sorted(p.name for p in topic_dir(data_dir, topic).iterdir())


def test_compact_seals_closed_days_only(data_dir: Path) -> None:
    """`compact` seals every day but the newest, which stays open; reads are unchanged."""
    before = three_days(data_dir)
    with EventLog.open(data_dir) as lg:
        sealed = compact(lg)
    assert len(sealed) == 4
    assert names(data_dir) == [
        "2024-01-01.idx",
        "2024-01-01.jsonl.zst",
        "2024-01-02.idx",
        "2024-01-02.jsonl.zst",
        "2024-01-03.idx",
        "2024-01-03.jsonl",
    ]
    assert keys(LogReader(data_dir).read()) == before
    verify_clean(data_dir)


def test_reopen_after_compact_keeps_everything(data_dir: Path) -> None:
    """Reopening after `compact` (older days sealed, newest open) keeps every record."""
    before = three_days(data_dir)
    with EventLog.open(data_dir) as lg:
        compact(lg)
    with EventLog.open(data_dir) as lg:
        assert lg.recovery.dropped == []
        assert lg.head_gseq == len(before)
    assert keys(LogReader(data_dir).read()) == before


def test_compact_all_then_reopen_keeps_everything(data_dir: Path) -> None:
    """After `compact --all` every day is sealed; reopen and reads keep every record."""
    before = three_days(data_dir)
    with EventLog.open(data_dir) as lg:
        compact(lg, include_open=True)
    assert not list(topic_dir(data_dir, TRADE_TOPIC).glob("*.jsonl"))
    with EventLog.open(data_dir) as lg:
        assert lg.recovery.dropped == []
        assert lg.head_gseq == len(before)
    assert keys(LogReader(data_dir).read()) == before
    verify_clean(data_dir)


def test_sealed_file_is_zstd_frames_of_the_same_lines(data_dir: Path) -> None:
    """The sealed file decompresses to exactly the bytes of the open file it replaced."""
    import zstandard

    three_days(data_dir)
    src = topic_dir(data_dir, TRADE_TOPIC) / "2024-01-01.jsonl"
    original = src.read_bytes()
    seg = next(s for s in list_segments(src.parent, TRADE_TOPIC) if s.path == src)
    index = seal_segment(seg)
    assert not src.exists()
    sealed = src.with_name(src.name + ".zst")
    with open(sealed, "rb") as f:
        out = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
    assert out == original
    assert index.count == original.count(b"\n")
    assert index.data_size == sealed.stat().st_size


def interrupted(
    data_dir: Path, state: str, day: str = "2024-01-03"
) -> tuple[Path, list[tuple[str, int]]]:
    """Build a log whose trade ``day`` was being sealed when the process died in ``state``."""
    before = three_days(data_dir)
    tdir = topic_dir(data_dir, TRADE_TOPIC)
    src = tdir / f"{day}.jsonl"
    keep = tdir.parent.parent.parent / "keep.jsonl"
    shutil.copy2(src, keep)
    seg = next(s for s in list_segments(tdir, TRADE_TOPIC) if s.path == src)
    seal_segment(seg)
    zst = tdir / f"{day}.jsonl.zst"
    if state == "tmp_only":
        # crash before the rename: the temporary sealed file and the open one
        zst.rename(tdir / f"{day}.jsonl.zst.tmp")
        shutil.copy2(keep, src)
        (tdir / f"{day}.idx").unlink()
    elif state == "tmp_partial":
        data = zst.read_bytes()
        zst.unlink()
        (tdir / f"{day}.jsonl.zst.tmp").write_bytes(data[: len(data) // 2])
        shutil.copy2(keep, src)
    elif state == "both":
        # crash after the rename, before the unlink of the open file
        shutil.copy2(keep, src)
    keep.unlink()
    return tdir, before


@pytest.mark.parametrize(
    ("state", "day"),
    [
        ("tmp_only", "2024-01-03"),
        ("tmp_partial", "2024-01-03"),
        ("both", "2024-01-03"),
        ("tmp_only", "2024-01-01"),
        ("tmp_partial", "2024-01-01"),
        ("both", "2024-01-01"),
    ],
)
def test_interrupted_seal_is_finished_or_undone_on_open(
    data_dir: Path, state: str, day: str
) -> None:
    """A seal interrupted at any step leaves exactly one copy of the day after open, all records readable."""
    tdir, before = interrupted(data_dir, state, day)
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == len(before)
    left = sorted(p.name for p in tdir.iterdir() if p.name.startswith(day))
    if state == "both":
        assert left == [f"{day}.idx", f"{day}.jsonl.zst"]
    else:
        assert f"{day}.jsonl" in left
        assert not [n for n in left if n.endswith(".tmp") or n.endswith(".zst")]
    assert keys(LogReader(data_dir).read()) == before
    report = verify_namespace(data_dir)
    assert report.ok, report.problems


def test_interrupted_seal_of_a_single_day_is_finished_on_open(data_dir: Path) -> None:
    """Sealed file renamed but open file not yet removed: open removes the open one, keeps all."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(5))
        before = keys(lg.read())
    tdir = topic_dir(data_dir, TRADE_TOPIC)
    src = tdir / "2024-01-01.jsonl"
    original = src.read_bytes()
    seal_segment(next(iter(list_segments(tdir, TRADE_TOPIC))))
    src.write_bytes(original)
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == 5
    assert names(data_dir) == ["2024-01-01.idx", "2024-01-01.jsonl.zst"]
    assert keys(LogReader(data_dir).read()) == before
    verify_clean(data_dir)


@pytest.mark.parametrize("state", ["tmp_only", "both"])
def test_readers_read_an_interrupted_seal_correctly(data_dir: Path, state: str) -> None:
    """Before any writer reopens, a reader sees each record of an interrupted seal exactly once."""
    _tdir, before = interrupted(data_dir, state)
    assert keys(LogReader(data_dir).read()) == before


def test_retention_deletes_whole_old_days_and_keeps_the_newest(data_dir: Path) -> None:
    """Days older than the rule are deleted whole (with their index); the newest day is always kept."""
    three_days(data_dir)
    now = T0 + 2 * NS_PER_DAY + 1
    with EventLog.open(data_dir) as lg:
        deleted = apply_retention(lg, [(TRADE_TOPIC, 1)], now)
    assert [p.name for p in deleted] == ["2024-01-01.jsonl"]
    assert names(data_dir) == [
        "2024-01-02.idx",
        "2024-01-02.jsonl",
        "2024-01-03.idx",
        "2024-01-03.jsonl",
    ]
    assert len(list(topic_dir(data_dir, QUOTE_TOPIC).glob("*.jsonl"))) == 3
    with EventLog.open(data_dir) as lg:
        deleted = apply_retention(lg, [("md.>", 0)], now + 100 * NS_PER_DAY)
    for topic in (TRADE_TOPIC, QUOTE_TOPIC):
        assert [p.name for p in topic_dir(data_dir, topic).glob("*.jsonl*")] == ["2024-01-03.jsonl"]


def test_retention_first_matching_rule_wins(data_dir: Path) -> None:
    """Rules are tried in order; a topic without a matching rule keeps everything."""
    three_days(data_dir)
    with EventLog.open(data_dir) as lg:
        apply_retention(lg, [(TRADE_TOPIC, 100), ("md.>", 0)], T0 + 10 * NS_PER_DAY)
    assert len(list(topic_dir(data_dir, TRADE_TOPIC).glob("*.jsonl"))) == 3
    assert len(list(topic_dir(data_dir, QUOTE_TOPIC).glob("*.jsonl"))) == 1


def test_retention_of_sealed_days(data_dir: Path) -> None:
    """Sealed days are deleted by retention like open ones; the rest still reads."""
    three_days(data_dir)
    with EventLog.open(data_dir) as lg:
        compact(lg)
        apply_retention(lg, [("md.>", 0)], T0 + 10 * NS_PER_DAY)
    for topic in (TRADE_TOPIC, QUOTE_TOPIC):
        assert [p.name for p in topic_dir(data_dir, topic).glob("*.jsonl*")] == ["2024-01-03.jsonl"]
    records = list(LogReader(data_dir).read())
    assert [r.ts_event // NS_PER_DAY for r in records] == [T0 // NS_PER_DAY + 2] * 5


def test_reopen_after_retention_keeps_the_remaining_days(data_dir: Path) -> None:
    """After retention removed old days, reopening keeps every remaining record."""
    three_days(data_dir)
    with EventLog.open(data_dir) as lg:
        apply_retention(lg, [("md.>", 0)], T0 + 10 * NS_PER_DAY)
    before = keys(LogReader(data_dir).read())
    with EventLog.open(data_dir) as lg:
        assert lg.recovery.dropped == []
    assert keys(LogReader(data_dir).read()) == before
