"""``tape halt``, ``tape resume`` (the kill switch) and ``tape report RUN``.

``halt`` and ``resume`` publish a :class:`~tickertape.schemas.risk.RiskCommand` on
``system.command.risk``: through a router (``--router``), or straight into the local
log when no router is given. The risk gate reacts in the step that delivers it.

``report`` reads a run's namespace with the log reader and prints the figures of
:func:`tickertape.actors.pnl.report.build_report` as a table, then writes the equity
curves as a PNG.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import click
from rich.console import Console
from rich.table import Table

from tickertape.actors.pnl.report import Report, build_report
from tickertape.cli.options import data_options
from tickertape.errors import (
    ConfigError,
    RouterError,
    UnknownTypeError,
)
from tickertape.schemas import Envelope, decode_payload, make_envelope
from tickertape.schemas.envelope import MARKETS
from tickertape.schemas.risk import RiskCommand

COMMAND_TOPIC = "system.command.risk"


def command_envelope(
    command: RiskCommand, identity: str, now_ns: int, seq: int | None = None
) -> Envelope:
    """The envelope of a manual risk command.

    ``source_seq`` defaults to ``now_ns``: successive commands of one operator identity
    are strictly increasing without a counter file (wall-clock time, in the CLI only).
    """
    seq = now_ns if seq is None else seq
    return make_envelope(
        command, topic=COMMAND_TOPIC, source=identity, source_seq=seq, ts_event=now_ns
    )


def _command(
    verb: Literal["halt", "resume", "reduce"],
    reason: str,
    market: str | None,
    strategy: str | None,
) -> RiskCommand:
    if market is not None and strategy is not None:
        raise click.UsageError("give --market or --strategy, not both")
    if market is not None:
        return RiskCommand(command=verb, scope="market", key=market, reason=reason)
    if strategy is not None:
        return RiskCommand(command=verb, scope="strategy", key=strategy, reason=reason)
    return RiskCommand(command=verb, scope="global", reason=reason)


def _send(
    envelope: Envelope,
    router: str | None,
    token_file: str | None,
    data_dir: str,
    namespace: str,
) -> str:
    if router is not None:
        from tickertape.client import connect

        token = Path(token_file).read_text().strip() if token_file else None

        async def publish() -> str:
            client = await connect(router, envelope.source, token, connect_timeout_s=10.0)
            try:
                acks = await client.publish([envelope], ns=namespace)
            finally:
                await client.close()
            return str(acks[0])

        return asyncio.run(publish())
    from tickertape.eventlog import EventLog

    with EventLog.open(data_dir, namespace) as log:
        result = log.append([envelope])[0]
    if result.error:
        raise RouterError(result.error, result.message or "append refused")
    return f"gseq {result.gseq}"


def _kill_switch_command(
    verb: Literal["halt", "resume", "reduce"], help_text: str
) -> click.Command:
    @click.command(name=verb, help=help_text)
    @click.option("--reason", default="", help="Why (kept in the log, shown in risk.state).")
    @click.option("--market", type=click.Choice(MARKETS), help="Only this market.")
    @click.option("--strategy", help="Only this strategy id.")
    @click.option("--router", help="Router URL (ws://HOST:PORT); without it, the local log.")
    @click.option("--identity", default="operator", show_default=True, help="Publisher identity.")
    @click.option("--token-file", type=click.Path(dir_okay=False), help="Token for --router.")
    @data_options
    def command(
        reason: str,
        market: str | None,
        strategy: str | None,
        router: str | None,
        identity: str,
        token_file: str | None,
        data_dir: str,
        namespace: str,
    ) -> None:
        if verb == "halt" and not reason:
            raise click.UsageError("tape halt needs --reason TEXT")
        payload = _command(verb, reason, market, strategy)
        envelope = command_envelope(payload, identity, time.time_ns())
        where = _send(envelope, router, token_file, data_dir, namespace)
        scope = payload.key or "global"
        click.echo(f"{verb} {payload.scope} {scope}: published {envelope.id} ({where})")

    return command


halt_command = _kill_switch_command(
    "halt", "Halt new orders (all, one --market or one --strategy); open orders are canceled."
)
resume_command = _kill_switch_command("resume", "Resume trading of a halted scope.")
reduce_command = _kill_switch_command(
    "reduce", "Only accept orders that reduce positions (REDUCING) in a scope."
)


def read_report(data_dir: str, namespace: str) -> Report:
    """Build the report of one namespace from its ``pnl.update.*`` and ``order.*`` events.

    Raises:
        ConfigError: the namespace has no pnl updates.
    """
    from tickertape.eventlog import LogReader

    reader = LogReader(data_dir, namespace)

    def events() -> Iterator[tuple[str, int, Any]]:
        for record in reader.read(["pnl.update.>", "order.>"]):
            try:
                payload = decode_payload(record.type, record.v, record.payload)
            except UnknownTypeError:
                continue  # written by a newer version: not ours to judge
            yield (record.topic, record.ts_event, payload)

    report = build_report(events())
    if not report.rows:
        raise ConfigError(f"namespace {namespace!r} in {data_dir} has no pnl.update events")
    return report


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def render_table(report: Report, title: str) -> Table:
    """The report as a rich table."""
    table = Table(title=title)
    for name in (
        "scope", "market", "ccy", "initial", "final equity", "return", "sharpe", "max dd",
        "trades", "round trips", "win rate", "fees", "turnover",
    ):  # fmt: skip
        table.add_column(name, justify="left" if name in ("scope", "market", "ccy") else "right")
    for row in report.rows:
        table.add_row(
            row.scope,
            row.market,
            row.currency,
            f"{row.initial_cash:,.2f}",
            f"{row.final_equity:,.2f}",
            f"{row.total_return:+.4%}",
            _fmt(row.sharpe, ".2f"),
            f"{row.max_drawdown:.4%}",
            str(row.trades),
            str(row.round_trips),
            _fmt(row.win_rate, ".1%"),
            f"{row.fees:,.2f}",
            f"{row.turnover:.2f}×",
        )
    return table


def write_equity_png(report: Report, path: Path, title: str) -> None:
    """Plot each book's equity curve (one panel per market) into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from datetime import UTC, datetime

    import matplotlib.pyplot as plt

    markets = sorted({key.rpartition(":")[2] for key in report.curves})
    fig, axes = plt.subplots(len(markets), 1, figsize=(10, 3.5 * len(markets)), squeeze=False)
    for ax, market in zip(axes[:, 0], markets, strict=True):
        for key, curve in report.curves.items():
            scope, _, m = key.rpartition(":")
            if m != market or not curve:
                continue
            xs = [datetime.fromtimestamp(ts / 1e9, tz=UTC) for ts, _ in curve]
            ax.plot(xs, [e for _, e in curve], label=scope, linewidth=1.0)
        ax.set_title(f"{title} — {market}")
        ax.set_ylabel("equity")
        ax.legend(loc="best")
        ax.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


@click.command(name="report")
@click.argument("run")
@click.option("--data-dir", "-d", default=".", show_default=True, envvar="TAPE_DATA_DIR")
@click.option("--namespace", "-n", help="Namespace to read (default: runs/RUN).")
@click.option("--png", type=click.Path(dir_okay=False), help="Equity-curve PNG path.")
def report_command(run: str, data_dir: str, namespace: str | None, png: str | None) -> None:
    """Performance of a run: return, Sharpe, drawdown, trades, win rate, fees, turnover.

    Reads the namespace runs/RUN (or --namespace), prints a table, and writes the
    equity curves to a PNG (default <data-dir>/reports/<RUN>-equity.png).
    """
    ns = namespace or f"runs/{run}"
    report = read_report(data_dir, ns)
    Console().print(render_table(report, f"run {run} ({ns})"))
    out = Path(png) if png else Path(data_dir) / "reports" / f"{run.replace('/', '_')}-equity.png"
    write_equity_png(report, out, f"run {run}")
    click.echo(f"equity curve: {out}")


COMMANDS: list[click.Command] = [halt_command, resume_command, reduce_command, report_command]
