"""Pacing simulated time against wall time (``--speed max|N``), with pause, resume and
seek requests.

A :class:`Pacer` answers one question: how long to wait, in wall seconds, before a
step at simulated time ``t`` may run, so that simulated time advances at most
``speed`` times as fast as wall time. ``speed=None`` is ``max``: never wait. Changing
the speed, pausing and resuming re-anchors the pace at the current point, so no
burst follows a pause. A seek is only requested here (:meth:`Pacer.request_seek`, from
the keyboard's thread); the replay driver takes it between steps.

The wall clock here paces the driver only; actors never see it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tickertape.errors import ClockError


class Pacer:
    """Paces steps at ``speed`` × wall time.

    Args:
        speed: simulated seconds per wall second (> 0), or None for as fast as possible.
        monotonic: the wall clock in seconds (``time.monotonic``); injectable for tests.

    Raises:
        ClockError: ``speed`` ≤ 0.
    """

    def __init__(
        self, speed: float | None = None, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._monotonic = monotonic
        self._speed: float | None = None
        self._anchor_wall: float | None = None
        self._anchor_sim: int | None = None
        self.paused = False
        self._seek: tuple[int, bool] | None = None
        self._seek_lock = threading.Lock()
        self.set_speed(speed)

    @property
    def speed(self) -> float | None:
        """The current speed (None: max)."""
        return self._speed

    def set_speed(self, speed: float | None) -> None:
        """Change the speed from now on.

        Raises:
            ClockError: ``speed`` ≤ 0.
        """
        if speed is not None and speed <= 0:
            raise ClockError(f"speed must be > 0 or max, got {speed}")
        self._speed = speed
        self._anchor_wall = None

    def pause(self) -> None:
        """Stop releasing steps until :meth:`resume`."""
        self.paused = True

    def resume(self) -> None:
        """Release steps again, re-anchoring the pace."""
        self.paused = False
        self._anchor_wall = None

    def request_seek(self, time_ns: int, *, relative: bool = False) -> None:
        """Ask the replay to move its simulated time to ``time_ns`` (ns since the
        epoch), or by ``time_ns`` from where it is when ``relative``. The last request
        wins; thread-safe."""
        with self._seek_lock:
            self._seek = (time_ns, relative)

    def take_seek(self, now_ns: int) -> int | None:
        """The pending seek's target (a relative one counted from ``now_ns``), cleared;
        None when there is none. Called before every step: without a request it takes
        no lock."""
        if self._seek is None:
            return None
        with self._seek_lock:
            seek, self._seek = self._seek, None
        if seek is None:
            return None
        time_ns, relative = seek
        return now_ns + time_ns if relative else time_ns

    def delay(self, sim_ns: int) -> float:
        """Return the wall seconds to wait before the step at ``sim_ns`` (0 when due).

        The first step after a (re-)anchor is due at once.
        """
        if self._speed is None:
            return 0.0
        now = self._monotonic()
        if self._anchor_wall is None or self._anchor_sim is None or sim_ns < self._anchor_sim:
            self._anchor_wall = now
            self._anchor_sim = sim_ns
            return 0.0
        due = self._anchor_wall + (sim_ns - self._anchor_sim) / 1e9 / self._speed
        return max(0.0, due - now)


def parse_speed(text: str) -> float | None:
    """Parse ``max`` (None) or a positive number.

    Raises:
        ClockError: anything else.
    """
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ClockError(f"speed must be 'max' or a number > 0, got {text!r}") from None
    if not speed > 0:
        raise ClockError(f"speed must be 'max' or a number > 0, got {text!r}")
    return speed
