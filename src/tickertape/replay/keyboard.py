"""Keyboard control of a running replay: space pauses/resumes, + and - change speed, m max,
< and > seek an hour back or ahead, g seeks to a typed time.

Active only when stdin is a terminal: the terminal is put in cbreak mode (keys
arrive one by one, no echo) for the duration and restored after, even on errors. A
non-daemon reader thread polls stdin every 0.1 s and stops with the context.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import tty
from collections.abc import Callable
from types import TracebackType
from typing import Any

from tickertape.errors import ConfigError
from tickertape.timeauthority.pacing import Pacer

DEFAULT_SPEED = 1.0
"""The speed ``+`` and ``-`` start from when the replay runs at max speed."""

SEEK_STEP_NS = 3_600 * 1_000_000_000
"""How far ``<`` and ``>`` move the simulated clock: one hour."""


def apply_key(pacer: Pacer, key: str) -> str | None:
    """Apply one key to ``pacer``; return what changed (for display), or None.

    Pure: no terminal involved (tests call it directly).
    """
    if key == " ":
        if pacer.paused:
            pacer.resume()
            return "resumed"
        pacer.pause()
        return "paused"
    if key in "+-":
        current = pacer.speed if pacer.speed is not None else DEFAULT_SPEED
        pacer.set_speed(current * 2 if key == "+" else current / 2)
        return f"speed {pacer.speed:g}x"
    if key in "mM":
        pacer.set_speed(None)
        return "speed max"
    if key in "<>":
        pacer.request_seek(SEEK_STEP_NS if key == ">" else -SEEK_STEP_NS, relative=True)
        return f"seek {'ahead' if key == '>' else 'back'} 1 h"
    return None


class KeyHandler:
    """Keys to replay controls: :func:`apply_key`'s, and ``g`` then a time then Enter
    to seek there (Escape cancels, Backspace erases). Pure: no terminal involved.

    Args:
        pacer: the replay's pacer (it carries the seek requests).
        parse_time: turns the typed text into ns since the epoch; raises ``ValueError``
            or ``ConfigError`` on bad text. None disables ``g``.
    """

    PROMPT = "seek to (YYYY-MM-DD or ISO time, Enter; Esc cancels): "

    def __init__(self, pacer: Pacer, parse_time: Callable[[str], int] | None = None) -> None:
        self.pacer = pacer
        self._parse = parse_time
        self.line: str | None = None

    @property
    def editing(self) -> bool:
        """True while a seek time is being typed."""
        return self.line is not None

    def feed(self, key: str) -> str | None:
        """Handle one key; return what changed (for display), or None."""
        if self.line is None:
            if key in "gG" and self._parse is not None:
                self.line = ""
                return self.PROMPT
            return apply_key(self.pacer, key)
        if key in "\r\n":
            text, self.line = self.line.strip(), None
            if not text:
                return "seek canceled"
            assert self._parse is not None
            try:
                time_ns = self._parse(text)
            except (ValueError, ConfigError) as exc:
                return f"no seek: {exc}"
            self.pacer.request_seek(time_ns)
            return f"seek to {text}"
        if key == "\x1b":
            self.line = None
            return "seek canceled"
        if key in "\x7f\b":
            self.line = self.line[:-1]
        elif key.isprintable():
            self.line += key
        return None


class KeyboardControl:
    """Reads keys while a replay runs (a context manager).

    Args:
        pacer: the replay's pacer.
        announce: called with what a key changed.
        parse_time: parses a typed seek time (see :class:`KeyHandler`); None disables
            ``g``.
    """

    def __init__(
        self,
        pacer: Pacer,
        announce: Callable[[str], None] | None = None,
        parse_time: Callable[[str], int] | None = None,
    ) -> None:
        self._keys = KeyHandler(pacer, parse_time)
        self._announce = announce
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved: list[Any] | None = None
        self._fd = -1

    def __enter__(self) -> KeyboardControl:
        if not sys.stdin.isatty():
            return self
        self._fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)
        self._thread = threading.Thread(target=self._read, name="replay-keyboard")
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._saved is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def _read(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if not ready:
                continue
            key = os.read(self._fd, 1).decode(errors="replace")
            was_editing = self._keys.editing
            change = self._keys.feed(key)
            if was_editing and self._keys.editing:  # echo what is typed
                echo = "\b \b" if key in "\x7f\b" else key if key.isprintable() else ""
                sys.stderr.write(echo)
                sys.stderr.flush()
            elif was_editing:
                sys.stderr.write("\n")
            if change is not None and self._announce is not None:
                self._announce(change)
