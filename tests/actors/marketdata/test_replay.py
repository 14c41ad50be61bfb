"""End to end on the real runtime: imported trades replayed through marketdata and indicators."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import msgspec

from tickertape.actors.indicators import IndicatorActor, IndicatorsConfig, SeriesConfig
from tickertape.actors.marketdata import MarketDataActor, MarketDataConfig
from tickertape.actors.marketdata.importers import parse_binance_ws
from tickertape.actors.marketdata.loader import import_files
from tickertape.actors.runtime.inprocess import InProcessHost
from tickertape.actors.runtime.sink import MemorySink
from tickertape.eventlog import EventLog, LogReader
from tickertape.timeauthority.clock import SimulatedClock
from tickertape.timeauthority.scheduler import StepPlanner

DATA = Path(__file__).resolve().parents[3] / "data" / "binance-spot-ws-2024-08-08"


def _replay(data_dir: Path) -> MemorySink:
    records = list(LogReader(data_dir, "main").read(["md.trade.>"]))
    sink = MemorySink()
    host = InProcessHost(sink, clock=SimulatedClock(records[0].ts_event), seed=1)
    host.add(MarketDataActor(MarketDataConfig(bar_intervals=["1s", "1m"])))
    host.add(
        IndicatorActor(IndicatorsConfig(series=[SeriesConfig(interval="1s", markets=["crypto"])]))
    )
    host.start()
    host.run(StepPlanner(records, host.timers, start_ns=records[0].ts_event))
    host.stop()
    return sink


def test_imported_trades_replay_into_bars_and_indicators_deterministically(tmp_path: Path) -> None:
    """Bars and indicators come out of a replay of the log, identically twice, never early."""
    lines = gzip.decompress((DATA / "btcusdt_20240808.gz").read_bytes()).split(b"\n")[:6000]
    capture = tmp_path / "btcusdt_20240808.gz"
    capture.write_bytes(gzip.compress(b"\n".join(lines)))
    log = EventLog.open(tmp_path)
    try:
        import_files(log, [parse_binance_ws(capture)])
    finally:
        log.close()
    first = _replay(tmp_path)
    second = _replay(tmp_path)
    digest = [
        hashlib.sha256(b"".join(msgspec.json.encode(r) for r in s.records)).hexdigest()
        for s in (first, second)
    ]
    assert digest[0] == digest[1]
    topics = {r.topic for r in first.records}
    assert {"md.bar.1s.crypto.BTCUSDT", "md.bar.1m.crypto.BTCUSDT"} <= topics
    assert "indicator.rsi_14.v1.crypto.BTCUSDT" in topics
    assert "indicator.dmi_14.v1.crypto.BTCUSDT" in topics
    for record in first.records:
        assert record.ts_log >= record.ts_event  # published at or after the interval's end
