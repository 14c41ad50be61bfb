"""An event log that refuses chosen envelopes as a damaged topic would, for the loader tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tickertape.eventlog import AppendResult, EventLog
from tickertape.schemas.envelope import Envelope


class RefusingLog:
    """``log``, with the envelopes ``refuse`` picks answered ``TOPIC_DAMAGED`` and the rest
    appended (the log refuses event by event: the others of a batch are stored)."""

    def __init__(self, log: EventLog, refuse: Callable[[Envelope], bool]) -> None:
        self.log = log
        self.refuse = refuse
        self.last_ts_event = log.last_ts_event
        self.last_source_seq = log.last_source_seq
        self.read_topic = log.read_topic
        self.read_from_time = log.read_from_time

    def append(
        self, envelopes: Sequence[Envelope], *, ts_log: int | None = None
    ) -> list[AppendResult]:
        kept = iter(self.log.append([e for e in envelopes if not self.refuse(e)], ts_log=ts_log))
        return [
            AppendResult(id=e.id, error="TOPIC_DAMAGED", message="test")
            if self.refuse(e)
            else next(kept)
            for e in envelopes
        ]
