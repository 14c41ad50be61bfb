"""The distributed replay driver (see docs/replay.md)."""

from __future__ import annotations

from pathlib import Path

from tickertape.actors.runtime.resolution import ActorSpec
from tickertape.errors import ConfigError
from tickertape.replay.inprocess import ReplayResult
from tickertape.replay.manifest import RunSettings


def run_distributed_cli(
    data_dir: Path,
    settings: RunSettings,
    specs: list[ActorSpec],
    *,
    actor_items: tuple[str, ...],
    router_url: str | None,
    speed: float | None,
    snapshot_every: int,
    quiet: bool,
) -> ReplayResult:
    """Run a distributed replay (not built yet)."""
    raise ConfigError("distributed replay is not available in this build; use --in-process")
