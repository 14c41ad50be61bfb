"""md.gap v1 with its optional ``open`` member: compatible both ways, bytes unchanged."""

from __future__ import annotations

import msgspec

from tickertape.schemas import decode_payload, encode_payload
from tickertape.schemas.market import Gap

# A whole time gap as the market-data actor wrote it before ``open`` existed.
STORED = (
    b'{"symbol":"BTCUSDT","kind":"time","stream":"trade","last_seen":1723161479790000000,'
    b'"next_seen":1723161660008000000,"missing":0,'
    b'"detail":"180.218 s of open market without an event (bound 60 s)"}'
)


def test_a_payload_without_open_decodes_as_not_open() -> None:
    """A stored gap without the member decodes with ``open`` unset, which is falsy."""
    gap = decode_payload("md.gap", 1, STORED)
    assert gap.open is msgspec.UNSET
    assert not gap.open


def test_a_gap_that_is_not_open_is_written_byte_for_byte_as_before() -> None:
    """Re-encoding the stored gap gives the stored bytes (replays compare them), with
    ``missing=0`` and an empty ``detail`` still written."""
    assert bytes(encode_payload(decode_payload("md.gap", 1, STORED))) == STORED
    sequence = Gap(symbol="X", kind="sequence", stream="trade", last_seen=1, next_seen=3)
    assert bytes(encode_payload(sequence)) == (
        b'{"symbol":"X","kind":"sequence","stream":"trade","last_seen":1,"next_seen":3,'
        b'"missing":0,"detail":""}'
    )


def test_an_open_gap_carries_open_true_and_round_trips() -> None:
    """``open=True`` is written last and decodes back; an older reader's Struct (without
    the field) still decodes it, ignoring the member."""
    gap = Gap(symbol="BTCUSDT", kind="time", stream="quote", last_seen=5, next_seen=0, open=True)
    raw = bytes(encode_payload(gap))
    assert raw.endswith(b',"detail":"","open":true}')
    assert decode_payload("md.gap", 1, raw) == gap

    class OlderGap(msgspec.Struct, frozen=True, kw_only=True):
        symbol: str
        kind: str
        stream: str
        last_seen: int
        next_seen: int
        missing: int = 0
        detail: str = ""

    older = msgspec.json.decode(raw, type=OlderGap)
    assert (older.last_seen, older.next_seen) == (5, 0)


def test_json_schema_lists_open_as_an_optional_boolean() -> None:
    """`tape schemas export`'s schema of md.gap v1: ``open`` is a boolean, not required."""
    schema = msgspec.json.schema(Gap)
    definition = schema["$defs"]["Gap"]
    assert definition["properties"]["open"] == {"type": "boolean"}
    assert "open" not in definition["required"]
    assert definition["required"] == ["symbol", "kind", "stream", "last_seen", "next_seen"]
