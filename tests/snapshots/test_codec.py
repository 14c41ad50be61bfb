"""Tests of the snapshot file format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickertape.errors import SnapshotError
from tickertape.snapshots.codec import HEADER_SIZE, Snapshot, decode_snapshot, encode_snapshot
from tickertape.timeauthority.timers import ScheduledTimer


def make(**kw: object) -> Snapshot:
    base: dict[str, object] = {
        "actor": "indicators",
        "state_version": 2,
        "state": b"\x81\xa1a\x01",
        "positions": {"main": 42},
        "source_seq": 7,
        "clock_ns": 1_000,
        "timers": [ScheduledTimer(due_ns=2_000, name="hb", owner="indicators", interval_ns=5)],
    }
    base.update(kw)
    return Snapshot(**base)  # type: ignore[arg-type]


@given(
    state=st.none() | st.binary(max_size=200),
    positions=st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 2**40), max_size=4),
    seq=st.integers(0, 2**40),
)
def test_round_trip(state: bytes | None, positions: dict[str, int], seq: int) -> None:
    """Decoding an encoded snapshot gives it back unchanged."""
    snap = make(state=state, positions=positions, source_seq=seq)
    assert decode_snapshot(encode_snapshot(snap)) == snap


def test_encoding_is_deterministic() -> None:
    """The same snapshot always encodes to the same bytes."""
    assert encode_snapshot(make()) == encode_snapshot(make())


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:10], "truncated"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b"XXXX" + b[4:], "bad magic"),
        (
            lambda b: b[:HEADER_SIZE] + bytes([b[HEADER_SIZE] ^ 0xFF]) + b[HEADER_SIZE + 1 :],
            "checksum",
        ),
    ],
)
def test_damaged_files_are_refused(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    """Truncation, a bad magic or a flipped byte raise SnapshotError naming the problem."""
    with pytest.raises(SnapshotError, match=reason):
        decode_snapshot(mutate(encode_snapshot(make())), "x.snap")
