"""How ``tape tail`` prints records: exact JSON lines, or a readable coloured table."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

from rich.console import Console
from rich.table import Table

from tickertape.cli.options import format_ns
from tickertape.eventlog.codec import encode_wire
from tickertape.schemas.envelope import Record

_FAMILY_STYLE = {
    "md": "cyan",
    "raw": "bright_black",
    "indicator": "blue",
    "strategy": "magenta",
    "risk": "yellow",
    "order": "green",
    "pnl": "bright_green",
    "system": "red",
}


def write_json(records: Iterable[Record]) -> int:
    """Write each record as one JSON line on stdout (nothing else); return the count."""
    out = sys.stdout.buffer
    n = 0
    for rec in records:
        out.write(encode_wire(rec))
        out.write(b"\n")
        n += 1
        if n % 256 == 0:
            out.flush()
    out.flush()
    return n


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_table(records: Iterable[Record], console: Console | None = None, chunk: int = 200) -> int:
    """Print records as aligned, coloured rows (one per event); return the count.

    Rows are printed in chunks so that ``--follow`` output appears as it arrives.
    """
    if console is None:
        console = Console(highlight=False, soft_wrap=False)
        if not console.is_terminal:
            console = Console(highlight=False, soft_wrap=False, width=200)
    n = 0
    first = True
    for rows in _chunks(records, chunk):
        table = Table(box=None, show_header=first, pad_edge=False, header_style="bold")
        table.add_column("gseq", justify="right", min_width=8, no_wrap=True)
        table.add_column("ts_event (UTC)", min_width=24, no_wrap=True)
        table.add_column("topic", min_width=30, no_wrap=True)
        table.add_column("off", justify="right", min_width=6, no_wrap=True)
        table.add_column("source", min_width=12, no_wrap=True)
        table.add_column("payload", overflow="ellipsis", no_wrap=True, ratio=1)
        for rec in rows:
            style = _FAMILY_STYLE.get(rec.topic.split(".", 1)[0], "")
            table.add_row(
                str(rec.gseq),
                format_ns(rec.ts_event),
                f"[{style}]{rec.topic}[/]" if style else rec.topic,
                str(rec.offset),
                rec.source,
                bytes(rec.payload).decode(errors="replace"),
            )
        console.print(table)
        first = False
        n += len(rows)
    return n
