"""A running `tape eventlog --retain` (the log apart from the router) deletes the days its
rules say while it serves, and a SIGKILL after that neither brings them back nor lets
an offset, gseq or ``source_seq`` they held be given out or stored again."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from tickertape.client import Client
from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog.layout import day_name, list_segments
from tickertape.router.logservice import EmbeddedLog
from tickertape.schemas import Envelope

from ..eventlog.envelopes import verify_clean
from .support import dated_trade, eventlog, eventually, free_port, kill, tape, trade, wait_port

PER_DAY = 100
TOPIC = "md.trade.crypto.BTC"


def old_event(seq: int) -> Envelope:
    """Trade ``seq`` (from 1), ``PER_DAY`` a day from 2024-01-01 on."""
    return dated_trade(seq, PER_DAY)


def new_event(seq: int) -> Envelope:
    """Trade ``seq`` stamped now (the wall clock: the live day)."""
    now = time.time_ns()
    return msgspec.structs.replace(trade("md", seq), ts_event=now, ts_init=now)


def days(data_dir: Path, namespace: str = "main") -> list[str]:
    topic_dir = data_dir / "logs" / namespace / TOPIC
    return [day_name(s.day) for s in list_segments(topic_dir, TOPIC)]


async def test_a_running_log_applies_retention_and_survives_a_kill(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with EventLog.open(data) as log:
        log.append([old_event(s) for s in range(1, 3 * PER_DAY + 1)])
    log_port, port = free_port(), free_port()
    service = tape("eventlog", "--port", str(log_port), "--data-dir", str(data),
                   "--retain", "md.>=30")  # fmt: skip
    router = tape("router", "--port", str(port), "--log-url", f"ws://127.0.0.1:{log_port}")
    url = f"ws://127.0.0.1:{port}"
    try:
        wait_port(log_port)
        wait_port(port)  # the router opens main: the log applies its rule to it
        # 2024-01-01 and -02 are years old; -03 holds the topic's last record: kept.
        await eventually(lambda: days(data) == ["2024-01-03"], within=20)
        async with Client(url, "md") as client:
            fresh = await client.publish([new_event(s) for s in range(301, 311)])
            assert [r.offset for r in fresh] == list(range(300, 310))
        kill(service)  # SIGKILL, then the same log without the rule
        service = eventlog(log_port, data)
        async with Client(url, "md") as client:
            again = await client.publish([old_event(1), *(new_event(s) for s in range(311, 316))])
            assert again[0].duplicate  # held by a deleted day: never stored again
            assert [r.offset for r in again[1:]] == list(range(310, 315))
            assert again[1].gseq == fresh[-1].gseq + 1
    finally:
        kill(router)
        kill(service)
    assert days(data)[0] == "2024-01-03"
    stored = [r.source_seq for r in LogReader(data).read([TOPIC])]
    assert stored == list(range(2 * PER_DAY + 1, 3 * PER_DAY + 1)) + list(range(301, 316))
    verify_clean(data)


async def test_retention_leaves_replay_runs_alone(tmp_path: Path) -> None:
    """The embedded log applies its rules to ``main`` and never to a replay run's
    namespace, whose days are its inputs' dates (years old here) however new the run."""
    data = tmp_path / "d"
    three_days = [old_event(s) for s in range(1, 3 * PER_DAY + 1)]
    for namespace in ("main", "runs/r1"):
        with EventLog.open(data, namespace) as log:
            log.append(three_days)
    embedded = EmbeddedLog(data, seal=False, retention=[("md.>", 30)])
    try:
        assert await embedded.head("runs/r1") == 3 * PER_DAY
        assert await embedded.head("main") == 3 * PER_DAY
        await eventually(lambda: days(data) == ["2024-01-03"])
        assert days(data, "runs/r1") == ["2024-01-01", "2024-01-02", "2024-01-03"]
    finally:
        await embedded.close()
    assert days(data, "runs/r1") == ["2024-01-01", "2024-01-02", "2024-01-03"]
