"""`tape` subcommands: router (see the module owner for details)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
