"""The time authority service in live mode (``tape clock --mode live``).

Over the router, on one namespace, it

- publishes its clock every ``tick_s`` as an ephemeral ``system.clock`` event
  (:class:`~tickertape.schemas.system.ClockTick`): the time reference live processes
  compare against;
- listens to the actors' clock reports (``system.clock.actor.<name>``, ephemeral,
  sent by :class:`~tickertape.actors.runtime.remote.RemoteHost`) and publishes a
  durable ``system.clock.drift`` event (:class:`~tickertape.schemas.system.ClockDrift`)
  when one strays beyond the bound (:class:`~tickertape.timeauthority.drift.DriftMonitor`);
- answers time queries: a :class:`~tickertape.schemas.system.ClockQuery` on
  ``system.clock.query.<identity>`` gets a :class:`~tickertape.schemas.system.ClockReply`
  on ``system.clock.reply.<identity>`` (both ephemeral;
  :func:`tickertape.timeauthority.query.query_time` is the asking side).

Its ``source_seq`` is its own clock in ns (strictly increasing, and unique across
restarts as long as the machine's clock does not step back over the downtime), so a
restarted authority never collides with what it stored before.

Backtest and replay modes are :class:`tickertape.replay.distributed.ReplayCoordinator`.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
import structlog

from tickertape.client import Client
from tickertape.schemas.envelope import Envelope
from tickertape.schemas.registry import decode_payload, make_envelope
from tickertape.schemas.system import ClockQuery, ClockReply, ClockTick
from tickertape.timeauthority.clock import LiveClock
from tickertape.timeauthority.drift import DriftMonitor
from tickertape.timeauthority.query import QUERY_PREFIX, REPLY_PREFIX

_log = structlog.get_logger("tickertape.timeauthority")

IDENTITY = "timeauthority"
TICK_TOPIC = "system.clock"
DRIFT_TOPIC = "system.clock.drift"
REPORT_PATTERN = "system.clock.actor.>"


class LiveClockService:
    """The live time authority.

    Args:
        client: a started client with identity ``timeauthority``.
        namespace: the namespace served.
        monitor: the drift rule.
        tick_s: seconds between clock ticks.
        clock: the authority's clock.
    """

    def __init__(
        self,
        client: Client,
        *,
        namespace: str = "main",
        monitor: DriftMonitor | None = None,
        tick_s: float = 1.0,
        clock: LiveClock | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.monitor = monitor or DriftMonitor()
        self.tick_s = tick_s
        self.clock = clock or LiveClock()
        self.alerts = 0
        self.queries = 0
        self._last_seq = 0

    def _envelope(self, topic: str, payload: msgspec.Struct) -> Envelope:
        now = self.clock.now_ns()
        seq = max(now, self._last_seq + 1)
        self._last_seq = seq
        return make_envelope(payload, topic=topic, source=IDENTITY, source_seq=seq, ts_event=now)

    async def run(self) -> None:
        """Tick, answer time queries and watch reports until cancelled."""
        inbox = self.client.subscribe(
            [REPORT_PATTERN, QUERY_PREFIX + ">"],
            "now",
            ns=self.namespace,
            include_ephemeral=True,
            queue_frames=1024,
        )
        ticker = asyncio.create_task(self._tick(), name="clock-ticks")
        try:
            async for item in inbox:
                if not isinstance(item, Envelope):
                    continue
                if item.topic.startswith(QUERY_PREFIX):
                    await self._answer(item)
                elif item.type == "system.clock":
                    await self._check(item)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await inbox.close()

    async def _answer(self, item: Envelope) -> None:
        query = decode_payload(item.type, item.v, item.payload)
        if not isinstance(query, ClockQuery):
            return
        reply = ClockReply(
            query_id=query.query_id,
            requester=item.source,
            sent_ns=query.sent_ns,
            authority_ns=self.clock.now_ns(),
        )
        self.queries += 1
        await self.client.publish(
            [self._envelope(REPLY_PREFIX + item.source, reply)], ns=self.namespace, ephemeral=True
        )

    async def _check(self, item: Envelope) -> None:
        report = decode_payload(item.type, item.v, item.payload)
        alert = self.monitor.report(item.source, report.now_ns, self.clock.now_ns())
        if alert is not None:
            self.alerts += 1
            _log.warning("clock_drift", actor=alert.actor, drift_ns=alert.drift_ns)
            await self.client.publish([self._envelope(DRIFT_TOPIC, alert)], ns=self.namespace)

    async def _tick(self) -> None:
        while True:
            tick = ClockTick(mode="live", now_ns=self.clock.now_ns())
            await self.client.publish(
                [self._envelope(TICK_TOPIC, tick)], ns=self.namespace, ephemeral=True
            )
            await asyncio.sleep(self.tick_s)
