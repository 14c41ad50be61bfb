"""Options and argument parsing shared by ``tape`` subcommands."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from tickertape.errors import ConfigError
from tickertape.topics import validate_pattern

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


TOKEN_ENV = "TAPE_TOKEN"
"""Environment variable holding the token when neither option is given."""

TOKEN_FILE_ENV = "TAPE_TOKEN_FILE"
"""Environment variable naming the token file when neither option is given."""


def token_options(fn: F) -> F:
    """Add ``--token TOKEN`` and ``--token-file FILE``; the command receives ``token``.

    The two are mutually exclusive on the command line (a click usage error, exit 2).
    Either may come from the environment (``TAPE_TOKEN``, ``TAPE_TOKEN_FILE``); an
    option given on the command line wins over the environment. The command's
    ``token`` parameter is the token (read from the file when one is named), or None
    when neither is given (a router without tokens).

    Errors (exit 2, naming ``--token-file`` and the file): the file is missing,
    unreadable, empty or holds more than one token
    (:func:`tickertape.client.inspect.read_token`).
    """

    @functools.wraps(fn)
    def resolved(*args: Any, token: str | None, token_file: str | None, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        source = ctx.get_parameter_source
        from_command_line = click.core.ParameterSource.COMMANDLINE
        if token is not None and token_file is not None:
            if source("token") == from_command_line and source("token_file") == from_command_line:
                raise click.UsageError("--token and --token-file are mutually exclusive: give one")
            # One came from the environment: the command line wins (both from the
            # environment: the token itself wins).
            if source("token_file") == from_command_line:
                token = None
            else:
                token_file = None
        from tickertape.client.inspect import read_token

        try:
            secret = read_token(token, token_file)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="'--token-file'") from None
        return fn(*args, token=secret, **kwargs)

    wrapped = click.option(
        "--token-file",
        default=None,
        envvar=TOKEN_FILE_ENV,
        metavar="FILE",
        help=f"File holding the identity's token (as `tape token create` printed it; "
        f"env {TOKEN_FILE_ENV}). Not with --token.",
    )(resolved)
    wrapped = click.option(
        "--token",
        default=None,
        envvar=TOKEN_ENV,
        help=f"The identity's token (env {TOKEN_ENV}); --token-file keeps it out of the "
        "process list.",
    )(wrapped)
    return cast(F, wrapped)


def parse_time(text: str, *, end: bool = False) -> int:
    """Parse ``YYYY-MM-DD``, an ISO 8601 date-time (UTC unless it says otherwise) or ns
    since the epoch, to ns since the epoch.

    With ``end=True`` a bare date means the end of that day (the next midnight),
    so ``--to 2024-01-31`` includes the 31st.

    Raises:
        ConfigError: not a date, date-time or integer.
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            if end:
                moment += dt.timedelta(days=1)
        else:
            moment = dt.datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a date (2024-01-31), an ISO date-time (2024-01-31T14:30:00Z) "
            "or ns since the epoch"
        ) from None
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


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
        text = str(value).strip()
        if text.isdigit():
            return Position(gseq=int(text))
        try:
            return Position(ts_ns=parse_time(text))
        except ConfigError:
            self.fail(
                f"{text!r} is not a date (2024-01-31), an ISO time (2024-01-31T14:30:00Z) "
                "or a gseq",
                param,
                ctx,
            )


def format_ns(ts_ns: int) -> str:
    """Format ns since the epoch as ISO 8601 UTC with milliseconds (``2024-01-02T09:30:00.000Z``)."""
    stamp = dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_retention(
    ctx: click.Context | None, param: click.Parameter | None, rules: tuple[str, ...]
) -> tuple[tuple[str, int], ...]:
    """``PATTERN=DAYS`` options as ``(pattern, days)`` rules, in the order given.

    Raises:
        click.BadParameter: a rule is not ``PATTERN=DAYS`` with DAYS a whole number and
            PATTERN a valid topic pattern.
    """
    parsed: list[tuple[str, int]] = []
    for rule in rules:
        pattern, sep, days = rule.rpartition("=")
        if not sep or not days.isdigit():
            raise click.BadParameter(f"{rule!r}: expected PATTERN=DAYS, e.g. 'md.>=30'")
        problem = validate_pattern(pattern)
        if problem is not None:
            raise click.BadParameter(f"{rule!r}: {problem}")
        parsed.append((pattern, int(days)))
    return tuple(parsed)
