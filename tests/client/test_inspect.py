"""Tests for tickertape.client.inspect and the `tape` commands that use it, against a router process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from rich.console import Console

from tests.router.support import free_port, kill, running_router, tape, trade, wait_port
from tickertape.client import Client
from tickertape.client.inspect import append_remote, print_stats, stats_remote, tail_remote
from tickertape.eventlog import LogReader
from tickertape.router.protocol import StartAt
from tickertape.schemas import Envelope
from tickertape.schemas.registry import decode_payload

TAPE = str(Path(sys.executable).with_name("tape"))


async def test_append_tail_and_stats_remote(tmp_path: Path) -> None:
    """append_remote stores once (a rerun only finds duplicates); tail_remote and stats_remote read back."""
    async with running_router(tmp_path) as router:
        events = [trade("md", i) for i in range(1, 2501)]
        first = await append_remote(router.url, "md", None, events, batch=700)
        assert (first.appended, first.duplicates, first.last_gseq) == (2500, 0, 2500)
        again = await append_remote(router.url, "md", None, events[:1000], batch=700)
        assert (again["appended"], again["duplicates"]) == (0, 1000)
        got = [r.gseq async for r in tail_remote(router.url, ["md.>"], start=StartAt(gseq=2001))]
        assert got == list(range(2001, 2501))
        limited = [r async for r in tail_remote(router.url, [], start="beginning", limit=5)]
        assert len(limited) == 5
        stats = await stats_remote(router.url)
        assert stats["head_gseq"] == 2500


async def _collect(stream: object, within: float = 10.0) -> list[int]:
    async def run() -> list[int]:
        return [r.gseq async for r in stream]  # type: ignore[attr-defined]

    return await asyncio.wait_for(run(), within)


async def test_follow_to_a_gseq_ends_when_the_head_passes_it_without_a_matching_event(
    tmp_path: Path,
) -> None:
    """Following one topic up to gseq 15 while only another topic is written past it: the
    tail ends once the head has reached the bound, from the beginning and from now."""
    async with running_router(tmp_path) as router, Client(router.url, "md") as md:
        await md.publish([trade("md", i, "BTC") for i in range(1, 11)])  # gseq 1..10
        await md.publish([trade("md", i, "ETH") for i in range(11, 21)])  # 11..20
        got = await _collect(
            tail_remote(
                router.url, ["md.trade.crypto.BTC"], "beginning", follow=True,
                end=StartAt(gseq=15),
            )
        )  # fmt: skip
        assert got == list(range(1, 11))
        following = asyncio.create_task(
            _collect(
                tail_remote(
                    router.url, ["md.trade.crypto.BTC"], "now", follow=True,
                    end=StartAt(gseq=27),
                )
            )
        )  # fmt: skip
        await asyncio.sleep(0.3)  # subscribed: "now" is gseq 21 on
        await md.publish([trade("md", i, "BTC") for i in range(21, 26)])  # 21..25
        await md.publish([trade("md", i, "ETH") for i in range(26, 31)])  # 26..30
        assert await following == list(range(21, 26))


async def test_append_remote_reports_refused_and_stores_the_rest(tmp_path: Path) -> None:
    """An envelope with another source is reported; the valid ones of its batch are still stored."""
    async with running_router(tmp_path) as router:
        events = [trade("md", 1), trade("other", 1), trade("md", 2)]
        summary = await append_remote(router.url, "md", None, events)
        assert summary.appended == 2
        assert len(summary.refused) == 1
        assert "SOURCE_MISMATCH" in summary.refused[0]


async def test_append_remote_counts_what_the_log_stored_beside_a_refused_event(
    tmp_path: Path,
) -> None:
    """The log refuses one event of a batch (its ts_event goes back) and stores the two
    others: they count as appended by this run (they were counted as duplicates of a
    resend, after an error that said nothing of the batch was stored)."""
    events = [trade("md", 1), trade("md", 2), trade("md", 3)]
    events[1] = msgspec.structs.replace(events[1], ts_event=events[0].ts_event - 1)
    async with running_router(tmp_path) as router:
        summary = await append_remote(router.url, "md", None, events)
    assert (summary.appended, summary.duplicates) == (2, 0)
    assert (summary.first_gseq, summary.last_gseq) == (1, 2)
    assert len(summary.refused) == 1
    assert "TS_REGRESSION" in summary.refused[0]
    assert [r.source_seq for r in LogReader(tmp_path, "main").read([">"])] == [1, 3]


@pytest.mark.slow
def test_tape_append_tail_stats_through_a_router_process(tmp_path: Path) -> None:
    """`tape append/tail/stats --router` work against `tape router`, and a rerun of append stores nothing twice."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    router = tape("router", "--port", str(port), "--data-dir", str(tmp_path / "d"))
    try:
        wait_port(port)
        lines = b"".join(msgspec.json.encode(trade("md", i)) + b"\n" for i in range(1, 301))
        for _ in range(2):
            done = subprocess.run(
                [TAPE, "append", "--router", url, "--identity", "md"],
                input=lines, capture_output=True, timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr.decode()
        tail = subprocess.run(
            [TAPE, "tail", "md.>", "--router", url, "--json", "--from", "290"],
            capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        records = [json.loads(line) for line in tail.stdout.decode().splitlines()]
        assert [r["gseq"] for r in records] == list(range(290, 301))
        stats = subprocess.run(
            [TAPE, "stats", "--router", url], capture_output=True, timeout=60, check=True
        )
        assert b"300" in stats.stdout
    finally:
        kill(router)
    assert len(list(LogReader(tmp_path / "d", "main").read())) == 300


async def test_health_covers_every_namespace(tmp_path: Path) -> None:
    """Each namespace's live subscribers get system.health with its own head; stats lists them all."""
    async with running_router(tmp_path) as router:
        async with Client(router.url, "md") as pub, Client(router.url, "watch") as watch:
            await pub.publish([trade("md", 1)])
            await pub.publish([trade("md", i) for i in range(2, 5)], ns="runs/r1")
            health = watch.subscribe(["system.health.>"], ns="runs/r1", include_ephemeral=True)
            beats = [await asyncio.wait_for(anext(health), 5) for _ in range(2)]
            for beat in beats:
                assert isinstance(beat, Envelope)
                assert beat.topic == "system.health.router"
                payload = decode_payload(beat.type, beat.v, beat.payload)
                assert payload.head_gseq == 3  # runs/r1's head, not main's
                assert payload.metrics["append_p50_ms"] > 0
            stats = await stats_remote(router.url)
        spaces = stats["namespace_metrics"]
        assert {name: m["head_gseq"] for name, m in spaces.items()} == {"main": 1, "runs/r1": 3}
        assert spaces["runs/r1"]["appended"] == 3
        assert spaces["runs/r1"]["subscriptions"] == 1
        console = Console(record=True, width=200)
        print_stats(stats, console)
        assert "runs/r1" in console.export_text()
