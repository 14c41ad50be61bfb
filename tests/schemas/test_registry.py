"""Tests for tickertape.schemas: the registry, validation messages and upcasting."""

from __future__ import annotations

import msgspec
import pytest

from tickertape.errors import SchemaError, UnknownTypeError
from tickertape.schemas import Envelope, decode_payload, encode_payload, schema_key, schemas
from tickertape.schemas.market import Trade
from tickertape.schemas.system import Alert


def test_every_topic_family_has_a_schema() -> None:
    """Each payload family of DESIGN §4 is registered."""
    types = {t for (t, _v) in schemas()}
    for required in (
        "md.trade", "md.quote", "md.bar", "md.gap", "md.corporate_action", "raw.message",
        "indicator.value", "strategy.intent", "risk.decision", "risk.state", "order.event",
        "pnl.update", "system.clock", "system.health", "system.run_manifest", "system.alert",
    ):  # fmt: skip
        assert required in types


def test_round_trip_through_raw_payload() -> None:
    """A payload encoded into an envelope decodes back to an equal Struct."""
    trade = Trade(symbol="BTCUSDT", price=61000.5, size=0.01, side="buy", trade_id="42")
    assert schema_key(trade) == ("md.trade", 1)
    raw = encode_payload(trade)
    assert decode_payload("md.trade", 1, raw) == trade


def test_validation_error_names_the_field_path() -> None:
    """A wrong type is reported with its JSON path and what was expected."""
    with pytest.raises(SchemaError, match=r"Expected `float`, got `str` - at `\$.price`"):
        decode_payload(
            "md.trade", 1, b'{"symbol":"X","price":"1","size":1,"side":"buy","trade_id":"1"}'
        )


def test_unknown_type_and_newer_version_are_unknown() -> None:
    """Readers get UnknownTypeError (to skip) for an unknown type or a newer v."""
    with pytest.raises(UnknownTypeError):
        decode_payload("md.nothing", 1, b"{}")
    with pytest.raises(UnknownTypeError):
        decode_payload("md.trade", 2, b"{}")


def test_alert_v1_is_upcast_to_v2() -> None:
    """A stored v1 alert decodes as the v2 Struct through the registered upcaster."""
    alert = decode_payload("system.alert", 1, b'{"level":"error","message":"disk"}')
    assert alert == Alert(severity="critical", code="UNSPECIFIED", message="disk")


def test_envelope_refuses_bad_source_seq() -> None:
    """source_seq must be ≥ 1 and market one of the three scopes."""
    base = {
        "id": "a:1", "topic": "t", "type": "md.trade", "v": 1, "market": "crypto",
        "ts_event": 1, "ts_init": 1, "source": "a", "source_seq": 1,
    }  # fmt: skip
    msgspec.json.decode(msgspec.json.encode(base), type=Envelope)
    with pytest.raises(msgspec.ValidationError, match=r"\$.source_seq"):
        msgspec.json.decode(msgspec.json.encode({**base, "source_seq": 0}), type=Envelope)
    with pytest.raises(msgspec.ValidationError, match=r"\$.market"):
        msgspec.json.decode(msgspec.json.encode({**base, "market": "eu"}), type=Envelope)
