"""Commands to a running time authority: pause, resume, seek, speed (``tape clock ctl``).

A command travels as an ephemeral ``system.clock.control`` envelope on the namespace
the authority serves; the authority applies it between steps.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from tickertape.schemas.registry import register

CONTROL_TOPIC = "system.clock.control"


@register("system.clock.control", 1)
class ClockControl(msgspec.Struct, frozen=True, kw_only=True):
    """One command to the time authority.

    Attributes:
        command: ``pause``, ``resume``, ``seek`` or ``speed``.
        run_id: the run it addresses, or None for any.
        time_ns: the target of ``seek``, ns.
        speed: the new speed for ``speed`` (None: max).
    """

    command: Literal["pause", "resume", "seek", "speed"]
    run_id: str | None = None
    time_ns: int | None = None
    speed: float | None = None
