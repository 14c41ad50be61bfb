"""Tests of instrument specifications: parsing, validation, lookup, and the engine's use."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tickertape.actors.orders import OrderEngine, OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.orders.instruments import (
    DEFAULT_SPEC,
    InstrumentSpec,
    InstrumentTable,
    load_instruments,
    parse_instruments,
)
from tickertape.actors.pnl import PnlActor, PnlConfig
from tickertape.actors.risk import RiskActor, RiskConfig
from tickertape.errors import ConfigError

SIXE = InstrumentSpec(multiplier=125_000.0, tick_size=0.00005, fees=fl.FeeSchedule(per_unit=2.47))


def test_a_root_covers_its_contracts_and_an_exact_symbol_wins() -> None:
    """6E covers 6EH4 and 6EZ24 (month code + 1-2 digit year), not 6EX or 6ETF; an exact
    entry beats the root; a root ending in a month letter is its own root; anything else
    has the default."""
    exact = InstrumentSpec(multiplier=2.0)
    longer = InstrumentSpec(multiplier=3.0)
    table = InstrumentTable({"us": {"6E": SIXE, "6EM4": exact, "6EU": longer}})
    assert table.spec("us", "6EH4") is SIXE
    assert table.spec("us", "6EZ24") is SIXE
    assert table.spec("us", "6E") is SIXE
    assert table.spec("us", "6EM4") is exact
    assert table.spec("us", "6EUZ4") is longer  # root 6EU + Z4, not 6E + "UZ4"
    assert table.spec("us", "6EU4") is SIXE  # 6E + U4
    for other in ("6EX", "6ETF", "6EH", "6EH123", "AAPL", "E6H4"):
        assert table.spec("us", other) is DEFAULT_SPEC, other
    assert table.spec("crypto", "6EH4") is DEFAULT_SPEC
    assert table.multiplier("us", "6EH4") == 125_000.0
    assert table.multiplier("us", "AAPL") == 1.0
    assert not InstrumentTable()
    assert table


def assert_refused(tmp_path: Path, cases: dict[str, str]) -> None:
    """Each instruments file text of ``cases`` is a ConfigError matching its value and
    naming the file."""
    for bad, named in cases.items():
        path = tmp_path / "instruments.toml"
        path.write_text(bad)
        with pytest.raises(ConfigError, match=named) as info:
            load_instruments({}, str(path), owner="orders")
        assert info.value.path == str(path)


def test_the_file_format_parses_and_bad_values_name_their_place(tmp_path: Path) -> None:
    """A TOML of [<market>.<key>] tables parses; unknown fields, unknown markets, bad TOML
    and out-of-range values are ConfigErrors naming the file and the field."""
    text = "[us.6E]\nmultiplier = 125_000.0\ntick_size = 0.00005\nfees = { per_unit = 2.47 }\n"
    assert parse_instruments(text) == {"us": {"6E": SIXE}}
    cases = {
        "[us.6E]\nmultiplyer = 2.0\n": "multiplyer",
        "[eu.6E]\nmultiplier = 2.0\n": "eu",
        "[us.6E]\nmultiplier = 0.0\n": "us.6E.multiplier",
        "[us.6E]\nmultiplier = inf\n": "us.6E.multiplier",
        "[us.6E]\ntick_size = -0.5\n": "us.6E.tick_size",
        "[us.6E]\nfees = { per_unit = -1.0 }\n": "us.6E.fees.per_unit",
        "[us.6E\n": "TOML",
    }
    assert_refused(tmp_path, cases)


def test_inline_section_or_file_not_both(tmp_path: Path) -> None:
    """An actor takes its [instruments] section or an instruments_file; both is an error,
    a missing file is an error naming it, and inline errors name the section."""
    path = tmp_path / "instruments.toml"
    path.write_text("[us.6E]\nmultiplier = 125_000.0\n")
    assert load_instruments({}, str(path), owner="risk").multiplier("us", "6EH4") == 125_000.0
    with pytest.raises(ConfigError, match="not both"):
        load_instruments({"us": {"6E": SIXE}}, str(path), owner="risk")
    with pytest.raises(ConfigError) as info:
        load_instruments({}, str(tmp_path / "missing.toml"), owner="risk")
    assert info.value.path == str(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"orders\.instruments\.us\.6E\.multiplier"):
        OrderEngine(OrderEngineConfig(instruments={"us": {"6E": InstrumentSpec(multiplier=-1)}}))
    with pytest.raises(ConfigError, match=r"risk\.instruments\.us\.X\.tick_size"):
        RiskActor(RiskConfig(instruments={"us": {"X": InstrumentSpec(tick_size=0.0)}}))


def test_actor_configs_refuse_unknown_instrument_fields() -> None:
    """The [instruments] section of an actor configuration refuses unknown keys."""
    raw = {"instruments": {"us": {"6E": {"multiplier": 1.0, "tick": 0.25}}}}
    with pytest.raises(msgspec.ValidationError, match="tick"):
        msgspec.convert(raw, OrderEngineConfig)
    with pytest.raises(msgspec.ValidationError, match="tick"):
        msgspec.convert(raw, RiskConfig)


def test_margins_parse_default_and_refuse_bad_values(tmp_path: Path) -> None:
    """initial_margin makes an instrument margined (maintenance defaults to it); a
    cash-like one has (0, 0); a non-positive or infinite initial margin, a maintenance
    margin above it or without it are refused naming the field, in a file and in the
    pnl actor's section."""
    text = (
        "[us.6E]\nmultiplier = 125_000.0\ninitial_margin = 2_310.0\nmaintenance_margin = 2_100.0\n"
    )
    table = InstrumentTable(parse_instruments(text))
    assert table.margin_rates("us", "6EH4") == (2_310.0, 2_100.0)
    assert table.spec("us", "6EH4").margined
    assert table.margin_rates("us", "AAPL") == (0.0, 0.0)
    assert not DEFAULT_SPEC.margined
    assert InstrumentSpec(initial_margin=100.0).margin_rates == (100.0, 100.0)
    cases = {
        "[us.6E]\ninitial_margin = 0.0\n": "us.6E.initial_margin",
        "[us.6E]\ninitial_margin = inf\n": "us.6E.initial_margin",
        "[us.6E]\ninitial_margin = 100.0\nmaintenance_margin = 101.0\n": "us.6E.maintenance",
        "[us.6E]\ninitial_margin = 100.0\nmaintenance_margin = 0.0\n": "us.6E.maintenance",
        "[us.6E]\nmaintenance_margin = 50.0\n": "needs an initial_margin",
    }
    assert_refused(tmp_path, cases)
    with pytest.raises(ConfigError, match=r"pnl\.instruments\.us\.X\.initial_margin"):
        PnlActor(PnlConfig(instruments={"us": {"X": InstrumentSpec(initial_margin=-1.0)}}))
