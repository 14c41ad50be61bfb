"""Sealing while the log runs: AsyncEventLog(seal=True) seals each day that is over
(DESIGN §5), in a thread of its own, and a crash or a stop at any moment of it loses
nothing."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.router.support import eventually
from tickertape.cli.system_commands import hash_namespace
from tickertape.cli.trading_commands import market_events
from tickertape.errors import CorruptRecordError
from tickertape.eventlog import AsyncEventLog, EventLog, LogReader, sealing
from tickertape.eventlog.index import INDEX_EVERY
from tickertape.eventlog.layout import Segment, day_name, list_segments
from tickertape.eventlog.sealing import SealCancelled, Sealer, seal_day, seal_segment
from tickertape.eventlog.segment import iter_lines
from tickertape.schemas.system import RunManifest

from .conftest import FixedClock
from .envelopes import NS_PER_DAY, T0, TAPE, envelopes, stored_lines, topic_dir, verify_clean

A = "md.trade.crypto.A"
B = "md.trade.crypto.B"


def sealed_days(data_dir: Path, topic: str) -> list[str]:
    return [day_name(s.day) for s in list_segments(topic_dir(data_dir, topic), topic) if s.sealed]


def open_days(data_dir: Path, topic: str) -> list[str]:
    return [
        day_name(s.day) for s in list_segments(topic_dir(data_dir, topic), topic) if not s.sealed
    ]


def leftovers(data_dir: Path) -> list[Path]:
    """Temporary files of a seal, and open day files beside their sealed copy."""
    root = data_dir / "logs" / "main"
    tmp = list(root.rglob("*.tmp"))
    both = [p for p in root.rglob("*.jsonl") if p.with_name(p.name + ".zst").exists()]
    return tmp + both


def three_days(per_day: int, topics: tuple[str, ...] = (A,)) -> list:
    """``per_day`` records a day on 2024-01-01..03, round-robin over ``topics``."""
    step = NS_PER_DAY // per_day
    return envelopes(3 * per_day, topics=topics, step_ns=step)


def write_reference(data_dir: Path, batches: list[list]) -> None:
    """The same appends, same clock, into a log that never seals."""
    log = EventLog.open(data_dir, now_ns=FixedClock())
    try:
        for batch in batches:
            log.append(batch)
    finally:
        log.close()


async def test_each_day_a_topic_rolls_over_from_is_sealed_while_appending(
    tmp_path: Path,
) -> None:
    """Days are sealed as topics roll over, the newest day stays open, and the stored
    bytes are those of a log that never sealed (the hash reads sealed days uncompressed)."""
    data, reference = tmp_path / "live", tmp_path / "reference"
    events = three_days(400, topics=(A, B))
    batches = [events[i : i + 100] for i in range(0, len(events), 100)]
    alog = await AsyncEventLog.open(data, now_ns=FixedClock(), seal=True)
    try:
        for batch in batches:
            await alog.append(batch)
        await eventually(
            lambda: len(sealed_days(data, A)) == 2 and len(sealed_days(data, B)) == 2, within=20
        )
        assert open_days(data, A) == open_days(data, B) == ["2024-01-03"]
        # The log goes on appending to its newest days.
        later = envelopes(
            10, topics=(A,), start_seq=len(events) + 1, start_ns=T0 + 3 * NS_PER_DAY - 100
        )
        await alog.append(later)
    finally:
        await alog.close()
    write_reference(reference, [*batches, later])
    assert hash_namespace(data, "main") == hash_namespace(reference, "main")
    assert leftovers(data) == []
    assert [r.source_seq for r in LogReader(data).read([">"])] == list(range(1, len(events) + 11))
    verify_clean(data)


async def test_days_over_found_at_open_are_sealed_and_the_newest_stays_open(
    tmp_path: Path,
) -> None:
    """A log written without sealing has its closed days sealed when it is opened with
    ``seal=True``; a topic's empty newest file (a crash as a day began) is no reason to
    seal the day holding its last record, which later appends may still reach."""
    data = tmp_path / "d"
    write_reference(data, [three_days(50)])
    empty_newest = topic_dir(data, A) / "2024-01-05.jsonl"
    empty_newest.touch()
    alog = await AsyncEventLog.open(data, now_ns=FixedClock(), seal=True)
    try:
        await eventually(lambda: sealed_days(data, A) == ["2024-01-01", "2024-01-02"], within=20)
        assert "2024-01-03" in open_days(data, A)
        # 2024-01-03 still takes appends: its last record is not the topic's last day over.
        # The topic rolls back to it from the empty 2024-01-05, which is not over either.
        more = envelopes(1, topics=(A,), start_seq=151, start_ns=T0 + 3 * NS_PER_DAY - 1)
        [result] = await alog.append(more)
        assert result.error is None
        assert not result.duplicate
        await asyncio.sleep(0.2)
        assert empty_newest.exists()
        # Then on to 2024-01-05 (its file still the one there), and 2024-01-06.
        later = envelopes(
            2, topics=(A,), start_seq=152, start_ns=T0 + 4 * NS_PER_DAY, step_ns=NS_PER_DAY
        )
        assert all(r.error is None for r in await alog.append(later))
        await eventually(lambda: "2024-01-05" in sealed_days(data, A), within=20)
    finally:
        await alog.close()
    assert leftovers(data) == []
    assert [r.source_seq for r in LogReader(data).read([A])] == list(range(1, 154))
    reopened = EventLog.open(data)
    try:
        assert reopened.next_offsets() == {A: 153}
    finally:
        reopened.close()


async def test_a_group_rolling_back_and_forth_never_hands_out_the_current_day(
    tmp_path: Path,
) -> None:
    """With an empty newest file (2024-01-02, a crash as it began), one group holding a
    record of 2024-01-01 and then one of 2024-01-02 rolls over both days: only the first
    is over. The day being appended to stays open and every record stays readable."""
    data = tmp_path / "d"
    write_reference(data, [envelopes(1, topics=(A,), start_ns=T0 + 1000)])
    (topic_dir(data, A) / "2024-01-02.jsonl").touch()
    alog = await AsyncEventLog.open(data, now_ns=FixedClock(), seal=True)
    try:
        group = [
            *envelopes(1, topics=(A,), start_seq=2, start_ns=T0 + 2000),
            *envelopes(1, topics=(A,), start_seq=3, start_ns=T0 + NS_PER_DAY + 5),
        ]
        assert all(r.error is None for r in await alog.append(group))
        await eventually(lambda: sealed_days(data, A) == ["2024-01-01"], within=20)
        for seq in range(4, 7):  # more on 2024-01-02
            more = envelopes(1, topics=(A,), start_seq=seq, start_ns=T0 + NS_PER_DAY + 10 * seq)
            assert all(r.error is None for r in await alog.append(more))
        assert [r.source_seq for r in LogReader(data).read([A])] == [1, 2, 3, 4, 5, 6]
    finally:
        await alog.close()
    assert open_days(data, A) == ["2024-01-02"]
    reopened = EventLog.open(data)
    try:
        assert reopened.next_offsets() == {A: 6}
        assert [r.source_seq for r in reopened.read_topic(A)] == [1, 2, 3, 4, 5, 6]
    finally:
        reopened.close()


async def test_an_old_duplicate_is_answered_while_its_days_are_being_sealed(
    tmp_path: Path,
) -> None:
    """A duplicate older than the in-memory window, not found by its ``ts_event``, makes
    the writer look through the topic's days while the sealer removes their open files:
    it is answered with its stored position (the writer failed with FileNotFoundError,
    and with it the whole log)."""
    data = tmp_path / "d"
    days = 400
    write_reference(data, [envelopes(days, topics=(A,), step_ns=NS_PER_DAY)])
    alog = await AsyncEventLog.open(data, now_ns=FixedClock(), seal=True)
    try:
        copy = envelopes(1, topics=(A,), start_ns=T0 + 7)  # seq 1, another ts_event
        while len(sealed_days(data, A)) < days - 1:
            [result] = await alog.append(copy)
            assert result.duplicate
            assert (result.offset, result.gseq) == (0, 1)
        nxt = envelopes(1, topics=(A,), start_seq=days + 1, start_ns=T0 + days * NS_PER_DAY)
        assert all(r.error is None for r in await alog.append(nxt))
    finally:
        await alog.close()


async def test_a_day_holding_a_damaged_record_is_left_open_and_appends_go_on(
    tmp_path: Path,
) -> None:
    """The sealer never seals a damaged day (the damage stays where ``tape verify`` finds
    it, the bytes unchanged); other days are sealed and the log keeps appending."""
    data = tmp_path / "d"
    write_reference(data, [three_days(50, topics=(A, B))])
    damaged = topic_dir(data, A) / "2024-01-01.jsonl"
    lines = stored_lines(damaged)
    lines[10] = lines[10].replace(b'"price":', b'"price" :', 1)  # CRC no longer matches
    damaged.write_bytes(b"".join(lines))
    alog = await AsyncEventLog.open(data, now_ns=FixedClock(), seal=True)
    try:
        # A's days are queued before B's: once B's are sealed, A's were tried.
        await eventually(lambda: sealed_days(data, B) == ["2024-01-01", "2024-01-02"], within=20)
        assert sealed_days(data, A) == ["2024-01-02"]
        assert damaged.read_bytes() == b"".join(lines)
        more = envelopes(2, topics=(A, B), start_seq=151, start_ns=T0 + 3 * NS_PER_DAY - 2)
        assert all(r.error is None for r in await alog.append(more))
    finally:
        await alog.close()
    assert leftovers(data) == []


def test_a_refused_seal_names_the_offset_of_a_damaged_first_record(tmp_path: Path) -> None:
    """The sealer's refusal names the offset as ``tape compact`` does: for a day whose
    first record is damaged, the one after the previous day's last."""
    data = tmp_path / "d"
    write_reference(data, [three_days(2)])
    damaged = topic_dir(data, A) / "2024-01-02.jsonl"
    damaged.write_bytes(b"{garbage" + damaged.read_bytes()[8:])
    seg = list_segments(topic_dir(data, A), A)[1]
    with pytest.raises(CorruptRecordError) as info:
        seal_day(seg)
    assert (info.value.position, info.value.offset) == (0, 2)


