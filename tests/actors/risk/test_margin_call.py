"""Margin calls: with ``check_cash``, a book whose equity falls below its maintenance
requirement puts its scope in REDUCING (``MARGIN_CALL``) until it is back above it
(``MARGIN_RESTORED``); docs/risk.md, "Margin calls"."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from tests.actors.orders.harness import MINUTE_NS, bar_records, payloads, run_chain
from tests.actors.risk.test_actor import system
from tests.actors.risk.test_worst_case import Script
from tickertape.actors.base import Event
from tickertape.actors.orders import OrderEngineConfig
from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.orders.instruments import InstrumentSpec
from tickertape.actors.pnl import PnlConfig
from tickertape.actors.risk import RiskConfig, parse_limits
from tickertape.actors.risk import checks as rc
from tickertape.actors.risk.actor import RiskActor
from tickertape.actors.strategy import StrategyActor, StrategyConfig
from tickertape.schemas import Record, stamp
from tickertape.schemas.envelope import Market
from tickertape.schemas.pnl import Book, PnlUpdate, Position
from tickertape.schemas.registry import make_envelope
from tickertape.schemas.risk import RiskCommand, RiskDecision, RiskState

T0 = 1_704_067_200_000_000_000
SIXE = InstrumentSpec(
    multiplier=125_000.0, tick_size=0.00005, initial_margin=2_310.0, maintenance_margin=2_100.0
)


def book(equity: float, *positions: Position) -> Book:
    return Book(
        market="us", currency="USD", cash=equity, realized=0.0, unrealized=0.0, fees=0.0,
        equity=equity, high_water_mark=equity, drawdown=0.0, max_drawdown=0.0,
        positions=list(positions),
    )  # fmt: skip


def held(quantity: float, mark: float, **kw: float) -> Position:
    return Position(
        market="us", symbol="X", quantity=quantity, average_cost=mark, mark=mark,
        unrealized=0.0, realized=0.0, **kw,
    )  # fmt: skip


def test_the_requirement_of_futures_and_of_cash_like_shorts() -> None:
    """Futures count their maintenance margin as booked; a cash-like short 30 % of its
    market value (FINRA 4210(c)(2)(C)); cash-like longs nothing."""
    future = held(2.0, 1.1, multiplier=125_000.0, initial_margin=4_620.0,
                  maintenance_margin=4_200.0)  # fmt: skip
    short = held(-10.0, 50.0)
    long = held(100.0, 20.0)
    assert rc.maintenance_requirement(book(0.0)) == 0.0
    assert rc.maintenance_requirement(book(0.0, long)) == 0.0
    assert rc.maintenance_requirement(book(0.0, short)) == pytest.approx(150.0)
    assert rc.maintenance_requirement(book(0.0, future, short, long)) == pytest.approx(4_350.0)


def run(
    closes: list[float],
    plan: dict[int, list[tuple[object, ...]]],
    *,
    extra: Sequence[Record] = (),
    limits: str = "[markets.us]\ncheck_cash = true\n",
) -> list[tuple[str, object]]:
    """The chain on 6EH4 bars a minute apart (open = close = each price), USD 3,000 of
    cash, 6E margined at 2,310 / 2,100, ``limits`` (default: ``check_cash``), zero
    costs, a pnl update every minute; the gate's outputs in order: ("state", (scope, key, state, reason)) and
    ("decision", reason code)."""
    rows = [(T0 + (i + 1) * MINUTE_NS, c, c, c, c, 1_000.0) for i, c in enumerate(closes)]
    inputs = sorted([*bar_records(rows, "us", "6EH4"), *extra], key=lambda r: r.ts_event)
    instruments = {"us": {"6E": SIXE}}
    out = run_chain(
        inputs,
        [StrategyActor(StrategyConfig(strategy_id="s"), strategy=Script(plan))],
        orders=OrderEngineConfig(markets={"us": fl.ZERO_COST}, instruments=instruments),  # type: ignore[arg-type]
        risk=RiskConfig(
            initial_cash={"us": 3_000.0},
            instruments=instruments,  # type: ignore[arg-type]
            limits=parse_limits(limits),
        ),
        pnl=PnlConfig(
            initial_cash={"us": 3_000.0},
            update_interval_ns=MINUTE_NS,
            instruments=instruments,  # type: ignore[arg-type]
        ),
    )
    seen: list[tuple[str, object]] = []
    for _, p in payloads(out, "risk."):
        if isinstance(p, RiskState):
            seen.append(("state", (p.scope, p.key, p.state, p.reason)))
        elif isinstance(p, RiskDecision) and p.reason != "cancel":
            seen.append(("decision", p.reason_code))
    return seen


def test_a_future_losing_past_its_maintenance_margin_is_called_then_restored() -> None:
    """Long one 6E contract bought at 1.1000 with USD 3,000: at 1.0930 the book has
    2,125 of equity (≥ 2,100, no call); at 1.0920 it has 2,000: the strategy and the
    market's portfolio go REDUCING, and a buy is refused (REDUCING). Back at 1.0990
    (2,875) both return to ACTIVE; the next buy is judged on its margin again
    (2,875 − 2,310 = 565 of funds < 2,310: INSUFFICIENT_MARGIN)."""
    closes = [1.1, 1.1, 1.093, 1.092, 1.092, 1.099, 1.099, 1.099]
    seen = run(closes, {1: [("buy", 1.0)], 5: [("buy", 1.0)], 7: [("buy", 1.0)]})
    assert seen == [
        ("decision", "OK"),
        ("state", ("market", "us", "REDUCING", "MARGIN_CALL")),
        ("state", ("strategy", "s", "REDUCING", "MARGIN_CALL")),
        ("decision", "REDUCING"),
        ("state", ("market", "us", "ACTIVE", "MARGIN_RESTORED")),
        ("state", ("strategy", "s", "ACTIVE", "MARGIN_RESTORED")),
        ("decision", "INSUFFICIENT_MARGIN"),
    ]


def test_a_reducing_order_passes_under_a_margin_call() -> None:
    """Under the call, selling the contract (reducing) is approved; the flat book
    needs nothing and the call is released."""
    closes = [1.1, 1.1, 1.092, 1.092, 1.092, 1.092]
    seen = run(closes, {1: [("buy", 1.0)], 4: [("sell", 1.0)]})
    assert seen == [
        ("decision", "OK"),
        ("state", ("market", "us", "REDUCING", "MARGIN_CALL")),
        ("state", ("strategy", "s", "REDUCING", "MARGIN_CALL")),
        ("decision", "OK"),
        # the fill's updates: the strategy's book, then the portfolio's
        ("state", ("strategy", "s", "ACTIVE", "MARGIN_RESTORED")),
        ("state", ("market", "us", "ACTIVE", "MARGIN_RESTORED")),
    ]


def test_an_operators_command_takes_the_scope_over_from_a_call() -> None:
    """A halt of the called strategy drops its call: when the book recovers the
    strategy stays HALTED (only the market, still under its own call, is restored)."""
    halt = system(RiskCommand(command="halt", scope="strategy", key="s", reason="desk"),
                  "system.command.risk", T0 + 4 * MINUTE_NS + 1, 1)  # fmt: skip
    closes = [1.1, 1.1, 1.092, 1.092, 1.092, 1.099, 1.099]
    seen = run(closes, {1: [("buy", 1.0)]}, extra=[halt])
    assert [s for kind, s in seen if kind == "state"] == [
        ("market", "us", "REDUCING", "MARGIN_CALL"),
        ("strategy", "s", "REDUCING", "MARGIN_CALL"),
        ("strategy", "s", "HALTED", "desk"),
        ("market", "us", "ACTIVE", "MARGIN_RESTORED"),
    ]


def test_without_check_cash_there_is_no_margin_call() -> None:
    """The same loss with no funds check: nothing calls (a cash check is what makes a
    book a margin account here)."""
    seen = run([1.1, 1.1, 1.092, 1.092, 1.092], {1: [("buy", 1.0)]}, limits="")
    assert seen == [("decision", "OK")]


def test_a_cash_like_short_is_called_below_30_percent_of_its_value() -> None:
    """Short 10 ABC at 100 with USDT 1,000 (Regulation T's 50 % is 500: approved): the
    cash is 2,000 and the equity 2,000 − 10 × price, which falls below 30 % of the
    short's value (3 × price) past 153.85. At 150 nothing calls; at 160 (equity 400 <
    480) the strategy is called, at the pnl update of that mark."""
    closes = [100.0, 100.0, 150.0, 160.0, 160.0]
    rows = [(T0 + (i + 1) * MINUTE_NS, c, c, c, c, 1_000.0) for i, c in enumerate(closes)]
    limits = parse_limits("[markets.crypto]\ncheck_cash = true\nallow_short = true\n")
    out = run_chain(
        bar_records(rows, "crypto", "ABC"),
        [StrategyActor(StrategyConfig(strategy_id="s"), strategy=Script({1: [("sell", 10.0)]}))],
        orders=OrderEngineConfig(markets={"crypto": fl.ZERO_COST}),
        risk=RiskConfig(initial_cash={"crypto": 1_000.0}, limits=limits),
        pnl=PnlConfig(initial_cash={"crypto": 1_000.0}, update_interval_ns=MINUTE_NS),
    )
    states = [(p.scope, p.key, p.state, p.reason) for _, p in payloads(out, "risk.state")]
    assert states == [
        ("market", "crypto", "REDUCING", "MARGIN_CALL"),
        ("strategy", "s", "REDUCING", "MARGIN_CALL"),
    ]
    # the 160 bar closes at minute 4; its mark is published at the next minute's tick
    called = next(r for r, _ in payloads(out, "risk.state"))
    assert called.ts_event == T0 + 5 * MINUTE_NS


class Published:
    """The gate's context, reduced to what a pnl update makes it do: publish states."""

    def __init__(self) -> None:
        self.states: list[tuple[str, str | None, str, str]] = []

    def publish(self, topic: str, payload: RiskState, **_: object) -> None:
        self.states.append((payload.scope, payload.key, payload.state, payload.reason))


