"""How the long-running ``tape`` commands run and stop: one rule for SIGINT and SIGTERM.

Every process of the Procfile (``tape router``, ``tape clock --mode live``, ``tape
exchange-sim``, ``tape feed``, ``tape actor ...``) and ``tape tail --router`` run their
work with :func:`run_until_stopped`: the first SIGINT (Ctrl-C) or SIGTERM (``tape up``,
``honcho``, ``kill``, systemd) logs ``stopping`` with the signal's name and asks the
work to stop cleanly (an actor handles ``on_stop``, flushes its outputs and writes its
snapshot; the feed publishes what it holds and writes its snapshot); the process then
exits with status 0 and no traceback, after an ``exited`` log line (``tape tail``
writes neither line). A second signal cancels the work at once (still status 0). The
handlers are installed before the process connects anywhere, so a stop that arrives
while it is still connecting is clean too.

``tape tail --follow`` on the files runs no event loop: :func:`stopped_by_signals`
sets the reader's stop on the first SIGINT or SIGTERM, and it ends at its next poll
with status 0.

:func:`serve_live_actor` and :func:`serve_feed` are the live actor and market-data
processes built on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from tickertape.loop import unless_stopped

if TYPE_CHECKING:
    from tickertape.actors.base import Actor
    from tickertape.actors.marketdata.actor import LiveFeedConfig

_log = structlog.get_logger("tickertape.cli")


STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
"""The signals that stop a long-running command cleanly."""


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[threading.Event]:
    """An event set by the first of :data:`STOP_SIGNALS`, for work without an event
    loop (a second SIGINT raises KeyboardInterrupt at once); the previous handlers are
    put back on exit.

    ``tape tail --follow`` on the files checks it at each poll of the head (0.1 s) and
    after each batch, instead of a KeyboardInterrupt landing anywhere in the reader or
    the printer.
    """
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stopping.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_until_stopped(
    main: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    *,
    command: str,
    use_uvloop: bool = False,
    log: bool = True,
) -> None:
    """Run ``main(stop)`` in a new event loop until it returns.

    The first SIGINT or SIGTERM sets ``stop`` (``main`` winds down and returns); a
    second one cancels ``main``. Either way this returns normally, so the command exits
    with status 0. Exceptions of ``main`` propagate (the CLI prints them).

    Args:
        main: the command's work, given the event to watch.
        command: the command's name, in the ``stopping`` and ``exited`` log lines.
        use_uvloop: run on uvloop when it is installed (the router and the log).
        log: write the ``stopping`` and ``exited`` lines (off for ``tape tail``, whose
            stderr is the user's terminal).
    """

    async def guarded() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(main(stop), name=f"tape-{command}")
        loop = asyncio.get_running_loop()
        received: list[str] = []

        def on_signal(sig: signal.Signals) -> None:
            received.append(sig.name)
            if len(received) == 1:
                if log:
                    _log.info("stopping", command=command, signal=sig.name)
                stop.set()
            else:
                if log:
                    _log.warning("stopping_now", command=command, signal=sig.name)
                task.cancel()

        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await task
        except asyncio.CancelledError:
            if not received:
                raise
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
        if log:
            _log.info("exited", command=command, signal=received[0] if received else None)

    if use_uvloop:
        from tickertape import loop

        loop.run(guarded())
    else:
        asyncio.run(guarded())


async def stopping_with(
    stop: asyncio.Event, work: Awaitable[None], on_stop: Callable[[], None]
) -> None:
    """Await ``work``; when ``stop`` is set meanwhile, call ``on_stop()`` (once) and go
    on awaiting ``work``, which should then wind down and return."""
    watcher = asyncio.create_task(stop.wait(), name="tape-stop-watch")
    watcher.add_done_callback(lambda t: None if t.cancelled() else on_stop())
    try:
        await work
    finally:
        watcher.cancel()


async def serve_live_actor(
    stop: asyncio.Event,
    router_url: str,
    actor: Actor,
    name: str,
    data_dir: str | Path,
    *,
    token: str | None = None,
) -> None:
    """Host ``actor`` live through the router until ``stop`` (``tape actor NAME``).

    Connects as ``name``, runs :class:`~tickertape.actors.runtime.remote.RemoteHost`
    (snapshot, history, live; clock reports every second) and, on ``stop``, lets it
    stop cleanly (``on_stop``, outputs flushed, final snapshot).

    Raises:
        AuthError: the router refused the identity or token.
        TimeoutError: no connection to the router within 30 s.
        BiasError, ActorFailedError, RouterError: from the host (see ``RemoteHost.run``).
    """
    from tickertape.actors.runtime.remote import RemoteHost
    from tickertape.client import Client

    client = Client(router_url, name, token)
    try:
        started, _ = await unless_stopped(stop, client.start(), name=f"{name}:connect")
        if not started:
            return
        host = RemoteHost(client, actor, name, data_dir)
        await stopping_with(stop, host.run(), host.stop)
        _log.info("stopped", actor=name, position=host.position)
    finally:
        await client.close()


async def serve_feed(
    stop: asyncio.Event,
    router_url: str,
    config: LiveFeedConfig,
    data_dir: str | Path,
    *,
    identity: str = "marketdata",
    token: str | None = None,
) -> None:
    """Run the live market-data process until ``stop`` (``tape feed``).

    :class:`~tickertape.actors.marketdata.binance_client.LiveMarketDataHost` (the venue
    feed and its bars, published durably) plus this machine's clock reports for the time
    authority's drift check (:func:`~tickertape.timeauthority.report.report_clock`,
    like every live actor). On ``stop`` the host publishes what it holds and writes its
    snapshot.

    Raises:
        AuthError: the router refused the identity or token.
        TimeoutError: no connection to the router within 30 s.
        PublishRefusedError: as ``LiveMarketDataHost.run``.
    """
    from tickertape.actors.marketdata.binance_client import LiveMarketDataHost
    from tickertape.client import Client
    from tickertape.errors import RouterError
    from tickertape.timeauthority.clock import LiveClock
    from tickertape.timeauthority.report import report_clock

    client = Client(router_url, identity, token)
    try:
        started, _ = await unless_stopped(stop, client.start(), name=f"{identity}:connect")
        if not started:
            return
        host = LiveMarketDataHost(client, config, data_dir, identity=identity)

        async def reporting() -> None:
            # A token without system.clock.actor.<identity> (a hand-written ACL) costs
            # the drift check, not the market data.
            try:
                await report_clock(client, LiveClock().now_ns)
            except RouterError as exc:
                _log.error("clock_reports_refused", identity=identity, error=str(exc))

        reports = asyncio.create_task(reporting(), name=f"{identity}:clock")
        try:
            await stopping_with(stop, host.run(), host.stop)
        finally:
            reports.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reports
    finally:
        await client.close()
