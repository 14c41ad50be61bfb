"""structlog configuration: done once, by the ``tape`` entry point.

JSON lines (orjson) to stderr when stderr is not a terminal, a readable coloured
form when it is. Context (``actor``, ``topic``, ``gseq``) is bound, never formatted
into the message.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default).decode()


def configure(level: str = "info", *, json: bool | None = None) -> None:
    """Configure structlog for the process.

    Args:
        level: minimum level name (``debug``, ``info``, ``warning``, ``error``).
        json: force JSON lines (True) or the console form (False); None picks JSON
            unless stderr is a terminal.
    """
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=True)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
