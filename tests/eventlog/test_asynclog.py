"""Tests of tickertape.eventlog.asynclog: group commit for concurrent asyncio producers."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tickertape.errors import LogClosedError, LogError
from tickertape.eventlog import AsyncEventLog, EventLog, LogReader
from tickertape.eventlog.verify import verify_namespace

from .conftest import FixedClock
from .envelopes import (
    NS_PER_DAY,
    T0,
    TRADE_TOPIC,
    envelope,
    envelope_json,
    envelopes,
    published_head,
)
from .test_deferred import QUOTE_TOPIC, check_after_lost_pages, check_contiguous

ROOT = Path(__file__).resolve().parents[2]
FIVE_TOPICS = tuple(f"md.trade.crypto.S{i}" for i in range(5))

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


# ------------------------------------------------------ deferred durability


async def test_deferred_appends_are_acknowledged_before_any_fsync(data_dir: Path) -> None:
    """durable=False acks without publishing the head; sync() publishes it; close() syncs."""
    other = LogReader(data_dir)
    alog = await AsyncEventLog.open(data_dir)
    await alog.append(envelopes(5))
    res = await alog.append(envelopes(10, start_seq=6, start_ns=T0 + 10**6), durable=False)
    assert [r.gseq for r in res] == list(range(6, 16))
    assert (alog.head_gseq, alog.synced_gseq) == (15, 5)
    assert other.head_gseq() == 5
    assert [r.gseq for r in other.read()] == list(range(1, 6))
    assert [r.gseq for r in alog.reader.read()] == list(range(1, 16))
    assert await alog.sync() == 15
    assert (alog.synced_gseq, other.head_gseq()) == (15, 15)
    assert await alog.sync() == 15  # nothing pending
    await alog.append(envelopes(3, start_seq=16, start_ns=T0 + 2 * 10**6), durable=False)
    assert other.head_gseq() == 15
    await alog.close()
    assert [r.gseq for r in other.read()] == list(range(1, 19))
    assert verify_namespace(data_dir).ok


async def test_a_durable_append_makes_earlier_deferred_ones_durable(data_dir: Path) -> None:
    """Every durable ack, even in a group mixed with deferred appends, comes after
    everything before it is fsync'd and published."""
    alog = await AsyncEventLog.open(data_dir)
    published = LogReader(data_dir)

    async def one(i: int, durable: bool) -> None:
        res = await alog.append([envelope(1, source=f"s{i}", ts_event=T0 + i)], durable=durable)
        if durable:
            assert published.head_gseq() >= res[0].gseq  # type: ignore[operator]

    await asyncio.gather(*(one(i, durable=i % 5 == 4) for i in range(200)))
    assert published.head_gseq() == 200  # the last one was durable
    await alog.close()
    assert [r.gseq for r in published.read()] == list(range(1, 201))


async def test_sync_after_close_is_refused(data_dir: Path) -> None:
    """sync() on a closed async log raises LogClosedError."""
    alog = await AsyncEventLog.open(data_dir)
    await alog.close()
    with pytest.raises(LogClosedError):
        await alog.sync()


_ASYNC_DEFERRED_THEN_KILLED = r"""
import asyncio, sys
from tickertape.eventlog import AsyncEventLog
from tests.eventlog.envelopes import envelopes

async def main() -> None:
    alog = await AsyncEventLog.open(sys.argv[1])
    envs = envelopes(30, topics=("md.trade.crypto.BTCUSDT", "md.quote.crypto.BTCUSDT"))
    await alog.append(envs[:10])
    acks = await asyncio.gather(
        *(alog.append(envs[i : i + 2], durable=False) for i in range(10, 30, 2))
    )
    print("acked", max(r.gseq for res in acks for r in res), alog.synced_gseq, flush=True)
    if sys.argv[2] == "sync":
        print("synced", await alog.sync(), flush=True)
    print("waiting", flush=True)
    await asyncio.Event().wait()  # until SIGKILL

asyncio.run(main())
"""


