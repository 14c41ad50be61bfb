"""Tests for tickertape.router.server, in process over real sockets: publish, subscribe, ACL, errors, replay extensions."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import connect as ws_connect

from tickertape.client import Client, PublishRefusedError
from tickertape.errors import AuthError, RouterError
from tickertape.eventlog import LogReader
from tickertape.router.auth import create_token
from tickertape.router.protocol import Limits, StartAt
from tickertape.router.server import Router, RouterConfig
from tickertape.schemas import Envelope, Record
from tickertape.schemas.orders import OrderEvent
from tickertape.schemas.registry import make_envelope
from tickertape.schemas.risk import RiskDecision
from tickertape.schemas.strategy import Intent

from .support import eventually, free_port, running_router, trade


def _obj(env: Envelope) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(msgspec.json.encode(env))
    return obj


async def _drain(sub: Any, n: int, within: float = 20.0) -> list[Any]:
    out: list[Any] = []

    async def take() -> None:
        async for item in sub:
            out.append(item)
            if len(out) >= n:
                return

    await asyncio.wait_for(take(), within)
    return out


async def test_history_to_live_seam_is_exactly_once(tmp_path: Path) -> None:
    """A subscriber joining mid-stream from the beginning gets every event once, in gseq order."""
    async with (
        running_router(tmp_path) as router,
        Client(router.url, "md") as pub,
        Client(router.url, "reader") as reader,
    ):
        for start in range(1, 3001, 300):
            await pub.publish([trade("md", i) for i in range(start, start + 300)])

        async def more() -> None:
            for start in range(3001, 8001, 250):
                await pub.publish([trade("md", i) for i in range(start, start + 250)])

        task = asyncio.create_task(more())
        sub = reader.subscribe(["md.>"], "beginning")
        got = await _drain(sub, 8000)
        await task
        assert [r.gseq for r in got] == list(range(1, 8001))
        assert sub.caught_up.is_set()


async def test_publish_is_durable_before_ack(tmp_path: Path) -> None:
    """A puback's positions are readable from the log files by another reader."""
    async with running_router(tmp_path) as router, Client(router.url, "md") as pub:
        acks = await pub.publish([trade("md", 1), trade("md", 2)])
        assert [a.gseq for a in acks] == [1, 2]
        records = list(LogReader(tmp_path, "main").read(["md.>"]))
        assert [r.id for r in records] == ["md:1", "md:2"]
        again = await pub.publish([trade("md", 2)])
        assert again[0].duplicate
        assert again[0].gseq == 2


@pytest.fixture
def acl_tokens(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "tokens.toml"
    return {
        "path": path,
        "strat": create_token(path, "strat", publish=["strategy.intent.*"], subscribe=["md.>"]),
        "risk": create_token(path, "risk", publish=["risk.>"], subscribe=[">"]),
        "driver": create_token(path, "driver", publish=[">"], subscribe=[">"], commit=True),
    }


def _intent(source: str, seq: int, topic: str) -> Envelope:
    return msgspec.structs.replace(
        trade(source, seq), topic=topic, type="md.trade", market="crypto"
    )


async def test_acl_blocks_publish_spoofing_and_subscribe(
    tmp_path: Path, acl_tokens: dict[str, Any]
) -> None:
    """strategy.intent.* only: no risk.approved.*, no other source, no subscription outside md.>."""
    async with (
        running_router(tmp_path / "d", token_file=str(acl_tokens["path"])) as router,
        Client(router.url, "strat", acl_tokens["strat"]) as strat,
    ):
        ok = await strat.publish([_intent("strat", 1, "strategy.intent.sma")])
        assert ok[0].gseq == 1
        with pytest.raises(PublishRefusedError) as info:
            await strat.publish([_intent("strat", 2, "risk.approved.sma")])
        assert info.value.code == "FORBIDDEN"
        with pytest.raises(PublishRefusedError) as info:
            await strat.publish([_intent("risk", 1, "strategy.intent.sma")])
        assert info.value.code == "SOURCE_MISMATCH"
        sub = strat.subscribe(["risk.>"], "beginning")
        with pytest.raises(RouterError) as err:
            await _drain(sub, 1)
        assert err.value.code == "FORBIDDEN"
        allowed = strat.subscribe(["md.>"], "beginning")
        await asyncio.wait_for(allowed.caught_up.wait(), 10)
        with pytest.raises(AuthError):
            await Client(router.url, "strat", acl_tokens["risk"], connect_timeout_s=5).start()
        stored = list(LogReader(tmp_path / "d", "main").read([">"]))
        assert [r.topic for r in stored] == ["strategy.intent.sma"]


async def _raw(url: str, frames: list[Any], expect: int) -> list[dict[str, Any]]:
    async with ws_connect(url) as ws:
        for frame in frames:
            await ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))
        out = []
        for _ in range(expect):
            out.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        return out


