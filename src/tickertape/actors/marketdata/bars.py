"""Time bars from trades (pure): OHLCV over [start, start + interval).

A bar is complete only when its interval has ended; :class:`BarBuilder` never emits
a bar early (no look-ahead): the caller closes it at ``end_ns`` on its clock (a
timer), or when a trade of a later interval arrives (its time proves the interval
is over). Intervals without trades produce no bar.
"""

from __future__ import annotations

import msgspec

from tickertape.schemas.market import Bar


class BarBuilderState(msgspec.Struct, frozen=True):
    """State of a :class:`BarBuilder`: the open bar, if any."""

    symbol: str
    interval: str
    length_ns: int
    start_ns: int | None = None
    open: float = 0.0
    high: float = 0.0
    low: float = 0.0
    close: float = 0.0
    volume: float = 0.0


class BarBuilder:
    """Aggregates one instrument's trades into bars of one interval.

    Args:
        symbol: the instrument.
        interval: its name (``1s``, ``1m``...).
        length_ns: its length in ns (> 0); bars are aligned on multiples of it
            since the epoch (UTC).
    """

    __slots__ = (
        "_close",
        "_high",
        "_low",
        "_open",
        "_start",
        "_volume",
        "interval",
        "length_ns",
        "symbol",
    )

    def __init__(self, symbol: str, interval: str, length_ns: int) -> None:
        self.symbol = symbol
        self.interval = interval
        self.length_ns = length_ns
        self._start: int | None = None
        self._open = self._high = self._low = self._close = self._volume = 0.0

    @property
    def end_ns(self) -> int | None:
        """End (exclusive) of the open bar, or None when no bar is open."""
        return None if self._start is None else self._start + self.length_ns

    def add(self, ts_ns: int, price: float, size: float) -> Bar | None:
        """Add a trade; return the previous bar when this trade starts a later one.

        Raises:
            ValueError: ``ts_ns`` is before the open bar's start (trades out of order).
        """
        start = ts_ns - ts_ns % self.length_ns
        done: Bar | None = None
        if self._start is not None:
            if start < self._start:
                raise ValueError(
                    f"{self.symbol}: trade at {ts_ns} is before the open {self.interval} bar "
                    f"starting {self._start}"
                )
            if start > self._start:
                done = self.close()
        if self._start is None:
            self._start = start
            self._open = self._high = self._low = self._close = price
            self._volume = size
            return done
        if price > self._high:
            self._high = price
        if price < self._low:
            self._low = price
        self._close = price
        self._volume += size
        return done

    def close(self) -> Bar | None:
        """Return the open bar and forget it (None when none is open)."""
        if self._start is None:
            return None
        bar = Bar(
            symbol=self.symbol,
            interval=self.interval,
            open=self._open,
            high=self._high,
            low=self._low,
            close=self._close,
            volume=self._volume,
            start_ns=self._start,
            adjusted=False,
        )
        self._start = None
        return bar

    def state(self) -> BarBuilderState:
        """Return the state as a Struct."""
        return BarBuilderState(
            self.symbol,
            self.interval,
            self.length_ns,
            self._start,
            self._open,
            self._high,
            self._low,
            self._close,
            self._volume,
        )

    @classmethod
    def from_state(cls, state: BarBuilderState) -> BarBuilder:
        """Rebuild a builder that continues exactly from ``state``."""
        builder = cls(state.symbol, state.interval, state.length_ns)
        builder._start = state.start_ns
        builder._open, builder._high, builder._low = state.open, state.high, state.low
        builder._close, builder._volume = state.close, state.volume
        return builder
