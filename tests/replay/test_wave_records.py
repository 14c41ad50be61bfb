"""The actor side of replay protocol 2: a wave's records come from the actor's own run
subscription (RemoteReplayHost._wave_records), and an earlier announcement repeated
meanwhile is answered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.actors.runtime.sample_actors import SignalActor
from tests.timeauthority.test_scheduler import rec
from tickertape.actors.runtime.remote import RemoteReplayHost
from tickertape.errors import TickertapeError
from tickertape.replay.control import STEP_TOPIC, StepAnnounce
from tickertape.schemas.envelope import Envelope
from tickertape.schemas.registry import make_envelope

TOPIC = "indicator.mean.v1.crypto.BTCUSDT"  # SignalActor reads indicator.mean.v1.crypto.*


class FakeClient:
    """Records what the host publishes."""

    def __init__(self) -> None:
        self.published: list[tuple[list[Envelope], dict[str, Any]]] = []

    async def publish(self, envelopes: list[Envelope], **kwargs: Any) -> list[Any]:
        self.published.append((list(envelopes), kwargs))
        return []


class FakeControl:
    """An async iterator over control envelopes put into it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Envelope] = asyncio.Queue()

    def __aiter__(self) -> FakeControl:
        return self

    async def __anext__(self) -> Envelope:
        return await self.queue.get()


def announce(seq: int, **kw: Any) -> StepAnnounce:
    fields: dict[str, Any] = {"phase": "step", "step": 3, "wave": 1, "time_ns": 50}
    fields.update(kw)
    return StepAnnounce(run_id="r1", seq=seq, **fields)


def on_step_topic(a: StepAnnounce, seq: int) -> Envelope:
    return make_envelope(a, topic=STEP_TOPIC, source="replay", source_seq=seq, ts_event=0)


def host(tmp_path: Path) -> tuple[RemoteReplayHost, FakeClient, FakeControl]:
    client = FakeClient()
    h = RemoteReplayHost(client, SignalActor(), "signal", "r1", tmp_path)  # type: ignore[arg-type]
    ctl = FakeControl()
    h._ctl, h._steps = ctl, (STEP_TOPIC,)  # type: ignore[assignment]
    return h, client, ctl


async def test_a_wave_takes_its_records_from_the_subscription_and_answers_a_restaging(
    tmp_path: Path,
) -> None:
    """Records before the wave's range are dropped, the wave waits for as many as the
    announcement counts on the actor's topics, and meanwhile a restaging of the last
    answered announcement is published again (stage, then done); a repeat of the wave
    waited for is ignored and a later announcement is kept for after."""
    h, client, ctl = host(tmp_path)
    # Any payload will do: the fake client only records what is published.
    staged = make_envelope(announce(1), topic=TOPIC, source="signal", source_seq=1, ts_event=40)
    done = make_envelope(
        announce(2), topic="system.replay.done", source="signal", source_seq=2, ts_event=40
    )
    h.last_seq = 5
    h._recent[5] = (done, {"r1:3:0": [staged]})
    wave = announce(6, run_from=7, run_to=9, run_topics={TOPIC: 2, "pnl.update.us": 1})
    h._records.append(rec(4, 40, topic=TOPIC))  # an earlier wave's, consumed inline before
    waiting = asyncio.create_task(h._wave_records(wave))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await ctl.queue.put(on_step_topic(announce(5, wave=0, restage=["r1:3:0"]), 1))
    await ctl.queue.put(on_step_topic(wave, 2))  # the authority repeating the wave
    await ctl.queue.put(on_step_topic(announce(7, wave=2), 3))
    await asyncio.sleep(0.01)
    assert [(envs, kw.get("stage")) for envs, kw in client.published] == [
        ([staged], "r1:3:0"),
        ([done], None),
    ]
    h._records.extend([rec(7, 50, topic=TOPIC), rec(8, 50, topic=TOPIC)])
    h._records_ready.set()
    records = await asyncio.wait_for(waiting, 5)
    assert [r.gseq for r in records] == [7, 8]
    assert [a.seq for a in h._pending] == [7]
    assert not h._records


async def test_a_wave_missing_records_is_an_error_not_a_wait(tmp_path: Path) -> None:
    """A record past the wave's range while some of the wave's are missing means they
    will never come: an error naming the wave, not a wait for ever."""
    h, _, _ = host(tmp_path)
    h._records.extend([rec(7, 50, topic=TOPIC), rec(10, 60, topic=TOPIC)])
    with pytest.raises(TickertapeError, match=r"announced 2 records .* delivered 1 before gseq 10"):
        await h._wave_records(announce(6, run_from=7, run_to=9, run_topics={TOPIC: 2}))


async def test_wave_zero_takes_nothing_from_the_subscription(tmp_path: Path) -> None:
    """Wave 0 carries its inputs in the announcement."""
    h, _, _ = host(tmp_path)
    h._records.append(rec(7, 50, topic=TOPIC))
    assert await h._wave_records(announce(6, wave=0)) == []
    assert len(h._records) == 1