async def test_roles_keep_a_strategy_to_its_own_intents(tmp_path: Path) -> None:
    """Role grants: strategy.sma publishes its intents, never an approval or an order event."""
    path = tmp_path / "tokens.toml"
    roles = {"strategy.sma": "strategy", "risk": "risk", "orders": "orders"}
    tokens = {name: create_token(path, name, role=role) for name, role in roles.items()}
    intent = Intent(strategy_id="sma", intent_id="sma-1", market="crypto", symbol="BTC",
                    side="buy", quantity=1.0)  # fmt: skip
    decision = RiskDecision(strategy_id="sma", intent_id="sma-1", approved=True, reason_code="OK")
    order = OrderEvent(order_id="o-1", client_order_id="c-1", strategy_id="sma", market="crypto",
                       symbol="BTC", side="buy", order_type="market", quantity=1.0,
                       status="submitted")  # fmt: skip

    def env(source: str, seq: int, payload: Any, topic: str) -> Envelope:
        return make_envelope(payload, topic=topic, source=source, source_seq=seq,
                             ts_event=1_700_000_000_000_000_000 + seq, market="crypto")  # fmt: skip

    async with (
        running_router(tmp_path / "data", token_file=str(path)) as router,
        Client(router.url, "strategy.sma", tokens["strategy.sma"]) as strategy,
        Client(router.url, "risk", tokens["risk"]) as risk,
        Client(router.url, "orders", tokens["orders"]) as orders,
    ):
        assert (await strategy.publish([env("strategy.sma", 1, intent, "strategy.intent.sma")]))[
            0
        ].gseq == 1
        forged = [
            (decision, "risk.approved.sma"),
            (order, "order.submitted.crypto"),
            (intent, "strategy.intent.other"),
            (intent, "system.command.risk"),
        ]
        for seq, (payload, topic) in enumerate(forged, start=2):
            with pytest.raises(PublishRefusedError) as refused:
                await strategy.publish([env("strategy.sma", seq, payload, topic)])
            assert refused.value.results[0].error == "FORBIDDEN", topic
        assert (await risk.publish([env("risk", 1, decision, "risk.approved.sma")]))[0].gseq == 2
        assert (await orders.publish([env("orders", 1, order, "order.submitted.crypto")]))[
            0
        ].gseq == 3
        with pytest.raises(PublishRefusedError):  # the order engine cannot approve either
            await orders.publish([env("orders", 2, decision, "risk.approved.sma")])
        with pytest.raises(RouterError) as denied:
            await _drain(strategy.subscribe(["risk.approved.>"], "beginning"), 1)
        assert denied.value.code == "FORBIDDEN"
        seen = await _drain(strategy.subscribe(["order.>"], "beginning"), 1)
        assert [r.topic for r in seen] == ["order.submitted.crypto"]
    assert [r.topic for r in LogReader(tmp_path / "data", "main").read([">"])] == [
        "strategy.intent.sma",
        "risk.approved.sma",
        "order.submitted.crypto",
    ]


