"""`tape import` end to end on a real file, through the click command."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tickertape.cli.marketdata_commands import import_command
from tickertape.eventlog import LogReader

DATA = Path(__file__).resolve().parents[3] / "data"
KRX_ADJ = DATA / "krx-005930-daily" / "v3_005930_adjusted_2018_2021_with_features.csv"


def test_import_twice_stores_once(tmp_path: Path) -> None:
    """The second run reports every event as a duplicate and the log head does not move."""
    args = [
        "krx-daily",
        str(KRX_ADJ),
        "--symbol",
        "005930",
        "--adjusted",
        "--data-dir",
        str(tmp_path),
    ]
    runner = CliRunner()
    first = runner.invoke(import_command, args)
    assert first.exit_code == 0, first.output
    head = LogReader(tmp_path, "main").head_gseq()
    second = runner.invoke(import_command, args)
    assert second.exit_code == 0, second.output
    assert LogReader(tmp_path, "main").head_gseq() == head == 986 + 1
    assert "986" in second.output


def test_missing_symbol_is_a_usage_error(tmp_path: Path) -> None:
    """Formats whose files do not name the instrument require --symbol."""
    result = CliRunner().invoke(
        import_command, ["krx-daily", str(KRX_ADJ), "--adjusted", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "--symbol" in result.output
