"""A subscription the router refuses with a retryable code (its separate event log is
restarting) is asked again by the client until it is served: the iterator sees the
events, not the refusal. Real processes: `tape eventlog`, `tape router --log-url`."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.router.support import eventlog, free_port, kill, tape, trade, wait_port
from tickertape.client import Client


@contextmanager
def _log_down(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A `tape router` (its output in ``router.log``) whose `tape eventlog` process was
    killed; yields the router's URL and a function that starts the log again. Both
    processes are killed on exit."""
    log_port, port = free_port(), free_port()
    logs: list[subprocess.Popen[bytes]] = [
        eventlog(log_port, tmp_path / "d", tmp_path / "eventlog.log")
    ]
    router = tape(
        "router", "--port", str(port), "--log-url", f"ws://127.0.0.1:{log_port}",
        log=tmp_path / "router.log",
    )  # fmt: skip
    try:
        wait_port(port)
        kill(logs[0])
        yield f"ws://127.0.0.1:{port}", lambda: logs.append(eventlog(log_port, tmp_path / "d"))
    finally:
        kill(router)
        for log in logs:
            kill(log)


async def test_a_subscription_refused_while_the_log_restarts_is_served_after(
    tmp_path: Path,
) -> None:
    with _log_down(tmp_path) as (url, restart_log):
        got: list[int] = []
        async with Client(url, "reader") as reader:
            # A namespace the router has not opened: it needs the log's head (refused).
            sub = reader.subscribe(["md.>"], "beginning", ns="other")

            async def read() -> None:
                async for event in sub:
                    got.append(event.source_seq)
                    if len(got) == 3:
                        return

            task = asyncio.create_task(read())
            await asyncio.sleep(1.0)  # refused several times meanwhile
            assert not task.done()
            restart_log()
            async with Client(url, "md") as md:
                await md.publish([trade("md", n) for n in (1, 2, 3)], ns="other")
            await asyncio.wait_for(task, 20)
        assert got == [1, 2, 3]
        assert b"LOG_UNAVAILABLE" in (tmp_path / "router.log").read_bytes()


async def test_closing_the_client_ends_a_subscription_waiting_to_retry(tmp_path: Path) -> None:
    """A subscription between a refusal and its retry is ended by ``Client.close()``
    (it was in no list of the client's, and its iterator waited for ever)."""
    with _log_down(tmp_path) as (url, _):
        reader = Client(url, "reader")
        await reader.start()
        sub = reader.subscribe(["md.>"], "beginning", ns="other")
        task = asyncio.create_task(anext(sub, None))
        await asyncio.sleep(0.5)  # refused, waiting to ask again
        assert not task.done()
        await reader.close()
        await asyncio.wait_for(task, 2)


async def test_a_subscription_closed_while_waiting_to_retry_is_not_asked_again(
    tmp_path: Path,
) -> None:
    """Closed between a refusal and its retry, a subscription stays closed: once the
    log is back, the router holds no subscription of the reader (the retry would have
    opened it again under a new ref)."""
    with _log_down(tmp_path) as (url, restart_log):
        async with Client(url, "reader") as reader:
            sub = reader.subscribe(["md.>"], "beginning", ns="other")
            task = asyncio.create_task(anext(sub, None))
            await asyncio.sleep(0.5)  # refused, waiting to ask again
            await sub.close()
            assert await asyncio.wait_for(task, 2) is None
            restart_log()
            await asyncio.sleep(2.0)  # past any retry the closed subscription had due
            health = await reader.stats()
            [mine] = [c for c in health["connections"] if c["identity"] == "reader"]
            assert mine["subscriptions"] == []
