"""Instrument specifications: contract multiplier, tick size and fees per instrument.

An order's quantity counts *contracts* (shares for stocks, coins for crypto); one
contract is ``multiplier`` units of the underlying, so

- the value (notional) of ``quantity`` contracts at ``price`` is
  ``quantity × price × multiplier`` in the market's currency;
- a price move of ``Δ`` changes a position's value by ``quantity × Δ × multiplier``.

Stocks and crypto have a multiplier of 1 (one share, one coin). A futures contract
is larger: one CME Euro FX future (``6E``) is 125,000 euros, quoted in US dollars per
euro, so 1 contract at 1.0950 is worth USD 136,875 and one tick (0.00005) is
USD 6.25.

Specifications come from configuration, never from code: the order engine and the
risk gate each take an ``[instruments]`` section (or an ``instruments_file``) of
this shape::

    [instruments.us.6E]        # market, then a symbol or a futures root
    multiplier = 125_000.0     # units of the underlying per contract
    tick_size = 0.00005        # price increment (a fill never lands between ticks)
    fees = { per_unit = 2.47 } # replaces the market's fee schedule for this instrument
    initial_margin = 2_310.0   # per contract, quote currency: a margined (futures) instrument
    maintenance_margin = 2_100.0

A key matches the symbol itself, or a futures contract of that root: the key
followed by a CME month code (``F G H J K M N Q U V X Z``) and a one- or two-digit
year, so ``6E`` covers ``6EH4``, ``6EM4`` and ``6EZ24``. An exact symbol wins over a
root. An instrument without a specification has :data:`DEFAULT_SPEC`: multiplier 1,
no tick grid, the market's fee schedule, no margin (the behaviour before
specifications existed).

**Margin.** An instrument with an ``initial_margin`` is *margined*, as a future is:
buying or selling a contract pays no contract value, it ties up the initial margin
(a performance bond, per contract, in the market's currency) while the position is
open; the pnl books settle its PnL in cash as it is realized (variation margin style)
and count its unrealized PnL, not its value, in equity; the risk gate checks the
margin an order adds against the book's available funds (``INSUFFICIENT_MARGIN``).
An instrument without one (stocks, crypto spot) is *cash-like*: its full notional is
paid and received. See :mod:`tickertape.actors.pnl.accounting` and
:mod:`tickertape.actors.risk.checks`.

The examples' figures and their sources are in ``examples/actors/orders.toml`` and
``docs/risk.md`` ("Instruments").
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path

import msgspec

from tickertape.actors.orders.fill_logic import FeeSchedule
from tickertape.errors import ConfigError
from tickertape.schemas.envelope import MARKETS, Market

MONTH_CODES = frozenset("FGHJKMNQUVXZ")
"""CME futures month codes (January F ... December Z)."""


class InstrumentSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The specification of one instrument (or of every contract of a futures root).

    Attributes:
        multiplier: units of the underlying per contract (> 0, finite); a contract's
            value is ``price × multiplier`` in the market's currency. 1 for stocks and
            crypto; 125,000 for CME 6E (euros per contract).
        tick_size: the smallest price increment (> 0), or None for no grid. Taker fill
            prices are rounded to it against the order (buys up, sells down), and the
            venue rejects limit and stop prices off the grid.
        lot_size: the smallest quantity increment (> 0, finite), or None for any
            quantity (crypto spot). Orders off the lot grid are rejected and fills are
            whole lots (a participation share below one lot fills nothing). 1 for
            futures and for stocks traded in whole shares.
        fees: the fee schedule of this instrument, in place of the market's (e.g. a
            per-contract commission for futures traded in the ``us`` market, whose
            default schedule is per share); None keeps the market's.
        initial_margin: the margin one open contract requires, in the market's
            currency (> 0, finite), which makes the instrument margined (see the
            module docstring); None for a cash-like instrument (the default). CME
            publishes its futures' figures as "performance bonds"; brokers may ask more.
        maintenance_margin: the margin below which a broker calls for more, per
            contract (> 0, ≤ ``initial_margin``); only with ``initial_margin``; None
            for the same as ``initial_margin``. Reported by the pnl actor; a risk
            gate with ``check_cash`` calls for margin below it (no liquidation).
        borrow_rate: the annual fee rate of borrowing the instrument to sell it
            short (a fraction, ≥ 0, finite: 0.0025 is 0.25 % a year), charged by the
            pnl actor on a cash-like short (see
            :func:`tickertape.actors.pnl.accounting.borrow_fee`); None for the pnl
            actor's rate of the market (``borrow_rates``). Futures pay none.
    """

    multiplier: float = 1.0
    tick_size: float | None = None
    lot_size: float | None = None
    fees: FeeSchedule | None = None
    initial_margin: float | None = None
    maintenance_margin: float | None = None
    borrow_rate: float | None = None

    @property
    def margined(self) -> bool:
        """True for a margined instrument (one with an ``initial_margin``)."""
        return self.initial_margin is not None

    @property
    def margin_rates(self) -> tuple[float, float]:
        """``(initial, maintenance)`` margin per contract, ``(0.0, 0.0)`` when cash-like
        (the form :func:`tickertape.actors.pnl.accounting.apply_fill` takes)."""
        if self.initial_margin is None:
            return (0.0, 0.0)
        maintenance = self.maintenance_margin
        return (self.initial_margin, self.initial_margin if maintenance is None else maintenance)

    def validate(self, where: str) -> None:
        """Raises ConfigError naming ``where`` when a field is out of range."""
        if not (math.isfinite(self.multiplier) and self.multiplier > 0.0):
            raise ConfigError(f"{where}.multiplier must be > 0 and finite (got {self.multiplier})")
        if self.tick_size is not None and not (
            math.isfinite(self.tick_size) and self.tick_size > 0.0
        ):
            raise ConfigError(f"{where}.tick_size must be > 0 and finite (got {self.tick_size})")
        if self.lot_size is not None and not (math.isfinite(self.lot_size) and self.lot_size > 0.0):
            raise ConfigError(f"{where}.lot_size must be > 0 and finite (got {self.lot_size})")
        if self.initial_margin is not None and not (
            math.isfinite(self.initial_margin) and self.initial_margin > 0.0
        ):
            raise ConfigError(
                f"{where}.initial_margin must be > 0 and finite (got {self.initial_margin})"
            )
        if self.maintenance_margin is not None:
            if self.initial_margin is None:
                raise ConfigError(f"{where}.maintenance_margin needs an initial_margin")
            if not (0.0 < self.maintenance_margin <= self.initial_margin):
                raise ConfigError(
                    f"{where}.maintenance_margin must be > 0 and ≤ initial_margin "
                    f"{self.initial_margin} (got {self.maintenance_margin})"
                )
        if self.borrow_rate is not None and not (
            math.isfinite(self.borrow_rate) and self.borrow_rate >= 0.0
        ):
            raise ConfigError(
                f"{where}.borrow_rate must be ≥ 0 and finite (got {self.borrow_rate})"
            )
        if self.fees is not None:
            try:
                self.fees.validate()
            except ConfigError as exc:
                raise ConfigError(f"{where}.{exc.detail}") from None