async def test_bad_frames_get_errors_and_others_are_unaffected(tmp_path: Path) -> None:
    """Each bad frame gets an error with its code and ref; another client's stream stays intact."""
    async with (
        running_router(tmp_path, limits=Limits(max_batch_events=5)) as router,
        Client(router.url, "md") as pub,
        Client(router.url, "reader") as reader,
    ):
        sub = reader.subscribe(["md.>"], "beginning")
        good = trade("bad", 1)
        frames: list[Any] = [
            {"op": "pub", "ref": 0, "events": []},
            {"op": "hello", "ref": 1, "identity": "bad"},
            "not json",
            {"op": "zap", "ref": 2},
            {"op": "sub", "ref": 3},
            {"op": "sub", "ref": 4, "patterns": ["md.>.x"]},
            {"op": "pub", "ref": 5, "events": [{"id": 1}]},
            {"op": "pub", "ref": 6, "events": [_obj(trade("other", 1))]},
            {"op": "pub", "ref": 7, "events": [_obj(good)] * 6},
            {"op": "pub", "ref": 8, "events": [{**_obj(good), "payload": {"symbol": 1}}]},
            {"op": "pub", "ref": 9, "events": [{**_obj(good), "type": "no.such"}]},
            {"op": "unsub", "ref": 10, "sub": "nope"},
            {"op": "sub", "ref": 11, "patterns": ["md.>"], "ns": "bad/ns/x"},
            {"op": "hello", "ref": 12, "identity": "bad"},
        ]
        replies = await _raw(router.url, frames, expect=14)
        codes = {
            r.get("ref"): r.get("code") or [i.get("error") for i in r.get("results", [])]
            for r in replies
        }
        assert codes[0] == "NOT_AUTHENTICATED"
        assert codes[None] == "BAD_JSON"
        assert codes[2] == "UNKNOWN_OP"
        assert codes[3] == "BAD_FRAME"
        assert codes[4] == "BAD_PATTERN"
        assert codes[5] == "SCHEMA_INVALID"
        assert codes[6] == ["SOURCE_MISMATCH"]
        assert codes[7] == "BATCH_TOO_LARGE"
        assert codes[8] == ["SCHEMA_INVALID"]
        assert codes[9] == ["UNKNOWN_TYPE"]
        assert codes[10] == "UNKNOWN_SUBSCRIPTION"
        assert codes[11] == "BAD_NAMESPACE"
        assert codes[12] == "ALREADY_AUTHENTICATED"
        await pub.publish([trade("md", i) for i in range(1, 6)])
        got = await _drain(sub, 5)
        assert [r.gseq for r in got] == [1, 2, 3, 4, 5]
        assert router.counters.errors >= 12


async def test_oversized_frame_closes_only_that_connection(tmp_path: Path) -> None:
    """A frame above max_frame_bytes closes its connection with 1009; the router keeps serving."""
    async with (
        running_router(tmp_path, limits=Limits(max_frame_bytes=10_000)) as router,
        ws_connect(router.url) as ws,
    ):
        await ws.send(json.dumps({"op": "hello", "ref": 1, "identity": "x"}))
        await ws.recv()
        await ws.send("x" * 20_000)
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 1009
        async with Client(router.url, "md") as pub:
            assert (await pub.publish([trade("md", 1)]))[0].gseq == 1


async def test_second_writer_on_a_topic_is_refused(tmp_path: Path) -> None:
    """Once md writes a topic, another identity publishing there gets TOPIC_OWNED."""
    async with (
        running_router(tmp_path) as router,
        Client(router.url, "md") as a,
        Client(router.url, "md2") as b,
    ):
        await a.publish([trade("md", 1)])
        with pytest.raises(PublishRefusedError) as info:
            await b.publish([trade("md2", 1)])
        assert info.value.code == "TOPIC_OWNED"
    async with running_router(tmp_path) as router, Client(router.url, "md2") as b:
        with pytest.raises(PublishRefusedError) as info:
            await b.publish([trade("md2", 1)])
        assert info.value.code == "TOPIC_OWNED"


async def test_subscription_limit(tmp_path: Path) -> None:
    """More subscriptions than allowed are refused with a code (frame rates:
    test_limits_and_retries.py)."""
    limits = Limits(max_subscriptions=2)
    async with running_router(tmp_path, limits=limits) as router:
        frames: list[Any] = [{"op": "hello", "ref": 0, "identity": "x"}]
        frames += [{"op": "sub", "ref": i, "patterns": ["md.>"]} for i in range(1, 4)]
        replies = await _raw(router.url, frames, expect=4)
        codes = [r.get("code") for r in replies if r["op"] == "error"]
        assert codes == ["TOO_MANY_SUBSCRIPTIONS"]


