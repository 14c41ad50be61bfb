"""SMA crossover: long on a cross up, short on a cross down, always in the market after.

On each bar close of the configured symbol, with ``fast`` and ``slow`` simple moving
averages of the closes (each a fresh sum of its window divided by its length):

- cross up (previous ``fast − slow`` ≤ 0, now > 0): target position ``+quantity``;
- cross down (previous ≥ 0, now < 0): target position ``−quantity``.

Nothing happens before both windows are full and a previous difference exists. The
target is handed to the risk gate, which computes the order from the position it
knows (buy 2 to go from −1 to +1). With the default fill model the order fills at
the next bar's open (never the signal's bar).

Run it on the bundled CME 6E bars::

    tape actor strategy --strategy examples.strategies.sma_cross:SmaCross \\
        --config examples/strategies/sma_cross.toml
"""

from __future__ import annotations

from collections import deque
from itertools import islice

import msgspec

from tickertape.actors.strategy import Strategy, StrategyContext
from tickertape.errors import ConfigError
from tickertape.schemas.envelope import Market
from tickertape.schemas.market import Bar


class SmaCrossParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Parameters.

    Attributes:
        symbol: the instrument traded (bars of other symbols are ignored).
        fast: fast window in bars (default 10).
        slow: slow window in bars (default 30), > fast.
        quantity: position size in contracts (shares, coins; default 1).
        interval: the bar interval used (default ``1m``).
    """

    symbol: str
    fast: int = 10
    slow: int = 30
    quantity: float = 1.0
    interval: str = "1m"


class _State(msgspec.Struct, kw_only=True):
    closes: list[float]
    previous: float | None


class SmaCross(Strategy):
    """The SMA crossover example (see the module docstring)."""

    Params = SmaCrossParams

    def __init__(self, params: msgspec.Struct | None = None) -> None:
        super().__init__(params)
        if not isinstance(params, SmaCrossParams):
            raise ConfigError("SmaCross needs params (symbol at least)")
        if not 0 < params.fast < params.slow:
            raise ConfigError(f"need 0 < fast < slow (got {params.fast}, {params.slow})")
        self.p = params
        self.closes: deque[float] = deque(maxlen=params.slow)
        self.previous: float | None = None

    def on_bar(self, market: Market, bar: Bar, ctx: StrategyContext) -> None:
        """Update the averages on the bar's close and act on a cross."""
        p = self.p
        if bar.symbol != p.symbol or bar.interval != p.interval:
            return
        closes = self.closes
        closes.append(bar.close)
        if len(closes) < p.slow:
            return
        fast = sum(islice(closes, p.slow - p.fast, None)) / p.fast
        slow = sum(closes) / p.slow
        diff = fast - slow
        previous, self.previous = self.previous, diff
        if previous is None:
            return
        if previous <= 0.0 < diff:
            ctx.target_position(market, p.symbol, p.quantity, reason="sma cross up")
        elif previous >= 0.0 > diff:
            ctx.target_position(market, p.symbol, -p.quantity, reason="sma cross down")

    def snapshot_state(self) -> bytes:
        """The closes window and the previous difference."""
        return msgspec.msgpack.encode(_State(closes=list(self.closes), previous=self.previous))

    def restore_state(self, state: bytes) -> None:
        """Restore what :meth:`snapshot_state` returned."""
        if state:
            decoded = msgspec.msgpack.decode(state, type=_State)
            self.closes = deque(decoded.closes, maxlen=self.p.slow)
            self.previous = decoded.previous
