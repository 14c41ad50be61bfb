"""``tape up`` (the whole live system on this machine) and ``tape feed`` (live market data).

- ``tape feed --router URL [--url WS] [--symbol S ...]``: the live market-data process:
  a venue's combined stream (the local ``tape exchange-sim`` by default) into the log,
  with 1 s and 1 m bars (:func:`~tickertape.cli.process.serve_feed`).
- ``tape up [--data-dir DIR] [--speed N]``: every process of the repository's Procfile,
  with coloured, prefixed output (honcho's process runner and printer); Ctrl-C stops
  them in order (:class:`ProcessGroup`). ``honcho start`` runs the same Procfile.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import msgspec

from tickertape.cli.options import data_dir_option, token_options
from tickertape.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
"""The repository root: the Procfile and the bundled capture live there."""

PROCFILE = REPO / "Procfile"

DEFAULT_PORT = 7400
DEFAULT_SIM_PORT = 9443
SYSTEM = "system"
"""The prefix of ``tape up``'s own lines."""

DEFAULT_DATA_DIR = "live"
"""``tape up``'s data directory: kept apart from ``./logs`` of ``make demo``, whose
imported capture owns the same topics (and a later time)."""


@click.command("feed")
@click.option("--router", "router_url", required=True, help="Router URL (ws:// or wss://).")
@click.option(
    "--url",
    "ws_url",
    default=f"ws://127.0.0.1:{DEFAULT_SIM_PORT}",
    show_default=True,
    help="The venue's WebSocket base (Binance: wss://stream.binance.com:9443).",
)
@click.option(
    "--rest-url",
    default=None,
    help="The venue's REST base (Binance: https://api.binance.com). Default: from --url.",
)
@click.option(
    "--symbol",
    "symbols",
    multiple=True,
    help="Symbol to follow (repeat). Default: BTCUSDT and ETHUSDT.",
)
@click.option(
    "--bars",
    default="1s,1m",
    show_default=True,
    help="Bar intervals built from the trades, comma-separated, whole seconds.",
)
@click.option(
    "--bar-grace-ms",
    default=500,
    show_default=True,
    type=int,
    help="Close a bar this long after its end (venue clock) when no later trade has.",
)
@click.option(
    "--max-silence-s",
    "max_silence",
    multiple=True,
    metavar="SCOPE=SECONDS",
    help="Longest silence of a trade or quote topic before an open md.gap, per `crypto` "
    "or `crypto.SYMBOL` (repeat; the symbol wins). Default crypto=60; `off` disables.",
)
@click.option("--identity", default="marketdata", show_default=True, help="Source identity.")
@token_options
@data_dir_option("Where the process keeps its snapshots.")
def feed_command(
    router_url: str,
    ws_url: str,
    rest_url: str | None,
    symbols: tuple[str, ...],
    bars: str,
    bar_grace_ms: int,
    max_silence: tuple[str, ...],
    identity: str,
    token: str | None,
    data_dir: Path,
) -> None:
    """Live market data: a Binance-style stream into the log, with time bars.

    Publishes raw messages (raw.binance.*), trades, quotes, gaps (md.gap.crypto.*) and
    bars (md.bar.1s|1m.crypto.*) as identity marketdata, and reports its clock to the
    time authority every second (system.clock.actor.IDENTITY) like every live actor. A
    restart continues from its snapshot and the log: nothing is published twice, and
    trades sent while it was down are fetched from the venue (historicalTrades), so a
    gap is reported only where the venue lacks trades. SIGINT or SIGTERM stops it
    cleanly (what it holds is published, a final snapshot, exit status 0).

    A wss:// router is trusted through the system's CA store, or the certificate file
    named by SSL_CERT_FILE.
    """
    from tickertape.actors.marketdata.actor import LiveFeedConfig
    from tickertape.cli.process import run_until_stopped, serve_feed

    config = LiveFeedConfig(
        ws_url=ws_url,
        rest_url=rest_url,
        symbols=[s.upper() for s in symbols] or ["BTCUSDT", "ETHUSDT"],
        bar_intervals=[b.strip() for b in bars.split(",") if b.strip()],
        bar_grace_ms=bar_grace_ms,
    )
    if max_silence:
        config = msgspec.structs.replace(config, max_silence_s=_silence_bounds(max_silence))
    try:
        config.validate()
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    run_until_stopped(
        lambda stop: serve_feed(stop, router_url, config, data_dir, identity=identity, token=token),
        command="feed",
    )


def _silence_bounds(items: tuple[str, ...]) -> dict[str, float]:
    """``--max-silence-s`` items (``SCOPE=SECONDS``, or ``off``) as ``max_silence_s``.

    Raises:
        click.BadParameter: an item is not ``SCOPE=SECONDS`` with a number.
    """
    if items == ("off",):
        return {}
    bounds: dict[str, float] = {}
    for item in items:
        scope, sep, seconds = item.partition("=")
        try:
            if not sep or not scope:
                raise ValueError
            bounds[scope.strip()] = float(seconds)
        except ValueError:
            raise click.BadParameter(
                f"{item!r} is not SCOPE=SECONDS (crypto=60, crypto.BTCUSDT=30) or off",
                param_hint="'--max-silence-s'",
            ) from None
    return bounds


