"""Tests of the replay time authority's pure parts (control commands, wave addressing)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.router.support import running_router
from tests.timeauthority.test_scheduler import rec
from tickertape.client import Client
from tickertape.errors import ConfigError, RouterError
from tickertape.replay import RunSettings
from tickertape.replay.control import (
    STEP_TOPIC,
    WELCOME_TOPIC,
    Done,
    Hello,
    StepAnnounce,
    step_topic,
)
from tickertape.replay.distributed import RemoteTimers, ReplayCoordinator
from tickertape.replay.manifest import DRIVER_SOURCE
from tickertape.router.auth import create_token
from tickertape.router.protocol import Committed
from tickertape.schemas.envelope import Envelope
from tickertape.schemas.registry import decode_payload, make_envelope
from tickertape.schemas.system import Divergence
from tickertape.timeauthority.control import ClockControl
from tickertape.timeauthority.pacing import Pacer


def coordinator(tmp_path: Path) -> ReplayCoordinator:
    c = ReplayCoordinator(
        None,  # type: ignore[arg-type]  # the pure parts never touch the client
        tmp_path,
        RunSettings(run_id="r1"),
        ["indicators", "strategy.x"],
        config_digest="0",
        pacer=Pacer(None),
    )
    c._patterns = {"indicators": ("md.bar.>",), "strategy.x": ("indicator.>", "md.bar.1m.us.*")}
    return c


def test_pause_resume_and_speed(tmp_path: Path) -> None:
    """ctl pause holds steps, resume releases them, speed changes the pacer; other runs ignored."""
    c = coordinator(tmp_path)
    c.control(ClockControl(command="pause"))
    assert not c.resumed.is_set()
    c.control(ClockControl(command="resume", run_id="other"))
    assert not c.resumed.is_set()
    c.control(ClockControl(command="resume", run_id="r1"))
    assert c.resumed.is_set()
    c.control(ClockControl(command="speed", speed=4.0))
    assert c.pacer is not None
    assert c.pacer.speed == 4.0


def test_seek_ahead_fast_forwards_and_seek_back_rewinds(tmp_path: Path) -> None:
    """A seek ahead of the clock unpaces steps up to its target; behind it (or at it), a
    rewind is due before the next step. Either resumes a paused run."""
    c = coordinator(tmp_path)
    c.now_ns = 1_000
    c.control(ClockControl(command="pause"))
    c.control(ClockControl(command="seek", time_ns=500))
    assert (c.rewind_to, c.seek_to) == (500, None)
    assert c.resumed.is_set()
    c.control(ClockControl(command="pause"))
    c.control(ClockControl(command="seek", time_ns=5_000))
    assert c.seek_to == 5_000
    assert c.resumed.is_set()


def test_waves_are_addressed_to_subscribers(tmp_path: Path) -> None:
    """A wave goes to the actors whose patterns match one of its topics."""
    c = coordinator(tmp_path)
    records = [
        rec(1, 10, topic="md.bar.1m.us.6EH4"),
        rec(2, 10, topic="md.trade.us.6EH4"),
        rec(3, 10, topic="md.bar.1d.us.6EH4"),
    ]
    assert c._targets({r.topic for r in records}) == ["indicators", "strategy.x"]
    assert c._targets({"md.bar.1d.us.6EH4"}) == ["indicators"]
    assert c._targets({"indicator.sma.v1.us.6EH4"}) == ["strategy.x"]
    assert c._targets({"pnl.update.portfolio"}) == []


def test_remote_timers_view() -> None:
    """The planner's timer view is the earliest reported timer; actors fire their own."""
    timers = RemoteTimers()
    timers.next = {"a": 30, "b": None, "c": 20}
    assert timers.next_due() == 20
    assert timers.pop_due(100) == []