DEFAULT_SPEC = InstrumentSpec()
"""The specification of an instrument nobody configured: multiplier 1, no tick grid,
the market's fee schedule."""

InstrumentsConfig = dict[Market, dict[str, InstrumentSpec]]
"""The ``[instruments]`` section: market → symbol or futures root → specification."""


def _is_contract_of(symbol: str, root: str) -> bool:
    """True when ``symbol`` is ``root`` + a month code + a one- or two-digit year."""
    if not symbol.startswith(root):
        return False
    rest = symbol[len(root) :]
    return 2 <= len(rest) <= 3 and rest[0] in MONTH_CODES and rest[1:].isdigit()


class InstrumentTable:
    """Looks instruments up in a validated ``[instruments]`` section.

    Args:
        specs: market → symbol or futures root → specification (see the module
            docstring); None or empty for none.
        where: how the section is named in error messages (``orders.instruments``
            for an actor's inline section; empty for a file, whose path the error
            carries).

    Raises:
        ConfigError: an unknown market, an empty key, or a specification out of range
            (the message names ``where.market.key.field``).
    """

    def __init__(
        self,
        specs: Mapping[Market, Mapping[str, InstrumentSpec]] | None = None,
        where: str = "instruments",
    ) -> None:
        self._specs: dict[str, dict[str, InstrumentSpec]] = {}
        prefix = f"{where}." if where else ""
        for market, table in sorted((specs or {}).items()):
            if market not in MARKETS:
                raise ConfigError(
                    f"{prefix}{market}: unknown market (expected one of {', '.join(MARKETS)})"
                )
            for key, spec in sorted(table.items()):
                if not key:
                    raise ConfigError(f"{prefix}{market}: an instrument key is empty")
                spec.validate(f"{prefix}{market}.{key}")
            self._specs[market] = dict(table)
        self._cache: dict[tuple[str, str], InstrumentSpec] = {}

    def __bool__(self) -> bool:
        return any(self._specs.values())

    def spec(self, market: Market, symbol: str) -> InstrumentSpec:
        """The specification of ``symbol`` in ``market``: its own entry, else its futures
        root's, else :data:`DEFAULT_SPEC`."""
        key = (market, symbol)
        found = self._cache.get(key)
        if found is None:
            found = self._lookup(market, symbol)
            self._cache[key] = found
        return found

    def multiplier(self, market: Market, symbol: str) -> float:
        """The contract multiplier of ``symbol`` in ``market`` (1.0 when unspecified)."""
        return self.spec(market, symbol).multiplier

    def margin_rates(self, market: Market, symbol: str) -> tuple[float, float]:
        """``(initial, maintenance)`` margin per contract of ``symbol`` in ``market``,
        ``(0.0, 0.0)`` for a cash-like instrument (:attr:`InstrumentSpec.margin_rates`)."""
        return self.spec(market, symbol).margin_rates

    def _lookup(self, market: Market, symbol: str) -> InstrumentSpec:
        table = self._specs.get(market)
        if not table:
            return DEFAULT_SPEC
        exact = table.get(symbol)
        if exact is not None:
            return exact
        # At most one root matches: what follows a root is a month letter then digits.
        for root, spec in table.items():
            if _is_contract_of(symbol, root):
                return spec
        return DEFAULT_SPEC