def procfile_processes(procfile: Path) -> dict[str, str]:
    """Return the Procfile's processes, name → command, in file order.

    Raises:
        ConfigError: the file cannot be read or holds no process.
    """
    from honcho.environ import parse_procfile

    try:
        text = procfile.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the Procfile: {exc.strerror}", procfile) from None
    processes: dict[str, str] = dict(parse_procfile(text).processes)
    if not processes:
        raise ConfigError("no process in the Procfile", procfile)
    return processes


def up_environment(
    data_dir: Path,
    *,
    speed: float,
    port: int,
    sim_port: int,
    strategy_config: Path | None,
    drift_bound_ms: float,
) -> dict[str, str]:
    """The environment of the Procfile's processes under ``tape up``.

    ``TAPE_DATA_DIR``, ``TAPE_SPEED``, ``TAPE_PORT``, ``TAPE_SIM_PORT``,
    ``TAPE_STRATEGY_CONFIG`` and ``TAPE_DRIFT_BOUND_MS`` fill the Procfile's
    ``${...:-default}`` slots; this installation's ``tape`` comes first on ``PATH``; the
    repository is on ``PYTHONPATH`` (``examples.strategies``).
    """
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in (bin_dir, env.get("PATH", "")) if p)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["TAPE_DATA_DIR"] = str(data_dir)
    env["TAPE_SPEED"] = repr(speed)
    env["TAPE_PORT"] = str(port)
    env["TAPE_SIM_PORT"] = str(sim_port)
    env["TAPE_DRIFT_BOUND_MS"] = repr(drift_bound_ms)
    if strategy_config is not None:
        env["TAPE_STRATEGY_CONFIG"] = str(strategy_config)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("COLUMNS", "160")
    return env


_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=\S*")
_SHELL_OPERATORS = re.compile(r"[;&|<>()`]|\$\(")


def exec_command(command: str) -> str:
    """``command`` with ``exec`` before its program, so that the shell honcho starts is
    replaced by the program: signals reach it alone and its exit status is reported.
    Commands with shell operators are left as they are."""
    if _SHELL_OPERATORS.search(command):
        return command
    words = command.split()
    n = 0
    while n < len(words) and _ASSIGNMENT.fullmatch(words[n]):
        n += 1
    if n == len(words) or words[n] == "exec":
        return command
    return " ".join([*words[:n], "exec", *words[n:]])


class ProcessGroup:
    """Runs processes with honcho's runner and printer; stops them in order.

    Each process runs under a shell in its own session (honcho's
    :class:`honcho.process.Process`), its output prefixed with its name in its own
    colour. A stop — SIGINT or SIGTERM to this process, or any child exiting by itself —
    sends SIGTERM to every process but the ``last`` ones, waits until they exit (at most
    ``timeout_s``, then SIGKILL), then does the same to the ``last`` ones (the router:
    the others flush their final publications and snapshots through it).

    Args:
        processes: name → shell command.
        env: their environment.
        cwd: their working directory.
        last: names stopped after all the others.
        timeout_s: how long SIGTERM is given before SIGKILL, per phase.
    """

    def __init__(
        self,
        processes: dict[str, str],
        *,
        env: dict[str, str],
        cwd: Path,
        last: tuple[str, ...] = ("router",),
        timeout_s: float = 10.0,
    ) -> None:
        from honcho.colour import get_colours
        from honcho.printer import Printer
        from honcho.process import Process

        self.timeout_s = timeout_s
        self._printer = Printer(sys.stdout)
        self._printer.width = max(len(SYSTEM), *(len(name) for name in processes))
        colours = get_colours()
        self._runners = {
            name: Process(
                exec_command(command), name=name, colour=next(colours), env=env, cwd=str(cwd)
            )
            for name, command in processes.items()
        }
        self._first = [n for n in processes if n not in last]
        self._last = [n for n in processes if n in last]
        self.pids: dict[str, int] = {}
        self.returncodes: dict[str, int] = {}
        self.killed: list[str] = []
        self._stop_requested: str | None = None

    def _say(self, text: str) -> None:
        from honcho.printer import Message

        self._printer.write(
            Message(
                type="line",
                data=text + "\n",
                time=datetime.now().astimezone(),
                name=SYSTEM,
                colour=None,
            )
        )

    def _signal(self, names: list[str], sig: signal.Signals) -> None:
        for name in names:
            pid = self.pids.get(name)
            if pid is None or name in self.returncodes:
                continue
            self._say(f"sending {sig.name} to {name} (pid {pid})")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            if sig == signal.SIGKILL:
                self.killed.append(name)

    def run(self) -> int:
        """Start everything, relay the output, stop in order; return the exit status:
        0 after a requested stop where every process exited on SIGTERM (with status 0,
        or killed by it), else the first failing process's status, also one that fails
        while stopping (1 when a process had to be killed)."""
        import multiprocessing
        import queue

        def request_stop(signum: int, frame: object) -> None:
            self._stop_requested = signal.Signals(signum).name

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        events: multiprocessing.Queue[Any] = multiprocessing.Queue()
        workers = []
        for name, runner in self._runners.items():
            worker = multiprocessing.Process(name=name, target=runner.run, args=(events, True))
            worker.start()
            workers.append(worker)
        phase, deadline, status = "running", 0.0, 0
        while True:
            try:
                message = events.get(timeout=0.1)
            except queue.Empty:
                message = None
            if message is not None:
                if message.type == "line":
                    self._printer.write(message)
                elif message.type == "start":
                    self.pids[message.name] = message.data["pid"]
                    self._say(f"{message.name} started (pid={message.data['pid']})")
                elif message.type == "stop":
                    rc = message.data["returncode"]
                    self.returncodes[message.name] = rc
                    self._say(f"{message.name} stopped (rc={rc})")
                    # Stopping, a process killed by our SIGTERM before it could handle
                    # it (still importing) is a clean stop; any other failure is not.
                    stopped_by_us = phase != "running" and rc == -signal.SIGTERM
                    if rc != 0 and status == 0 and not stopped_by_us:
                        status = rc if rc > 0 else 1
            started = len(self.pids) == len(self._runners)
            if phase == "running" and (self._stop_requested or (started and self.returncodes)):
                reason = self._stop_requested or "a process exited"
                self._say(
                    f"{reason}: stopping {', '.join(self._first)}, then {', '.join(self._last)}"
                )
                phase, deadline = "first", time.monotonic() + self.timeout_s
                self._signal(self._first, signal.SIGTERM)
            if phase == "first":
                if all(n in self.returncodes for n in self._first if n in self.pids):
                    phase, deadline = "last", time.monotonic() + self.timeout_s
                    self._signal(self._last, signal.SIGTERM)
                elif time.monotonic() > deadline:
                    self._signal(self._first, signal.SIGKILL)
                    deadline = time.monotonic() + self.timeout_s
            elif phase == "last" and time.monotonic() > deadline:
                self._signal(self._last, signal.SIGKILL)
                deadline = time.monotonic() + self.timeout_s
            if started and len(self.returncodes) == len(self._runners):
                break
        for worker in workers:
            worker.join()
        if self.killed:
            return status or 1
        return status


