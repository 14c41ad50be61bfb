"""Clock reports: how a live process tells the time authority what time it has.

Every live process publishes its clock once a second as an ephemeral ``system.clock``
event (:class:`~tickertape.schemas.system.ClockTick`) on
``system.clock.actor.<identity>``; the time authority
(:class:`~tickertape.timeauthority.service.LiveClockService`) compares each report with
its own clock and raises ``system.clock.drift`` beyond the bound. The actors hosted by
:class:`~tickertape.actors.runtime.remote.RemoteHost` and the market-data feed
(``tape feed``) both report with :func:`report_clock`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tickertape.client import Client
from tickertape.schemas.registry import make_envelope
from tickertape.schemas.system import ClockTick

REPORT_PREFIX = "system.clock.actor."
"""Clock reports go to ``system.clock.actor.<identity>``."""

REPORT_INTERVAL_S = 1.0
"""Seconds between two clock reports."""


async def report_clock(
    client: Client,
    now_ns: Callable[[], int],
    *,
    namespace: str = "main",
    interval_s: float = REPORT_INTERVAL_S,
) -> None:
    """Publish ``now_ns()`` as the clock of ``client.identity`` every ``interval_s`` seconds.

    Each report is a :class:`ClockTick` (``mode="live"``) on
    ``system.clock.actor.<identity>``, ephemeral (never logged), with ``source_seq``
    counting from 1. A report the router has not taken within ``interval_s`` (the
    connection is down) is withdrawn rather than sent late: a stale time would look like
    drift. Runs until cancelled; cancelling is safe.

    Args:
        client: a started client; its identity is the reporting identity.
        now_ns: the process's clock, ns since the epoch.
        namespace: where the time authority listens.
        interval_s: seconds between reports (> 0).

    Raises:
        ValueError: ``interval_s`` ≤ 0.
        PublishRefusedError: the router refused a report (the identity may not publish
            on its ``system.clock.actor.<identity>``).
    """
    if not interval_s > 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
    topic = REPORT_PREFIX + client.identity
    seq = 0
    while True:
        if client.connected:
            seq += 1
            now = now_ns()
            report = make_envelope(
                ClockTick(mode="live", now_ns=now),
                topic=topic,
                source=client.identity,
                source_seq=seq,
                ts_event=now,
            )
            try:
                async with asyncio.timeout(interval_s):
                    await client.publish([report], ns=namespace, ephemeral=True)
            except TimeoutError:
                pass  # withdrawn (see above); the next report carries a fresh time
        await asyncio.sleep(interval_s)
