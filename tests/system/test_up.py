"""`tape up` with real processes: it runs, Ctrl-C stops every child, a restart resumes."""

from __future__ import annotations

import json
import os
import re
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.system.processes import Tape, eventually, free_port
from tickertape.eventlog import LogReader
from tickertape.schemas.envelope import Record
from tickertape.schemas.market import Trade
from tickertape.schemas.orders import OrderEvent

pytestmark = pytest.mark.slow

FAST_STRATEGY = Path(__file__).with_name("sma_fast_live.toml")
"""SMA 2/4 on BTCUSDT 1 s bars: orders within seconds (the Procfile's 10/30 takes minutes)."""

ACTORS = ("indicators", "strategy.sma-fast", "risk", "orders", "pnl")
_STARTED = re.compile(r"\| (\S+) started \(pid=(\d+)\)")


def _records(data_dir: Path, patterns: list[str]) -> list[Record]:
    reader = LogReader(data_dir, "main")
    return list(reader.read(patterns)) if reader.topics(patterns) else []


def _orders(data_dir: Path, kind: str) -> list[OrderEvent]:
    return [
        msgspec.json.decode(r.payload, type=OrderEvent)
        for r in _records(data_dir, [f"order.{kind}.>"])
    ]


def _last_trade_id(data_dir: Path) -> int:
    """The largest BTCUSDT trade id in the log."""
    return max(
        int(msgspec.json.decode(r.payload, type=Trade).trade_id)
        for r in _records(data_dir, ["md.trade.crypto.BTCUSDT"])
    )


def _child_logs(output: str, process: str) -> list[dict[str, Any]]:
    """The JSON log lines a child process printed through `tape up`."""
    out = []
    for line in output.splitlines():
        head, sep, body = line.partition(" | ")
        if sep and head.split()[-1] == process and body.startswith("{"):
            out.append(json.loads(body))
    return out


def _stop(up: Tape) -> list[int]:
    """Ctrl-C `tape up`; return its children's process ids, checked gone."""
    up.signal(signal.SIGINT)
    assert up.process.wait(90) == 0, up.output()[-3000:]
    pids = [int(pid) for _, pid in _STARTED.findall(up.output())]
    assert len(pids) == 9, up.output()[-3000:]
    for pid in pids:  # every child ran in its own process group: all of it is gone
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    return pids


def test_up_stops_cleanly_and_resumes_without_processing_twice(tmp_path: Path) -> None:
    """Ctrl-C stops all nine processes (router last); started again, each actor resumes
    from its snapshot and position, and nothing is processed or sent twice."""
    data_dir = tmp_path / "live"
    port, sim_port = free_port(), free_port()
    args = [
        "up",
        "--data-dir",
        str(data_dir),
        "--speed",
        "3",
        "--port",
        str(port),
        "--sim-port",
        str(sim_port),
        "--strategy-config",
        str(FAST_STRATEGY),
        # Two cores shared with other work delay the actors' clock reports; the bound
        # guards clocks across machines, not this test's scheduling. For the same
        # reason a stop may take longer than the default 10 s.
        "--drift-bound-ms",
        "5000",
        "--stop-timeout",
        "30",
    ]
    first = Tape("up-1", args, tmp_path)
    try:
        eventually(lambda: _orders(data_dir, "submitted"), 45, "a first order", interval=0.5)
    finally:
        first_pids = _stop(first)
    output = first.output()
    assert "router stopped (rc=0)" in output
    router_stop = output.index("sending SIGTERM to router")
    for name in ("marketdata", "strategy", "risk", "orders", "pnl", "indicators"):
        assert output.index(f"{name} stopped (rc=0)") < router_stop
    submitted_before = len(_orders(data_dir, "submitted"))
    last_trade = _last_trade_id(data_dir)

    second = Tape("up-2", args, tmp_path)
    try:
        # The simulator continues the capture where it stopped (its state file in the
        # data dir): new trades come as soon as the feed is back, not after replaying
        # as much of the capture as the first run played.
        eventually(
            lambda: _last_trade_id(data_dir) > last_trade, 30, "a new trade after the restart"
        )
        eventually(
            lambda: len(_orders(data_dir, "submitted")) > submitted_before,
            60,
            "an order after the restart",
            interval=0.5,
        )
    finally:
        second_pids = _stop(second)
    assert not set(first_pids) & set(second_pids)

    output = second.output()
    for actor in ACTORS:
        name = "strategy" if actor.startswith("strategy") else actor
        starts = [e for e in _child_logs(output, name) if e.get("event") == "starting"]
        assert starts, f"{actor} did not log its start"
        assert starts[0]["snapshot"] is True, starts[0]
        if actor != "indicators":  # it reads 1 m bars: none closed in the first run
            assert starts[0]["position"] > 0, starts[0]
    restored = [e for e in _child_logs(output, "marketdata") if e.get("event") == "restored"]
    assert restored[0]["snapshot"] is True
    assert restored[0]["source_seq"] > 0

    everything = _records(data_dir, [">"])
    ids = Counter(r.id for r in everything)
    assert [i for i, n in ids.items() if n > 1] == []
    for source in {r.source for r in everything}:
        seqs = [r.source_seq for r in everything if r.source == source]
        assert seqs == sorted(seqs), f"{source}: source_seq out of order"
    trades = [
        int(msgspec.json.decode(r.payload, type=Trade).trade_id)
        for r in everything
        if r.topic == "md.trade.crypto.BTCUSDT"
    ]
    assert len(trades) == len(set(trades))
    assert max(trades) > last_trade
    # Nothing skipped either: the trades the venue sent while the feed was down were
    # backfilled from the restarted simulator's history.
    assert sorted(trades) == list(range(min(trades), max(trades) + 1))
    listening = [
        e for e in _child_logs(output, "exchange-sim") if e.get("event") == "exchange_sim_listening"
    ]
    assert listening[0]["first_frame"] > 0, listening

    # Nothing processed twice: one decision per intent, one order per approval, each
    # order id submitted once, one intent per bar.
    for pattern in ("risk.approved.>", "risk.rejected.>", "order.submitted.>", "strategy.intent.>"):
        causes = Counter(r.causation_id for r in _records(data_dir, [pattern]))
        assert [c for c, n in causes.items() if n > 1] == [], pattern
    order_ids = Counter(o.order_id for o in _orders(data_dir, "submitted"))
    assert [o for o, n in order_ids.items() if n > 1] == []
    client_ids = Counter(o.client_order_id for o in _orders(data_dir, "submitted"))
    assert [o for o, n in client_ids.items() if n > 1] == []
