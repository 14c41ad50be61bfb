"""Helpers of the CLI tests: what a running router says, asked the way a user would."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.system.processes import TAPE


def router_stats(url: str, token_file: Path | None = None) -> dict[str, Any]:
    """The router's health snapshot, from `tape stats --router URL --json` (as the
    identity ``inspector`` with the token in ``token_file`` when given)."""
    auth = [] if token_file is None else ["--token-file", str(token_file)]
    proc = subprocess.run(
        [str(TAPE), "stats", "--router", url, "--json", *auth],
        capture_output=True,
        timeout=60,
        check=True,
    )
    stats: dict[str, Any] = json.loads(proc.stdout)
    return stats


def connected(
    url: str, identity: str, *, subscribed: bool = False, token_file: Path | None = None
) -> Callable[[], bool]:
    """A check for :func:`~tests.system.processes.eventually`: true once the router lists
    a connection authenticated as ``identity`` (with a subscription, if ``subscribed``)."""

    def check() -> bool:
        return any(
            c.get("identity") == identity and (c.get("subscriptions") or not subscribed)
            for c in router_stats(url, token_file).get("connections", [])
        )

    return check
