"""Envelope and payload schemas (DESIGN §3–4).

Import from here: every payload module is loaded so that the registry is complete.
"""

from tickertape.schemas import indicator, market, orders, pnl, replay, risk, strategy, system
from tickertape.schemas.envelope import MARKETS, Envelope, Market, Record, stamp, unstamp
from tickertape.schemas.registry import (
    decode_payload,
    encode_payload,
    is_known,
    latest_version,
    make_envelope,
    register,
    register_upcaster,
    schema_key,
    schemas,
)

__all__ = [
    "MARKETS",
    "Envelope",
    "Market",
    "Record",
    "decode_payload",
    "encode_payload",
    "indicator",
    "is_known",
    "latest_version",
    "make_envelope",
    "market",
    "orders",
    "pnl",
    "register",
    "register_upcaster",
    "replay",
    "risk",
    "schema_key",
    "schemas",
    "stamp",
    "strategy",
    "system",
    "unstamp",
]
