"""Trading chain throughput over the CME 6E January 2024 1-minute bars (SMA 10/30 example).

Prints a table of medians (bars per wall second, bars per CPU second of this process,
and CPU µs per bar) for:

- **pure chain**: the SMA example's strategy logic, the risk checks
  (:func:`tickertape.actors.risk.checks.decide`), the fill logic
  (:func:`tickertape.actors.orders.fill_logic.match`) and the accounts
  (:mod:`tickertape.actors.pnl.accounting`) called directly per bar: the cost of the
  trading logic itself, no envelopes, no host;
- **host floor**: :class:`tickertape.actors.runtime.InProcessHost` (step/wave
  scheduler, in-memory sink) with four actors that subscribe to the bars and do
  nothing: what hosting four actors costs per bar before any of them works;
- **trading chain**: strategy → risk → orders → pnl in that host;
- **indicators only**: the indicators actor alone in that host (its default
  configuration);
- **full chain**: the trading chain plus the indicators actor, the headline figure
  (issue 6's target: ≥ 200 k bars/s).

The 200 k bars/s target is out of reach in CPython as the chain is designed, and this
script does not pretend otherwise: the pure chain alone (four plain function calls per
bar, no envelope) runs at about 350 k bars/CPU-s on this machine, and the host adds,
per bar, at least one envelope delivered to each subscriber (decode, route, an Event,
a handler call) and, with the indicators actor, ten more events published, encoded,
stored and sorted into waves. Measured on this 2-core machine under load (CPU time,
median of 3 alternating runs of ``--repeat 5``), before → after the host work of
issue 6 (cached actor order, routes and decoders, allocation-free waves, leaner step
planning): host floor 4.52 → 2.88 µs/bar, trading chain 19.95 → 17.09 µs/bar, full
chain 81.2 → 71.5 µs/bar (12.3 k → 14.0 k bars/CPU-s). In a profile of the full chain
the host's own code is now about a tenth of the time; most of the rest is the
indicators' ten outputs per bar (``ActorContext.publish`` with ``make_envelope`` about
a third, the sink's ``append``/``stamp`` a sixth) and the actors' handlers.

Market data is the input (pre-built ``md.bar`` records, as the market-data actor
publishes them). Every host run must give the pure chain's fills; the script checks it.
The CPU columns are what to compare on a shared machine: the wall figures move with
whatever else runs on the cores. Usage::

    python benchmarks/bench_pipeline.py [--repeat 5] [--only host]

``--only TEXT`` runs the rows whose name contains TEXT (the pure chain always runs:
the host runs' fills are checked against it).
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

from tickertape.actors.base import Actor  # noqa: E402
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


class _PassThrough(Actor):
    """Subscribes to the bars and does nothing (the host floor)."""

    subscriptions = ("md.bar.>",)


def trading_actors() -> list[Actor]:
    config = StrategyConfig(
        strategy_id="sma", subscriptions=[f"md.bar.1m.us.{SYMBOL}"], params={"symbol": SYMBOL}
    )
    return [
        StrategyActor(config, strategy=SmaCross(SmaCrossParams(symbol=SYMBOL))),
        RiskActor(),
        OrderEngine(OrderEngineConfig(markets={"us": fl.ZERO_COST})),
        PnlActor(PnlConfig(update_interval_ns=3600 * 10**9)),
    ]


def indicators_actor() -> Actor:
    from tickertape.actors import indicators

    actor: Actor = indicators.ACTOR_CLASS()
    return actor


def host_run(records: list[Record], actors: list[Actor]) -> tuple[list[tuple[int, float]], int]:
    """Run ``actors`` in the in-process host over ``records``; return fills and outputs."""
    sink = MemorySink()
    host = InProcessHost(sink, clock=SimulatedClock(records[0].ts_event))
    for i, actor in enumerate(actors):
        host.add(actor, name=f"{actor.name}{i}" if isinstance(actor, _PassThrough) else None)
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
    return fills, len(sink.records)


def timed(fn: object, *args: object) -> tuple[float, float, object]:
    """(wall s, CPU s, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)  # type: ignore[operator]
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="", help="run only the rows whose name has this")
    args = parser.parse_args()
    rows = load_rows()
    records = bar_records(rows)
    pure = "pure chain (strategy, risk, fills, accounts)"
    trading = "trading chain (strategy, risk, orders, pnl)"
    full = "full chain (trading chain + indicators)"
    runs: dict[str, object] = {
        pure: lambda: (pure_chain(rows), 0),
        "host floor (4 pass-through actors)": lambda: host_run(
            records, [_PassThrough() for _ in range(4)]
        ),
        trading: lambda: host_run(records, trading_actors()),
        "indicators only": lambda: host_run(records, [indicators_actor()]),
        full: lambda: host_run(records, [*trading_actors(), indicators_actor()]),
    }
    runs = {name: fn for name, fn in runs.items() if name == pure or args.only in name}
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, tuple[list[tuple[int, float]], int]] = {}
    for _ in range(args.repeat):  # interleaved, so load changes hit every run alike
        for name, fn in runs.items():
            wall, cpu, result = timed(fn)
            walls[name].append(wall)
            cpus[name].append(cpu)
            results[name] = result  # type: ignore[assignment]
    n = len(rows)
    print(f"CME 6EH4 1m bars, January 2024: {n:,} bars; SMA 10/30; median of {args.repeat}")
    print(
        f"{'run':<46} {'bars/s':>10} {'bars/CPU-s':>11} {'CPU µs/bar':>11} {'fills':>6} {'outputs':>8}"
    )
    for name in runs:
        wall = statistics.median(walls[name])
        cpu = statistics.median(cpus[name])
        fills, outputs = results[name]
        print(
            f"{name:<46} {n / wall:>10,.0f} {n / cpu:>11,.0f} {cpu / n * 1e6:>11.2f} "
            f"{len(fills):>6} {outputs:>8,}"
        )
    expected = results[pure][0]
    for name in (trading, full):
        if name in results and results[name][0] != expected:
            raise SystemExit(f"{name}: fills differ from the pure chain's")
    print("same fills in the pure chain and every host run: True")


if __name__ == "__main__":
    main()