@click.command("up")
@data_dir_option(
    "Log and snapshots of the live system (relative to the Procfile's folder).",
    default=DEFAULT_DATA_DIR,
)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=float,
    help="Pace of the exchange simulator (recorded time ÷ N).",
)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Router port.")
@click.option(
    "--sim-port", default=DEFAULT_SIM_PORT, show_default=True, type=int, help="Simulator port."
)
@click.option(
    "--strategy-config",
    default=None,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The strategy's configuration. Default: examples/strategies/sma_cross_live.toml.",
)
@click.option(
    "--drift-bound-ms",
    default=250.0,
    show_default=True,
    type=float,
    help="The time authority's drift bound (beyond it, risk halts new orders).",
)
@click.option(
    "--stop-timeout",
    default=10.0,
    show_default=True,
    type=float,
    help="Seconds a process gets after SIGTERM before SIGKILL.",
)
@click.option(
    "--procfile",
    default=PROCFILE,
    show_default=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The processes to run (their working directory is its folder).",
)
def up_command(
    data_dir: Path,
    speed: float,
    port: int,
    sim_port: int,
    strategy_config: Path | None,
    drift_bound_ms: float,
    stop_timeout: float,
    procfile: Path,
) -> None:
    """The whole live system on this machine: every process of the Procfile.

    Router with the embedded log, time authority (live), exchange simulator replaying
    the bundled Binance capture in real time (rebased to now), market data,
    indicators, strategy (SMA crossover on BTCUSDT 1 s bars), risk, orders (paper, on
    the simulated venue) and PnL; output prefixed and coloured per process.

    Ctrl-C stops them all: SIGTERM to every process but the router, SIGKILL to any
    still running after --stop-timeout, then the same for the router. Started again, every actor
    resumes from its snapshot and position.

    While it runs: tape tail 'order.>' --router ws://127.0.0.1:PORT --follow, and
    tape stats --router ws://127.0.0.1:PORT.
    """
    if not speed > 0:
        raise click.BadParameter("must be > 0", param_hint="--speed")
    if not stop_timeout > 0:
        raise click.BadParameter("must be > 0", param_hint="--stop-timeout")
    processes = procfile_processes(procfile)
    cwd = procfile.resolve().parent
    if not data_dir.is_absolute():
        data_dir = cwd / data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    env = up_environment(
        data_dir,
        speed=speed,
        port=port,
        sim_port=sim_port,
        strategy_config=None if strategy_config is None else strategy_config.resolve(),
        drift_bound_ms=drift_bound_ms,
    )
    click.secho(
        f"tape up: {len(processes)} processes from {procfile}, data in {data_dir}, "
        f"router ws://127.0.0.1:{port}; Ctrl-C stops them all",
        bold=True,
        err=True,
    )
    sys.exit(ProcessGroup(processes, env=env, cwd=cwd, timeout_s=stop_timeout).run())


COMMANDS: list[click.Command] = [feed_command, up_command]
