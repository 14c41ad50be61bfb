"""Tests of the LogSink (tickertape.actors.runtime.sink) over a real event log: stored
records back, duplicates read back and compared."""

from __future__ import annotations

from pathlib import Path

import msgspec

from tests.router.support import trade
from tickertape.actors.runtime import LogSink
from tickertape.eventlog import EventLog
from tickertape.schemas.envelope import Record


def _key(records: list[Record]) -> list[tuple[object, ...]]:
    return [(r.id, r.topic, r.gseq, r.offset, r.ts_log, bytes(r.payload)) for r in records]


def test_a_rerun_wave_gets_the_stored_records_back_and_nothing_is_stored_twice(
    tmp_path: Path,
) -> None:
    """A wave appended again returns the first append's records (same gseq, offset and
    ts_log), reports no divergence and stores nothing."""
    log = EventLog.open(tmp_path, "main")
    try:
        sink = LogSink(log, durable=False)
        wave = [trade("md", i, "BTC" if i % 2 else "ETH") for i in range(1, 41)]
        first = sink.append(wave, ts_log=100)
        again = sink.append(wave, ts_log=200)
        assert _key(again) == _key(first)
        assert [r.gseq for r in again] == list(range(1, 41))
        assert {r.ts_log for r in again} == {100}
        assert sink.divergences == []
        assert log.head_gseq == 40
    finally:
        log.close()


def test_a_regenerated_event_that_differs_is_a_divergence_even_on_another_topic(
    tmp_path: Path,
) -> None:
    """Same (source, source_seq) with another price, or on another topic: each is found
    in the log, reported with the fields that differ, and the stored record is returned."""
    log = EventLog.open(tmp_path, "main")
    try:
        sink = LogSink(log)
        stored = sink.append([trade("md", 1, "BTC"), trade("md", 2, "BTC")], ts_log=1)
        repriced = msgspec.structs.replace(trade("md", 1, "BTC"), payload=trade("md", 3).payload)
        moved = trade("md", 2, "BTC", topic="md.trade.crypto.ETH")
        back = sink.append([repriced, moved], ts_log=2)
        assert _key(back) == _key(stored)
        assert [(d.id, d.fields) for d in sink.divergences] == [
            ("md:1", ["payload"]),
            ("md:2", ["topic"]),
        ]
        assert log.head_gseq == 2
    finally:
        log.close()
