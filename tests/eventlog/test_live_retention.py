"""Retention while the log runs: ``AsyncEventLog.open(retention=...)`` (``tape router`` /
``tape eventlog --retain``) deletes days older than their topic's rule at open and then
periodically, beside appends and the sealer, and nothing it deleted comes back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.router.support import eventually
from tickertape.eventlog import AsyncEventLog, EventLog, LogReader
from tickertape.eventlog.layout import day_name, list_segments
from tickertape.eventlog.sealing import Sealer, apply_retention

from .conftest import FixedClock
from .envelopes import NS_PER_DAY, T0, envelopes, topic_dir, verify_clean

A = "md.trade.crypto.A"
B = "md.trade.crypto.B"
PER_DAY = 200


def days(data_dir: Path, topic: str) -> list[str]:
    """The topic's day files, oldest first, sealed ones marked ``z``."""
    return [
        day_name(s.day) + ("z" if s.sealed else "")
        for s in list_segments(topic_dir(data_dir, topic), topic)
    ]


def five_days(data_dir: Path, topics: tuple[str, ...] = (A, B)) -> list:
    """``PER_DAY`` records a day and topic on 2024-01-01..05, written by a log that
    never seals nor deletes."""
    events = envelopes(
        5 * PER_DAY * len(topics), topics=topics, step_ns=NS_PER_DAY // (PER_DAY * len(topics))
    )
    with EventLog.open(data_dir, now_ns=FixedClock()) as log:
        log.append(events)
    return events


def at_day(n: int) -> FixedClock:
    """A clock on 2024-01-0n (``n`` from 1), noon."""
    return FixedClock(T0 + (n - 1) * NS_PER_DAY + NS_PER_DAY // 2)


async def test_a_running_log_deletes_old_days_at_open_and_keeps_appending(
    tmp_path: Path,
) -> None:
    """On 2024-01-06 with A kept 2 days: A's days before 2024-01-04 go at open, B (no
    rule) keeps all five; appends go on with the next offsets and gseqs, also after a
    reopen (the retention mark), and the namespace verifies clean."""
    data = tmp_path / "d"
    events = five_days(data)
    head = len(events)
    alog = await AsyncEventLog.open(data, now_ns=at_day(6), retention=[(A, 2)])
    try:
        await eventually(lambda: days(data, A) == ["2024-01-04", "2024-01-05"])
        assert days(data, B) == [f"2024-01-0{d}" for d in range(1, 6)]
        more = envelopes(10, topics=(A,), start_seq=head + 1, start_ns=events[-1].ts_event + 1)
        results = await alog.append(more)
        assert [r.gseq for r in results] == list(range(head + 1, head + 11))
        assert [r.offset for r in results] == list(range(5 * PER_DAY, 5 * PER_DAY + 10))
    finally:
        await alog.close()
    with EventLog.open(data) as log:
        assert log.head_gseq == head + 10
        dup = log.append(events[:3])  # held by deleted days: duplicates, never stored again
        assert all(r.duplicate for r in dup)
        assert log.head_gseq == head + 10
    kept = [r.source_seq for r in LogReader(data).read([A])]
    assert kept[0] == events[3 * PER_DAY * 2].source_seq  # A's first record of 2024-01-04
    assert kept[-10:] == [e.source_seq for e in more]
    verify_clean(data)


async def test_a_day_that_ages_while_the_log_runs_goes_at_a_later_pass(tmp_path: Path) -> None:
    data = tmp_path / "d"
    five_days(data, topics=(A,))
    clock = at_day(5)
    alog = await AsyncEventLog.open(
        data, now_ns=clock, retention=[("md.>", 2)], retention_every_s=0.05
    )
    try:
        await eventually(lambda: days(data, A) == ["2024-01-03", "2024-01-04", "2024-01-05"])
        clock.now += NS_PER_DAY  # 2024-01-06: 2024-01-03 is now three days old
        await eventually(lambda: days(data, A) == ["2024-01-04", "2024-01-05"])
    finally:
        await alog.close()
    verify_clean(data)


def test_retention_leaves_the_sealer_the_days_it_was_handed(tmp_path: Path) -> None:
    """A day handed to the sealer and not sealed yet is not deleted (sealing it after
    would put it back): the sealer pauses after its first day (a duty of 1 %), the
    second waits in its queue while retention runs; it goes at a later pass."""
    data = tmp_path / "d"
    five_days(data, topics=(A,))
    first, second = list_segments(topic_dir(data, A), A)[:2]
    with EventLog.open(data) as log:
        sealer = Sealer("main", duty=0.01)
        try:
            sealer.submit([first, second])
            while sealer.sealed < 1:
                time.sleep(0.001)
            assert second.path in sealer.pending()
            deleted = apply_retention(log, [(A, 0)], at_day(6)(), sealer)
            assert [p.name for p in deleted] == [
                "2024-01-01.jsonl.zst", "2024-01-03.jsonl", "2024-01-04.jsonl",
            ]  # fmt: skip
            assert days(data, A) == ["2024-01-02", "2024-01-05"]
        finally:
            sealer.close()
        assert days(data, A) == ["2024-01-02", "2024-01-05"]  # given up: still open
        apply_retention(log, [(A, 0)], at_day(6)(), sealer)
        assert days(data, A) == ["2024-01-05"]
    verify_clean(data)


async def test_retention_and_sealing_together_end_with_the_kept_days_only(
    tmp_path: Path,
) -> None:
    """Passes every 20 ms while the sealer works through the closed days: retention and
    sealing together leave exactly the kept days, sealed except each topic's newest, no
    temporary file, and a namespace that verifies clean. (The race of a seal putting a
    deleted day back is tested by test_retention_leaves_the_sealer_the_days_it_was_handed.)"""
    data = tmp_path / "d"
    five_days(data)
    alog = await AsyncEventLog.open(
        data, now_ns=at_day(5), seal=True, retention=[("md.>", 2)], retention_every_s=0.02
    )
    try:
        kept = ["2024-01-03z", "2024-01-04z", "2024-01-05"]
        await eventually(lambda: days(data, A) == kept and days(data, B) == kept, within=20)
        await asyncio.sleep(0.2)  # a seal finishing late would show here
        assert days(data, A) == days(data, B) == kept
    finally:
        await alog.close()
    assert not list((data / "logs" / "main").rglob("*.tmp"))
    verify_clean(data)
