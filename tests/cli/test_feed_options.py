"""`tape feed --max-silence-s`: the live feed's silence bounds from the command line."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from tickertape.cli.main import cli
from tickertape.cli.up_commands import _silence_bounds


def test_silence_bounds_parse_scopes_and_off() -> None:
    """SCOPE=SECONDS items become the config's mapping; `off` is no detection."""
    assert _silence_bounds(("crypto=60", "crypto.BTCUSDT=2.5")) == {
        "crypto": 60.0,
        "crypto.BTCUSDT": 2.5,
    }
    assert _silence_bounds(("off",)) == {}
    for bad in ("crypto", "=5", "crypto=soon"):
        with pytest.raises(click.BadParameter, match="is not SCOPE=SECONDS"):
            _silence_bounds((bad,))


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("crypto=soon", "'crypto=soon' is not SCOPE=SECONDS"),
        ("crypto=-1", "max_silence_s['crypto'] must be > 0 seconds"),
        ("us=30", "max_silence_s"),
    ],
)
def test_bad_bounds_are_refused_before_anything_starts(item: str, message: str) -> None:
    """A wrong bound is a usage error (exit 2) naming it; nothing connects."""
    result = CliRunner().invoke(
        cli, ["feed", "--router", "ws://127.0.0.1:1", "--max-silence-s", item]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
