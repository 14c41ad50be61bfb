"""The event log (DESIGN §5): the source of truth.

- :class:`EventLog`: open a namespace for writing (sync; durable on return).
- :class:`AsyncEventLog`: the same with group commit, for asyncio producers.
- :class:`LogReader`: read-only access from any process.
"""

from tickertape.eventlog.asynclog import AsyncEventLog
from tickertape.eventlog.reader import LogReader, merge_by_gseq
from tickertape.eventlog.writer import MAX_GROUP, AppendResult, EventLog, RecoveryReport

__all__ = [
    "MAX_GROUP",
    "AppendResult",
    "AsyncEventLog",
    "EventLog",
    "LogReader",
    "RecoveryReport",
    "merge_by_gseq",
]
