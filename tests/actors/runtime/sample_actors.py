"""Small actors used by the runtime, snapshot and replay tests (not part of the product)."""

from __future__ import annotations

import msgspec

from tickertape.actors.base import Actor, Context, Event, Timer
from tickertape.schemas.indicator import IndicatorValue
from tickertape.schemas.market import Trade
from tickertape.schemas.strategy import Intent

MS = 1_000_000


class MeanConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of :class:`MeanActor`."""

    window: int = 3


class MeanState(msgspec.Struct, kw_only=True):
    """State of :class:`MeanActor`: recent prices per symbol."""

    prices: dict[str, list[float]] = msgspec.field(default_factory=dict)


class MeanActor(Actor):
    """Publishes the mean of the last ``window`` trade prices per symbol."""

    CONFIG_CLASS = MeanConfig
    name = "indicators"
    subscriptions = ("md.trade.crypto.*",)
    state_version = 1

    def __init__(self, config: MeanConfig | None = None) -> None:
        self.config = config or MeanConfig()
        self.state = MeanState()

    def on_event(self, event: Event, ctx: Context) -> None:
        trade: Trade = event.payload
        window = self.state.prices.setdefault(trade.symbol, [])
        window.append(trade.price)
        del window[: -self.config.window]
        ctx.publish(
            f"indicator.mean.v1.crypto.{trade.symbol}",
            IndicatorValue(
                symbol=trade.symbol,
                name=f"mean_{self.config.window}",
                interval="tick",
                params={"window": float(self.config.window)},
                values={"value": sum(window) / len(window)},
                bar_ts=event.ts_event,
            ),
            market="crypto",
            causation=event,
        )

    def snapshot(self) -> msgspec.Struct:
        return self.state

    def restore(self, state: bytes) -> None:
        self.state = msgspec.msgpack.decode(state, type=MeanState)


class SignalConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of :class:`SignalActor`."""

    strategy_id: str = "test"
    latency_ms: int = 50


class SignalState(msgspec.Struct, kw_only=True):
    """State of :class:`SignalActor`."""

    started: bool = False
    last_mean: dict[str, float] = msgspec.field(default_factory=dict)
    pending: list[str] = msgspec.field(default_factory=list)


class SignalActor(Actor):
    """Emits an intent when the mean rises, and a cancel intent after a modeled delay."""

    CONFIG_CLASS = SignalConfig
    name = "strategy.test"
    subscriptions = ("indicator.mean.v1.crypto.*",)
    state_version = 1

    def __init__(self, config: SignalConfig | None = None) -> None:
        self.config = config or SignalConfig()
        self.state = SignalState()

    def on_start(self, ctx: Context) -> None:
        if not self.state.started:  # a restored snapshot holds the armed timer
            self.state.started = True
            ctx.clock.set_timer("heartbeat", interval_ns=1_000 * MS)

    def on_event(self, event: Event, ctx: Context) -> None:
        value: IndicatorValue = event.payload
        mean = value.values["value"]
        previous = self.state.last_mean.get(value.symbol)
        self.state.last_mean[value.symbol] = mean
        if previous is not None and mean > previous:
            intent_id = ctx.publish(
                f"strategy.intent.{self.config.strategy_id}",
                Intent(
                    strategy_id=self.config.strategy_id,
                    intent_id=f"i{len(self.state.pending)}-{ctx.random.randint(0, 10**6)}",
                    market="crypto",
                    symbol=value.symbol,
                    side="buy",
                    quantity=1.0,
                ),
                market="crypto",
                causation=event,
            )
            self.state.pending.append(intent_id)
            ctx.clock.set_timer(
                f"cancel-{intent_id}", at_ns=ctx.clock.now_ns() + self.config.latency_ms * MS
            )

    def on_timer(self, timer: Timer, ctx: Context) -> None:
        if timer.name == "heartbeat" or not self.state.pending:
            return
        target = self.state.pending.pop(0)
        ctx.publish(
            f"strategy.intent.{self.config.strategy_id}",
            Intent(
                strategy_id=self.config.strategy_id,
                intent_id=f"cancel-{target}",
                market="crypto",
                symbol="*",
                action="cancel",
                cancel_order_id=target,
            ),
            market="crypto",
        )

    def snapshot(self) -> msgspec.Struct:
        return self.state

    def restore(self, state: bytes) -> None:
        self.state = msgspec.msgpack.decode(state, type=SignalState)


class PassThrough(Actor):
    """Handles every event and does nothing (dispatch-overhead benchmark)."""

    name = "pass"
    subscriptions = ("md.>",)

    def __init__(self, config: None = None) -> None:
        self.seen = 0

    def on_event(self, event: Event, ctx: Context) -> None:
        self.seen += 1


def trade_envelopes(n: int, *, start_ns: int = 1_704_067_200 * 10**9, symbols: int = 2) -> list:
    """Return ``n`` deterministic md.trade envelopes, 10 ms apart, on ``symbols`` symbols."""
    from tickertape.schemas.envelope import Envelope
    from tickertape.schemas.registry import encode_payload

    out = []
    for i in range(n):
        symbol = f"SYM{i % symbols}"
        trade = Trade(
            symbol=symbol,
            price=100.0 + (i * 7919 % 101) / 10,
            size=1.0,
            side="buy" if i % 3 else "sell",
            trade_id=str(i),
        )
        ts = start_ns + (i // symbols) * 10 * MS
        out.append(
            Envelope(
                id=f"marketdata:{i + 1}",
                topic=f"md.trade.crypto.{symbol}",
                type="md.trade",
                v=1,
                market="crypto",
                ts_event=ts,
                ts_init=ts,
                source="marketdata",
                source_seq=i + 1,
                payload=encode_payload(trade),
            )
        )
    return out
