"""Tests of the pacer (--speed) and the speed parser."""

from __future__ import annotations

import pytest

from tickertape.errors import ClockError
from tickertape.timeauthority.pacing import Pacer, parse_speed


class FakeWall:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_max_speed_never_waits() -> None:
    """speed None (max) gives no delay."""
    assert Pacer(None).delay(10**18) == 0.0


def test_speed_n_paces_simulated_time() -> None:
    """At speed 10, one simulated second is due 0.1 s of wall time after the anchor."""
    wall = FakeWall()
    pacer = Pacer(10.0, monotonic=wall)
    assert pacer.delay(0) == 0.0
    assert pacer.delay(1_000_000_000) == pytest.approx(0.1)
    wall.t += 0.1
    assert pacer.delay(1_000_000_000) == pytest.approx(0.0)


def test_resume_reanchors() -> None:
    """After a pause, the next step is due at once (no burst catching up)."""
    wall = FakeWall()
    pacer = Pacer(1.0, monotonic=wall)
    pacer.delay(0)
    pacer.pause()
    wall.t += 100
    pacer.resume()
    assert pacer.delay(5_000_000_000) == 0.0
    assert pacer.delay(6_000_000_000) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("text", "speed"), [("max", None), ("MAX", None), ("2", 2.0), ("0.5", 0.5)]
)
def test_parse_speed(text: str, speed: float | None) -> None:
    """max or a positive number."""
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", ["0", "-1", "fast", "nan"])
def test_parse_speed_refuses_nonsense(text: str) -> None:
    """Zero, negative, NaN and words are refused."""
    with pytest.raises(ClockError):
        parse_speed(text)
