"""Tests of `tape schemas export`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tickertape.cli.main import cli
from tickertape.schemas import schemas


def test_export_writes_one_file_per_type_and_version(tmp_path: Path) -> None:
    """One JSON Schema per registered (type, v), plus envelope.json and record.json."""
    out = tmp_path / "schemas"
    result = CliRunner().invoke(cli, ["schemas", "export", str(out)], catch_exceptions=False)
    assert result.exit_code == 0
    want = {f"{t}.v{v}.json" for (t, v) in schemas()} | {"envelope.json", "record.json"}
    assert {p.name for p in out.iterdir()} == want
    for (t, v), cls in schemas().items():
        doc = json.loads((out / f"{t}.v{v}.json").read_text())
        assert doc["$comment"] == f"tickertape payload {t} v{v}"
        props = doc["$defs"][cls.__name__]["properties"]
        assert set(props) == set(cls.__struct_fields__)
    trade = json.loads((out / "md.trade.v1.json").read_text())["$defs"]["Trade"]
    assert set(trade["required"]) == {"symbol", "price", "size", "side", "trade_id"}
    envelope = json.loads((out / "envelope.json").read_text())
    assert "source_seq" in envelope["$defs"]["Envelope"]["properties"]
    record = json.loads((out / "record.json").read_text())
    assert {"offset", "gseq", "ts_log"} <= set(record["$defs"]["Record"]["properties"])


def test_export_is_deterministic(tmp_path: Path) -> None:
    """Two exports are byte-identical (sorted keys)."""
    runner = CliRunner()
    for d in ("a", "b"):
        runner.invoke(cli, ["schemas", "export", str(tmp_path / d)], catch_exceptions=False)
    for p in (tmp_path / "a").iterdir():
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes()
