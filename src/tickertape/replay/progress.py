"""The replay progress bar (rich): simulated time done, events/s, simulated date."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


def format_ns(ts_ns: int) -> str:
    """``2024-01-01 09:30:00`` (UTC) of a time in ns."""
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


class ReplayProgress:
    """A progress bar over simulated time; use as a context manager and call it.

    Args:
        start_ns: the replay's start, ns.
        end_ns: its end (or an estimate), ns; None shows no bar proportion.
        console: where to draw (stderr by default).
        enabled: False draws nothing (``--quiet`` or not a terminal).
    """

    def __init__(
        self,
        start_ns: int,
        end_ns: int | None,
        *,
        console: Console | None = None,
        enabled: bool = True,
    ) -> None:
        self._start = start_ns
        self._span = max(1, (end_ns or start_ns + 1) - start_ns)
        self._enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]replay"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("sim {task.fields[sim]}"),
            TextColumn("{task.fields[inputs]:>10,} in  {task.fields[outputs]:>10,} out"),
            TextColumn("{task.fields[rate]:>9,.0f} ev/s"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task(
            "replay", total=self._span, sim=format_ns(start_ns), inputs=0, outputs=0, rate=0.0
        )
        self._t0 = time.monotonic()

    def __enter__(self) -> ReplayProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def __call__(self, sim_ns: int, inputs: int, outputs: int) -> None:
        """Update with the simulated time and the counts so far."""
        elapsed = max(1e-9, time.monotonic() - self._t0)
        self._progress.update(
            self._task,
            completed=min(self._span, max(0, sim_ns - self._start)),
            sim=format_ns(sim_ns),
            inputs=inputs,
            outputs=outputs,
            rate=(inputs + outputs) / elapsed,
        )