def update(market: Market, equity: float, short: float, seq: int) -> Event:
    """Strategy ``s``'s pnl update in ``market``: ``equity``, short ``short`` units of a
    cash-like X at 100 (requirement 30 × ``short``)."""
    short_book = msgspec.structs.replace(book(equity, held(-short, 100.0)), market=market)
    payload = PnlUpdate(strategy_id="s", books=[short_book])
    env = make_envelope(payload, topic="pnl.update.s", source="pnl", source_seq=seq,
                        ts_event=T0 + seq, market=market)  # fmt: skip
    return Event(stamp(env, seq, seq, T0 + seq), payload)


def test_a_strategy_called_in_two_markets_is_restored_when_both_are_met() -> None:
    """The strategy scope is shared by its books: called from its US book, joined by
    its crypto book, it returns to ACTIVE only once both meet their requirement."""
    gate = RiskActor(RiskConfig(limits=parse_limits("[global]\ncheck_cash = true\n")))
    ctx = Published()
    for seq, (market, equity) in enumerate(
        [("us", 100.0), ("crypto", 100.0), ("us", 1_000.0), ("crypto", 1_000.0)], start=1
    ):
        gate.on_event(update(market, equity, 10.0, seq), ctx)  # type: ignore[arg-type]
        if seq == 3:
            assert ctx.states == [("strategy", "s", "REDUCING", "MARGIN_CALL")]
    assert ctx.states == [
        ("strategy", "s", "REDUCING", "MARGIN_CALL"),
        ("strategy", "s", "ACTIVE", "MARGIN_RESTORED"),
    ]
