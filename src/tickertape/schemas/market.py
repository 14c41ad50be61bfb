"""Market-data payloads (DESIGN §4): trade, quote, bar, gap, corporate action, raw.

Prices and sizes are JSON numbers in the venue's units; every time is ns since the
Unix epoch (UTC). These shapes are fixed by the design contract because every actor
and external client reads them.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from tickertape.schemas.registry import register


@register("md.trade", 1)
class Trade(msgspec.Struct, frozen=True, kw_only=True):
    """One trade. ``side`` is the aggressor's side; ``trade_id`` is the venue's id."""

    symbol: str
    price: float
    size: float
    side: Literal["buy", "sell"]
    trade_id: str


@register("md.quote", 1)
class Quote(msgspec.Struct, frozen=True, kw_only=True):
    """Best bid and ask with their sizes."""

    symbol: str
    bid: float
    bid_size: float
    ask: float
    ask_size: float


@register("md.bar", 1)
class Bar(msgspec.Struct, frozen=True, kw_only=True):
    """OHLCV over [``start_ns``, envelope ``ts_event``); ``ts_event`` is the close time.

    ``adjusted`` says whether prices are adjusted for corporate actions: raw and
    adjusted series never mix silently.
    """

    symbol: str
    interval: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    start_ns: int
    adjusted: bool = False


@register("md.gap", 1)
class Gap(msgspec.Struct, frozen=True, kw_only=True):
    """A detected gap in a feed.

    Attributes:
        kind: ``"sequence"`` (venue ids skipped) or ``"time"`` (no data while the
            market was open).
        stream: which stream the gap is on (``trade``, ``quote``, ``depth``,
            ``bar.1m``...).
        last_seen: the last id (sequence gaps) or ts in ns (time gaps) before the gap.
        next_seen: the first id or ts after the gap; 0 while the gap is open.
        missing: how many ids or intervals are missing (0 when unknown).
        detail: a human-readable explanation (may be empty).
        open: ``True`` on an *open* gap: the stream is still silent when the gap is
            published (``next_seen`` is then 0; the whole gap, with the same
            ``last_seen``, follows if the stream resumes). Absent (``msgspec.UNSET``,
            falsy) on every other gap.

    Schema evolution (DESIGN §3): ``open`` was added to v1 as an optional field, so
    no new ``v`` or upcaster: payloads written before it decode with ``open``
    unset, and readers that predate it ignore the member (stored records never
    forbid unknown fields). It is ``UNSET`` rather than ``False`` by default because
    msgspec omits only unset fields per field (``omit_defaults`` is per class and
    would also drop ``missing=0`` and ``detail=""``): a gap that is not open is
    written byte for byte as before, so replays regenerate the stored bytes.
    ``tape schemas export`` lists ``open`` as an optional boolean.
    """

    symbol: str
    kind: Literal["sequence", "time"]
    stream: str
    last_seen: int
    next_seen: int
    missing: int = 0
    detail: str = ""
    open: bool | msgspec.UnsetType = msgspec.UNSET


@register("md.corporate_action", 1)
class CorporateAction(msgspec.Struct, frozen=True, kw_only=True):
    """A split, dividend, symbol change or delisting, effective at ``ex_date``.

    Attributes:
        action: ``"split"``, ``"dividend"``, ``"symbol_change"`` or ``"delisting"``.
        ex_date: ISO date (exchange-local) on which it takes effect.
        ratio: for splits, new shares per old share (AAPL 2014: 7.0).
        amount: for dividends, cash per share in ``currency``.
        new_symbol: for symbol changes.
    """

    symbol: str
    action: Literal["split", "dividend", "symbol_change", "delisting"]
    ex_date: str
    ratio: float | None = None
    amount: float | None = None
    currency: str | None = None
    new_symbol: str | None = None


@register("raw.message", 1)
class RawMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A venue message exactly as received (``raw.{venue}.{stream}``).

    Attributes:
        venue: e.g. ``binance``.
        stream: the venue's stream name, e.g. ``btcusdt@trade``.
        recv_ns: local receive time in ns (arrival order, not venue time).
        message: the message text, byte for byte.
    """

    venue: str
    stream: str
    recv_ns: int
    message: str
