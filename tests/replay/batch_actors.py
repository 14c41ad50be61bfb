"""Actors that cannot feed one another, with timers (the batched replay's tests)."""

from __future__ import annotations

import os

import msgspec

from tickertape.actors.base import Actor, Context, Event, Timer
from tickertape.schemas.indicator import IndicatorValue
from tickertape.schemas.market import Trade

MS = 1_000_000


class EchoState(msgspec.Struct, kw_only=True):
    """State of :class:`TimerEcho`."""

    started: bool = False
    trades: int = 0
    fired: int = 0


class TimerEcho(Actor):
    """Publishes on its timers: a 25 ms heartbeat (between and on trade times), a timer
    for "now" every 7th trade (a second step at the same time), and one 3 ms later
    every 5th trade. Subscribes to trades only, publishes ``echo.*``: no actor reads it.
    """

    name = "echo"
    subscriptions = ("md.trade.crypto.*",)
    state_version = 1

    def __init__(self, config: None = None) -> None:
        self.state = EchoState()

    def on_start(self, ctx: Context) -> None:
        if not self.state.started:
            self.state.started = True
            ctx.clock.set_timer("heartbeat", interval_ns=25 * MS)

    def on_event(self, event: Event, ctx: Context) -> None:
        trade: Trade = event.payload
        self.state.trades += 1
        if self.state.trades % 7 == 0:
            ctx.clock.set_timer(f"now-{self.state.trades}", at_ns=ctx.clock.now_ns())
        if self.state.trades % 5 == 0:
            ctx.clock.set_timer(f"later-{self.state.trades}", at_ns=ctx.clock.now_ns() + 3 * MS)
        if self.state.trades % 3 == 0:
            self._publish(ctx, trade.symbol, "trade")

    def on_timer(self, timer: Timer, ctx: Context) -> None:
        self.state.fired += 1
        self._publish(ctx, timer.name, "timer")

    def _publish(self, ctx: Context, what: str, kind: str) -> None:
        ctx.publish(
            f"echo.{kind}",
            IndicatorValue(
                symbol=what,
                name=kind,
                interval="tick",
                params={},
                values={"fired": float(self.state.fired), "trades": float(self.state.trades)},
                bar_ts=ctx.clock.now_ns(),
            ),
            market="crypto",
        )

    def snapshot(self) -> msgspec.Struct:
        return self.state

    def restore(self, state: bytes) -> None:
        self.state = msgspec.msgpack.decode(state, type=EchoState)


class PidEcho(Actor):
    """Publishes its process id on every trade: not deterministic across restarts (the
    divergence tests' faulty actor)."""

    name = "pidecho"
    subscriptions = ("md.trade.crypto.*",)
    state_version = 1

    def __init__(self, config: None = None) -> None:
        self.state = EchoState()

    def on_event(self, event: Event, ctx: Context) -> None:
        self.state.trades += 1
        ctx.publish(
            "echo.pid",
            IndicatorValue(
                symbol="pid",
                name="pid",
                interval="tick",
                params={},
                values={"pid": float(os.getpid()), "trades": float(self.state.trades)},
                bar_ts=ctx.clock.now_ns(),
            ),
            market="crypto",
        )

    def snapshot(self) -> msgspec.Struct:
        return self.state

    def restore(self, state: bytes) -> None:
        self.state = msgspec.msgpack.decode(state, type=EchoState)
