"""A running `tape router` seals each day that is over (DESIGN §5) while it publishes and
serves history: subscribers reading those days meanwhile get every event once, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tickertape.client import Client
from tickertape.eventlog import LogReader
from tickertape.schemas import Envelope

from .support import dated_trade, eventually, free_port, kill, tape, wait_port

PER_DAY = 6_000
TOPIC = "md.trade.crypto.BTC"


def day_event(seq: int) -> Envelope:
    """Trade ``seq`` (from 1), ``PER_DAY`` a day from 2024-01-01 on."""
    return dated_trade(seq, PER_DAY)


def files(data_dir: Path, suffix: str) -> list[str]:
    return sorted(p.name for p in (data_dir / "logs" / "main" / TOPIC).glob(f"*{suffix}"))


@pytest.mark.parametrize("seal", [True, False], ids=["seal", "no-seal"])
async def test_a_running_router_seals_days_that_are_over(tmp_path: Path, seal: bool) -> None:
    data = tmp_path / "d"
    port = free_port()
    flag = () if seal else ("--no-seal",)
    router = tape("router", "--port", str(port), "--data-dir", str(data), *flag)
    url = f"ws://127.0.0.1:{port}"
    total = 3 * PER_DAY
    try:
        wait_port(port)
        async with Client(url, "md") as client:
            for first in range(1, total + 1, 500):
                await client.publish([day_event(s) for s in range(first, first + 500)])
        # A subscriber from the start reads the first days while they are being sealed.
        got: list[int] = []
        async with Client(url, "reader") as reader:
            async for event in reader.subscribe([TOPIC], "beginning"):
                got.append(event.source_seq)
                if len(got) == total:
                    break
        assert got == list(range(1, total + 1))
        if seal:
            # A seal renames the compressed day into place, then removes the plain one:
            # wait for both.
            await eventually(
                lambda: (
                    files(data, ".zst") == ["2024-01-01.jsonl.zst", "2024-01-02.jsonl.zst"]
                    and files(data, ".jsonl") == ["2024-01-03.jsonl"]
                )
            )
        else:
            await asyncio.sleep(0.5)
            assert files(data, ".zst") == []
    finally:
        kill(router)
    assert [r.source_seq for r in LogReader(data).read([TOPIC])] == list(range(1, total + 1))