async def test_staged_publish_and_commit(tmp_path: Path, acl_tokens: dict[str, Any]) -> None:
    """Staged events are held, committed as one sorted batch with the given ts_log, and fanned out."""
    async with (
        running_router(tmp_path / "d", token_file=str(acl_tokens["path"])) as router,
        Client(router.url, "driver", acl_tokens["driver"]) as driver,
        Client(router.url, "strat", acl_tokens["strat"]) as strat,
    ):
        ns = "runs/test-1"
        sub = driver.subscribe([">"], "beginning", ns=ns)
        late = _intent("strat", 2, "strategy.intent.a")
        early = msgspec.structs.replace(
            _intent("strat", 1, "strategy.intent.b"), ts_event=late.ts_event
        )
        acks = await strat.publish([late, early], ns=ns, stage="step-1")
        assert all(a.staged for a in acks)
        with pytest.raises(RouterError) as err:
            await driver.commit("step-1", {"strat": 3}, ts_log=42, ns=ns)
        assert err.value.code == "STAGE_INCOMPLETE"
        with pytest.raises(RouterError) as err:
            await strat.commit("step-1", {"strat": 2}, ts_log=42, ns=ns)
        assert err.value.code == "FORBIDDEN"
        done = await driver.commit("step-1", {"strat": 2}, ts_log=42, ns=ns)
        assert (done.first_gseq, done.last_gseq, done.count) == (1, 2, 2)
        empty = await driver.commit("step-2", {}, ts_log=43, ns=ns)
        assert empty.count == 0
        got = await _drain(sub, 2)
        assert [(r.source_seq, r.ts_log) for r in got] == [(1, 42), (2, 42)]
        assert list(LogReader(tmp_path / "d", "main").read([">"])) == []


async def test_a_commit_of_stored_events_reports_those_that_differ(
    tmp_path: Path, acl_tokens: dict[str, Any]
) -> None:
    """Events staged again after their commit (a retried commit, regenerated outputs)
    are not stored twice; the answer names the copies whose content differs from the
    stored events (here a payload), not those that match, and the log keeps the first."""
    async with (
        running_router(tmp_path / "d", token_file=str(acl_tokens["path"])) as router,
        Client(router.url, "driver", acl_tokens["driver"]) as driver,
        Client(router.url, "strat", acl_tokens["strat"]) as strat,
    ):
        ns = "runs/test-dup"
        first = [_intent("strat", 1, "strategy.intent.a"), _intent("strat", 2, "strategy.intent.a")]
        await strat.publish(first, ns=ns, stage="w1")
        done = await driver.commit("w1", {"strat": 2}, ts_log=42, ns=ns)
        assert (done.count, done.divergences) == (2, [])
        changed = msgspec.structs.replace(first[1], payload=trade("strat", 99).payload)
        await strat.publish([first[0], changed], ns=ns, stage="w1-again")
        again = await driver.commit("w1-again", {"strat": 2}, ts_log=42, ns=ns)
        assert (again.first_gseq, again.last_gseq, again.count) == (1, 2, 2)
        assert [(d.id, d.fields) for d in again.divergences] == [("strat:2", ["payload"])]
        assert again.divergences[0].regenerated["payload"]["trade_id"] == "99"
        assert again.divergences[0].stored["payload"]["trade_id"] == "2"
    stored = list(LogReader(tmp_path / "d", ns).read([">"]))
    assert [bytes(r.payload) for r in stored] == [bytes(e.payload) for e in first]


async def test_staged_events_lost_with_a_restart_are_reported(
    tmp_path: Path, acl_tokens: dict[str, Any]
) -> None:
    """After a router restart a commit of a lost stage answers STAGE_UNKNOWN; staging again works."""
    config = RouterConfig(port=free_port(), data_dir=str(tmp_path / "d"),
                          token_file=str(acl_tokens["path"]))  # fmt: skip
    router = Router(config)
    await router.start()
    try:
        async with (
            Client(router.url, "driver", acl_tokens["driver"], max_backoff_s=0.1) as driver,
            Client(router.url, "strat", acl_tokens["strat"], max_backoff_s=0.1) as strat,
        ):
            batch = [
                _intent("strat", 1, "strategy.intent.a"),
                _intent("strat", 2, "strategy.intent.a"),
            ]
            assert all(a.staged for a in await strat.publish(batch, ns="runs/r", stage="w1"))
            assert driver.welcome is not None
            boot = driver.welcome.boot
            await router.close()
            router = Router(config)
            await router.start()
            await eventually(lambda: driver.connected and strat.connected)
            assert driver.welcome.boot != boot  # the stagers can tell that stages were lost
            with pytest.raises(RouterError) as err:
                await driver.commit("w1", {"strat": 2}, ts_log=7, ns="runs/r")
            assert err.value.code == "STAGE_UNKNOWN"
            assert all(a.staged for a in await strat.publish(batch, ns="runs/r", stage="w1"))
            done = await driver.commit("w1", {"strat": 2}, ts_log=7, ns="runs/r")
            assert (done.first_gseq, done.count) == (1, 2)
            with pytest.raises(RouterError) as err:  # committed: nothing held any more
                await driver.commit("w1", {"strat": 2}, ts_log=7, ns="runs/r")
            assert err.value.code == "STAGE_UNKNOWN"
    finally:
        await router.close()


