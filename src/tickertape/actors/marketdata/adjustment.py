"""Corporate-action price adjustment: explicit, and never mixed with raw prices.

Two adjusted series exist, and they answer different questions:

- **Forward-adjusted** (:class:`ForwardAdjuster`, what the market-data actor
  publishes live): each bar is multiplied by the product of the adjustment factors
  of every action *already effective*, so the series stays continuous with its first
  bar and never uses the future. A 7:1 split multiplies later prices by 7 and
  divides later volumes by 7; a cash dividend ``D`` on an ex-date whose previous
  close is ``C`` multiplies later prices by ``C / (C - D)`` (the CRSP / Quandl
  dividend factor, inverted because it is applied forward).
- **Back-adjusted** (:func:`back_adjust`, research only): the convention of data
  vendors (Quandl's ``adj_*``, KRX's adjusted files): bars *before* each ex-date are
  divided by the split ratio (volumes multiplied) and multiplied by ``(C - D) / C``
  for dividends, so the latest prices are the raw ones. It needs every future action,
  so it is look-ahead by construction and is never run inside an actor.

Bars carry ``adjusted``; adjusted bars go to ``md.bar.{interval}-adj.{market}.{symbol}``
and :func:`require_basis` turns a mismatch into :class:`PriceBasisError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

import msgspec

from tickertape.errors import BiasError
from tickertape.schemas.market import Bar, CorporateAction


class PriceBasisError(BiasError):
    """A consumer expecting raw (or adjusted) prices received the other kind.

    Mixing them silently would corrupt every indicator and fill computed after a
    split, so it is a hard error.

    Attributes:
        symbol: the instrument.
        expected_adjusted: the basis the consumer was configured for.
        topic: where the offending bar came from.
    """

    def __init__(self, symbol: str, expected_adjusted: bool, topic: str) -> None:
        self.symbol = symbol
        self.expected_adjusted = expected_adjusted
        self.topic = topic
        want, got = ("adjusted", "raw") if expected_adjusted else ("raw", "adjusted")
        super().__init__(
            f"{symbol}: expected {want} prices but {topic!r} delivered {got} ones; "
            f"subscribe to the {want} topic (adjusted bars use the '<interval>-adj' token)"
        )


def require_basis(bar: Bar, expected_adjusted: bool, topic: str) -> None:
    """Raise :class:`PriceBasisError` unless ``bar.adjusted`` is ``expected_adjusted``."""
    if bar.adjusted is not expected_adjusted:
        raise PriceBasisError(bar.symbol, expected_adjusted, topic)


def adjusted_topic(interval: str, market: str, symbol: str) -> str:
    """Return the topic of adjusted bars: ``md.bar.{interval}-adj.{market}.{symbol}``."""
    return f"md.bar.{interval}-adj.{market}.{symbol}"


class ForwardAdjusterState(msgspec.Struct, frozen=True):
    """State of a :class:`ForwardAdjuster` (factors and the last raw close)."""

    price_factor: float = 1.0
    volume_factor: float = 1.0
    last_close: float | None = None
    pending: list[CorporateAction] = msgspec.field(default_factory=list)


class ForwardAdjuster:
    """Causal (forward) adjustment of one instrument's raw bars.

    Feed corporate actions as they are announced (:meth:`on_action`) and raw bars as
    they close (:meth:`adjust`). An action takes effect on the first bar whose
    session date (``start_ns`` in the exchange's calendar, given as ``bar_date``) is
    on or after its ``ex_date``.
    """

    __slots__ = ("_last_close", "_pending", "_price_factor", "_volume_factor")

    def __init__(self, state: ForwardAdjusterState | None = None) -> None:
        state = state or ForwardAdjusterState()
        self._price_factor = state.price_factor
        self._volume_factor = state.volume_factor
        self._last_close = state.last_close
        self._pending = list(state.pending)

    def on_action(self, action: CorporateAction) -> None:
        """Queue a split or dividend; other actions do not change prices."""
        if action.action in ("split", "dividend"):
            self._pending.append(action)
            self._pending.sort(key=lambda a: (a.ex_date, a.action))

    def adjust(self, bar: Bar, bar_date: date) -> Bar:
        """Return the forward-adjusted copy of raw ``bar`` (``adjusted=True``).

        Raises:
            PriceBasisError: ``bar`` is already adjusted.
        """
        if bar.adjusted:
            raise PriceBasisError(bar.symbol, False, "forward adjustment input")
        day = bar_date.isoformat()
        while self._pending and self._pending[0].ex_date <= day:
            action = self._pending.pop(0)
            if action.action == "split" and action.ratio:
                self._price_factor *= action.ratio
                self._volume_factor /= action.ratio
            elif action.action == "dividend" and action.amount and self._last_close:
                self._price_factor *= self._last_close / (self._last_close - action.amount)
        self._last_close = bar.close
        p, v = self._price_factor, self._volume_factor
        return msgspec.structs.replace(
            bar,
            open=bar.open * p,
            high=bar.high * p,
            low=bar.low * p,
            close=bar.close * p,
            volume=bar.volume * v,
            adjusted=True,
        )

    def state(self) -> ForwardAdjusterState:
        """Return the state as a Struct."""
        return ForwardAdjusterState(
            self._price_factor, self._volume_factor, self._last_close, list(self._pending)
        )


def back_adjust(
    bars: Sequence[tuple[date, Bar]],
    actions: Iterable[CorporateAction],
    *,
    dividends: bool = True,
) -> list[Bar]:
    """Back-adjust a raw daily series the way data vendors do (research only: look-ahead).

    Args:
        bars: ``(session date, raw bar)`` in time order.
        actions: splits and dividends of the instrument (any order); an action whose
            ex-date is after the last bar still adjusts every bar before it.
        dividends: also apply dividend factors (``(C - D) / C`` with ``C`` the close
            before the ex-date); splits only when False.

    Returns:
        The adjusted bars (``adjusted=True``), in the same order.

    Raises:
        PriceBasisError: an input bar is already adjusted.
    """
    divisor = [1.0] * len(bars)  # splits divide (exact when the result is representable)
    price = [1.0] * len(bars)  # dividend factors multiply
    dates = [d.isoformat() for d, _ in bars]
    for action in sorted(actions, key=lambda a: a.ex_date):
        cut = next((i for i, d in enumerate(dates) if d >= action.ex_date), len(dates))
        if action.action == "split" and action.ratio:
            for i in range(cut):
                divisor[i] *= action.ratio
        elif dividends and action.action == "dividend" and action.amount and cut > 0:
            close = bars[cut - 1][1].close
            factor = (close - action.amount) / close
            for i in range(cut):
                price[i] *= factor
    out: list[Bar] = []
    for (_, bar), d, p in zip(bars, divisor, price, strict=True):
        if bar.adjusted:
            raise PriceBasisError(bar.symbol, False, "back adjustment input")
        out.append(
            msgspec.structs.replace(
                bar,
                open=bar.open / d * p,
                high=bar.high / d * p,
                low=bar.low / d * p,
                close=bar.close / d * p,
                volume=bar.volume * d,
                adjusted=True,
            )
        )
    return out