@pytest.mark.parametrize("mode", ["deferred", "sync"])
def test_async_deferred_appends_with_the_writer_killed(
    data_dir: Path, tmp_path: Path, mode: str
) -> None:
    """A real process acks deferred appends without fsync (HEAD stays put), sync() makes
    them durable (HEAD moves); after SIGKILL everything written is kept, and after
    unsynced pages lost as in a power loss the log is a contiguous prefix holding at
    least the published head."""
    with subprocess.Popen(
        [sys.executable, "-c", _ASYNC_DEFERRED_THEN_KILLED, str(data_dir), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().split() == [b"acked", b"30", b"10"]
        if mode == "sync":
            assert child.stdout.readline().split() == [b"synced", b"30"]
        assert child.stdout.readline() == b"waiting\n"
        head = published_head(data_dir)
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert head == (30 if mode == "sync" else 10)
    envs = envelopes(30, topics=(TRADE_TOPIC, QUOTE_TOPIC))
    rng = random.Random(7)
    for variant in range(6):
        check_after_lost_pages(data_dir, tmp_path / f"copy{variant}", envs, head, rng)
    assert check_contiguous(data_dir, envs, 30) == 30  # the kill alone loses nothing


_ASYNC_WRITER = r"""
import asyncio, sys
import msgspec
from tickertape.eventlog import AsyncEventLog
from tickertape.schemas.envelope import Envelope

async def main() -> None:
    data_dir, input_path, sync_every = sys.argv[1], sys.argv[2], int(sys.argv[3])
    dec = msgspec.json.Decoder(Envelope)
    with open(input_path, "rb") as f:
        envs = [dec.decode(line) for line in f]
    alog = await AsyncEventLog.open(data_dir)
    print("open", alog.head_gseq, flush=True)
    start = alog.head_gseq  # the input is stored in order, one source
    for n, at in enumerate(range(start, len(envs), 10)):
        await alog.append(envs[at : at + 10], durable=False)
        if n % sync_every == sync_every - 1:
            print("synced", await alog.sync(), flush=True)
    await alog.close()
    print("done", flush=True)

asyncio.run(main())
"""


@pytest.mark.slow
def test_async_writer_killed_while_appending_deferred(tmp_path: Path) -> None:
    """SIGKILL at random points of deferred async appends with periodic sync(), then
    unsynced pages lost or damaged: every reopen gives a contiguous, verified log
    holding at least everything sync() reported."""
    rng = random.Random(11)
    data_dir = tmp_path / "data"
    input_path = tmp_path / "input.jsonl"
    envs = envelopes(20_000, topics=FIVE_TOPICS, step_ns=3 * NS_PER_DAY // 20_000)
    input_path.write_bytes(b"".join(envelope_json(e) for e in envs))
    for _round in range(5):
        with subprocess.Popen(
            [sys.executable, "-c", _ASYNC_WRITER, str(data_dir), str(input_path), "7"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline().startswith(b"open")
            synced = 0
            # Kill after a random number of syncs (not a random time: the writer's speed
            # varies), a little after the last one.
            for _ in range(rng.randrange(1, 40)):
                line = child.stdout.readline()
                if not line.startswith(b"synced"):
                    break
                synced = int(line.split()[1])
            time.sleep(rng.uniform(0, 0.01))
            child.send_signal(signal.SIGKILL)
            child.stdout.read()
            child.wait()
        assert child.returncode == -signal.SIGKILL
        head = published_head(data_dir)
        assert head >= synced
        for variant in range(3):
            check_after_lost_pages(data_dir, tmp_path / f"copy{variant}", envs, head, rng)
        check_contiguous(data_dir, envs, head)
    proc = subprocess.run(
        [sys.executable, "-c", _ASYNC_WRITER, str(data_dir), str(input_path), "7"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=300,
    )
    assert proc.stdout.endswith(b"done\n")
    assert check_contiguous(data_dir, envs, len(envs)) == len(envs)


async def test_run_sync_while_closing_is_refused_not_left_waiting(data_dir: Path) -> None:
    """A call queued behind the writer's stop would never be served: it is refused."""
    alog = await AsyncEventLog.open(data_dir, now_ns=FixedClock())
    closing = asyncio.create_task(alog.close())
    await asyncio.sleep(0)  # close() has asked the writer to stop
    async with asyncio.timeout(5):
        with pytest.raises(LogClosedError, match="closing"):
            await alog.run_sync(lambda log: log.head_gseq)
    await closing