async def test_ephemeral_messages_reach_live_subscribers_and_are_not_logged(tmp_path: Path) -> None:
    """An ephemeral pub is delivered without positions and never stored; health arrives too."""
    async with (
        running_router(tmp_path) as router,
        Client(router.url, "ta") as ta,
        Client(router.url, "actor") as actor,
    ):
        sub = actor.subscribe(["system.>"], "now", include_ephemeral=True)
        await asyncio.wait_for(sub.caught_up.wait(), 10)
        alert = trade("ta", 1, topic="system.replay.step")
        await ta.publish([alert], ephemeral=True)
        got: list[Any] = []

        async def until_both() -> None:
            async for item in sub:
                got.append(item)
                topics = {g.topic for g in got}
                if "system.replay.step" in topics and "system.health.router" in topics:
                    return

        await asyncio.wait_for(until_both(), 10)
        assert all(isinstance(g, Envelope) for g in got)
        assert not any(isinstance(g, Record) for g in got)
        assert list(LogReader(tmp_path, "main").read([">"])) == []
        stats = await ta.stats()
        assert stats["component"] == "router"
        assert {c["identity"] for c in stats["connections"]} == {"ta", "actor"}


async def test_unconfirmed_ephemeral_batches_are_answered_only_when_refused(
    tmp_path: Path,
) -> None:
    """``ack: false`` on an ephemeral pub: delivered batches get no ``puback`` (the next
    frame the publisher receives answers its following request), refused ones do, and
    :meth:`Client.send_ephemeral` counts the refusal."""
    async with (
        running_router(tmp_path) as router,
        Client(router.url, "actor") as actor,
        ws_connect(router.url) as ws,
    ):
        sub = actor.subscribe(["system.replay.>"], "now", include_ephemeral=True)
        await asyncio.wait_for(sub.caught_up.wait(), 10)
        await ws.send(json.dumps({"op": "hello", "ref": 0, "identity": "ta"}))
        assert json.loads(await ws.recv())["op"] == "welcome"
        step = _obj(trade("ta", 1, topic="system.replay.step"))
        await ws.send(
            json.dumps({"op": "pub", "ref": 1, "events": [step], "ephemeral": True, "ack": False})
        )
        await ws.send(json.dumps({"op": "stats", "ref": 2}))
        answer = json.loads(await ws.recv())
        assert (answer["op"], answer["ref"]) == ("stats", 2)
        got = await _drain(sub, 1)
        assert [g.id for g in got] == ["ta:1"]
        # Refused (the source is not the connection's identity): answered.
        forged = _obj(trade("someone", 2, topic="system.replay.step"))
        await ws.send(
            json.dumps({"op": "pub", "ref": 3, "events": [forged], "ephemeral": True, "ack": False})
        )
        refused = json.loads(await ws.recv())
        assert (refused["op"], refused["ref"]) == ("puback", 3)
        assert refused["results"][0]["error"]
        # The client's unconfirmed send: delivered, and a refusal counted.
        assert await actor.send_ephemeral([trade("actor", 3, topic="system.replay.done")])
        assert await actor.send_ephemeral([trade("ta", 4, topic="system.replay.done")])
        await eventually(lambda: actor.refused_unconfirmed == 1)
        got = await _drain(sub, 1)
        assert [g.id for g in got] == ["actor:3"]
        assert list(LogReader(tmp_path, "main").read([">"])) == []


