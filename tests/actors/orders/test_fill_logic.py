"""Tests for tickertape.actors.orders.fill_logic: latency, eligibility, prices, costs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickertape.actors.orders import fill_logic as fl
from tickertape.actors.orders.instruments import InstrumentSpec, InstrumentTable
from tickertape.actors.orders.venue import SimulatedVenue, VenueOrder
from tickertape.actors.runtime.errors import ZeroLatencyError
from tickertape.errors import BiasError, ConfigError, OrderError

MIN = 60_000_000_000
T0 = 1_704_150_000_000_000_000  # 2024-01-01T23:00:00Z


def bar(start: int, o: float, h: float, lo: float, c: float, v: float = 1000.0) -> fl.MarketData:
    return fl.MarketData(
        ts_event=start + MIN, start_ns=start, open=o, high=h, low=lo, close=c, volume=v
    )


def order(
    config: fl.MarketFillConfig = fl.ZERO_COST,
    *,
    side: str = "buy",
    order_type: str = "market",
    quantity: float = 1.0,
    created_ns: int = T0,
    tif: str = "GTC",
    limit: float | None = None,
    stop: float | None = None,
    market: str = "crypto",
    tick: float | None = None,
) -> fl.SimOrder:
    o = fl.new_order(
        order_id="o1", client_order_id="c1", market=market, symbol="X", side=side,  # type: ignore[arg-type]
        order_type=order_type, quantity=quantity, created_ns=created_ns, config=config,  # type: ignore[arg-type]
        time_in_force=tif, limit_price=limit, stop_price=stop, tick_size=tick,  # type: ignore[arg-type]
    )  # fmt: skip
    return fl.arrive(o, o.arrival_ns)


def test_zero_latency_is_refused() -> None:
    """A latency model of zero or less raises ZeroLatencyError (a BiasError), as
    docs/replay.md's bias guards say."""
    with pytest.raises(ZeroLatencyError, match="order-to-venue latency"):
        fl.LatencyModel(base_ns=0).delay_ns("c1")
    with pytest.raises(ZeroLatencyError):
        fl.LatencyModel(base_ns=-5).validate()
    with pytest.raises(ZeroLatencyError):
        fl.MarketFillConfig(latency=fl.LatencyModel(base_ns=0)).validate()
    with pytest.raises(BiasError, match="jitter_ns"):
        fl.LatencyModel(jitter_ns=-1).validate()


def test_jitter_is_deterministic_and_bounded() -> None:
    """The same seed and client id give the same latency, within [base, base+jitter]."""
    model = fl.LatencyModel(base_ns=1000, jitter_ns=500, seed=7)
    delays = [model.delay_ns(f"c{i}") for i in range(200)]
    assert delays == [model.delay_ns(f"c{i}") for i in range(200)]
    assert all(1000 <= d <= 1500 for d in delays)
    assert len(set(delays)) > 50
    other = fl.LatencyModel(base_ns=1000, jitter_ns=500, seed=8)
    assert delays != [other.delay_ns(f"c{i}") for i in range(200)]


def test_signal_bar_never_fills_next_bar_fills_at_open() -> None:
    """The bar that closed at order time is ineligible; the next one fills at its open."""
    o = order(created_ns=T0)
    signal_bar = bar(T0 - MIN, 1.0, 1.2, 0.9, 1.1)
    assert fl.match(o, signal_bar, fl.ZERO_COST).fill is None
    result = fl.match(o, bar(T0, 1.15, 1.3, 1.1, 1.2), fl.ZERO_COST)
    assert result.fill is not None
    assert result.fill.price == 1.15
    assert result.order.phase == "filled"