async def test_a_wave_for_few_actors_goes_to_them_alone(tmp_path: Path) -> None:
    """A wave for at most half of the actors, all reading their own step topic, reaches
    only them (on system.replay.step.<actor>); a wave for more, or for an actor without
    its own topic, goes once to every actor on system.replay.step."""
    async with (
        running_router(tmp_path) as router,
        Client(router.url, DRIVER_SOURCE) as driver,
        Client(router.url, "a") as a,
        Client(router.url, "b") as b,
    ):
        c = ReplayCoordinator(
            driver, tmp_path, RunSettings(run_id="r1"), ["a", "b", "c"], config_digest="0"
        )
        c._direct = {"a", "b"}
        c._confirmed_step = True
        subs = {
            name: client.subscribe(
                [STEP_TOPIC, step_topic(name)], "now", ns="main", include_ephemeral=True
            )
            for name, client in (("a", a), ("b", b))
        }
        for sub in subs.values():
            assert await sub.established()

        def announce(seq: int, actors: list[str]) -> StepAnnounce:
            return StepAnnounce(
                run_id="r1", seq=seq, phase="step", step=seq, wave=0, time_ns=seq, actors=actors
            )

        await c._send_announce(announce(1, ["a"]))  # a alone
        await c._send_announce(announce(2, ["a", "b"]))  # 2 of 3: to everyone
        await c._send_announce(announce(3, ["c"]))  # c reads no topic of its own
        await c._send_announce(announce(4, ["b"]))  # b alone

        async def seqs(name: str, n: int) -> list[tuple[str, int]]:
            got = []
            async for env in subs[name]:
                assert isinstance(env, Envelope)
                payload = decode_payload(env.type, env.v, env.payload)
                got.append((env.topic, payload.seq))
                if len(got) == n:
                    return got
            return got

        assert await asyncio.wait_for(seqs("a", 3), 10) == [
            ("system.replay.step.a", 1),
            ("system.replay.step", 2),
            ("system.replay.step", 3),
        ]
        assert await asyncio.wait_for(seqs("b", 3), 10) == [
            ("system.replay.step", 2),
            ("system.replay.step", 3),
            ("system.replay.step.b", 4),
        ]


async def test_an_actor_token_without_its_own_step_topic_is_told_apart(tmp_path: Path) -> None:
    """A token from before the actors' own step topics: subscribing with it is refused
    (``established`` is False, so the host subscribes without it and says so in its
    hello); a token with the actor role today gets it."""
    tokens = tmp_path / "tokens.toml"
    old = create_token(tokens, "risk", subscribe=["system.replay.step", "system.replay.welcome"])
    new = create_token(tokens, "pnl", role="pnl")
    async with running_router(tmp_path, token_file=str(tokens)) as router:
        for name, token, direct in (("risk", old, False), ("pnl", new, True)):
            async with Client(router.url, name, token) as client:
                sub = client.subscribe(
                    [STEP_TOPIC, step_topic(name), WELCOME_TOPIC], "now", include_ephemeral=True
                )
                assert await asyncio.wait_for(sub.established(), 10) is direct
                fallback = client.subscribe([STEP_TOPIC, WELCOME_TOPIC], "now")
                assert await asyncio.wait_for(fallback.established(), 10)


def _done(announce: StepAnnounce, actor: str, **fields: Any) -> Done:
    """``actor``'s answer to ``announce`` of run ``r1``, with ``fields``."""
    return Done(run_id="r1", actor=actor, nonce="n", seq=announce.seq, **fields)


async def test_a_divergence_reported_in_a_snapshots_answer_is_counted(tmp_path: Path) -> None:
    """An actor that catches up after a restart compares what it regenerated before the
    next announcement, which may be a snapshot: the divergence its answer carries counts,
    and the snapshot becomes an epoch kept with its time."""
    c = coordinator(tmp_path)
    found = Divergence(id="strategy.x:7", fields=["payload"], stored={}, regenerated={})

    async def answer(announce: StepAnnounce, *, wait: bool = True, settle: bool = True) -> None:
        c._dones[announce.seq] = {
            actor: _done(
                announce, actor, outputs=0, divergences=[found] if actor == "strategy.x" else []
            )
            for actor in c.actors
        }

    c._send_and_wait = answer  # type: ignore[method-assign]
    await c._snapshot(5_000)
    assert c.divergences == [found]
    assert c._epochs == {0: 0, 1: 5_000}


async def test_a_divergence_found_by_a_commit_is_counted(tmp_path: Path) -> None:
    """A commit whose staged events the log held already answers the copies that differ
    from the stored events: they join the run's divergences."""
    found = Divergence(id="strategy.x:3", fields=["payload"], stored={}, regenerated={})
    asked: list[tuple[str, dict[str, int], int, str | None]] = []

    class Committer:
        async def commit(
            self, stage: str, expect: dict[str, int], ts_log: int, *, ns: str | None = None
        ) -> Committed:
            asked.append((stage, expect, ts_log, ns))
            return Committed(
                ref=1, stage=stage, first_gseq=4, last_gseq=5, count=2, divergences=[found]
            )

    c = coordinator(tmp_path)
    c.client = Committer()  # type: ignore[assignment]
    committed = await c._commit("r1:3:0", {"strategy.x": 2}, 9_000)
    assert (committed.first_gseq, committed.count) == (4, 2)
    assert asked == [("r1:3:0", {"strategy.x": 2}, 9_000, "runs/r1")]
    assert c.divergences == [found]


