"""Tests of the replay's keyboard control (the pure key handling)."""

from __future__ import annotations

from tickertape.replay.keyboard import apply_key
from tickertape.timeauthority.pacing import Pacer


def test_keys_pause_resume_and_change_speed() -> None:
    """Space toggles pause, + doubles, - halves (from 1x at max), m goes back to max."""
    pacer = Pacer(None)
    assert apply_key(pacer, " ") == "paused"
    assert pacer.paused
    assert apply_key(pacer, " ") == "resumed"
    assert apply_key(pacer, "+") == "speed 2x"
    assert apply_key(pacer, "-") == "speed 1x"
    assert apply_key(pacer, "m") == "speed max"
    assert pacer.speed is None
    assert apply_key(pacer, "x") is None
