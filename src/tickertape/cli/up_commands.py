"""``tape up`` (the whole live system on this machine) and ``tape feed`` (live market data).

- ``tape feed --router URL [--url WS] [--symbol S ...]``: the live market-data process:
  a venue's combined stream (the local ``tape exchange-sim`` by default) into the log,
  with 1 s and 1 m bars (:func:`~tickertape.actors.marketdata.binance_client.run_live_marketdata`).
- ``tape up [--data-dir DIR] [--speed N]``: every process of the repository's Procfile,
  with coloured, prefixed output (honcho's process manager); Ctrl-C stops them all
  (SIGTERM to each, SIGKILL after 5 s). ``honcho start`` runs the same Procfile.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from tickertape.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
"""The repository root: the Procfile and the bundled capture live there."""

PROCFILE = REPO / "Procfile"

DEFAULT_PORT = 7400
DEFAULT_SIM_PORT = 9443
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
@click.option("--identity", default="marketdata", show_default=True, help="Source identity.")
@click.option("--token", default=None, envvar="TAPE_TOKEN", help="The identity's token.")
@click.option("--token-file", default=None, type=click.Path(dir_okay=False), help="Token file.")
@click.option(
    "--data-dir",
    "-d",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the process keeps its snapshots.",
)
def feed_command(
    router_url: str,
    ws_url: str,
    rest_url: str | None,
    symbols: tuple[str, ...],
    bars: str,
    bar_grace_ms: int,
    identity: str,
    token: str | None,
    token_file: str | None,
    data_dir: Path,
) -> None:
    """Live market data: a Binance-style stream into the log, with time bars.

    Publishes raw messages (raw.binance.*), trades, quotes, gaps (md.gap.crypto.*) and
    bars (md.bar.1s|1m.crypto.*) as identity marketdata. A restart continues from its
    snapshot and the log: nothing is published twice, and trades sent while it was
    down are fetched from the venue (historicalTrades), so a gap is reported only
    where the venue lacks trades.
    """
    import asyncio

    from tickertape.actors.marketdata.actor import LiveFeedConfig
    from tickertape.actors.marketdata.binance_client import run_live_marketdata
    from tickertape.client.inspect import read_token

    config = LiveFeedConfig(
        ws_url=ws_url,
        rest_url=rest_url,
        symbols=[s.upper() for s in symbols] or ["BTCUSDT", "ETHUSDT"],
        bar_intervals=[b.strip() for b in bars.split(",") if b.strip()],
        bar_grace_ms=bar_grace_ms,
    )
    config.validate()
    secret = read_token(token, token_file)
    asyncio.run(run_live_marketdata(router_url, config, data_dir, identity=identity, token=secret))


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


def up_environment(data_dir: Path, speed: float, port: int, sim_port: int) -> dict[str, str]:
    """The environment of the Procfile's processes under ``tape up``.

    ``TAPE_DATA_DIR``, ``TAPE_SPEED``, ``TAPE_PORT`` and ``TAPE_SIM_PORT`` fill the
    Procfile's ``${...:-default}`` slots; this installation's ``tape`` comes first on
    ``PATH``; the repository is on ``PYTHONPATH`` (``examples.strategies``).
    """
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in (bin_dir, env.get("PATH", "")) if p)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["TAPE_DATA_DIR"] = str(data_dir)
    env["TAPE_SPEED"] = repr(speed)
    env["TAPE_PORT"] = str(port)
    env["TAPE_SIM_PORT"] = str(sim_port)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("COLUMNS", "160")
    return env


@click.command("up")
@click.option(
    "--data-dir",
    "-d",
    default=DEFAULT_DATA_DIR,
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Log and snapshots of the live system (relative to the repository).",
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
    "--procfile",
    default=PROCFILE,
    show_default=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The processes to run.",
)
def up_command(data_dir: Path, speed: float, port: int, sim_port: int, procfile: Path) -> None:
    """The whole live system on this machine: every process of the Procfile.

    Router with the embedded log, time authority (live), exchange simulator replaying
    the bundled Binance capture in real time (rebased to now), market data,
    indicators, strategy (SMA crossover on BTCUSDT 1 s bars), risk, orders (paper, on
    the simulated venue) and PnL. Output is prefixed and coloured per process. Ctrl-C
    stops them all: SIGTERM to each, SIGKILL after 5 s. Stopped and started again,
    every actor resumes from its snapshot and position.

    While it runs: tape tail 'order.>' --router ws://127.0.0.1:PORT --follow,
    tape stats --router ws://127.0.0.1:PORT.
    """
    from honcho.manager import Manager

    if not speed > 0:
        raise click.BadParameter("must be > 0", param_hint="--speed")
    processes = procfile_processes(procfile)
    cwd = procfile.resolve().parent
    if not data_dir.is_absolute():
        data_dir = cwd / data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    env = up_environment(data_dir, speed, port, sim_port)
    click.secho(
        f"tape up: {len(processes)} processes from {procfile}, data in {data_dir}; "
        f"router ws://127.0.0.1:{port}; Ctrl-C stops them all",
        bold=True,
        err=True,
    )
    manager = Manager()
    for name, command in processes.items():
        manager.add_process(name, command, env=env, cwd=str(cwd))
    manager.loop()
    sys.exit(manager.returncode or 0)


COMMANDS: list[click.Command] = [feed_command, up_command]
