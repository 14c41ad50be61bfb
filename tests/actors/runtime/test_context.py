"""Tests of the actor context: deterministic ids, seeded random, bias guards."""

from __future__ import annotations

import msgspec
import pytest

from tickertape.actors.runtime.context import ActorContext
from tickertape.actors.runtime.errors import (
    LookAheadError,
    TopicTimeRegressionError,
    ZeroLatencyError,
    require_latency,
)
from tickertape.errors import SchemaError
from tickertape.schemas.market import Trade
from tickertape.timeauthority.clock import ActorClock, SimulatedClock
from tickertape.timeauthority.timers import TimerQueue

TRADE = Trade(symbol="X", price=1.0, size=1.0, side="buy", trade_id="1")


def make_ctx(
    now: int = 1_000, seed: int = 7, name: str = "md"
) -> tuple[ActorContext, SimulatedClock]:
    clock = SimulatedClock(now)
    return ActorContext(name, ActorClock(name, clock, TimerQueue()), seed=seed), clock


def test_publish_builds_a_deterministic_envelope() -> None:
    """Ids count source_seq from 1; ts_event and ts_init default to the clock."""
    ctx, _ = make_ctx()
    assert ctx.publish("md.trade.crypto.X", TRADE, market="crypto") == "md:1"
    assert ctx.publish("md.trade.crypto.X", TRADE, market="crypto") == "md:2"
    env = ctx.drain()[1]
    assert (env.source, env.source_seq, env.ts_event, env.ts_init) == ("md", 2, 1_000, 1_000)
    assert (env.type, env.v) == ("md.trade", 1)
    assert msgspec.json.decode(env.payload)["price"] == 1.0


def test_publish_in_the_future_is_look_ahead() -> None:
    """ts_event later than the clock raises LookAheadError."""
    ctx, _ = make_ctx()
    with pytest.raises(LookAheadError) as info:
        ctx.publish("md.trade.crypto.X", TRADE, market="crypto", ts_event=1_001)
    assert (info.value.ts_event, info.value.clock_ns) == (1_001, 1_000)


def test_backwards_time_on_a_topic_is_refused() -> None:
    """A ts_event earlier than the last one published on the topic raises."""
    ctx, _ = make_ctx()
    ctx.publish("md.trade.crypto.X", TRADE, market="crypto", ts_event=900)
    ctx.publish("md.trade.crypto.Y", TRADE, market="crypto", ts_event=800)
    with pytest.raises(TopicTimeRegressionError):
        ctx.publish("md.trade.crypto.X", TRADE, market="crypto", ts_event=899)


def test_bad_topic_and_unregistered_payload_are_schema_errors() -> None:
    """An invalid topic or an unregistered Struct raises SchemaError."""

    class NotRegistered(msgspec.Struct):
        x: int

    ctx, _ = make_ctx()
    with pytest.raises(SchemaError):
        ctx.publish("md..x", TRADE, market="crypto")
    with pytest.raises(SchemaError):
        ctx.publish("md.x", NotRegistered(x=1), market=None)


def test_random_is_seeded_by_run_and_actor() -> None:
    """Same seed and name give the same sequence; another name another one."""
    a, _ = make_ctx(seed=1, name="a")
    a2, _ = make_ctx(seed=1, name="a")
    b, _ = make_ctx(seed=1, name="b")
    seq = [a.random.random() for _ in range(3)]
    assert seq == [a2.random.random() for _ in range(3)]
    assert seq != [b.random.random() for _ in range(3)]


def test_causation_sets_correlation() -> None:
    """correlation_id defaults to the causation's correlation or id."""
    from tickertape.actors.base import Event
    from tickertape.schemas.envelope import stamp

    ctx, _ = make_ctx()
    ctx.publish("md.trade.crypto.X", TRADE, market="crypto")
    cause = Event(stamp(ctx.drain()[0], 0, 1, 1_000), TRADE)
    ctx.publish("md.trade.crypto.X", TRADE, market="crypto", causation=cause)
    env = ctx.drain()[0]
    assert (env.causation_id, env.correlation_id) == ("md:1", "md:1")


def test_next_id_counts_per_kind() -> None:
    """next_id is deterministic per kind."""
    ctx, _ = make_ctx(name="orders")
    assert [ctx.next_id("coid"), ctx.next_id("coid"), ctx.next_id("x")] == [
        "orders:coid:1",
        "orders:coid:2",
        "orders:x:1",
    ]


def test_zero_latency_is_refused() -> None:
    """A latency model of zero raises ZeroLatencyError; a positive one passes."""
    assert require_latency("order_to_venue", 1) == 1
    with pytest.raises(ZeroLatencyError):
        require_latency("order_to_venue", 0)