async def test_slow_subscriber_is_switched_to_the_log_and_catches_up(tmp_path: Path) -> None:
    """A connection that stops reading its socket is moved to log reading, then gets everything once."""
    limits = Limits(send_queue_frames=4)
    async with (
        running_router(tmp_path, limits=limits) as router,
        Client(router.url, "md") as pub,
        ws_connect(router.url, max_queue=1, max_size=None) as ws,
    ):
        await ws.send(json.dumps({"op": "hello", "ref": 0, "identity": "slow"}))
        assert json.loads(await ws.recv())["op"] == "welcome"
        await ws.send(json.dumps({"op": "sub", "ref": "s", "patterns": ["md.>"]}))
        ops = [json.loads(await ws.recv())["op"] for _ in range(2)]
        assert ops == ["subscribed", "caught_up"]
        for start in range(1, 20_001, 100):  # the bare client reads nothing meanwhile
            await pub.publish([trade("md", i) for i in range(start, start + 100)])
        gseqs: list[int] = []
        seen: list[str] = []
        while len(gseqs) < 20_000 or seen[-1] != "caught_up":
            frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
            seen.append(frame["op"])
            if frame["op"] == "events":
                gseqs += [e["gseq"] for e in frame["events"]]
        assert gseqs == list(range(1, 20_001))
        assert "lagging" in seen
        stats = await pub.stats()
        subs = [s for c in stats["connections"] for s in c["subscriptions"]]
        assert subs[0]["switches_to_log"] >= 1


async def test_full_subscription_buffer_does_not_stall_the_connection(tmp_path: Path) -> None:
    """A subscription whose consumer stops does not hold up another one of the same client."""
    async with (
        running_router(tmp_path) as router,
        Client(router.url, "md") as pub,
        Client(router.url, "reader") as reader,
    ):
        stalled = reader.subscribe(["md.>"], "now", queue_frames=2)
        flowing = reader.subscribe(["md.>"], "now", queue_frames=2)
        await asyncio.wait_for(stalled.caught_up.wait(), 10)
        await asyncio.wait_for(flowing.caught_up.wait(), 10)
        consumer = asyncio.create_task(_drain(flowing, 10_000))
        for start in range(1, 10_001, 100):
            await pub.publish([trade("md", i) for i in range(start, start + 100)])
        got = await asyncio.wait_for(consumer, 30)  # nobody reads `stalled` meanwhile
        assert [r.gseq for r in got] == list(range(1, 10_001))
        assert stalled.overflows >= 1
        late = await _drain(stalled, 10_000, within=30)
        assert [r.gseq for r in late] == list(range(1, 10_001))
        assert [s["sub"] for c in (await pub.stats())["connections"]
                for s in c["subscriptions"] if c["identity"] == "reader"] == sorted(
            [stalled.ref, flowing.ref], key=str
        )  # fmt: skip


async def test_fetch_that_overflows_its_buffer_resumes_within_its_limit(tmp_path: Path) -> None:
    """A fetch whose consumer waits overflows, fetches the rest again, and still honours limit."""
    async with running_router(tmp_path) as router, Client(router.url, "md") as c:
        for start in range(1, 5001, 1000):
            await c.publish([trade("md", i) for i in range(start, start + 1000)])
        fetch = c.fetch(["md.>"], "beginning", limit=4500, queue_frames=2)
        await eventually(lambda: fetch.overflows >= 1)
        got = [r.gseq async for r in fetch]
        assert got == list(range(1, 4501))


async def test_fetch_streams_a_bounded_range(tmp_path: Path) -> None:
    """fetch yields the requested range and ends."""
    async with running_router(tmp_path) as router, Client(router.url, "md") as c:
        await c.publish([trade("md", i) for i in range(1, 51)])
        got = [r async for r in c.fetch(["md.>"], StartAt(gseq=10), to_gseq=20)]
        assert [r.gseq for r in got] == list(range(10, 21))
        limited = [r async for r in c.fetch(["md.>"], "beginning", limit=7)]
        assert len(limited) == 7


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --tls-cert/--tls-key the router speaks wss:// and a client trusting the cert works."""
    cert, key = _self_signed(tmp_path)
    async with running_router(tmp_path / "d", tls_cert=str(cert), tls_key=str(key)) as router:
        assert router.url.startswith("wss://")
        ctx = ssl.create_default_context(cafile=str(cert))
        async with Client(router.url, "md", ssl_context=ctx) as c:
            assert (await c.publish([trade("md", 1)]))[0].gseq == 1
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # no context: the default trust store
        async with Client(router.url, "md") as c:
            assert (await c.publish([trade("md", 2)]))[0].gseq == 2
