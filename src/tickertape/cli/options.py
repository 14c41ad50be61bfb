"""Options and argument parsing shared by ``tape`` subcommands."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def data_options(fn: F) -> F:
    """Add ``--data-dir`` (default ``.``) and ``--namespace`` (default ``main``)."""
    fn = click.option(
        "--namespace",
        "-n",
        default="main",
        show_default=True,
        envvar="TAPE_NAMESPACE",
        help="Namespace of the log (main, or runs/<run-id>).",
    )(fn)
    fn = click.option(
        "--data-dir",
        "-d",
        default=".",
        show_default=True,
        envvar="TAPE_DATA_DIR",
        type=click.Path(file_okay=False),
        help="Directory holding logs/ and snapshots/.",
    )(fn)
    return fn


def data_dir_option(help: str, default: str = ".") -> Callable[[F], F]:
    """``--data-dir``/``-d``: a directory (a :class:`pathlib.Path`), default ``default``.

    For commands that take the data directory without a namespace (see
    :func:`data_options` for both).
    """
    return click.option(
        "--data-dir",
        "-d",
        default=default,
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help=help,
    )


def parse_time_ns(text: str) -> int:
    """Parse ``YYYY-MM-DD`` or an ISO 8601 time (UTC when no offset is given) to ns.

    Raises:
        click.BadParameter: not a date or time.
    """
    try:
        if len(text) == 10:
            d = dt.date.fromisoformat(text)
            stamp = dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)
        else:
            stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=dt.UTC)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date (2024-01-31), an ISO time (2024-01-31T14:30:00Z) or a gseq"
        ) from None
    return int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000


class Position:
    """A ``--from``/``--to`` value: a gseq (an integer) or a time in ns."""

    def __init__(self, gseq: int | None = None, ts_ns: int | None = None) -> None:
        self.gseq = gseq
        self.ts_ns = ts_ns

    def __repr__(self) -> str:
        return f"Position(gseq={self.gseq}, ts_ns={self.ts_ns})"


class PositionType(click.ParamType):  # type: ignore[type-arg]
    """Click type for ``--from``/``--to``: ``DATE``, ``ISO-TIME`` or a gseq."""

    name = "DATE|ISO-TIME|GSEQ"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Position:
        if isinstance(value, Position):
            return value
        text = str(value)
        if text.isdigit():
            return Position(gseq=int(text))
        try:
            return Position(ts_ns=parse_time_ns(text))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


def format_ns(ts_ns: int) -> str:
    """Format ns since the epoch as ISO 8601 UTC with milliseconds (``2024-01-02T09:30:00.000Z``)."""
    stamp = dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
