"""Where snapshots live on disk, written atomically, the last K kept (DESIGN §5, §8).

Layout: ``<data-dir>/snapshots/<namespace>/<actor>/<clock_ns>-<events_handled>.snap``,
both numbers zero-padded so that name order is age order.

A write goes to a temporary file in the same directory, is fsync'd, renamed over its
final name, and the directory is fsync'd: a crash leaves either the old set or the
new one, never a partial snapshot under a final name. Loading walks from the newest
file to the oldest, skipping corrupt files (logged) and files of another state
version, and returns the first good one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog

from tickertape.errors import SnapshotError
from tickertape.eventlog.layout import fsync_dir, write_durably
from tickertape.snapshots.codec import Snapshot, decode_snapshot, encode_snapshot

_log = structlog.get_logger("tickertape.snapshots")
SUFFIX = ".snap"


def snapshot_dir(data_dir: str | Path, namespace: str, actor: str) -> Path:
    """Return ``<data_dir>/snapshots/<namespace>/<actor>``."""
    return Path(data_dir) / "snapshots" / namespace / actor


class SnapshotStore:
    """The snapshots of one actor in one namespace.

    Args:
        directory: the actor's snapshot directory (see :func:`snapshot_dir`).
        keep: how many snapshots to keep (≥ 1); older ones are deleted after a write.
    """

    def __init__(self, directory: str | Path, *, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep

    def paths(self) -> list[Path]:
        """Return the snapshot files, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX))

    def save(self, snapshot: Snapshot) -> Path:
        """Write ``snapshot`` atomically and prune to the last ``keep``.

        Returns:
            The final path.

        Raises:
            OSError: the write, fsync or rename failed (the previous snapshots are intact).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        name = _file_name(snapshot)
        final = self.directory / name
        tmp = self.directory / f".{name}.tmp"
        write_durably(final, encode_snapshot(snapshot), tmp=tmp)
        self._prune()
        return final

    def load_latest(
        self,
        state_version: int,
        *,
        at_or_before_ns: int | None = None,
        where: Callable[[Snapshot], bool] | None = None,
    ) -> Snapshot | None:
        """Return the newest valid snapshot of ``state_version``, or None.

        Args:
            state_version: the actor class's current ``state_version``; snapshots of
                another version are ignored (the actor rebuilds from the log).
            at_or_before_ns: only consider snapshots taken at or before this clock
                time (for seek), or None for any.
            where: only consider snapshots it accepts (a distributed replay's rewind
                asks for one epoch), or None for any.

        Corrupt files are skipped with a warning naming the file and the reason.
        """
        for path in reversed(self.paths()):
            try:
                snapshot = decode_snapshot(path.read_bytes(), path)
            except SnapshotError as exc:
                _log.warning("snapshot_skipped", path=str(path), reason=exc.reason)
                continue
            if at_or_before_ns is not None and snapshot.clock_ns > at_or_before_ns:
                continue
            if where is not None and not where(snapshot):
                continue
            if snapshot.state_version != state_version:
                _log.info(
                    "snapshot_version_ignored",
                    path=str(path),
                    found=snapshot.state_version,
                    expected=state_version,
                )
                continue
            return snapshot
        return None

    def discard_newer(self, snapshot: Snapshot) -> None:
        """Delete the snapshots newer than ``snapshot`` (one of this store's), so that it
        is the newest again: a seek back restores it, and a restart from then on must
        find it, not the ones the rewound run had taken after it."""
        newer = [p for p in self.paths() if p.name > _file_name(snapshot)]
        for path in newer:
            path.unlink(missing_ok=True)
        if newer:
            fsync_dir(self.directory)

    def _prune(self) -> None:
        paths = self.paths()
        for path in paths[: max(0, len(paths) - self.keep)]:
            path.unlink(missing_ok=True)
        if len(paths) > self.keep:
            fsync_dir(self.directory)


def _file_name(snapshot: Snapshot) -> str:
    """``<clock_ns>-<events_handled>.snap``, zero-padded: name order is age order."""
    return f"{snapshot.clock_ns:020d}-{snapshot.events_handled:015d}{SUFFIX}"
