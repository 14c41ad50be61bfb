"""Tests of `tape replay` and its time parsing (tickertape.cli.runtime_commands)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tickertape.cli.main import cli
from tickertape.cli.options import parse_time
from tickertape.errors import ConfigError
from tickertape.eventlog import LogReader

ITEMS = (
    "tests.actors.runtime.sample_actors:MeanActor,tests.actors.runtime.sample_actors:SignalActor"
)
DAY = 1_704_067_200 * 10**9


@pytest.mark.parametrize(
    ("text", "end", "ns"),
    [
        ("2024-01-01", False, DAY),
        ("2024-01-01", True, DAY + 86_400 * 10**9),
        ("2024-01-01T00:00:01", False, DAY + 10**9),
        ("2024-01-01T09:00:00+09:00", False, DAY),
        ("2024-01-01T00:00:00.5", False, DAY + 500_000_000),
        (str(DAY + 7), False, DAY + 7),
    ],
)
def test_parse_time(text: str, end: bool, ns: int) -> None:
    """Dates, ISO times (UTC unless said), fractions and raw ns parse to ns."""
    assert parse_time(text, end=end) == ns


def test_parse_time_refuses_garbage() -> None:
    """A non-date says what is expected."""
    with pytest.raises(ConfigError, match="not a date"):
        parse_time("yesterday")


def test_replay_in_process_writes_the_run(source_dir: Path) -> None:
    """`tape replay --in-process` writes runs/<id> with manifest and summary and prints a table."""
    result = CliRunner().invoke(
        cli,
        [
            "replay",
            "--from",
            "2024-01-01",
            "--actors",
            ITEMS,
            "--run-id",
            "c1",
            "-d",
            str(source_dir),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "runs/c1" in result.output
    records = list(LogReader(source_dir, "runs/c1").read())
    assert records[0].type == "system.run_manifest"
    assert records[-1].type == "system.run_summary"


def test_replay_default_run_id_is_deterministic(source_dir: Path) -> None:
    """Without --run-id the id is <from>-<config hash>, the same for the same configuration."""
    args = ["replay", "--from", "2024-01-01", "--actors", ITEMS, "-d", str(source_dir), "-q"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code != 0
    assert "already holds" in str(again.exception)
    runs = sorted(p.name for p in (source_dir / "logs" / "runs").iterdir())
    assert len(runs) == 1
    assert runs[0].startswith("2024-01-01-")


def test_to_before_from_is_refused(source_dir: Path) -> None:
    """--to not after --from is a configuration error."""
    result = CliRunner().invoke(
        cli,
        [
            "replay",
            "--from",
            "2024-01-02",
            "--to",
            "2023-12-31",
            "--actors",
            ITEMS,
            "-d",
            str(source_dir),
        ],
    )
    assert isinstance(result.exception, ConfigError)
