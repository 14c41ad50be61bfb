"""``tape schemas export DIR``: the payload schemas as JSON Schema, for non-Python clients."""

from __future__ import annotations

from pathlib import Path

import click
import msgspec
import orjson

from tickertape.schemas import Envelope, Record, schemas


@click.group("schemas")
def schemas_group() -> None:
    """Envelope and payload schemas."""


@schemas_group.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export_command(directory: Path) -> None:
    """Write one JSON Schema file per (type, v) into DIRECTORY, plus the envelope's.

    Files are named ``<type>.v<v>.json`` (``md.trade.v1.json``); ``envelope.json`` and
    ``record.json`` describe the envelope as published and as stored.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = 0
    for (type_, v), cls in schemas().items():
        schema = msgspec.json.schema(cls)
        schema["$comment"] = f"tickertape payload {type_} v{v}"
        (directory / f"{type_}.v{v}.json").write_bytes(
            orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        )
        written += 1
    for name, cls in (("envelope", Envelope), ("record", Record)):
        (directory / f"{name}.json").write_bytes(
            orjson.dumps(
                msgspec.json.schema(cls), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
            )
        )
    click.echo(f"wrote {written} payload schemas and the envelope to {directory}")


COMMANDS: list[click.Command] = [schemas_group]
