"""How ``tape tail`` prints records: exact JSON lines, or a readable coloured table."""

from __future__ import annotations

import sys
from collections.abc import Sequence

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


class RecordPrinter:
    """Prints records on stdout a batch at a time, each batch as soon as it is given.

    With ``as_json`` each record is one JSON line (the stored record exactly, nothing
    else); otherwise aligned, coloured rows, one per event, the header once. Output is
    flushed after every batch, so ``tape tail --follow`` shows events as they arrive.

    Args:
        as_json: JSON lines instead of rows.
        console: where rows go (default: stdout, 200 columns when not a terminal).
    """

    def __init__(self, *, as_json: bool = False, console: Console | None = None) -> None:
        self.as_json = as_json
        if console is None:
            console = Console(highlight=False, soft_wrap=False)
            if not console.is_terminal:
                console = Console(highlight=False, soft_wrap=False, width=200)
        self._console = console
        self.count = 0
        """Records printed so far."""

    def write(self, records: Sequence[Record]) -> None:
        """Print one batch (nothing for an empty one)."""
        if not records:
            return
        if self.as_json:
            out = sys.stdout.buffer
            for rec in records:
                out.write(encode_wire(rec))
                out.write(b"\n")
            out.flush()
        else:
            self._console.print(self._table(records, header=self.count == 0))
            self._console.file.flush()
        self.count += len(records)

    @staticmethod
    def _table(records: Sequence[Record], *, header: bool) -> Table:
        table = Table(box=None, show_header=header, pad_edge=False, header_style="bold")
        table.add_column("gseq", justify="right", min_width=8, no_wrap=True)
        table.add_column("ts_event (UTC)", min_width=24, no_wrap=True)
        table.add_column("topic", min_width=30, no_wrap=True)
        table.add_column("off", justify="right", min_width=6, no_wrap=True)
        table.add_column("source", min_width=12, no_wrap=True)
        table.add_column("payload", overflow="ellipsis", no_wrap=True, ratio=1)
        for rec in records:
            style = _FAMILY_STYLE.get(rec.topic.split(".", 1)[0], "")
            table.add_row(
                str(rec.gseq),
                format_ns(rec.ts_event),
                f"[{style}]{rec.topic}[/]" if style else rec.topic,
                str(rec.offset),
                rec.source,
                bytes(rec.payload).decode(errors="replace"),
            )
        return table
