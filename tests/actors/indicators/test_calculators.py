"""The incremental calculators reproduce TA-Lib's reference values and restore exactly."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickertape.actors.indicators.calculators import (
    Atr,
    Bollinger,
    CalculatorState,
    Dmi,
    Ema,
    Macd,
    Rsi,
    Sma,
    TrueRange,
)
from tickertape.errors import ConfigError

REFERENCE_DIR = (
    Path(__file__).resolve().parents[3] / "data" / "indicator-reference" / "talib-computed"
)
REFERENCE_FILES = (
    "talib_ref_ford_2012_daily.csv",
    "talib_ref_6EH4_1m_2024-01_first3000.csv",
    "talib_ref_regtest_series_close.csv",
)
REL_TOL = 1e-9

Row = dict[str, float | None]


def _compute(rows: list[dict[str, str]]) -> list[Row]:
    """Run every calculator over the rows, one bar at a time, as TA-Lib's columns."""
    has_hlc = "high" in rows[0]
    sma10, sma20, ema10, ema20 = Sma(10), Sma(20), Ema(10), Ema(20)
    rsi, macd, bb = Rsi(14), Macd(12, 26, 9), Bollinger(20, 2.0)
    trange, atr, dmi = TrueRange(), Atr(14), Dmi(14)
    out: list[Row] = []
    for row in rows:
        close = float(row["close"])
        values: Row = {
            "SMA_10": sma10.update(close),
            "SMA_20": sma20.update(close),
            "EMA_10": ema10.update(close),
            "EMA_20": ema20.update(close),
            "RSI_14": rsi.update(close),
        }
        m = macd.update(close)
        values["MACD_12_26_9"], values["MACDSIGNAL_12_26_9"], values["MACDHIST_12_26_9"] = (
            m if m is not None else (None, None, None)
        )
        b = bb.update(close)
        values["BB_UPPER_20_2"], values["BB_MIDDLE_20_2"], values["BB_LOWER_20_2"] = (
            b if b is not None else (None, None, None)
        )
        if has_hlc:
            high, low = float(row["high"]), float(row["low"])
            values["TRANGE"] = trange.update(high, low, close)
            values["ATR_14"] = atr.update(high, low, close)
            d = dmi.update(high, low, close)
            values["PLUS_DI_14"] = d.plus_di if d else None
            values["MINUS_DI_14"] = d.minus_di if d else None
            values["DX_14"] = d.dx if d else None
            values["ADX_14"] = d.adx if d else None
        out.append(values)
    return out


def _read(name: str) -> tuple[list[dict[str, str]], list[str]]:
    with (REFERENCE_DIR / name).open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        fields = [c for c in reader.fieldnames or () if c.isupper()]
    return rows, fields


@pytest.mark.parametrize("name", REFERENCE_FILES)
def test_every_reference_column_matches_talib(name: str) -> None:
    """Every indicator column of a TA-Lib reference file is reproduced to 1e-9 relative."""
    rows, columns = _read(name)
    computed = _compute(rows)
    assert columns, "reference file has no indicator columns"
    mismatches: list[str] = []
    for i, (row, mine) in enumerate(zip(rows, computed, strict=True)):
        for column in columns:
            expected_text = row[column]
            got = mine[column]
            if expected_text == "":
                if got is not None:
                    mismatches.append(f"row {i} {column}: expected warm-up, got {got!r}")
                continue
            expected = float(expected_text)
            if got is None or not math.isclose(got, expected, rel_tol=REL_TOL, abs_tol=0.0):
                mismatches.append(f"row {i} {column}: expected {expected!r}, got {got!r}")
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:5]}"


def _ohlc_rows() -> list[tuple[float, float, float]]:
    rows, _ = _read("talib_ref_6EH4_1m_2024-01_first3000.csv")
    return [(float(r["high"]), float(r["low"]), float(r["close"])) for r in rows]


_STATE_DECODER = msgspec.msgpack.Decoder(CalculatorState)


def _roundtrip(state: msgspec.Struct) -> CalculatorState:
    return _STATE_DECODER.decode(msgspec.msgpack.encode(state))


FACTORIES: dict[str, Callable[[], object]] = {
    "sma": lambda: Sma(20),
    "ema": lambda: Ema(20),
    "rsi": lambda: Rsi(14),
    "macd": lambda: Macd(12, 26, 9),
    "bbands": lambda: Bollinger(20, 2.0),
    "trange": TrueRange,
    "atr": lambda: Atr(14),
    "dmi": lambda: Dmi(14),
}


def _feed(calc: object, bars: list[tuple[float, float, float]]) -> Iterator[object]:
    for high, low, close in bars:
        if isinstance(calc, (TrueRange, Atr, Dmi)):
            yield calc.update(high, low, close)
        else:
            yield calc.update(close)  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", sorted(FACTORIES))
@pytest.mark.parametrize("cut", [1, 13, 27, 40, 500])
def test_restore_from_state_continues_exactly(kind: str, cut: int) -> None:
    """A calculator rebuilt from a msgpack round-trip of its state continues bit for bit."""
    bars = _ohlc_rows()[:700]
    whole = list(_feed(FACTORIES[kind](), bars))
    first = FACTORIES[kind]()
    head = list(_feed(first, bars[:cut]))
    state = _roundtrip(first.state())  # type: ignore[attr-defined]
    restored = type(first).from_state(state)  # type: ignore[attr-defined]
    tail = list(_feed(restored, bars[cut:]))
    assert head + tail == whole


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.floats(min_value=0.5, max_value=2.0, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=80,
    ),
    st.integers(min_value=2, max_value=30),
)
def test_sma_equals_reference_running_sum(values: list[float], period: int) -> None:
    """SMA equals a direct transcription of TA-Lib's running-sum loop on any series."""
    calc = Sma(period)
    got = [calc.update(v) for v in values]
    expected: list[float | None] = [None] * min(period - 1, len(values))
    total = sum(values[: period - 1]) if len(values) >= period else 0.0
    # TA-Lib: the first period-1 values are summed in order, then add/divide/subtract.
    total = 0.0
    for v in values[: period - 1]:
        total += v
    for i in range(period - 1, len(values)):
        total += values[i]
        expected.append(total / period)
        total -= values[i - period + 1]
    assert got == expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.floats(min_value=1.0, max_value=100.0, allow_nan=False, allow_infinity=False),
        min_size=16,
        max_size=80,
    )
)
def test_rsi_stays_within_bounds(values: list[float]) -> None:
    """RSI is always within [0, 100] once defined."""
    calc = Rsi(14)
    for out in (calc.update(v) for v in values):
        assert out is None or 0.0 <= out <= 100.0


@pytest.mark.parametrize(
    "build",
    [
        lambda: Sma(1),
        lambda: Ema(0),
        lambda: Rsi(True),
        lambda: Macd(26, 12, 9),
        lambda: Bollinger(20, 0.0),
        lambda: Dmi(1),
        lambda: Atr(1),
    ],
)
def test_invalid_parameters_are_refused(build: Callable[[], object]) -> None:
    """Periods below 2, fast ≥ slow and a non-positive band width raise ConfigError."""
    with pytest.raises(ConfigError):
        build()