def test_closing_the_sealer_gives_up_a_seal_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Sealer.close`` gives up a seal under way within a frame: the day stays its open
    file, unchanged, and no temporary file is left. The seal is slowed (0.2 ms a
    record after its first two frames: seconds for the day) so that it is still under
    way when ``close`` comes; without the cancel, ``close`` would wait for all of it."""
    data = tmp_path / "d"
    write_reference(data, [three_days(20_000)])
    seg = list_segments(topic_dir(data, A), A)[0]
    before = seg.path.read_bytes()
    under_way = threading.Event()

    def slow_lines(segment: Segment) -> Iterator[tuple[int, bytes]]:
        for i, item in enumerate(iter_lines(segment)):
            if i == 2 * INDEX_EVERY:
                under_way.set()
            elif i > 2 * INDEX_EVERY:
                time.sleep(0.0002)
            yield item

    monkeypatch.setattr(sealing, "iter_lines", slow_lines)
    sealer = Sealer("main")
    sealer.submit([seg])
    assert under_way.wait(10)
    started = time.monotonic()
    sealer.close()
    assert time.monotonic() - started < 1.0
    assert leftovers(data) == []
    assert sealer.sealed == 0
    assert sealed_days(data, A) == []
    assert seg.path.read_bytes() == before
    assert [r.source_seq for r in LogReader(data).read([A])] == list(range(1, 60_001))


def test_the_sealer_pauses_between_days(tmp_path: Path) -> None:
    """At a duty of 0.2 the sealer pauses four times as long as each day took: sealing
    six days takes several times the seals' own time (nothing waits without the pause)."""
    data = tmp_path / "d"
    topics = ("md.trade.crypto.A", "md.trade.crypto.B", "md.trade.crypto.C")
    write_reference(data, [three_days(3_000, topics=topics)])
    days = [s for t in topics for s in list_segments(topic_dir(data, t), t)[:2]]
    sealer = Sealer("main", duty=0.2)
    started = time.perf_counter()
    try:
        sealer.submit(days)
        while sealer.sealed < len(days):
            time.sleep(0.001)
        elapsed = time.perf_counter() - started
    finally:
        sealer.close()
    assert all(sealed_days(data, t) == ["2024-01-01", "2024-01-02"] for t in topics)
    # six seals and the five pauses between them: about 4.3 times the sealing time
    assert elapsed > 2.5 * sealer.busy_s > 0