def parse_instruments(text: str, path: str | Path | None = None) -> InstrumentsConfig:
    """Parse and validate an instruments TOML document (tables ``[<market>.<key>]``).

    Raises:
        ConfigError: invalid TOML, an unknown market or field (named with its path), a
            wrong type, or a value out of range.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path) from None
    try:
        specs = msgspec.convert(raw, InstrumentsConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid instruments: {exc}", path) from None
    try:
        InstrumentTable(specs, where="")
    except ConfigError as exc:
        raise ConfigError(exc.detail, path) from None
    return specs


def load_instruments(inline: InstrumentsConfig, path: str | None, *, owner: str) -> InstrumentTable:
    """The instrument table of an actor configuration: the file when ``path`` is given,
    else the inline section.

    Args:
        inline: the configuration's ``[instruments]`` section.
        path: the configuration's ``instruments_file`` (relative to the working
            directory), or None.
        owner: the configuration's name for messages (``orders``, ``risk``).

    Raises:
        ConfigError: both given, the file cannot be read, or a specification is invalid.
    """
    if path is None:
        return InstrumentTable(inline, where=f"{owner}.instruments")
    if inline:
        raise ConfigError(f"{owner}: give instruments_file or an [instruments] section, not both")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read instruments: {exc.strerror}", path) from None
    return InstrumentTable(parse_instruments(text, path), where="")
