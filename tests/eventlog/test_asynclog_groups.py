"""Tests of tickertape.eventlog.asynclog: what a group commit that mixes durable and
deferred (``durable=False``) appends acknowledges, and when."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

from tickertape.eventlog import AsyncEventLog, LogReader
from tickertape.eventlog.writer import AppendResult
from tickertape.schemas.envelope import Envelope

from .conftest import FixedClock
from .envelopes import T0, envelopes

DURABLE = 20_000  # ~6 MB: its fsync takes milliseconds, long after a callback runs


async def _one_group(
    alog: AsyncEventLog, batches: Sequence[tuple[list[Envelope], bool]]
) -> list[asyncio.Task[list[AppendResult]]]:
    """Start one append per ``(envelopes, durable)`` so that the writer thread takes them
    as one group: it is held on a call until every append is queued."""
    gate = threading.Event()
    held = asyncio.create_task(alog.run_sync(lambda _log: gate.wait(30)), name="hold-writer")
    tasks = []
    for i, (envs, durable) in enumerate(batches):
        queued = asyncio.Event()

        async def append(
            envs: list[Envelope] = envs, durable: bool = durable, queued: asyncio.Event = queued
        ) -> list[AppendResult]:
            queued.set()  # append() queues its request before its first suspension
            return await alog.append(envs, durable=durable)

        tasks.append(asyncio.create_task(append(), name=f"append-{i}"))
        await queued.wait()
    gate.set()
    assert await held is True
    return tasks


async def test_a_deferred_append_grouped_with_a_durable_one_waits_for_its_fsync(
    data_dir: Path,
) -> None:
    """A deferred append that shares a group with a durable one is answered after the
    group's fsync: head_gseq never covers a durable record that is not yet durable
    (it used to be answered before the fsync, moving head_gseq past the durable
    records written with it)."""
    alog = await AsyncEventLog.open(data_dir, now_ns=FixedClock())
    seen: list[tuple[int, int]] = []
    durable, deferred = await _one_group(
        alog,
        [
            (envelopes(DURABLE), True),
            (envelopes(10, start_seq=DURABLE + 1, start_ns=T0 + 10**9), False),
        ],
    )
    deferred.add_done_callback(lambda _t: seen.append((alog.head_gseq, alog.synced_gseq)))
    assert [r.gseq for r in await deferred] == list(range(DURABLE + 1, DURABLE + 11))
    assert [r.gseq for r in await durable] == list(range(1, DURABLE + 1))
    head, synced = seen[0]
    assert head == DURABLE + 10
    assert synced >= DURABLE, f"head_gseq {head} acknowledged with only {synced} durable"
    assert LogReader(data_dir).head_gseq() == DURABLE + 10
    await alog.close()


async def test_a_group_of_deferred_appends_only_is_answered_before_any_fsync(
    data_dir: Path,
) -> None:
    """Deferred appends grouped without a durable one are still answered at once, unsynced."""
    alog = await AsyncEventLog.open(data_dir, now_ns=FixedClock())
    await alog.append(envelopes(5))
    first, second = await _one_group(
        alog,
        [
            (envelopes(10, start_seq=6, start_ns=T0 + 10**9), False),
            (envelopes(10, start_seq=16, start_ns=T0 + 2 * 10**9), False),
        ],
    )
    assert [r.gseq for r in await first + await second] == list(range(6, 26))
    assert (alog.head_gseq, alog.synced_gseq) == (25, 5)
    assert LogReader(data_dir).head_gseq() == 5
    await alog.close()
