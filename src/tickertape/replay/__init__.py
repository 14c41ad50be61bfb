"""Replay drivers: in-process (:mod:`.inprocess`) and distributed (:mod:`.distributed`)."""

from tickertape.replay import control
from tickertape.replay.inprocess import ReplayResult, run_in_process
from tickertape.replay.manifest import RunSettings

__all__ = ["ReplayResult", "RunSettings", "control", "run_in_process"]
