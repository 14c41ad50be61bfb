"""`tape import`: historical market data into the event log (docs/marketdata.md)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tickertape.actors.marketdata.exchange_sim import REBASE_ENV
from tickertape.actors.marketdata.importers import (
    FORMATS,
    ParsedFile,
    parse_binance_ws,
    parse_krx_daily,
    parse_ohlcv_csv,
    parse_quandl_wiki,
)
from tickertape.actors.marketdata.loader import import_files
from tickertape.cli.options import data_dir_option
from tickertape.eventlog import EventLog
from tickertape.schemas.envelope import MARKETS, Market
from tickertape.topics import validate_topic

_UNADJUSTED = {
    "binance-ws": "trades and quotes, never adjusted",
    "quandl-wiki": "unadjusted bars (adjusted series derive from its corporate actions)",
}
"""Formats whose prices are raw by definition."""

_UNSTATED_ADJUSTMENT = ("krx-daily",)
"""Formats whose files come raw or adjusted without saying which: --raw or --adjusted
is required."""


def _parse(
    fmt: str,
    path: Path,
    *,
    market: str | None,
    symbol: str | None,
    strict: bool,
    interval: str | None,
    time_column: str | None,
    tz: str,
    stamp: str,
    adjusted: bool,
) -> ParsedFile:
    if fmt == "binance-ws":
        return parse_binance_ws(path, strict=strict)
    if fmt == "quandl-wiki":
        return parse_quandl_wiki(path, strict=strict)
    if symbol is None:
        raise click.UsageError(f"format {fmt} needs --symbol (the file does not name it)")
    if validate_topic(symbol) is not None:
        raise click.BadParameter(f"{symbol!r} is not a topic token", param_hint="--symbol")
    if fmt == "krx-daily":
        return parse_krx_daily(path, symbol=symbol, adjusted=adjusted, strict=strict)
    if market is None or interval is None:
        raise click.UsageError("format ohlcv-csv needs --market and --interval")
    return parse_ohlcv_csv(
        path,
        market=cast(Market, market),
        symbol=symbol,
        interval=interval,
        time_column=time_column,
        tz=tz,
        stamp="end" if stamp == "end" else "start",
        adjusted=adjusted,
        strict=strict,
    )


@click.command("import")
@click.argument("format", type=click.Choice(FORMATS))
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--market", type=click.Choice(MARKETS), help="Market of the bars (ohlcv-csv).")
@click.option("--symbol", help="Instrument symbol when the file does not name it.")
@click.option("--interval", help="Bar interval for ohlcv-csv, e.g. 1m, 1h, 1d.")
@click.option("--time-column", help="Name of the time column (ohlcv-csv; default: first).")
@click.option("--tz", default="UTC", show_default=True, help="Time zone of naive timestamps.")
@click.option(
    "--stamp",
    type=click.Choice(["start", "end"]),
    default="start",
    show_default=True,
    help="Whether a row's time is the bar's start or its end (ohlcv-csv).",
)
@click.option(
    "--adjusted/--raw",
    default=None,
    help="Whether the file's prices are adjusted for corporate actions: adjusted bars go "
    "to md.bar.{interval}-adj.*, raw ones to md.bar.{interval}.*. Required for krx-daily "
    "(its files do not say); ohlcv-csv takes --raw when neither is given.",
)
@click.option("--strict", is_flag=True, help="Stop at the first malformed row.")
@data_dir_option("Directory holding logs/ and snapshots/.")
@click.option("--namespace", default="main", show_default=True)
def import_command(
    format: str,
    files: tuple[Path, ...],
    market: str | None,
    symbol: str | None,
    interval: str | None,
    time_column: str | None,
    tz: str,
    stamp: str,
    adjusted: bool | None,
    strict: bool,
    data_dir: Path,
    namespace: str,
) -> None:
    """Import historical FILES of FORMAT into the log, merged in time order, idempotently.

    Malformed rows are refused with file, line and reason (all of them listed in the
    file's system.import_manifest event) and the rest is imported, unless --strict.
    Importing the same file again, or the same content under another name, stores
    nothing new; a file that grew stores its new rows. Data older than what a topic
    holds, or overlapping another file's on a topic, is refused before anything is
    stored (docs/marketdata.md).
    """
    console = Console(stderr=True)
    if adjusted and format in _UNADJUSTED:
        raise click.BadParameter(
            f"format {format} has {_UNADJUSTED[format]}: only --raw applies",
            param_hint="--adjusted",
        )
    if adjusted is None and format in _UNSTATED_ADJUSTMENT:
        raise click.UsageError(
            f"{format}: give --raw or --adjusted: the files do not say whether their prices "
            "are adjusted for corporate actions, and raw and adjusted bars go to different "
            "topics (md.bar.1d.* and md.bar.1d-adj.*)"
        )
    parsed = [
        _parse(
            format,
            path,
            market=market,
            symbol=symbol,
            strict=strict,
            interval=interval,
            time_column=time_column,
            tz=tz,
            stamp=stamp,
            adjusted=bool(adjusted),
        )
        for path in files
    ]
    total = sum(len(events) for p in parsed for events in p.streams.values())
    log = EventLog.open(data_dir, namespace, check_payloads=False)  # msgspec-encoded
    try:
        with Progress(
            TextColumn("importing"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} events"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("import", total=total)
            reports = import_files(log, parsed, progress=lambda n: progress.advance(task, n))
    finally:
        log.close()
    table = Table(title=f"import {format} into {namespace}")
    for column in ("file", "rows read", "stored", "duplicate", "refused"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for report in reports:
        m = report.manifest
        table.add_row(
            m.file_name,
            str(m.rows_read),
            str(m.events_stored),
            str(m.events_duplicate),
            str(m.rows_refused),
        )
    Console().print(table)
    for report in reports:
        name, same_as = report.manifest.file_name, report.same_as
        if same_as is not None:
            like = "" if same_as == name else f" (same content and options as {same_as})"
            console.print(f"{name}: already imported{like}: nothing stored")
    for parsed_file in parsed:
        for error in parsed_file.refused[:20]:
            console.print(f"[yellow]refused[/yellow] {error}")
        if len(parsed_file.refused) > 20:
            console.print(f"... and {len(parsed_file.refused) - 20} more in {parsed_file.path}")


@click.command("exchange-sim")
@click.option(
    "--capture",
    "captures",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A recorded capture file (<local_recv_ns> <json> lines); repeat for more.",
)
@click.option("--speed", type=float, default=1.0, show_default=True, help="Pacing factor.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=int,
    default=9443,
    show_default=True,
    help="TCP port (0: any free one, named in the exchange_sim_listening log line).",
)
@click.option(
    "--rebase-times/--no-rebase-times",
    default=False,
    show_default=True,
    envvar=REBASE_ENV,
    show_envvar=True,
    help="Move the venue times (E, T) so that the capture happens now: each frame is "
    "stamped with the wall-clock time it is sent at (what `tape up` does, so that paper "
    "orders fill). Off: the frames are byte for byte the recorded ones.",
)
@click.option(
    "--state-file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the playback position in FILE (JSON, written atomically every second and "
    "on stop): started again, the simulator continues after the last frame it served "
    "instead of from the capture's beginning. Without it every start replays the "
    "capture from its beginning.",
)
def exchange_sim_command(
    captures: tuple[Path, ...],
    speed: float,
    host: str,
    port: int,
    rebase_times: bool,
    state_file: Path | None,
) -> None:
    """Serve recorded Binance captures over WebSocket exactly as Binance framed them.

    Combined stream at ws://HOST:PORT/stream?streams=..., REST depth snapshots at
    http://HOST:PORT/api/v3/depth?symbol=... and played trades at
    http://HOST:PORT/api/v3/historicalTrades?symbol=...&fromId=N; paced by the recorded
    receive times divided by --speed, starting when the first client connects.
    SIGINT or SIGTERM stops it cleanly (the state file is saved, exit status 0).
    """
    if not speed > 0:
        raise click.BadParameter("must be > 0", param_hint="--speed")
    from tickertape.actors.marketdata.exchange_sim import run_simulator
    from tickertape.cli.process import run_until_stopped

    run_until_stopped(
        lambda stop: run_simulator(
            captures,
            host=host,
            port=port,
            speed=speed,
            rebase_times=rebase_times,
            state_file=state_file,
            stop=stop,
        ),
        command="exchange-sim",
    )


COMMANDS: list[click.Command] = [import_command, exchange_sim_command]
