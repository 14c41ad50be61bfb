"""``tape tail``, ``tape verify``, ``tape stats``, ``tape compact``, ``tape retention``, ``tape append``.

These work on the files of a namespace directly (``--data-dir``), or through a router
with ``--router URL`` where noted.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncGenerator, Iterable, Iterator
from typing import Any

import click
import msgspec
import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn
from rich.table import Table

from tickertape.cli.options import (
    Position,
    PositionType,
    data_options,
    format_ns,
    parse_retention,
    token_options,
)
from tickertape.cli.process import run_until_stopped, stopped_by_signals
from tickertape.cli.render import RecordPrinter
from tickertape.errors import SchemaError, TickertapeError
from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog.sealing import apply_retention, compact
from tickertape.eventlog.verify import verify_namespace
from tickertape.iterutils import batched
from tickertape.loop import unless_stopped
from tickertape.schemas import decode_payload, is_known
from tickertape.schemas.envelope import Envelope, Record
from tickertape.topics import validate_pattern

_ENVELOPE = msgspec.json.Decoder(Envelope)
err = Console(stderr=True, highlight=False)


def _records(
    reader: LogReader, patterns: list[str], start: Position | None, end: Position | None
) -> Iterator[Record]:
    to_gseq = end.gseq if end is not None else None
    to_ns = end.ts_ns if end is not None else None
    if start is not None and start.ts_ns is not None:
        records = reader.read_from_time(patterns or None, start.ts_ns, to_ns)
        for rec in records:
            if to_gseq is not None and rec.gseq > to_gseq:
                return
            yield rec
        return
    from_gseq = start.gseq if start is not None and start.gseq is not None else 1
    for rec in reader.read(patterns or None, from_gseq, to_gseq):
        if to_ns is not None and rec.ts_event >= to_ns:
            continue
        yield rec


def _until(batches_: Iterable[list[Record]], end: Position | None) -> Iterator[list[Record]]:
    """The followed batches, ended before the first record stamped at or after a time
    ``end`` (a gseq ``end`` is the reader's: ``follow_batches(to_gseq=...)``)."""
    if end is None or end.ts_ns is None:
        yield from batches_
        return
    to_ns = end.ts_ns
    for batch in batches_:
        for i, rec in enumerate(batch):
            if rec.ts_event >= to_ns:
                if i:
                    yield batch[:i]
                return
        yield batch


def _since(batches_: Iterable[list[Record]], from_ns: int | None) -> Iterator[list[Record]]:
    """The followed batches without the records stamped before ``from_ns`` (None: all).

    ``ts_event`` never decreases within a topic, so this starts each topic at its
    first record with ``ts_event`` ≥ ``from_ns``, as ``tail --from TIME`` does without
    ``--follow``, whatever the records of other topics between them in gseq order."""
    if from_ns is None:
        yield from batches_
        return
    for batch in batches_:
        kept = [rec for rec in batch if rec.ts_event >= from_ns]
        if kept:
            yield kept


def _limited(batches_: Iterable[list[Record]], limit: int | None) -> Iterator[list[Record]]:
    """The batches, cut after ``limit`` records in all (everything when None)."""
    left = limit
    for batch in batches_:
        if left is not None:
            batch = batch[:left]
            left -= len(batch)
        yield batch
        if left is not None and left <= 0:
            return


FLUSH_AFTER_S = 0.05
"""``tape tail --router`` prints what it holds when no event came for this long."""


async def _print_remote(
    stop: asyncio.Event, records: AsyncGenerator[Record, None], printer: RecordPrinter
) -> None:
    """Print ``records`` in batches until they end or ``stop`` is set.

    A batch is printed when it is full or when the stream pauses; on ``stop`` the
    pending next-record wait is cancelled, which closes the subscription and the
    client inside the event loop (no traceback, nothing left running).
    """

    async def next_record() -> Record | None:
        try:
            return await anext(records)
        except StopAsyncIteration:
            return None

    async def pump() -> None:
        batch: list[Record] = []
        waiting: asyncio.Task[Record | None] | None = None
        try:
            while True:
                if waiting is None:
                    waiting = asyncio.create_task(next_record(), name="tail-next")
                done, _ = await asyncio.wait({waiting}, timeout=FLUSH_AFTER_S if batch else None)
                if not done:
                    printer.write(batch)
                    batch = []
                    continue
                record, waiting = waiting.result(), None
                if record is None:
                    break
                batch.append(record)
                if len(batch) >= 256:
                    printer.write(batch)
                    batch = []
        finally:
            printer.write(batch)
            if waiting is not None:
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiting
            await records.aclose()

    await unless_stopped(stop, pump(), name="tail")


@click.command("tail")
@click.argument("patterns", nargs=-1)
@click.option("--from", "start", type=PositionType(), help="Start: DATE, ISO-TIME or gseq.")
@click.option(
    "--to", "end", type=PositionType(), help="End: DATE/ISO-TIME (exclusive) or gseq (inclusive)."
)
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new events (Ctrl-C stops).")
@click.option(
    "--json", "as_json", is_flag=True, help="Each stored record as one JSON line, nothing else."
)
@click.option("--limit", type=click.IntRange(min=1), help="Stop after N events.")
@click.option("--router", help="Read through a router (ws://HOST:PORT) instead of the files.")
@click.option("--identity", default="inspector", show_default=True, help="Identity for --router.")
@token_options
@data_options
def tail_command(
    patterns: tuple[str, ...],
    start: Position | None,
    end: Position | None,
    follow: bool,
    as_json: bool,
    limit: int | None,
    router: str | None,
    identity: str,
    token: str | None,
    data_dir: str,
    namespace: str,
) -> None:
    """Print events matching PATTERNS (NATS wildcards; default all) in gseq order.

    Rows (or JSON lines) are printed as the events arrive. With --follow, Ctrl-C
    (SIGINT) stops it quietly with exit status 0; through a router, SIGTERM too.
    With --to it ends by itself: a gseq bound once the log's head has reached it (on
    the files, or through a router, which is asked for its head after half a second
    without an event); a time bound at the first matching event past it (events come
    in gseq order, so a time bound does not wait for topics still behind it).

    \b
    Examples:
      tape tail 'md.trade.crypto.*' --from 2024-08-08 --limit 20
      tape tail 'order.>' --follow
      tape tail 'order.>' --router ws://127.0.0.1:7400 --follow
      tape tail --json --from 100 --to 200 > events.jsonl
      tape tail 'md.>' --follow --to 2024-08-09T12:00:00Z
    """
    for pattern in patterns:
        problem = validate_pattern(pattern)
        if problem is not None:
            raise click.BadParameter(problem, param_hint="PATTERNS")
    printer = RecordPrinter(as_json=as_json)
    if router is not None:
        from tickertape.client import inspect

        records = inspect.tail_remote(
            router,
            list(patterns) or [">"],
            start=start,
            end=end,
            follow=follow,
            limit=limit,
            identity=identity,
            token=token,
            namespace=namespace,
        )
        run_until_stopped(
            lambda stop: _print_remote(stop, records, printer), command="tail", log=False
        )
        return
    reader = LogReader(data_dir, namespace)
    if follow:
        from_ns: int | None = None
        if start is not None and start.ts_ns is not None:
            from_ns = start.ts_ns
            head = reader.head_gseq()  # (read first: a record committed meanwhile is read)
            first = reader.first_gseq_at(list(patterns) or None, from_ns)
            from_gseq = first if first is not None else head + 1
        else:
            from_gseq = start.gseq if start is not None and start.gseq else 1
        with stopped_by_signals() as stopping:
            followed = reader.follow_batches(
                list(patterns) or None,
                from_gseq,
                stop=stopping.is_set,
                to_gseq=end.gseq if end is not None else None,
            )
            for batch in _limited(_until(_since(followed, from_ns), end), limit):
                printer.write(batch)
        return
    with contextlib.suppress(KeyboardInterrupt):
        for batch in _limited(batched(_records(reader, list(patterns), start, end), 256), limit):
            printer.write(batch)


@click.command("verify")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON on stdout.")
@data_options
def verify_command(as_json: bool, data_dir: str, namespace: str) -> None:
    """Check every record of every file of the namespace; exit 1 when anything is wrong.

    Checks checksums, contiguous offsets, increasing gseq, monotonic ts_event per
    topic, day files and index consistency, and reports each problem with file,
    byte position and offset.
    """
    reader = LogReader(data_dir, namespace)
    total = sum(size for _t, _s, size in reader.files())
    with Progress(
        TextColumn("verify"),
        BarColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=as_json or not err.is_terminal,
    ) as progress:
        task = progress.add_task("verify", total=total)
        report = verify_namespace(data_dir, namespace, lambda n: progress.advance(task, n))
    if as_json:
        sys.stdout.buffer.write(
            orjson.dumps(msgspec.to_builtins(report), option=orjson.OPT_INDENT_2)
        )
        sys.stdout.buffer.write(b"\n")
    else:
        console = Console(highlight=False)
        if report.problems:
            table = Table(title=f"{len(report.problems)} problem(s)", show_lines=False)
            for col in ("file", "byte", "offset", "what"):
                table.add_column(col)
            for p in report.problems:
                table.add_row(
                    p.path, str(p.position), "" if p.offset is None else str(p.offset), p.what
                )
            console.print(table)
        for p in report.in_flight:
            console.print(
                f"[dim]in flight (a writer is live, not checked): {p.path} "
                f"from byte {p.position}: {p.what}[/]"
            )
        status = "[green]clean[/]" if report.ok else "[red]NOT CLEAN[/]"
        past = (
            f" ({report.past_head} past it, left by a crash: the next open keeps or cuts them)"
            if report.past_head
            else ""
        )
        console.print(
            f"{namespace}: {report.files} files, {report.records} records, "
            f"{report.bytes:,} bytes, head gseq {report.head_gseq}{past}: {status}"
        )
    sys.exit(0 if report.ok else 1)


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="As JSON on stdout.")
@click.option("--router", help="Ask a running router for live statistics (connections, lag).")
@click.option("--identity", default="inspector", show_default=True)
@token_options
@data_options
def stats_command(
    as_json: bool,
    router: str | None,
    identity: str,
    token: str | None,
    data_dir: str,
    namespace: str,
) -> None:
    """Per topic: records, bytes on disk (open and sealed), first/last ts_event and offset."""
    if router is not None:
        from tickertape.client import inspect

        stats = asyncio.run(inspect.stats_remote(router, identity=identity, token=token))
        if as_json:
            click.echo(orjson.dumps(stats, option=orjson.OPT_INDENT_2).decode())
        else:
            inspect.print_stats(stats)
        return
    reader = LogReader(data_dir, namespace)
    rows: list[dict[str, Any]] = []
    for topic in reader.topics():
        summary = reader.topic_summary(topic)
        open_bytes = sealed_bytes = 0
        for seg, size in reader.topic_files(topic):
            if seg.sealed:
                sealed_bytes += size
            else:
                open_bytes += size
        rows.append(
            {
                "topic": topic,
                "records": summary.count,
                "open_bytes": open_bytes,
                "sealed_bytes": sealed_bytes,
                "first_offset": summary.first_offset,
                "last_offset": summary.last_offset,
                "first_ts_event": summary.first_ts,
                "last_ts_event": summary.last_ts,
            }
        )
    head = reader.head_gseq()
    if as_json:
        click.echo(
            orjson.dumps(
                {"namespace": namespace, "head_gseq": head, "topics": rows},
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
        return
    table = Table(title=f"namespace {namespace}: head gseq {head}")
    for col, justify in (
        ("topic", "left"),
        ("records", "right"),
        ("open bytes", "right"),
        ("sealed bytes", "right"),
        ("offsets", "right"),
        ("first ts_event", "left"),
        ("last ts_event", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r["topic"],
            f"{r['records']:,}",
            f"{r['open_bytes']:,}",
            f"{r['sealed_bytes']:,}",
            f"{r['first_offset']}–{r['last_offset']}" if r["records"] else "",
            format_ns(r["first_ts_event"]) if r["records"] else "",
            format_ns(r["last_ts_event"]) if r["records"] else "",
        )
    Console(highlight=False).print(table)


@click.command("compact")
@click.option(
    "--all",
    "include_open",
    is_flag=True,
    help="Also seal each topic's newest day (historical data).",
)
@data_options
def compact_command(include_open: bool, data_dir: str, namespace: str) -> None:
    """Seal every day that is over into seekable zstd (crash-safe), now."""
    with EventLog.open(data_dir, namespace) as log:
        sealed = compact(log, include_open=include_open)
    err.print(f"sealed {len(sealed)} day file(s) in {namespace}")


@click.command("retention")
@click.option(
    "--keep",
    "rules",
    multiple=True,
    required=True,
    metavar="PATTERN=DAYS",
    callback=parse_retention,
    help="Keep days of topics matching PATTERN for DAYS days (first match wins).",
)
@data_options
def retention_command(rules: tuple[tuple[str, int], ...], data_dir: str, namespace: str) -> None:
    """Delete whole days older than their topic's retention (the newest day is always kept).

    Needs the namespace's write lock: a running `tape router`/`tape eventlog` applies
    its own `--retain` rules instead."""
    import time

    with EventLog.open(data_dir, namespace) as log:
        deleted = apply_retention(log, rules, time.time_ns())
    err.print(f"deleted {len(deleted)} day file(s) from {namespace}")


def _parse_stdin(lines: Iterator[bytes], refused: list[str]) -> Iterator[tuple[int, Envelope]]:
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            env = _ENVELOPE.decode(line)
        except msgspec.ValidationError as exc:
            refused.append(f"line {lineno}: invalid envelope: {exc}")
            continue
        except msgspec.DecodeError as exc:
            refused.append(f"line {lineno}: not JSON: {exc}")
            continue
        if not is_known(env.type, env.v):
            refused.append(f"line {lineno}: unknown type {env.type} v{env.v}")
            continue
        try:
            decode_payload(env.type, env.v, env.payload)
        except SchemaError as exc:
            refused.append(f"line {lineno}: {exc}")
            continue
        yield lineno, env


@click.command("append")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 65536))
@click.option("--router", help="Publish through a router (ws://HOST:PORT) instead of the files.")
@click.option("--identity", help="Identity for --router (must equal each envelope's source).")
@token_options
@data_options
def append_command(
    batch: int,
    router: str | None,
    identity: str | None,
    token: str | None,
    data_dir: str,
    namespace: str,
) -> None:
    """Append envelopes read as JSON lines on stdin, durably, in batches.

    Prints a summary (appended, duplicates, refused with reasons) on stderr and exits 0
    only when nothing was refused. Safe to re-run on the same input: (source,
    source_seq) duplicates are acknowledged and not stored again.
    """
    refused: list[str] = []
    appended = duplicates = 0
    envelopes = _parse_stdin(iter(sys.stdin.buffer), refused)
    if router is not None:
        from tickertape.client import inspect

        if identity is None:
            raise click.UsageError("--router needs --identity")
        summary = asyncio.run(
            inspect.append_remote(
                router,
                identity=identity,
                token=token,
                envelopes=(env for _n, env in envelopes),
                namespace=namespace,
            )
        )
        appended, duplicates = summary["appended"], summary["duplicates"]
        refused.extend(summary.get("refused", []))
    else:
        with EventLog.open(data_dir, namespace) as log:
            chunk: list[tuple[int, Envelope]] = []

            def flush() -> None:
                nonlocal appended, duplicates
                results = log.append([e for _n, e in chunk])
                for (lineno, _e), res in zip(chunk, results, strict=True):
                    if res.error:
                        refused.append(f"line {lineno}: {res.error}: {res.message}")
                    elif res.duplicate:
                        duplicates += 1
                    else:
                        appended += 1
                chunk.clear()

            try:
                for item in envelopes:
                    chunk.append(item)
                    if len(chunk) >= batch:
                        flush()
                if chunk:
                    flush()
            except TickertapeError:
                err.print(f"appended {appended}, duplicates {duplicates} before the error")
                raise
    for reason in refused[:50]:
        err.print(f"refused: {reason}")
    if len(refused) > 50:
        err.print(f"... and {len(refused) - 50} more refused")
    err.print(f"appended {appended}, duplicates {duplicates}, refused {len(refused)}")
    sys.exit(1 if refused else 0)


COMMANDS: list[click.Command] = [
    tail_command,
    verify_command,
    stats_command,
    compact_command,
    retention_command,
    append_command,
]
