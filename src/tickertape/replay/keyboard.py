"""Keyboard control of a running replay: space pauses/resumes, + and - change speed, m max.

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

from tickertape.timeauthority.pacing import Pacer

DEFAULT_SPEED = 1.0
"""The speed ``+`` and ``-`` start from when the replay runs at max speed."""


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
    return None


class KeyboardControl:
    """Reads keys while a replay runs (a context manager).

    Args:
        pacer: the replay's pacer.
        announce: called with what a key changed.
    """

    def __init__(self, pacer: Pacer, announce: Callable[[str], None] | None = None) -> None:
        self._pacer = pacer
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
            change = apply_key(self._pacer, key)
            if change is not None and self._announce is not None:
                self._announce(change)
