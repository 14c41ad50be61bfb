"""Entry point of the ``tape`` command.

Each subcommand group lives in its own module of this package, which exposes a
``COMMANDS`` list of click commands; :data:`COMMAND_MODULES` lists them.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from tickertape import __version__, logconfig
from tickertape.errors import TickertapeError

COMMAND_MODULES: tuple[str, ...] = (
    "tickertape.cli.log_commands",
    "tickertape.cli.schema_commands",
    "tickertape.cli.router_commands",
    "tickertape.cli.runtime_commands",
    "tickertape.cli.marketdata_commands",
    "tickertape.cli.trading_commands",
    "tickertape.cli.system_commands",
    "tickertape.cli.up_commands",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tape")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Minimum level of the structured log on stderr.",
)
@click.option("--log-json/--log-console", default=None, help="Force JSON or console log lines.")
def cli(log_level: str, log_json: bool | None) -> None:
    """tickertape: a durable, append-only event log with replayable actors, for trading."""
    logconfig.configure(log_level, json=log_json)


PIPED_WIDTH = 160
"""Columns of tables and rules when stdout is not a terminal (rich's default, 80, cuts
every wide table to "…" in logs, CI output and pipes). ``COLUMNS`` overrides it."""


def _wide_output_when_piped() -> None:
    """Give rich a wide console when stdout is a pipe or file and COLUMNS is unset.

    Runs before the command modules are imported, since they create their consoles at
    import; child ``tape`` processes inherit the setting.
    """
    if "COLUMNS" not in os.environ and not sys.stdout.isatty():
        os.environ["COLUMNS"] = str(PIPED_WIDTH)


_wide_output_when_piped()

for _name in COMMAND_MODULES:
    for _command in importlib.import_module(_name).COMMANDS:
        cli.add_command(_command)


def main() -> None:
    """Run ``tape``; a :class:`TickertapeError` is printed as one line and exits 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except TickertapeError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        click.secho(f"error: {exc.strerror or exc}{where}", fg="red", err=True)
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(0)