@pytest.mark.parametrize("duty", [0.0, -0.5, 1.5])
def test_a_sealer_duty_outside_0_to_1_is_refused(duty: float) -> None:
    with pytest.raises(ValueError, match="duty must be in"):
        Sealer("main", duty=duty)


def test_a_cancelled_seal_leaves_the_open_day_as_it_was(tmp_path: Path) -> None:
    """``cancel`` set during a seal (checked once per frame): ``SealCancelled``, no
    temporary file, the open day's bytes unchanged and no sealed file."""
    data = tmp_path / "d"
    write_reference(data, [three_days(3_000)])  # 3,000 records: several frames
    seg = list_segments(topic_dir(data, A), A)[0]
    before = seg.path.read_bytes()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(SealCancelled):
        seal_segment(seg, cancel=cancel)
    assert leftovers(data) == []
    assert sealed_days(data, A) == []
    assert seg.path.read_bytes() == before


SEALING_WRITER = """
import asyncio, sys
from tickertape.eventlog import AsyncEventLog

async def main():
    alog = await AsyncEventLog.open(sys.argv[1], seal=True)
    print("open", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.parametrize("delay", [0.02, 0.06, 0.12, 0.5])
def test_a_writer_killed_while_sealing_loses_nothing(tmp_path: Path, delay: float) -> None:
    """A real process sealing at its open is SIGKILLed at some moment of the seal; the
    next open finishes or undoes it and every record reads as before, byte for byte."""
    data, reference = tmp_path / "d", tmp_path / "reference"
    batches = [three_days(40_000)]
    write_reference(data, batches)
    write_reference(reference, batches)
    with subprocess.Popen(
        [sys.executable, "-c", SEALING_WRITER, str(data)], stdout=subprocess.PIPE
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"open\n"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
    sealed_when_killed = sealed_days(data, A)
    EventLog.open(data).close()  # recovery: finish or undo the interrupted seal
    assert leftovers(data) == []
    assert sealed_days(data, A) == sealed_when_killed
    assert hash_namespace(data, "main") == hash_namespace(reference, "main")
    verify_clean(data)


def test_readers_meanwhile_read_every_record_once(tmp_path: Path) -> None:
    """Reads by gseq, by offset and by time that run while the days they read are being
    sealed (their open files removed mid-read) return every record once, in order."""
    data = tmp_path / "d"
    write_reference(data, [three_days(30_000, topics=(A, B))])
    expected = list(range(1, 90_001))
    half = T0 + NS_PER_DAY // 2
    from_time = [e.source_seq for e in three_days(30_000, topics=(A, B)) if e.ts_event >= half]
    sealer = Sealer("main")
    reads = 0
    try:
        sealer.submit(
            s for topic in (A, B) for s in list_segments(topic_dir(data, topic), topic)[:2]
        )
        while sealer.sealed < 4:
            reader = LogReader(data)
            assert [r.source_seq for r in reader.read([">"])] == expected
            assert [r.source_seq for r in reader.read_topic(A, 0)] == expected[0::2]
            assert [r.source_seq for r in reader.read_from_time([">"], half)] == from_time
            reads += 1
    finally:
        sealer.close()
    assert reads >= 1
    assert sealed_days(data, A) == sealed_days(data, B) == ["2024-01-01", "2024-01-02"]


def test_a_report_beside_a_sealing_log_counts_every_day(tmp_path: Path) -> None:
    """``tape report``'s count of a run's input events (``market_events``) read beside a
    real ``tape eventlog`` sealing the source's days counts each day once, sealed or
    not (it died with FileNotFoundError on a day sealed after its listing)."""
    data = tmp_path / "d"
    days = 600
    write_reference(data, [envelopes(days, topics=(A,), step_ns=NS_PER_DAY)])
    manifest = RunManifest(
        run_id="r", source_namespace="main", start_ns=T0, end_ns=None, topics=["md.>"],
        actors=[], config_hash="", code_version="", seed=0,
    )  # fmt: skip
    assert market_events(str(data), manifest) == {"crypto": days}
    with subprocess.Popen(
        [TAPE, "eventlog", "--port", "0", "--data-dir", str(data)], stderr=subprocess.DEVNULL
    ) as proc:
        try:
            # About 5 s alone (the sealer's duty cycle); far longer on a loaded machine.
            deadline = time.monotonic() + 180
            while len(sealed_days(data, A)) < days - 1 and time.monotonic() < deadline:
                assert market_events(str(data), manifest) == {"crypto": days}
        finally:
            proc.terminate()
    assert len(sealed_days(data, A)) == days - 1
