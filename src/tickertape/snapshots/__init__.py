"""Actor snapshots: codec (msgpack + zstd + CRC), atomic store, cadence policy."""

from tickertape.snapshots.codec import Snapshot, decode_snapshot, encode_snapshot
from tickertape.snapshots.policy import SnapshotPolicy
from tickertape.snapshots.store import SnapshotStore, snapshot_dir

__all__ = [
    "Snapshot",
    "SnapshotPolicy",
    "SnapshotStore",
    "decode_snapshot",
    "encode_snapshot",
    "snapshot_dir",
]
