"""Tests of the live remote host through a real (embedded) router and event log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.actors.runtime.sample_actors import MeanActor, MeanConfig, trade_envelopes
from tickertape.actors.base import Context, Event
from tickertape.actors.runtime.remote import RemoteHost
from tickertape.client import Client
from tickertape.eventlog import EventLog, LogReader
from tickertape.router.protocol import Limits
from tickertape.router.server import Router, RouterConfig
from tickertape.schemas import Envelope, Record
from tickertape.schemas.indicator import IndicatorValue
from tickertape.schemas.registry import decode_payload
from tickertape.snapshots import SnapshotPolicy

N = 40


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait until ``check()`` holds (polling), or fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 (test helper)
            await asyncio.sleep(0.02)


@pytest.fixture
async def router(tmp_path: Path) -> AsyncIterator[Router]:
    """An open loopback router over a data dir holding N trades in main."""
    log = EventLog.open(tmp_path, "main")
    log.append(trade_envelopes(N), ts_log=1)
    log.close()
    r = Router(RouterConfig(port=0, data_dir=str(tmp_path), health_interval_s=3600.0))
    await r.start()
    try:
        yield r
    finally:
        await r.close()


async def run_actor(router: Router, tmp_path: Path, actor: MeanActor) -> RemoteHost:
    """Run a live MeanActor until it has consumed the N trades, then stop it cleanly."""
    async with Client(router.url, "indicators") as client:
        policy = SnapshotPolicy(every_events=10, every_ns=None)
        process = RemoteHost(client, actor, "indicators", tmp_path, policy=policy)
        task = asyncio.create_task(process.run(), name="actor")
        await eventually(lambda: process.position >= N or task.done())
        process.stop()
        await task
        return process


@pytest.mark.slow
async def test_live_actor_catches_up_snapshots_and_resumes(router: Router, tmp_path: Path) -> None:
    """History is handled, outputs stored, snapshots written; a restart adds nothing."""
    first = await run_actor(router, tmp_path, MeanActor())
    reader = LogReader(tmp_path, "main")
    outputs = list(reader.read(["indicator.>"]))
    assert len(outputs) == N
    assert first.store.paths()
    again = await run_actor(router, tmp_path, MeanActor())
    assert again.position == N
    assert len(list(LogReader(tmp_path, "main").read(["indicator.>"]))) == N
    assert again.divergences == []


@pytest.mark.slow
async def test_regenerated_output_that_differs_is_a_divergence(
    router: Router, tmp_path: Path
) -> None:
    """Rebuilt from the log with another config, the actor reports divergences (an
    ephemeral alert each, naming both events), stores none of them, and goes on: its
    next live output is stored (a stored alert, with its source_seq far above the
    outputs', made the log drop every later output as a duplicate)."""
    first = await run_actor(router, tmp_path, MeanActor())
    for path in first.store.paths():
        path.unlink()
    alerts: list[Envelope] = []
    async with Client(router.url, "ops") as ops, Client(router.url, "marketdata") as md:
        watch = ops.subscribe(["system.alert.>"], "now", include_ephemeral=True)
        await eventually(lambda: watch.from_gseq is not None)  # subscribed

        async def collect() -> None:
            async for event in watch:
                if not isinstance(event, Record):  # ephemeral
                    alerts.append(event)

        collecting = asyncio.create_task(collect())
        async with Client(router.url, "indicators") as client:
            second = RemoteHost(
                client, MeanActor(MeanConfig(window=5)), "indicators", tmp_path,
                policy=SnapshotPolicy(every_events=10, every_ns=None),
            )  # fmt: skip
            task = asyncio.create_task(second.run(), name="actor")
            await eventually(lambda: second.position >= N and len(alerts) == N)
            [live] = trade_envelopes(N + 1)[N:]
            await md.publish([live])
            await eventually(lambda: second.position > N)
            second.stop()
            await task
        collecting.cancel()
    assert len(second.divergences) == N
    assert second.divergences[0].fields == ["payload"]
    alert = decode_payload(alerts[0].type, alerts[0].v, alerts[0].payload)
    assert alert.code == "DIVERGENCE"
    assert alert.detail["stored"]["payload"] != alert.detail["regenerated"]["payload"]
    reader = LogReader(tmp_path, "main")
    assert list(reader.read(["system.alert.>"])) == []
    outputs = list(reader.read(["indicator.>"]))
    assert [r.source_seq for r in outputs] == list(range(1, N + 2))


class SlowPublishClient(Client):
    """A real client whose publications take 20 ms longer; logged ones are counted per
    key while ``counting`` (a clean stop resends what it cancelled in flight, by design)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.published: dict[tuple[str, int], int] = {}

    counting = True

    async def publish(self, events, **kwargs):  # type: ignore[no-untyped-def,override]
        if self.counting and not kwargs.get("ephemeral"):
            for env in events:
                key = (env.source, env.source_seq)
                self.published[key] = self.published.get(key, 0) + 1
        await asyncio.sleep(0.02)
        return await super().publish(events, **kwargs)


@pytest.mark.slow
async def test_timer_and_event_flushes_never_publish_an_output_twice(
    router: Router, tmp_path: Path
) -> None:
    """The consumer and the timer loop both flush; an output in flight is not sent again."""
    from tests.replay.batch_actors import TimerEcho

    class LiveEcho(TimerEcho):
        def on_event(self, event: Event, ctx: Context) -> None:
            self.state.trades += 1
            self._publish(ctx, event.payload.symbol, "trade")

    async with SlowPublishClient(router.url, "echo") as client:
        process = RemoteHost(client, LiveEcho(), "echo", tmp_path)
        task = asyncio.create_task(process.run(), name="actor")
        await eventually(lambda: process.position >= N or task.done())
        await asyncio.sleep(0.5)  # heartbeats every 25 ms while trades were flushed
        client.counting = False
        process.stop()
        await task
    outputs = [k for k in client.published if k[0] == "echo"]
    assert len(outputs) > 20
    assert {k: n for k, n in client.published.items() if n > 1} == {}


class ElevenPerEvent(MeanActor):
    """Eleven outputs per trade, like an indicators series of eleven indicators."""

    def on_event(self, event: Event, ctx: Context) -> None:
        trade = event.payload
        for k in range(11):
            ctx.publish(
                f"indicator.m{k}.v1.crypto.{trade.symbol}",
                IndicatorValue(
                    symbol=trade.symbol, name=f"m{k}", interval="tick", params={},
                    values={"value": trade.price + k}, bar_ts=event.ts_event,
                ),
                market="crypto",
                causation=event,
            )  # fmt: skip


async def run_eleven_per_event(client: Client, data_dir: Path, n: int) -> RemoteHost:
    """Run a live ElevenPerEvent actor without snapshots until it has consumed ``n``
    trades, then stop it cleanly."""
    policy = SnapshotPolicy(every_events=10**9, every_ns=None, on_stop=False)
    host = RemoteHost(client, ElevenPerEvent(), "indicators", data_dir, policy=policy)
    task = asyncio.create_task(host.run(), name="actor")
    await eventually(lambda: host.position >= n or task.done(), timeout=60)
    host.stop()
    await task
    return host


@pytest.mark.slow
async def test_a_frame_with_more_outputs_than_one_pub_may_carry(tmp_path: Path) -> None:
    """1 000 trades come as one catch-up frame and make 11 000 outputs, more than the
    router takes in one pub (10 000): they are published in chunks, all stored (the
    actor died with BATCH_TOO_LARGE). Restarted without a snapshot, the actor
    regenerates them all: each is checked against the stored one, with one fetch per
    flush (it was one fetch per output), and none diverges."""
    n = 1_000
    log = EventLog.open(tmp_path, "main")
    log.append(trade_envelopes(n), ts_log=1)
    log.close()
    r = Router(RouterConfig(port=0, data_dir=str(tmp_path), health_interval_s=3600.0))
    await r.start()
    fetches = 0

    class CountingClient(Client):
        def fetch(self, *args, **kwargs):  # type: ignore[no-untyped-def,override]
            nonlocal fetches
            fetches += 1
            return super().fetch(*args, **kwargs)

    async def run() -> RemoteHost:
        async with CountingClient(r.url, "indicators") as client:
            return await run_eleven_per_event(client, tmp_path, n)

    try:
        await run()
        assert len(list(LogReader(tmp_path, "main").read(["indicator.>"]))) == 11 * n
        again = await run()
        assert again.divergences == []
        assert len(list(LogReader(tmp_path, "main").read(["indicator.>"]))) == 11 * n
        assert fetches < 20
    finally:
        await r.close()


async def test_outputs_go_out_in_pubs_no_larger_than_the_router_takes(tmp_path: Path) -> None:
    """A router whose max_batch_events (7, in its welcome) is below PUBLISH_CHUNK gets
    pubs of at most 7 outputs: a trade's 11 outputs are all stored (the actor died with
    BATCH_TOO_LARGE when it sent PUBLISH_CHUNK at a time whatever the router said)."""
    log = EventLog.open(tmp_path, "main")
    log.append(trade_envelopes(N), ts_log=1)
    log.close()
    r = Router(
        RouterConfig(
            port=0,
            data_dir=str(tmp_path),
            health_interval_s=3600.0,
            limits=Limits(max_batch_events=7),
        )
    )
    await r.start()
    try:
        async with Client(r.url, "indicators") as client:
            await run_eleven_per_event(client, tmp_path, N)
        assert len(list(LogReader(tmp_path, "main").read(["indicator.>"]))) == 11 * N
    finally:
        await r.close()
