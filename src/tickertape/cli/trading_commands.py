"""``tape halt``, ``tape resume`` (the kill switch) and ``tape report RUN``.

``halt`` and ``resume`` publish a :class:`~tickertape.schemas.risk.RiskCommand` on
``system.command.risk``: through a router (``--router``), or straight into the local
log when no router is given. The risk gate reacts in the step that delivers it.

``report`` reads a run's namespace with the log reader and prints the figures of
:func:`tickertape.actors.pnl.report.build_report` as a table, one row per strategy and
market and one per market's portfolio, then writes the equity curves as a PNG.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click
from rich.console import Console
from rich.table import Table

from tickertape.actors.pnl.report import Report, build_report
from tickertape.cli.options import data_options, token_options
from tickertape.errors import (
    ConfigError,
    RouterError,
    UnknownTypeError,
)
from tickertape.schemas import Envelope, decode_payload, make_envelope
from tickertape.schemas.envelope import MARKETS, Market
from tickertape.schemas.risk import RiskCommand
from tickertape.schemas.strategy import is_strategy_id
from tickertape.schemas.system import RunManifest

if TYPE_CHECKING:
    from tickertape.eventlog import LogReader

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
        if not is_strategy_id(strategy):
            raise click.BadParameter(
                f"{strategy!r} is not a strategy id (letters, digits, _ and -)",
                param_hint="--strategy",
            )
        return RiskCommand(command=verb, scope="strategy", key=strategy, reason=reason)
    return RiskCommand(command=verb, scope="global", reason=reason)


def _send(
    envelope: Envelope,
    router: str | None,
    token: str | None,
    data_dir: str,
    namespace: str,
) -> str:
    if router is not None:
        from tickertape.client import connect

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
    @token_options
    @data_options
    def command(
        reason: str,
        market: str | None,
        strategy: str | None,
        router: str | None,
        identity: str,
        token: str | None,
        data_dir: str,
        namespace: str,
    ) -> None:
        if verb == "halt" and not reason:
            raise click.UsageError("tape halt needs --reason TEXT")
        payload = _command(verb, reason, market, strategy)
        envelope = command_envelope(payload, identity, time.time_ns())
        where = _send(envelope, router, token, data_dir, namespace)
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


def _first(reader: LogReader, topic: str) -> Any:
    for record in reader.read([topic]):
        try:
            return decode_payload(record.type, record.v, record.payload)
        except UnknownTypeError:
            return None
    return None


def market_events(data_dir: str, manifest: RunManifest) -> dict[Market, int] | None:
    """Input events per market of a run: what its manifest says it read.

    Counts the records of the source namespace matching the run's input patterns with
    ``start_ns ≤ ts_event < end_ns`` and ``gseq ≤`` the source head when the run
    started (the replay drivers' rule), per market. Day files wholly inside those
    bounds are counted from their index; the market of a topic is that of its first
    record (market-data topics name their market). None when the source namespace
    is gone.
    """
    from tickertape.eventlog import LogReader
    from tickertape.eventlog.layout import NS_PER_DAY, read_current

    source = LogReader(data_dir, manifest.source_namespace)
    if not source.dir.exists():
        return None
    start, end = manifest.start_ns, manifest.end_ns
    head = manifest.input_positions.get("head_gseq", source.head_gseq())
    counts: dict[Market, int] = {}
    for topic in source.topics(manifest.topics):
        n = 0
        for listed in source.segments(topic):
            day_start = listed.day * NS_PER_DAY
            day_end = day_start + NS_PER_DAY
            if day_end <= start or (end is not None and day_start >= end):
                continue
            current = read_current(listed, source.segment_index)  # sealed meanwhile?
            if current is None:
                continue  # deleted by retention
            index = current[1]
            inside = index.first_ts >= start and (end is None or index.last_ts < end)
            if inside and index.last_gseq <= head:
                n += index.count
            elif index.count:
                until = day_end if end is None else min(end, day_end)
                records = source.read_from_time([topic], max(start, day_start), until)
                n += sum(1 for r in records if r.gseq <= head)
        first = next(iter(source.read_topic(topic, 0, 0)), None)
        if n and first is not None and first.market is not None:
            counts[first.market] = counts.get(first.market, 0) + n
    return dict(sorted(counts.items()))


def wall_seconds(data_dir: str, namespace: str) -> float | None:
    """Wall time of a run: from writing its manifest to writing its summary, in seconds.

    The log holds simulated time only, so this comes from the modification times of
    the manifest's and the summary's day files (written once each, at the start and
    the end of the run). It spans any pause of a resumed run, and is None when the run
    has no summary (unfinished) or its files were rewritten (sealed) since.
    """
    from tickertape.replay.manifest import MANIFEST_TOPIC, SUMMARY_TOPIC

    root = Path(data_dir) / "logs" / namespace
    try:
        (start,) = (p.stat().st_mtime for p in (root / MANIFEST_TOPIC).glob("*.jsonl"))
        (end,) = (p.stat().st_mtime for p in (root / SUMMARY_TOPIC).glob("*.jsonl"))
    except ValueError:  # none, several (sealed or rewritten) days: unknown
        return None
    return end - start if end > start else None


def read_report(data_dir: str, namespace: str) -> Report:
    """Build the report of one namespace from its ``pnl.update.*`` and ``order.*`` events.

    Events and events/s come from the run's manifest and summary (see
    :func:`market_events` and :func:`wall_seconds`); a namespace written without a
    manifest (a backtest stored directly) has neither.

    Raises:
        ConfigError: the namespace has no pnl updates nor orders.
    """
    from tickertape.eventlog import LogReader
    from tickertape.replay.manifest import MANIFEST_TOPIC

    reader = LogReader(data_dir, namespace)
    manifest = _first(reader, MANIFEST_TOPIC)
    per_market = None
    wall = None
    if isinstance(manifest, RunManifest):
        per_market = market_events(data_dir, manifest)
        wall = wall_seconds(data_dir, namespace)

    def events() -> Iterator[tuple[str, int, Any]]:
        for record in reader.read(["pnl.update.>", "order.>"]):
            try:
                payload = decode_payload(record.type, record.v, record.payload)
            except UnknownTypeError:
                continue  # written by a newer version: not ours to judge
            yield (record.topic, record.ts_event, payload)

    report = build_report(events(), market_events=per_market, wall_seconds=wall)
    if not report.rows:
        raise ConfigError(
            f"namespace {namespace!r} in {data_dir} has no pnl.update nor order events"
        )
    return report


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def render_table(report: Report, title: str) -> Table:
    """The report as a rich table: one row per strategy and market, then the portfolios."""
    table = Table(title=title)
    for name in (
        "strategy", "market", "ccy", "events", "events/s", "orders", "fills", "fees", "PnL",
        "return", "max dd", "sharpe", "round trips", "win rate", "turnover",
    ):  # fmt: skip
        table.add_column(name, justify="left" if name in ("strategy", "market", "ccy") else "right")
    for row in report.rows:
        table.add_row(
            row.scope,
            row.market,
            row.currency,
            _fmt(row.events, ","),
            _fmt(row.events_per_s, ",.0f"),
            str(row.orders),
            str(row.trades),
            f"{row.fees:,.2f}",
            f"{row.pnl:+,.2f}",
            f"{row.total_return:+.4%}",
            f"{row.max_drawdown:.4%}",
            _fmt(row.sharpe, ".2f"),
            str(row.round_trips),
            _fmt(row.win_rate, ".1%"),
            f"{row.turnover:.2f}×",
        )
    return table


def write_equity_png(report: Report, path: Path, title: str) -> None:
    """Plot each book's equity curve (one panel per market) into ``path`` (PNG).

    Raises:
        ConfigError: the report has no equity curve.
    """
    if not report.curves:
        raise ConfigError("no equity curve to plot: no book was updated")
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
    """Performance of a run per strategy and market: events, events/s, orders, fills,
    fees, PnL, return, max drawdown, Sharpe, round trips, win rate, turnover.

    Reads the namespace runs/RUN (or --namespace), prints a table, and writes the
    equity curves to a PNG (default <data-dir>/reports/<RUN>-equity.png).
    """
    ns = namespace or f"runs/{run}"
    report = read_report(data_dir, ns)
    Console().print(render_table(report, f"run {run} ({ns})"))
    out = Path(png) if png else Path(data_dir) / "reports" / f"{run.replace('/', '_')}-equity.png"
    if report.curves:
        write_equity_png(report, out, f"run {run}")
        click.echo(f"equity curve: {out}")
    else:
        click.echo("no equity curve: no book was updated (nothing filled)")


COMMANDS: list[click.Command] = [halt_command, resume_command, reduce_command, report_command]
