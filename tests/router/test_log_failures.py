"""The router when its log fails: an fsync error stops the router process (the
publisher resends to the restarted one, nothing lost), and a damaged record in the
history ends a subscription or fetch with LOG_CORRUPT after the records before it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tickertape.client import Client, StartAt
from tickertape.errors import RouterError
from tickertape.eventlog import LogReader
from tickertape.schemas import Envelope, Record

from .support import free_port, kill, python, running_router, tape, trade, wait_port

# `tape router` whose fsync fails with EIO while the file named by argv[1] exists: the
# disk's answer cannot be had for real without a failing device, the process is real.
FAILING_FSYNC_ROUTER = r"""
import errno, os, sys
flag = sys.argv.pop(1)
real_fsync = os.fsync
def fsync(fd):
    if os.path.exists(flag):
        raise OSError(errno.EIO, "Input/output error (injected by the test)")
    return real_fsync(fd)
os.fsync = fsync
sys.argv[0] = "tape"
from tickertape.cli.main import main
main()
"""


async def test_an_fsync_error_stops_the_router_and_nothing_is_lost(tmp_path: Path) -> None:
    """The batch whose fsync failed is answered LOG_UNAVAILABLE (connection closed) and
    the router process exits with status 1 naming the failure (it stayed up with a dead
    appender: every later publish waited for ever); the client resends it to the
    restarted router, and the log holds each event once."""
    flag = tmp_path / "fail-fsync"
    port = free_port()
    args = ("router", "--port", str(port), "--data-dir", str(tmp_path / "d"))
    router = python(FAILING_FSYNC_ROUTER, str(flag), "--log-level", "warning", *args)
    try:
        wait_port(port)
        async with Client(f"ws://127.0.0.1:{port}", "md") as client:
            await client.publish([trade("md", 1)])
            flag.touch()
            second = asyncio.create_task(client.publish([trade("md", 2)]))
            _, stderr = await asyncio.to_thread(router.communicate, None, 20)
            assert router.returncode == 1
            assert b"fsync" in stderr
            assert not second.done()  # kept in the outbox, not lost
            router = tape(*args)  # recovery on open decides what of batch 2 is valid
            wait_port(port)
            ack = await asyncio.wait_for(second, 30)
            assert ack[0].gseq is not None
    finally:
        kill(router)
    assert [r.source_seq for r in LogReader(tmp_path / "d", "main").read([">"])] == [1, 2]


async def test_a_damaged_record_ends_history_reads_with_log_corrupt(tmp_path: Path) -> None:
    """A flipped byte in record 51 of 100: a fetch and a subscription from the beginning
    get the 50 records before it, then LOG_CORRUPT naming the file, byte and offset (they
    waited for ever, with no error)."""
    async with running_router(tmp_path) as router, Client(router.url, "md") as client:
        await client.publish([trade("md", i) for i in range(1, 101)])
        (day,) = (tmp_path / "logs" / "main" / "md.trade.crypto.BTC").glob("*.jsonl")
        lines = day.read_bytes().splitlines(keepends=True)
        damaged = lines[50].replace(b'"price":', b'"prize":', 1)
        day.write_bytes(b"".join([*lines[:50], damaged, *lines[51:]]))
        for reader in (
            client.fetch(["md.>"], "beginning"),
            client.subscribe(["md.>"], StartAt(gseq=1)),
        ):
            got: list[int] = []
            with pytest.raises(RouterError) as info:
                await asyncio.wait_for(_read_into(reader, got), 10)
            assert got == list(range(1, 51))
            assert info.value.code == "LOG_CORRUPT"
            assert f"{day}" in info.value.message
            assert "offset 50" in info.value.message


async def _read_into(reader: AsyncIterator[Record | Envelope], got: list[int]) -> None:
    async for record in reader:
        got.append(record.source_seq)
