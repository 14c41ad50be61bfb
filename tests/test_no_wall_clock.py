"""Actor code never reads the wall clock nor unseeded randomness (DESIGN §1.3, §7).

Scans every module under ``src/tickertape/actors/`` except the runtime (which hosts
the clocks) with :mod:`ast`, so comments and strings never trigger it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ACTORS = Path(__file__).resolve().parents[1] / "src" / "tickertape" / "actors"

FORBIDDEN_CALLS = {
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "monotonic"),
    ("time", "monotonic_ns"),
    ("time", "perf_counter"),
    ("time", "perf_counter_ns"),
    ("time", "localtime"),
    ("time", "gmtime"),
    ("time", "sleep"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("uuid", "uuid1"),
    ("uuid", "uuid4"),
    ("os", "urandom"),
}
FORBIDDEN_IMPORTS = {
    "time": {
        "time",
        "time_ns",
        "monotonic",
        "monotonic_ns",
        "perf_counter",
        "perf_counter_ns",
        "sleep",
    },
    "uuid": {"uuid1", "uuid4"},
    "os": {"urandom"},
}
RANDOM_OK = {"Random"}
PRAGMA = "# wall-clock-ok:"
"""A line ending with this comment and a reason is exempt (for code outside handlers)."""

ALLOWED: dict[str, set[str]] = {
    # The historical-file importer runs as a command, not as an actor handler: its
    # default clock stamps the operational import manifests.
    "marketdata/loader.py": {"time.time_ns"},
    # The live venue adapter is the I/O shell that stamps local receive times
    # (recv_ns) on raw messages as they arrive; handlers never see its clock.
    # It also times its reconnect backoff on the monotonic clock.
    "marketdata/binance_client.py": {"time.time_ns", "time.monotonic"},
    # The exchange simulator is a stand-alone server pacing a capture in wall time
    # (and, with --rebase, moving the capture's times to now).
    "marketdata/exchange_sim.py": {"time.monotonic", "time.time_ns"},
}


def violations(source: str) -> list[str]:
    """Return ``line: call`` for each wall-clock or unseeded-random use in ``source``."""
    found: list[str] = []
    lines = source.splitlines()
    exempt = {i + 1 for i, line in enumerate(lines) if PRAGMA in line}
    for node in ast.walk(ast.parse(source)):
        if getattr(node, "lineno", None) in exempt:
            continue
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            pair = (node.value.id, node.attr)
            if pair in FORBIDDEN_CALLS:
                found.append(f"{node.lineno}: {pair[0]}.{pair[1]}")
            elif node.value.id == "random" and node.attr not in RANDOM_OK:
                found.append(f"{node.lineno}: random.{node.attr} (use ctx.random)")
        elif isinstance(node, ast.Attribute) and node.attr in {"now", "utcnow", "today"}:
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in FORBIDDEN_IMPORTS:
            for alias in node.names:
                if alias.name in FORBIDDEN_IMPORTS[node.module]:
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            found.extend(
                f"{node.lineno}: import {a.name}" for a in node.names if a.name == "secrets"
            )
    return found


def actor_modules() -> list[Path]:
    return sorted(p for p in ACTORS.rglob("*.py") if "runtime" not in p.relative_to(ACTORS).parts)


@pytest.mark.parametrize("path", actor_modules(), ids=lambda p: str(p.relative_to(ACTORS)))
def test_actor_module_reads_no_wall_clock(path: Path) -> None:
    """The module calls no wall-clock, sleep or unseeded-random function."""
    allowed = ALLOWED.get(str(path.relative_to(ACTORS)), set())
    found = [
        v
        for v in violations(path.read_text(encoding="utf-8"))
        if v.split(": ", 1)[1] not in allowed
    ]
    assert found == []


def test_the_scanner_catches_each_form() -> None:
    """The scanner flags attribute calls, from-imports and datetime.now."""
    src = (
        "import time\nfrom time import monotonic\nimport random\n"
        "x = time.time_ns()\ny = datetime.now(tz=None)\nz = random.random()\nr = random.Random(1)\n"
    )
    assert [v.split(":")[0] for v in violations(src)] == ["2", "4", "5", "6"]
    assert violations("import time\nx = time.time()  # wall-clock-ok: manifest stamp\n") == []
