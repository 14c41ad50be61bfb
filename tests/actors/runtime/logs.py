"""Capturing the hosts' log lines in tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.testing import capture_logs

from tickertape.actors.runtime import errors


@contextmanager
def captured_host_logs() -> Iterator[list[dict[str, Any]]]:
    """``structlog.testing.capture_logs`` with a fresh logger for the hosts' skip lines.

    A command run in-process earlier in the same test worker configures structlog with
    ``cache_logger_on_first_use``; a module logger used then stays bound to that
    configuration and would bypass the capture.
    """
    with capture_logs() as logs:
        saved = errors._log
        errors._log = structlog.get_logger("tickertape.host")
        try:
            yield logs
        finally:
            errors._log = saved
