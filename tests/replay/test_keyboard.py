"""Tests of the replay's keyboard control (the pure key handling)."""

from __future__ import annotations

from tickertape.cli.options import parse_time
from tickertape.replay.keyboard import SEEK_STEP_NS, KeyHandler, apply_key
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


def test_angle_brackets_ask_for_a_seek_an_hour_back_or_ahead_of_the_clock() -> None:
    """< and > request relative seeks, taken against the driver's clock; the last one wins."""
    pacer = Pacer(None)
    assert apply_key(pacer, ">") == "seek ahead 1 h"
    assert pacer.take_seek(10 * SEEK_STEP_NS) == 11 * SEEK_STEP_NS
    assert pacer.take_seek(10 * SEEK_STEP_NS) is None
    apply_key(pacer, ">")
    apply_key(pacer, "<")
    assert pacer.take_seek(10 * SEEK_STEP_NS) == 9 * SEEK_STEP_NS


def test_g_then_a_time_then_enter_asks_for_a_seek_there() -> None:
    """g prompts; typed text (with backspace) parsed on Enter; Esc and bad text seek nowhere."""
    pacer = Pacer(None)
    keys = KeyHandler(pacer, parse_time=parse_time)
    assert keys.feed("g") == KeyHandler.PROMPT
    assert keys.editing
    for key in "2024-01-03x\x7f":
        assert keys.feed(key) is None
    assert keys.feed("\r") == "seek to 2024-01-03"
    assert not keys.editing
    assert pacer.take_seek(0) == 1_704_240_000 * 10**9
    keys.feed("g")
    keys.feed("2")
    assert keys.feed("\x1b") == "seek canceled"
    keys.feed("g")
    for key in "soon\n":
        reply = keys.feed(key)
    assert reply is not None
    assert reply.startswith("no seek:")
    assert pacer.take_seek(0) is None
    assert keys.feed(" ") == "paused"  # back to single keys


def test_g_is_an_ordinary_key_without_a_time_parser() -> None:
    """Without parse_time, g does nothing (and starts no typing)."""
    keys = KeyHandler(Pacer(None))
    assert keys.feed("g") is None
    assert not keys.editing
