"""Trading chain throughput over the CME 6E January 2024 1-minute bars (SMA 10/30 example).

Prints a table of bars per second for:

- **pure chain**: the SMA example's strategy logic, the risk checks
  (:func:`tickertape.actors.risk.checks.decide`), the fill logic
  (:func:`tickertape.actors.orders.fill_logic.match`) and the accounts
  (:mod:`tickertape.actors.pnl.accounting`) called directly per bar: the cost of the
  trading logic itself, no envelopes, no host;
- **in-process host**: the actors (strategy → risk → orders → pnl, plus the
  indicators actor when its package exposes ``ACTOR_CLASS``) in
  :class:`tickertape.actors.runtime.InProcessHost` with the step/wave scheduler and an
  in-memory sink: every event encoded, stored, decoded and delivered. Market data is
  the input (pre-built ``md.bar`` records, as the market-data actor publishes them).

Both runs must give the same fills; the script checks it. Usage::

    python benchmarks/bench_pipeline.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from examples.strategies.sma_cross import SmaCross, SmaCrossParams  # noqa: E402

from tickertape.actors.orders import OrderEngine, OrderEngineConfig  # noqa: E402
from tickertape.actors.orders import fill_logic as fl  # noqa: E402
from tickertape.actors.pnl import PnlActor, PnlConfig, accounting  # noqa: E402
from tickertape.actors.risk import RiskActor  # noqa: E402
from tickertape.actors.risk import checks as rc  # noqa: E402
from tickertape.actors.runtime import InProcessHost, MemorySink  # noqa: E402
from tickertape.actors.strategy import StrategyActor, StrategyConfig  # noqa: E402
from tickertape.schemas import Envelope, Record, decode_payload, encode_payload, stamp  # noqa: E402
from tickertape.schemas.market import Bar  # noqa: E402
from tickertape.schemas.strategy import Intent  # noqa: E402
from tickertape.timeauthority.clock import SimulatedClock  # noqa: E402
from tickertape.timeauthority.scheduler import StepPlanner  # noqa: E402

MINUTE_NS = 60_000_000_000
FILE = "cme-6eh4-1m-2024-01/6EH4.XCME_1min_bars_20240101_20240131.csv.gz"
SYMBOL = "6EH4"
Row = tuple[int, float, float, float, float, float]


def load_rows() -> list[Row]:
    for root in (REPO / "data", REPO.parent / "shared" / "data"):
        path = root / FILE
        if path.exists():
            break
    else:
        raise SystemExit(f"data file {FILE} not found under data/ or ../shared/data/")
    rows: list[Row] = []
    with gzip.open(path, "rt", newline="") as f:
        for r in csv.DictReader(f):
            ts = datetime.strptime(r["timestamp_utc"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            rows.append(
                (int(ts.timestamp()) * 10**9, float(r["open"]), float(r["high"]),
                 float(r["low"]), float(r["close"]), float(r["volume"]))
            )  # fmt: skip
    return rows


class _Ctx:
    """The few StrategyContext calls the SMA example makes, for the pure chain."""

    def __init__(self) -> None:
        self.targets: list[float] = []

    def target_position(self, market: str, symbol: str, target: float, **_: object) -> None:
        self.targets.append(target)


def pure_chain(rows: list[Row]) -> list[tuple[int, float]]:
    """Strategy → risk → fill → accounts per bar, as plain calls."""
    strategy = SmaCross(SmaCrossParams(symbol=SYMBOL))
    config = fl.ZERO_COST
    limits = rc.Limits()
    ledger = accounting.new_ledger("us", 100_000.0)
    ctx = _Ctx()
    open_order: fl.SimOrder | None = None
    fills: list[tuple[int, float]] = []
    n = 0
    for ts, o, h, lo, c, v in rows:
        data = fl.MarketData(
            ts_event=ts, start_ns=ts - MINUTE_NS, open=o, high=h, low=lo, close=c, volume=v
        )
        if open_order is not None:
            open_order = fl.arrive(open_order, open_order.arrival_ns)
            result = fl.match(open_order, data, config)
            if result.fill is not None:
                f = result.fill
                ledger, _ = accounting.apply_fill(
                    ledger, SYMBOL, open_order.side, f.quantity, f.price, f.fee
                )
                fills.append((f.ts_fill, f.price))
            open_order = result.order if result.order.is_open else None
        ledger = accounting.mark(ledger, SYMBOL, c)
        bar = Bar(
            symbol=SYMBOL,
            interval="1m",
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=v,
            start_ns=ts - MINUTE_NS,
        )
        strategy.on_bar("us", bar, ctx)  # type: ignore[arg-type]
        if ctx.targets:
            target = ctx.targets.pop()
            n += 1
            intent = Intent(
                strategy_id="sma",
                intent_id=f"sma-{n}",
                market="us",
                symbol=SYMBOL,
                target_position=target,
            )
            view = rc.RiskView(
                now_ns=ts,
                position=accounting.position(ledger, SYMBOL),
                price=c,
                last_data_ns=ts,
                cash=ledger.cash,
            )
            decision = rc.decide(intent, view, limits, "ACTIVE")
            if decision.approved and decision.order is not None:
                open_order = fl.new_order(
                    order_id=f"o{n}", client_order_id=f"c{n}", market="us", symbol=SYMBOL,
                    side=decision.order.side, order_type="market", quantity=decision.order.quantity,
                    created_ns=ts, config=config,
                )  # fmt: skip
    return fills


def bar_records(rows: list[Row]) -> list[Record]:
    records = []
    for i, (ts, o, h, lo, c, v) in enumerate(rows):
        bar = Bar(
            symbol=SYMBOL,
            interval="1m",
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=v,
            start_ns=ts - MINUTE_NS,
        )
        env = Envelope(
            id=f"marketdata:{i + 1}", topic=f"md.bar.1m.us.{SYMBOL}", type="md.bar", v=1,
            market="us", ts_event=ts, ts_init=ts, source="marketdata", source_seq=i + 1,
            payload=encode_payload(bar),
        )  # fmt: skip
        records.append(stamp(env, i, i + 1, ts))
    return records


def host_chain(records: list[Record]) -> tuple[list[tuple[int, float]], int, bool]:
    """The actors in the in-process host; returns fills, outputs and whether indicators ran."""
    sink = MemorySink()
    host = InProcessHost(sink, clock=SimulatedClock(records[0].ts_event))
    config = StrategyConfig(
        strategy_id="sma", subscriptions=[f"md.bar.1m.us.{SYMBOL}"], params={"symbol": SYMBOL}
    )
    actors = [
        StrategyActor(config, strategy=SmaCross(SmaCrossParams(symbol=SYMBOL))),
        RiskActor(),
        OrderEngine(OrderEngineConfig(markets={"us": fl.ZERO_COST})),
        PnlActor(PnlConfig(update_interval_ns=3600 * 10**9)),
    ]
    with_indicators = False
    try:
        from tickertape.actors import indicators

        actor_class = getattr(indicators, "ACTOR_CLASS", None)
        if actor_class is not None:
            actors.append(actor_class())
            with_indicators = True
    except ImportError as exc:  # an optional actor: say so and run without it
        print(f"(indicators actor not used: {exc})")
    for actor in actors:
        host.add(actor)
    host.start()
    host.run(
        StepPlanner(records, host.timers, start_ns=records[0].ts_event, end_ns=records[-1].ts_event)
    )
    host.stop()
    fills = []
    for r in sink.records:
        if r.topic.startswith("order.") and r.topic.split(".")[1] in ("filled", "partially_filled"):
            p = decode_payload(r.type, r.v, r.payload)
            fills.append((p.fill.ts_fill, p.fill.price))
    return fills, len(sink.records), with_indicators


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = load_rows()
    records = bar_records(rows)
    pure_rates, host_rates = [], []
    pure_fills: list[tuple[int, float]] = []
    host_fills: list[tuple[int, float]] = []
    outputs = 0
    indicators = False
    for _ in range(args.repeat):
        t = time.perf_counter()
        pure_fills = pure_chain(rows)
        pure_rates.append(len(rows) / (time.perf_counter() - t))
        t = time.perf_counter()
        host_fills, outputs, indicators = host_chain(records)
        host_rates.append(len(rows) / (time.perf_counter() - t))
    same = pure_fills == host_fills
    print(f"CME 6EH4 1m bars, January 2024: {len(rows):,} bars; SMA 10/30; median of {args.repeat}")
    print(f"{'run':<44} {'bars/s':>12} {'fills':>7}")
    print(
        f"{'pure chain (strategy, risk, fills, accounts)':<44} {statistics.median(pure_rates):>12,.0f} {len(pure_fills):>7}"
    )
    label = "in-process host (strategy, risk, orders, pnl" + (
        ", indicators)" if indicators else ")"
    )
    print(f"{label:<44} {statistics.median(host_rates):>12,.0f} {len(host_fills):>7}")
    print(f"host outputs stored: {outputs:,}; same fills in both runs: {same}")
    if not same:
        raise SystemExit("the pure chain and the host disagree on fills")


if __name__ == "__main__":
    main()
