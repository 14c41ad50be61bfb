"""Tests of the snapshot store (atomic writes, pruning, fallback) and the policy."""

from __future__ import annotations

from pathlib import Path

from tickertape.snapshots import Snapshot, SnapshotPolicy, SnapshotStore, snapshot_dir


def snap(clock_ns: int, version: int = 1, events: int = 0) -> Snapshot:
    return Snapshot(
        actor="a",
        state_version=version,
        state=b"\xc0",
        positions={"main": clock_ns},
        source_seq=clock_ns,
        clock_ns=clock_ns,
        events_handled=events,
    )


def test_keeps_the_last_k(tmp_path: Path) -> None:
    """After each save only the newest `keep` files remain, and no temporary file."""
    store = SnapshotStore(snapshot_dir(tmp_path, "main", "a"), keep=2)
    for t in (1, 2, 3, 4):
        store.save(snap(t))
    assert [p.name for p in store.paths()] == [
        f"{3:020d}-{0:015d}.snap",
        f"{4:020d}-{0:015d}.snap",
    ]
    assert sorted(p.name for p in store.directory.iterdir()) == [p.name for p in store.paths()]
    loaded = store.load_latest(1)
    assert loaded is not None
    assert loaded.clock_ns == 4


def test_corrupt_newest_falls_back_to_older(tmp_path: Path) -> None:
    """A corrupt newest snapshot (real bytes flipped on disk) is skipped for the next older."""
    store = SnapshotStore(tmp_path / "a", keep=3)
    store.save(snap(1))
    newest = store.save(snap(2))
    data = bytearray(newest.read_bytes())
    data[-3] ^= 0xFF
    newest.write_bytes(bytes(data))
    loaded = store.load_latest(1)
    assert loaded is not None
    assert loaded.clock_ns == 1


def test_truncated_file_is_skipped(tmp_path: Path) -> None:
    """A snapshot cut short (as by a crash without rename) is skipped."""
    store = SnapshotStore(tmp_path / "a")
    store.save(snap(1))
    torn = store.save(snap(2))
    torn.write_bytes(torn.read_bytes()[:15])
    loaded = store.load_latest(1)
    assert loaded is not None
    assert loaded.clock_ns == 1


def test_other_state_version_is_ignored(tmp_path: Path) -> None:
    """Snapshots of another state version are ignored: no snapshot means rebuild."""
    store = SnapshotStore(tmp_path / "a")
    store.save(snap(1, version=1))
    assert store.load_latest(2) is None


def test_seek_takes_the_newest_at_or_before(tmp_path: Path) -> None:
    """at_or_before_ns picks the newest snapshot not later than the time."""
    store = SnapshotStore(tmp_path / "a", keep=5)
    for t in (10, 20, 30):
        store.save(snap(t))
    loaded = store.load_latest(1, at_or_before_ns=25)
    assert loaded is not None
    assert loaded.clock_ns == 20
    assert store.load_latest(1, at_or_before_ns=5) is None


def test_a_rewind_finds_its_snapshot_and_discards_the_newer_ones(tmp_path: Path) -> None:
    """``where`` picks the newest snapshot it accepts; discard_newer leaves that one the
    newest on disk (the older ones stay)."""
    store = SnapshotStore(tmp_path / "a", keep=5)
    for t in (10, 20, 30, 40):
        store.save(snap(t))
    found = store.load_latest(1, where=lambda s: s.positions["main"] in (10, 20))
    assert found is not None
    assert found.clock_ns == 20
    store.discard_newer(found)
    assert [int(p.name.split("-")[0]) for p in store.paths()] == [10, 20]
    latest = store.load_latest(1)
    assert latest is not None
    assert latest.clock_ns == 20
    assert store.load_latest(1, where=lambda s: False) is None


def test_empty_store_has_no_snapshot(tmp_path: Path) -> None:
    """A missing directory is an empty store."""
    assert SnapshotStore(tmp_path / "none").load_latest(1) is None


def test_policy_by_count_and_by_clock() -> None:
    """The policy fires after N events or T ns of actor clock, never with no new event."""
    policy = SnapshotPolicy(every_events=10, every_ns=100)
    assert policy.due(10, 0, 0)
    assert not policy.due(9, 99, 0)
    assert policy.due(1, 100, 0)
    assert not policy.due(0, 10_000, 0)
