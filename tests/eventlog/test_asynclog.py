"""Tests of tickertape.eventlog.asynclog: group commit for concurrent asyncio producers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tickertape.errors import LogClosedError, LogError
from tickertape.eventlog import AsyncEventLog, EventLog, LogReader
from tickertape.eventlog.verify import verify_namespace

from .conftest import FixedClock
from .envelopes import T0, envelope, envelopes

TOPICS = ("md.trade.crypto.BTCUSDT", "md.quote.crypto.BTCUSDT", "md.trade.us.AAPL")


async def test_concurrent_appenders_get_durable_results(data_dir: Path) -> None:
    """Many tasks appending at once each get their positions after fsync; all are stored once."""
    alog = await AsyncEventLog.open(data_dir, now_ns=FixedClock())
    reader = LogReader(data_dir)

    async def producer(p: int) -> list[tuple[int, int]]:
        seen = []
        for k in range(10):
            batch = [
                envelope(
                    3 * k + i + 1,
                    source=f"p{p}",
                    topic=TOPICS[p % 3],
                    ts_event=T0,
                )
                for i in range(3)
            ]
            results = await alog.append(batch)
            assert all(r.error is None and not r.duplicate for r in results)
            assert alog.head_gseq >= max(r.gseq for r in results)  # type: ignore[type-var]
            # durable and visible to any reader once acknowledged
            assert reader.head_gseq() >= max(r.gseq for r in results)  # type: ignore[type-var]
            seen += [(r.gseq, r.offset) for r in results]  # type: ignore[misc]
        return seen

    outs = await asyncio.gather(*(producer(p) for p in range(30)))
    await alog.close()
    gseqs = sorted(g for out in outs for g, _o in out)
    assert gseqs == list(range(1, 30 * 30 + 1))
    records = list(reader.read())
    assert len(records) == 900
    for p in range(30):
        mine = [r.source_seq for r in records if r.source == f"p{p}"]
        assert mine == list(range(1, 31))
    assert verify_namespace(data_dir).ok


async def test_group_commit_coalesces_appends(data_dir: Path) -> None:
    """Appends queued while a commit runs share the next commit: fewer groups (ts_log values) than appends."""
    clock = FixedClock()
    alog = await AsyncEventLog.open(data_dir, now_ns=clock)
    results = await asyncio.gather(
        *(alog.append([envelope(1, source=f"s{i}", ts_event=T0 + i)]) for i in range(200))
    )
    await alog.close()
    assert sorted(r[0].gseq for r in results) == list(range(1, 201))  # type: ignore[type-var]
    groups = {r.ts_log for r in LogReader(data_dir).read()}
    assert len(groups) < 200
    # appends enter the log in the order they were queued
    assert [r[0].gseq for r in results] == list(range(1, 201))


async def test_explicit_ts_log_is_kept_per_append(data_dir: Path) -> None:
    """Appends with an explicit ts_log are stamped with it, never mixed with clock-stamped ones."""
    alog = await AsyncEventLog.open(data_dir, now_ns=FixedClock(start=10**18))
    _a, _b, _c = await asyncio.gather(
        alog.append([envelope(1)], ts_log=5),
        alog.append([envelope(2)]),
        alog.append([envelope(3)], ts_log=7),
    )
    await alog.close()
    stamps = {r.source_seq: r.ts_log for r in LogReader(data_dir).read()}
    assert stamps[1] == 5
    assert stamps[3] == 7
    assert stamps[2] > 10**18


async def test_wait_for_returns_when_the_head_passes(data_dir: Path) -> None:
    """wait_for(g) returns True once head_gseq > g, and False after its timeout otherwise."""
    alog = await AsyncEventLog.open(data_dir)
    waiter = asyncio.create_task(alog.wait_for(4, timeout=10), name="waiter")
    await asyncio.sleep(0)
    assert not waiter.done()
    await alog.append(envelopes(3))
    assert not waiter.done()
    await alog.append(envelopes(2, start_seq=4, start_ns=T0 + 10**6))
    assert await waiter is True
    assert await alog.wait_for(5, timeout=0.05) is False
    assert await alog.wait_for(0, timeout=0) is True
    await alog.close()


async def test_duplicates_through_the_async_log(data_dir: Path) -> None:
    """Re-appending the same envelopes concurrently stores them once; all get the same positions."""
    alog = await AsyncEventLog.open(data_dir)
    batch = envelopes(5)
    outs = await asyncio.gather(*(alog.append(batch) for _ in range(5)))
    await alog.close()
    positions = {tuple((r.offset, r.gseq) for r in out) for out in outs}
    assert positions == {tuple((i, i + 1) for i in range(5))}
    assert LogReader(data_dir).head_gseq() == 5


async def test_close_commits_what_is_queued(data_dir: Path) -> None:
    """close() commits every queued append before releasing the log; nothing is lost."""
    alog = await AsyncEventLog.open(data_dir, max_pending=10_000)
    tasks = [
        asyncio.create_task(
            alog.append([envelope(1, source=f"s{i}", ts_event=T0 + i)]), name=f"append-{i}"
        )
        for i in range(300)
    ]
    await asyncio.sleep(0)
    await alog.close()
    assert LogReader(data_dir).head_gseq() == 300
    assert len(list(LogReader(data_dir).read())) == 300
    _done, pending = await asyncio.wait(tasks, timeout=5)
    for t in pending:  # see test_close_resolves_every_appender
        t.cancel()


async def test_close_resolves_every_appender(data_dir: Path) -> None:
    """Every append queued before close() resolves with its result (none is left waiting)."""
    alog = await AsyncEventLog.open(data_dir, max_pending=10_000)
    tasks = [
        asyncio.create_task(
            alog.append([envelope(1, source=f"s{i}", ts_event=T0 + i)]), name=f"append-{i}"
        )
        for i in range(300)
    ]
    for _ in range(3):
        await asyncio.sleep(0)
    await alog.close()
    _done, pending = await asyncio.wait(tasks, timeout=5)
    for t in pending:
        t.cancel()
    assert not pending


async def test_append_after_close_is_refused(data_dir: Path) -> None:
    """A closed async log refuses appends with LogClosedError and releases the namespace."""
    alog = await AsyncEventLog.open(data_dir)
    await alog.close()
    with pytest.raises(LogClosedError):
        await alog.append([envelope(1)])
    EventLog.open(data_dir).close()


async def test_open_of_a_held_namespace_is_refused(data_dir: Path) -> None:
    """Opening an async log on a namespace this process already writes raises LogError."""
    alog = await AsyncEventLog.open(data_dir)
    try:
        with pytest.raises(LogError):
            await AsyncEventLog.open(data_dir)
    finally:
        await alog.close()


async def test_reader_and_run_sync(data_dir: Path) -> None:
    """alog.reader reads what was appended; run_sync runs work on the writer thread."""
    alog = await AsyncEventLog.open(data_dir)
    await alog.append(envelopes(4))
    assert [r.gseq for r in alog.reader.read()] == [1, 2, 3, 4]
    assert await alog.run_sync(lambda lg: lg.head_gseq) == 4
    await alog.close()


async def test_backpressure_with_a_small_queue(data_dir: Path) -> None:
    """With max_pending=2, many concurrent appends wait for room and all complete, in order."""
    alog = await AsyncEventLog.open(data_dir, max_pending=2)
    results = await asyncio.gather(
        *(alog.append([envelope(1, source=f"s{i}", ts_event=T0 + i)]) for i in range(100))
    )
    await alog.close()
    assert [r[0].gseq for r in results] == list(range(1, 101))