def test_trade_at_or_before_arrival_does_not_fill() -> None:
    """A trade must be strictly later than the order's arrival at the venue."""
    config = fl.MarketFillConfig(
        latency=fl.LatencyModel(base_ns=50, jitter_ns=0), fees=fl.FeeSchedule()
    )
    o = order(config)
    assert o.arrival_ns == T0 + 50
    at = fl.MarketData.from_trade(T0 + 50, 10.0, 5.0)
    assert fl.match(o, at, config).fill is None
    after = fl.match(o, fl.MarketData.from_trade(T0 + 51, 10.0, 5.0), config)
    assert after.fill is not None
    assert after.fill.ts_fill == T0 + 51


def test_pending_order_never_fills() -> None:
    """An order still in flight (not arrived) ignores market data."""
    o = fl.new_order(
        order_id="o", client_order_id="c", market="crypto", symbol="X", side="buy",
        order_type="market", quantity=1.0, created_ns=T0, config=fl.ZERO_COST,
    )  # fmt: skip
    assert fl.match(o, bar(T0, 1, 1, 1, 1), fl.ZERO_COST).fill is None
    with pytest.raises(BiasError):
        fl.arrive(o, o.arrival_ns - 1)


def test_limit_buy_needs_trade_through() -> None:
    """A resting buy limit fills only when the low is strictly below the limit, at the limit."""
    o = order(order_type="limit", limit=100.0)
    first = fl.match(o, bar(T0, 101.0, 102.0, 100.0, 101.0), fl.ZERO_COST)
    assert first.fill is None  # touched, not traded through
    second = fl.match(first.order, bar(T0 + MIN, 101.0, 101.0, 99.5, 100.5), fl.ZERO_COST)
    assert second.fill is not None
    assert second.fill.price == 100.0
    assert second.fill.liquidity == "maker"


def test_marketable_limit_fills_at_open_as_taker() -> None:
    """A buy limit above the open on arrival fills at the open, capped at the limit."""
    config = fl.MarketFillConfig(
        latency=fl.LatencyModel(base_ns=1, jitter_ns=0),
        slippage=fl.SlippageModel(fixed_bps=100.0, impact_bps=0.0),
        fees=fl.FeeSchedule(),
        participation_rate=None,
    )
    o = order(config, order_type="limit", limit=100.5)
    result = fl.match(o, bar(T0, 100.0, 101.0, 99.0, 100.0), config)
    assert result.fill is not None
    assert result.fill.liquidity == "taker"
    assert result.fill.price == 100.5  # 100 × 1.01 = 101 capped at the limit


def test_stop_sell_triggers_and_gaps_fill_at_open() -> None:
    """A sell stop triggers when the low reaches it; a gap below fills at the open."""
    o = order(side="sell", order_type="stop", stop=95.0)
    assert fl.match(o, bar(T0, 100, 101, 96, 99), fl.ZERO_COST).fill is None
    inside = fl.match(o, bar(T0, 100, 101, 94, 95), fl.ZERO_COST)
    assert inside.fill is not None
    assert inside.fill.price == 95.0
    gap = fl.match(o, bar(T0, 90, 91, 89, 90), fl.ZERO_COST)
    assert gap.fill is not None
    assert gap.fill.price == 90.0


def test_participation_cap_gives_partial_fills() -> None:
    """Each bar fills at most participation × volume; the rest waits (GTC)."""
    config = fl.MarketFillConfig(
        latency=fl.LatencyModel(base_ns=1, jitter_ns=0),
        slippage=fl.SlippageModel(fixed_bps=0.0, impact_bps=0.0),
        fees=fl.FeeSchedule(),
        participation_rate=0.1,
    )
    o = order(config, quantity=5.0)
    r1 = fl.match(o, bar(T0, 10, 10, 10, 10, v=30.0), config)
    assert r1.fill is not None
    assert r1.fill.quantity == pytest.approx(3.0)
    assert r1.order.phase == "working"
    r2 = fl.match(r1.order, bar(T0 + MIN, 12, 12, 12, 12, v=100.0), config)
    assert r2.fill is not None
    assert r2.fill.quantity == pytest.approx(2.0)
    assert r2.order.phase == "filled"
    assert r2.order.average_price == pytest.approx((3 * 10 + 2 * 12) / 5)


