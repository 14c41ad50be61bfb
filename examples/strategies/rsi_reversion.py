"""RSI mean reversion: long when oversold, short when overbought, flat back at the middle.

On each bar close of the configured symbol, with Wilder's RSI of the closes (the
TA-Lib definition: the first average gain and loss are the simple means of the first
``period`` changes, then ``avg = (avg × (period − 1) + x) / period``;
``RSI = 100 × avg_gain / (avg_gain + avg_loss)``, 50 when both are 0):

- RSI < ``oversold`` (30): target ``+quantity``;
- RSI > ``overbought`` (70): target ``−quantity``;
- a long exits (target 0) when RSI rises to ``exit_level`` (50) or above, a short
  when it falls to it or below.

Its configuration ``rsi_reversion.toml`` trades one contract of the bundled CME 6E
bars (imported with ``tape import ohlcv-csv data/cme-6eh4-1m-2024-01/*.csv.gz
--market us --symbol 6EH4 --interval 1m --stamp end``)::

    tape replay --from 2024-01-01 --actors \\
        examples.strategies.rsi_reversion:RsiReversion@examples/strategies/rsi_reversion.toml,risk,orders,pnl
"""

from __future__ import annotations

import msgspec

from tickertape.actors.strategy import Strategy, StrategyContext
from tickertape.errors import ConfigError
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar


class RsiReversionParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Parameters.

    Attributes:
        symbol: the instrument traded.
        period: RSI period in bars (default 14, Wilder 1978).
        oversold, overbought: entry levels (default 30 / 70).
        exit_level: exit level (default 50).
        quantity: position size in contracts (shares, coins; default 0.01; the 6E config
            trades 1 contract).
        interval: bar interval used (default ``1m``).
    """

    symbol: str
    period: int = 14
    oversold: float = 30.0
    overbought: float = 70.0
    exit_level: float = 50.0
    quantity: float = 0.01
    interval: str = "1m"


class _State(msgspec.Struct, kw_only=True):
    last_close: float | None = None
    changes: list[float] = msgspec.field(default_factory=list)
    avg_gain: float | None = None
    avg_loss: float | None = None
    target: float = 0.0


class RsiReversion(Strategy):
    """The RSI mean-reversion example (see the module docstring)."""

    Params = RsiReversionParams

    def __init__(self, params: msgspec.Struct | None = None) -> None:
        super().__init__(params)
        if not isinstance(params, RsiReversionParams):
            raise ConfigError("RsiReversion needs params (symbol at least)")
        if (
            params.period < 2
            or not 0 < params.oversold < params.exit_level < params.overbought < 100
        ):
            raise ConfigError("need period ≥ 2 and 0 < oversold < exit_level < overbought < 100")
        self.p = params
        self.s = _State()

    def rsi(self, close: float) -> float | None:
        """Feed one close; return the RSI once ``period`` changes are known."""
        s, n = self.s, self.p.period
        last, s.last_close = s.last_close, close
        if last is None:
            return None
        change = close - last
        gain, loss = max(change, 0.0), max(-change, 0.0)
        if s.avg_gain is None or s.avg_loss is None:
            s.changes.append(change)
            if len(s.changes) < n:
                return None
            s.avg_gain = sum(max(c, 0.0) for c in s.changes) / n
            s.avg_loss = sum(max(-c, 0.0) for c in s.changes) / n
            s.changes = []
        else:
            s.avg_gain = (s.avg_gain * (n - 1) + gain) / n
            s.avg_loss = (s.avg_loss * (n - 1) + loss) / n
        total = s.avg_gain + s.avg_loss
        return 50.0 if total == 0.0 else 100.0 * s.avg_gain / total

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        """Update the RSI and move the target position."""
        p = self.p
        if bar.symbol != p.symbol or bar.interval != p.interval:
            return
        value = self.rsi(bar.close)
        if value is None:
            return
        target = self.s.target
        if value < p.oversold:
            target = p.quantity
        elif value > p.overbought:
            target = -p.quantity
        elif (target > 0 and value >= p.exit_level) or (target < 0 and value <= p.exit_level):
            target = 0.0
        # The target is kept only once its intent went out: one dropped (kill switch,
        # rate limit) is asked again at the next bar that still wants it.
        if target != self.s.target and ctx.target_position(
            market, p.symbol, target, reason=f"rsi {value:.1f}"
        ):
            self.s.target = target

    def snapshot_state(self) -> bytes:
        """The RSI state and the current target."""
        return msgspec.msgpack.encode(self.s)

    def restore_state(self, state: bytes) -> None:
        """Restore what :meth:`snapshot_state` returned."""
        if state:
            self.s = msgspec.msgpack.decode(state, type=_State)