class _Router:
    """A stand-in client: commits at the positions it is told to, records announcements."""

    def __init__(self, first_gseq: int) -> None:
        self.first_gseq = first_gseq
        self.sent: list[StepAnnounce] = []

    async def commit(
        self, stage: str, expect: dict[str, int], ts_log: int, *, ns: str | None = None
    ) -> Committed:
        count = sum(expect.values())
        first, self.first_gseq = self.first_gseq, self.first_gseq + count
        return Committed(
            ref=1, stage=stage, first_gseq=first, last_gseq=first + count - 1, count=count
        )

    async def send_ephemeral(self, envelopes: list[Envelope], *, ns: str | None = None) -> None:
        for env in envelopes:
            self.sent.append(decode_payload(env.type, env.v, env.payload))


def _answering(c: ReplayCoordinator, outputs: dict[str, dict[str, int]]) -> None:
    """Every announcement is answered at once: ``outputs[actor]`` per topic in wave 0,
    nothing after."""

    async def wait_dones(announce: StepAnnounce) -> None:
        c._dones[announce.seq] = {
            actor: _done(
                announce,
                actor,
                outputs=sum(topics.values()) if announce.wave == 0 else 0,
                topics=topics if announce.wave == 0 else {},
            )
            for actor, topics in outputs.items()
            if announce.addresses(actor)
        }

    c._wait_dones = wait_dones  # type: ignore[method-assign]
    c._confirmed_step = True


async def test_the_next_wave_is_announced_with_the_gseqs_its_commit_will_take(
    tmp_path: Path,
) -> None:
    """Wave 1 goes out right behind wave 0's commit: its range follows the run's last
    commit and its counts per topic are the outputs' that a reader subscribes to."""
    c = coordinator(tmp_path)
    router = _Router(first_gseq=8)
    c.client = router  # type: ignore[assignment]
    c._run_head = 7  # the manifest and an earlier wave
    _answering(c, {"indicators": {"indicator.sma.v1.us.X": 2, "pnl.update.us": 1}})
    await c._run_step("step", 0, 5_000, targets=["indicators"], inputs=[])
    wave1 = router.sent[-1]
    assert (wave1.wave, wave1.actors, wave1.inputs) == (1, ["strategy.x"], [])
    assert (wave1.run_from, wave1.run_to) == (8, 10)
    assert wave1.run_topics == {"indicator.sma.v1.us.X": 2}  # pnl.update.us: no reader
    assert c._run_head == 10
    assert c._inflight is None


async def test_a_commit_stored_elsewhere_than_announced_fails_the_run(tmp_path: Path) -> None:
    """Only the time authority writes a run namespace: a commit at other gseqs than the
    ones announced (another writer) is a COMMIT_POSITION error, not a silent shift."""
    c = coordinator(tmp_path)
    c.client = _Router(first_gseq=12)  # type: ignore[assignment]  # 4 records appeared
    c._run_head = 7
    _answering(c, {"indicators": {"indicator.sma.v1.us.X": 2}})
    with pytest.raises(RouterError) as caught:
        await c._run_step("step", 0, 5_000, targets=["indicators"], inputs=[])
    assert caught.value.code == "COMMIT_POSITION"
    assert "12..13, announced as 8..9" in str(caught.value)


async def test_an_actor_of_another_protocol_version_is_refused(tmp_path: Path) -> None:
    """An actor that expects each wave's records in its announcement (protocol 1) would
    run waves ≥ 1 without inputs: its hello fails the run with a clear error."""
    c = coordinator(tmp_path)
    hello = Hello(run_id="r1", actor="indicators", nonce="n", protocol=1)
    env = make_envelope(
        hello, topic="system.replay.hello", source="indicators", source_seq=1, ts_event=0
    )
    with pytest.raises(ConfigError, match="speaks version 1 of the replay protocol"):
        await c._handle(env)
    assert c._nonces == {}


async def test_a_wave_counts_as_committed_only_once_its_commit_is_answered(
    tmp_path: Path,
) -> None:
    """A restarted actor replays without publishing the announcements up to the
    welcome's ``committed_seq``: the wave whose commit is in flight is not among them
    (its outputs may have to be staged again), the wave after it is once answered."""
    c = coordinator(tmp_path)
    router = _Router(first_gseq=1)
    release = asyncio.Event()
    commit = router.commit

    async def slow_commit(
        stage: str, expect: dict[str, int], ts_log: int, *, ns: str | None = None
    ) -> Committed:
        await release.wait()
        return await commit(stage, expect, ts_log, ns=ns)

    router.commit = slow_commit  # type: ignore[method-assign]
    c.client = router  # type: ignore[assignment]
    _answering(c, {"indicators": {"indicator.sma.v1.us.X": 1}})
    step = asyncio.create_task(c._run_step("step", 0, 5_000, targets=["indicators"], inputs=[]))
    await asyncio.sleep(0.01)
    assert [a.wave for a in router.sent] == [0, 1]  # wave 1 is out, its commit is not
    assert c._committed_seq == 0
    release.set()
    await step
    assert c._committed_seq == router.sent[-1].seq