def test_zero_volume_bar_fills_nothing() -> None:
    """A bar with no volume cannot fill anything."""
    o = order()
    assert fl.match(o, bar(T0, 1, 1, 1, 1, v=0.0), fl.ZERO_COST).fill is None


def test_ioc_expires_after_first_data_point() -> None:
    """An IOC fills what it can against its first eligible data point and expires the rest."""
    config = fl.MarketFillConfig(
        latency=fl.LatencyModel(base_ns=1, jitter_ns=0),
        fees=fl.FeeSchedule(),
        participation_rate=0.5,
    )
    o = order(config, quantity=10.0, tif="IOC")
    result = fl.match(o, bar(T0, 10, 10, 10, 10, v=4.0), config)
    assert result.fill is not None
    assert result.fill.quantity == 2.0
    assert result.expired
    assert result.order.phase == "expired"


def test_day_order_expires_at_exchange_midnight() -> None:
    """A DAY order expires at the end of the exchange-local day."""
    o = order(tif="DAY", market="us", order_type="limit", limit=1.0)
    # T0 is 2024-01-01 18:00 in New York: the day ends 2024-01-02 05:00 UTC.
    assert o.expire_ns == 1_704_171_600_000_000_000
    late = fl.match(o, bar(o.expire_ns, 0.5, 0.5, 0.5, 0.5), fl.ZERO_COST)  # type: ignore[arg-type]
    assert late.expired
    assert late.fill is None
    assert fl.expire_if_due(o, o.expire_ns).phase == "expired"  # type: ignore[arg-type]


def test_slippage_is_against_the_order() -> None:
    """Buys pay more and sells receive less; bps = fixed + impact × participation."""
    config = fl.MarketFillConfig(
        latency=fl.LatencyModel(base_ns=1, jitter_ns=0),
        slippage=fl.SlippageModel(fixed_bps=2.0, impact_bps=10.0),
        fees=fl.FeeSchedule(),
        participation_rate=None,
    )
    buy = fl.match(order(config, quantity=25.0), bar(T0, 100, 100, 100, 100, v=100.0), config)
    assert buy.fill is not None
    assert buy.fill.slippage_bps == pytest.approx(2.0 + 10.0 * 0.25)
    assert buy.fill.price == pytest.approx(100 * (1 + 4.5e-4))
    sell = fl.match(
        order(config, side="sell", quantity=25.0), bar(T0, 100, 100, 100, 100, v=100.0), config
    )
    assert sell.fill is not None
    assert sell.fill.price == pytest.approx(100 * (1 - 4.5e-4))


def test_default_fees_per_market() -> None:
    """Documented defaults: Binance 10 bps, IBKR per share with minimum, KRX commission + tax."""
    crypto = fl.DEFAULT_FEES["crypto"]
    assert crypto.fee("buy", 1.0, 60_000.0, "taker") == pytest.approx(60.0)
    us = fl.DEFAULT_FEES["us"]
    assert us.fee("buy", 100.0, 50.0, "taker") == pytest.approx(1.0)  # 0.50 → minimum 1.00
    assert us.fee("buy", 1000.0, 50.0, "taker") == pytest.approx(5.0)
    assert us.fee("sell", 1000.0, 50.0, "taker") == pytest.approx(5.0 + 50_000 * 0.278e-4)
    assert us.fee("buy", 1000.0, 0.10, "taker") == pytest.approx(1.0)  # 1 % cap of 100
    kr = fl.DEFAULT_FEES["kr"]
    assert kr.fee("buy", 10.0, 70_000.0, "taker") == pytest.approx(105.0)
    assert kr.fee("sell", 10.0, 70_000.0, "taker") == pytest.approx(105.0 + 1260.0)


def test_negative_fee_component_is_refused() -> None:
    """Fee schedules with a negative component are a ConfigError."""
    with pytest.raises(ConfigError):
        fl.FeeSchedule(maker_bps=-1.0).validate()


def test_invalid_order_shapes_are_rejected() -> None:
    """Zero quantity and a limit without a price are refused."""
    with pytest.raises(OrderError):
        order(quantity=0.0)
    with pytest.raises(OrderError):
        order(order_type="limit")


prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False)
sizes = st.floats(min_value=0.0, max_value=1e4, allow_nan=False)


@given(
    side=st.sampled_from(["buy", "sell"]),
    order_type=st.sampled_from(["market", "limit", "stop"]),
    tif=st.sampled_from(["GTC", "IOC", "DAY"]),
    market=st.sampled_from(["kr", "us", "crypto"]),
    quantity=st.floats(min_value=0.001, max_value=1e3),
    trigger=prices,
    latency=st.integers(min_value=1, max_value=10**9),
    data=st.lists(
        st.tuples(st.integers(min_value=-(10**9), max_value=10**11), prices, sizes),
        min_size=1,
        max_size=30,
    ),
)
def test_fill_invariants(
    side: str, order_type: str, tif: str, market: str, quantity: float, trigger: float,
    latency: int, data: list[tuple[int, float, float]],
) -> None:  # fmt: skip
    """Fees ≥ 0, no fill at or before arrival, fills never exceed the order quantity."""
    config = fl.MarketFillConfig(latency=fl.LatencyModel(base_ns=latency, jitter_ns=latency // 2))
    o = order(
        config, side=side, order_type=order_type, quantity=quantity, tif=tif, market=market,
        limit=trigger if order_type == "limit" else None,
        stop=trigger if order_type == "stop" else None,
    )  # fmt: skip
    assert o.arrival_ns > o.created_ns
    total = 0.0
    for dt, price, size in sorted(data):
        result = fl.match(o, fl.MarketData.from_trade(T0 + dt, price, size), config)
        if result.fill is not None:
            assert result.fill.fee >= 0.0
            assert result.fill.ts_fill > o.arrival_ns
            assert result.fill.quantity > 0.0
            assert result.fill.slippage_bps >= 0.0
            total += result.fill.quantity
        o = result.order
    assert total <= quantity * (1 + 1e-9)
    assert o.filled_quantity == pytest.approx(total)


SIXE = InstrumentSpec(multiplier=125_000.0, tick_size=0.00005, fees=fl.FeeSchedule(per_unit=2.47))
ONE_BP = fl.MarketFillConfig(
    latency=fl.LatencyModel(base_ns=1, jitter_ns=0),
    slippage=fl.SlippageModel(fixed_bps=1.0, impact_bps=0.0),
    participation_rate=None,
)


def test_fees_count_contracts_and_contract_value() -> None:
    """Per-unit fees count contracts; bps fees, minimum caps and sell taxes apply to
    quantity × price × multiplier."""
    per_contract = fl.FeeSchedule(per_unit=2.47)
    assert per_contract.fee("buy", 3.0, 1.1, "taker", 125_000.0) == pytest.approx(7.41)
    bps = fl.FeeSchedule(taker_bps=10.0, sell_tax_bps=18.0)
    assert bps.fee("buy", 2.0, 1.1, "taker", 125_000.0) == pytest.approx(275.0)
    assert bps.fee("sell", 2.0, 1.1, "taker", 125_000.0) == pytest.approx(275.0 + 495.0)
    capped = fl.FeeSchedule(per_unit=5.0, maximum_rate=0.01)  # 1 % of 2 × 1.1 × 100 = 2.2
    assert capped.fee("buy", 2.0, 1.1, "taker", 100.0) == pytest.approx(2.2)
    assert capped.fee("buy", 2.0, 1.1, "taker") == pytest.approx(0.022)  # multiplier 1


def test_taker_prices_land_on_the_tick_grid_against_the_order() -> None:
    """With a tick size, a taker buy's slipped price rounds up and a sell's down; the
    slippage reported is the rounded price's; the fee is the instrument's, per contract."""
    buy = fl.match(order(ONE_BP, quantity=2.0), bar(T0, 1.1, 1.1, 1.1, 1.1), ONE_BP, SIXE)
    assert buy.fill is not None
    assert buy.fill.price == 1.10015  # 1.1 × 1.0001 = 1.10011 → up to 1.10015
    assert buy.fill.slippage_bps == pytest.approx(0.00015 / 1.1 * 1e4)
    assert buy.fill.fee == pytest.approx(2 * 2.47)
    assert buy.fill.multiplier == 125_000.0
    sell = fl.match(order(ONE_BP, side="sell"), bar(T0, 1.1, 1.1, 1.1, 1.1), ONE_BP, SIXE)
    assert sell.fill is not None
    assert sell.fill.price == 1.09985  # 1.1 × 0.9999 = 1.09989 → down to 1.09985
    on_grid = fl.match(order(), bar(T0, 1.10005, 1.2, 1.0, 1.1), fl.ZERO_COST, SIXE)
    assert on_grid.fill is not None
    assert (on_grid.fill.price, on_grid.fill.slippage_bps) == (1.10005, 0.0)
    # A marketable limit never pays beyond its (on-grid) limit.
    limit = order(ONE_BP, order_type="limit", limit=1.1001, tick=0.00005)
    capped = fl.match(limit, bar(T0, 1.1, 1.1, 1.1, 1.1), ONE_BP, SIXE)
    assert capped.fill is not None
    assert capped.fill.price == 1.1001
    # Without a specification: no grid, the market's fees, multiplier 1.
    plain = fl.match(order(ONE_BP), bar(T0, 1.1, 1.1, 1.1, 1.1), ONE_BP)
    assert plain.fill is not None
    assert plain.fill.price == pytest.approx(1.10011)
    assert (plain.fill.multiplier, plain.fill.fee) == (1.0, pytest.approx(1.10011e-3))


def test_round_to_tick_keeps_the_tick_decimals() -> None:
    """Rounded prices come out as written (no 1.0957500000000001), whatever the notation."""
    assert fl.round_to_tick(1.0957500000000001, 0.00005, "buy") == 1.09575
    assert fl.round_to_tick(1.09574, 0.00005, "buy") == 1.09575
    assert fl.round_to_tick(1.09574, 0.00005, "sell") == 1.0957
    assert fl.round_to_tick(4512.3, 0.25, "buy") == 4512.5
    assert fl.round_to_tick(70_123.0, 100.0, "sell") == 70_100.0
    assert fl.round_to_tick(0.1234567, 1.5e-05, "buy") == 0.123465  # 8231 ticks
    assert fl.on_tick(1.1076, 0.00005)
    assert not fl.on_tick(1.10763, 0.00005)
    # Ten billion ticks: price / tick carries float error beyond a millionth of a tick.
    assert fl.on_tick(541_055.43945, 0.00005)
    assert fl.round_to_tick(541_055.43945, 0.00005, "buy") == 541_055.43945


def test_limit_and_stop_prices_off_the_tick_grid_are_rejected() -> None:
    """The venue refuses limit and stop prices that are not multiples of the tick size."""
    with pytest.raises(fl.OrderRejected, match=r"limit_price 1\.10003 is not a multiple"):
        order(order_type="limit", limit=1.10003, tick=0.00005)
    with pytest.raises(fl.OrderRejected, match="stop_price"):
        order(order_type="stop", stop=1.10001, tick=0.00005)
    assert order(order_type="limit", limit=1.10005, tick=0.00005).limit_price == 1.10005
    venue = SimulatedVenue(instruments=InstrumentTable({"us": {"6E": SIXE}}))
    result = venue.submit(
        VenueOrder(
            order_id="o9", client_order_id="c9", market="us", symbol="6EH4", side="buy",
            order_type="limit", quantity=1.0, limit_price=1.10003,
        ),
        T0,
    )  # fmt: skip
    assert [(r.kind, r.reason) for r in result.reports] == [
        ("rejected", "limit_price 1.10003 is not a multiple of the tick size 5e-05")
    ]


@given(
    side=st.sampled_from(["buy", "sell"]),
    multiplier=st.sampled_from([1.0, 0.5, 50.0, 125_000.0]),
    tick=st.sampled_from([None, 0.00005, 0.25, 1.0]),
    quantity=st.floats(min_value=0.001, max_value=1e3),
    data=st.lists(st.tuples(prices, sizes), min_size=1, max_size=20),
)
def test_contract_fill_invariants(
    side: str,
    multiplier: float,
    tick: float | None,
    quantity: float,
    data: list[tuple[float, float]],
) -> None:
    """With any specification: fees ≥ 0, the fill carries the multiplier, a taker price
    is on the grid and never better than its reference, and fills never exceed the order."""
    spec = InstrumentSpec(multiplier=multiplier, tick_size=tick, fees=fl.FeeSchedule(per_unit=1.0))
    config = fl.MarketFillConfig(latency=fl.LatencyModel(base_ns=1, jitter_ns=0))
    o = order(config, side=side, quantity=quantity)
    total = 0.0
    for i, (price, size) in enumerate(data):
        result = fl.match(o, fl.MarketData.from_trade(T0 + 1 + i, price, size), config, spec)
        fill = result.fill
        if fill is not None:
            assert fill.fee == pytest.approx(fill.quantity * 1.0)
            assert fill.fee >= 0.0
            assert fill.multiplier == multiplier
            assert fill.slippage_bps >= 0.0
            if side == "buy":
                assert fill.price >= fill.reference_price
            else:
                assert fill.price <= fill.reference_price
            if tick is not None:
                assert fl.on_tick(fill.price, tick)
            total += fill.quantity
        o = result.order
    assert total <= quantity * (1 + 1e-9)


def _venue(config: fl.MarketFillConfig, spec: InstrumentSpec | None = None) -> SimulatedVenue:
    table = InstrumentTable({"us": {"X": spec}}) if spec is not None else None
    return SimulatedVenue({"us": config}, instruments=table)


def _submit_working(venue: SimulatedVenue, order_id: str, quantity: float, at_ns: int) -> None:
    """Submit a market buy of X at ``at_ns`` and let it reach the venue."""
    result = venue.submit(
        VenueOrder(
            order_id=order_id, client_order_id=f"c-{order_id}", market="us", symbol="X",
            side="buy", order_type="market", quantity=quantity,
        ),
        at_ns,
    )  # fmt: skip
    assert not result.reports
    (arrive,) = result.timers
    venue.on_timer(arrive.name, arrive.at_ns)


def test_orders_share_a_data_points_participation_cap_in_arrival_order() -> None:
    """Three working orders and one bar of 1,000 traded at 10 %: together they fill
    100, the earliest arrival first (whatever the ids), each taking what the ones
    ahead left; the impact counts what was taken before, so later ones pay more."""
    config = fl.MarketFillConfig(
        latency=fl.LatencyModel(base_ns=MIN // 2, jitter_ns=0),
        slippage=fl.SlippageModel(fixed_bps=0.0, impact_bps=10.0),
        fees=fl.FeeSchedule(),
        participation_rate=0.1,
    )
    venue = _venue(config)
    _submit_working(venue, "o3", 60.0, T0 - MIN)  # arrives first
    _submit_working(venue, "o1", 60.0, T0 - MIN + 1)
    _submit_working(venue, "o2", 60.0, T0 - MIN + 2)
    result = venue.on_market_data("us", "X", bar(T0, 100, 100, 100, 100), T0 + MIN)
    fills = [(r.order_id, r.fill) for r in result.reports if r.fill is not None]
    assert [(oid, f.quantity) for oid, f in fills] == [("o3", 60.0), ("o1", 40.0)]
    assert [f.slippage_bps for _, f in fills] == pytest.approx([0.6, 1.0])  # 60/1000, 100/1000
    # The next bar: o1's remaining 20 first, then o2.
    result = venue.on_market_data("us", "X", bar(T0 + MIN, 100, 100, 100, 100, v=500.0), T0 + 2 * MIN)  # fmt: skip
    assert [(r.order_id, r.fill.quantity) for r in result.reports if r.fill] == [("o1", 20.0), ("o2", 30.0)]  # fmt: skip


def test_fills_are_whole_lots_and_orders_off_the_lot_grid_are_rejected() -> None:
    """With ``lot_size`` 1: 10 % of a bar of 7 is below one lot and fills nothing; of
    a bar of 25, two lots; a quantity of 1.5 lots is rejected."""
    config = fl.MarketFillConfig(
        latency=fl.LatencyModel(base_ns=1, jitter_ns=0), fees=fl.FeeSchedule(), participation_rate=0.1
    )  # fmt: skip
    lots = InstrumentSpec(lot_size=1.0)
    o = order(config, quantity=3.0)
    thin = fl.match(o, bar(T0, 10, 10, 10, 10, v=7.0), config, lots)
    assert thin.fill is None
    assert thin.order.phase == "working"
    r = fl.match(thin.order, bar(T0 + MIN, 10, 10, 10, 10, v=25.0), config, lots)
    assert r.fill is not None
    assert r.fill.quantity == 2.0
    assert r.order.remaining == 1.0
    with pytest.raises(
        fl.OrderRejected, match=r"quantity 1\.5 is not a multiple of the lot size 1\.0"
    ):
        fl.validate_order(order(config, quantity=1.5), lot_size=1.0)
    venue = _venue(config, lots)
    rejected = venue.submit(
        VenueOrder(order_id="o9", client_order_id="c9", market="us", symbol="X", side="buy", order_type="market", quantity=0.5),
        T0,
    )  # fmt: skip
    assert [(x.kind, x.reason) for x in rejected.reports] == [
        ("rejected", "quantity 0.5 is not a multiple of the lot size 1.0")
    ]
    with pytest.raises(ConfigError, match="lot_size must be > 0"):
        InstrumentSpec(lot_size=0.0).validate("instruments.us.X")


def test_a_minimum_commission_binds_an_orders_fills_of_one_day_together() -> None:
    """USD 0.005 a share, minimum 1.00, at most 1 % (IBKR Pro Fixed): 1,000 shares
    filled 100 at a time pay 5.00 in all, as one fill would, the minimum only on the
    first fills; the order's fills of the next New York day pay the minimum again."""
    config = fl.MarketFillConfig(
        latency=fl.LatencyModel(base_ns=1, jitter_ns=0),
        slippage=fl.SlippageModel(fixed_bps=0.0, impact_bps=0.0),
        fees=fl.FeeSchedule(per_unit=0.005, minimum=1.0, maximum_rate=0.01),
        participation_rate=0.1,
    )
    assert config.fee_schedule("us").fee("buy", 1000.0, 50.0, "taker") == pytest.approx(5.0)
    start = T0 - 10 * MIN  # 2024-01-01 17:50 in New York
    o = order(config, quantity=1100.0, market="us", created_ns=start)
    fees = []
    for i in range(10):
        r = fl.match(o, bar(start + i * MIN, 50, 50, 50, 50, v=1000.0), config)
        assert r.fill is not None
        fees.append(r.fill.fee)
        o = r.order
    assert fees[0] == pytest.approx(1.0)  # 0.50 raised to the minimum
    assert fees[1] == pytest.approx(0.0)  # 1.00 of commission in all: the minimum is met
    assert sum(fees) == pytest.approx(5.0)
    next_day = fl.day_end_ns("us", start) + 10 * 3_600 * 10**9  # 10:00 the next day
    r = fl.match(o, bar(next_day, 50, 50, 50, 50, v=1000.0), config)
    assert r.fill is not None
    assert r.fill.quantity == 100.0
    assert r.fill.fee == pytest.approx(1.0)  # a new day: the minimum again


def test_a_bar_that_opened_while_the_order_was_in_flight_never_fills_it() -> None:
    """Latency 1.5 s and 1-second bars: the bar starting at the submission fills at
    its open (the usual next-bar rule) when it closes after the arrival; a bar that
    started between submission and arrival does not (its open printed before the
    order reached the venue); the first bar starting after the arrival does."""
    s = 1_000_000_000
    config = fl.MarketFillConfig(
        latency=fl.LatencyModel(base_ns=s // 2, jitter_ns=0), fees=fl.FeeSchedule(), participation_rate=None
    )  # fmt: skip

    def second(start: int, price: float) -> fl.MarketData:
        return fl.MarketData(ts_event=start + s, start_ns=start, open=price, high=price, low=price, close=price, volume=1e6)  # fmt: skip

    o = order(config, created_ns=T0)  # arrives at T0 + 0.5 s
    assert fl.match(o, second(T0, 100.0), config).fill is not None
    slow = fl.MarketFillConfig(
        latency=fl.LatencyModel(base_ns=3 * s // 2, jitter_ns=0), fees=fl.FeeSchedule(), participation_rate=None
    )  # fmt: skip
    o = order(slow, created_ns=T0)  # arrives at T0 + 1.5 s
    assert not fl.is_eligible(o, second(T0, 100.0))  # closes before the arrival
    assert not fl.is_eligible(o, second(T0 + s, 101.0))  # opened in flight
    r = fl.match(o, second(T0 + 2 * s, 102.0), slow)
    assert r.fill is not None
    assert r.fill.reference_price == 102.0


def test_a_day_order_arriving_just_before_midnight_expires_at_that_midnight() -> None:
    """An arrival 400 ns before New York midnight belongs to the day that ends there
    (float seconds would round it into the next day and give it 24 more hours)."""
    midnight = fl.day_end_ns("us", T0)
    assert fl.day_end_ns("us", midnight - 400) == midnight
    assert fl.day_end_ns("us", midnight - 1) == midnight
    assert fl.day_end_ns("us", midnight) == midnight + 24 * 3_600 * 10**9
    assert fl.local_day("us", midnight - 1).isoformat() == "2024-01-01"


def test_a_marketable_limit_that_got_no_share_stays_marketable() -> None:
    """A buy limit at 101 arrives on a bar opening at 100 whose 10 % share is below one
    lot: nothing fills, and on the next bar (open 100) it takes the open as a taker,
    not its limit as a resting order would."""
    config = fl.MarketFillConfig(
        latency=fl.LatencyModel(base_ns=1, jitter_ns=0), fees=fl.FeeSchedule(), participation_rate=0.1
    )  # fmt: skip
    lots = InstrumentSpec(lot_size=1.0)
    o = order(config, order_type="limit", limit=101.0, quantity=2.0)
    thin = fl.match(o, bar(T0, 100, 100, 100, 100, v=7.0), config, lots)
    assert thin.fill is None
    r = fl.match(thin.order, bar(T0 + MIN, 100, 100.2, 99.8, 100, v=50.0), config, lots)
    assert r.fill is not None
    assert (r.fill.reference_price, r.fill.liquidity) == (100.0, "taker")
    resting = fl.match(
        order(config, order_type="limit", limit=99.0), bar(T0, 100, 100, 100, 100), config
    )
    assert resting.fill is None
    assert resting.order.evaluated  # it rests: a later open through 99 fills at 99
