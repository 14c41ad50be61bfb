"""Tests of tickertape.eventlog.codec: the stored line, its CRC and its round trip."""

from __future__ import annotations

import json

import crc32c
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickertape.eventlog.codec import (
    CodecError,
    decode_line,
    encode_batch,
    encode_into,
    encode_record,
    encode_wire,
    ts_log_suffix,
)
from tickertape.schemas.envelope import Envelope, stamp

from .envelopes import envelope

names = st.text(min_size=1, max_size=40)
big_ints = st.integers(min_value=0, max_value=2**63 - 1)
json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
whitespace = st.sampled_from(["", " ", "\n", "\r\n", "\t", "  \n  "])


@st.composite
def raw_payloads(draw: st.DrawFn) -> msgspec.Raw:
    """A JSON object, sometimes re-serialised with whitespace and newlines between tokens."""
    value = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
    if draw(st.booleans()):
        sep = draw(whitespace)
        text = json.dumps(
            value, indent=sep if "\n" in sep else None, ensure_ascii=draw(st.booleans())
        )
        text = draw(whitespace) + text + draw(whitespace)
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return msgspec.Raw(text.encode())


@st.composite
def any_envelopes(draw: st.DrawFn) -> Envelope:
    """Envelopes with arbitrary unicode, huge integers and odd raw payloads."""
    return Envelope(
        id=draw(names),
        topic=draw(names),
        type=draw(names),
        v=draw(st.integers(1, 2**63 - 1)),
        market=draw(st.sampled_from([None, "kr", "us", "crypto"])),
        ts_event=draw(big_ints),
        ts_init=draw(big_ints),
        source=draw(names),
        source_seq=draw(st.integers(1, 2**63 - 1)),
        causation_id=draw(st.none() | st.text(max_size=20)),
        correlation_id=draw(st.none() | st.text(max_size=20)),
        payload=draw(raw_payloads()),
    )


def encoded(env: Envelope, offset: int = 0, gseq: int = 1, ts_log: int = 7) -> bytes:
    buf = bytearray()
    encode_into(env, offset, gseq, ts_log, buf)
    return bytes(buf)


@settings(max_examples=300, deadline=None)
@given(any_envelopes(), big_ints, st.integers(1, 2**63 - 1), big_ints)
def test_round_trip(env: Envelope, offset: int, gseq: int, ts_log: int) -> None:
    """decode_line(encode_into(e)) gives back every field, and the payload's JSON value."""
    line = encoded(env, offset, gseq, ts_log)
    assert line.endswith(b"}\n")
    assert line.count(b"\n") == 1
    rec = decode_line(line)
    assert (rec.offset, rec.gseq, rec.ts_log) == (offset, gseq, ts_log)
    for field in Envelope.__struct_fields__:
        if field != "payload":
            assert getattr(rec, field) == getattr(env, field), field
    assert json.loads(bytes(rec.payload)) == json.loads(bytes(env.payload))


@settings(max_examples=100, deadline=None)
@given(any_envelopes())
def test_compact_payload_is_kept_byte_for_byte(env: Envelope) -> None:
    """A payload without line breaks is stored as published, up to surrounding whitespace."""
    raw = bytes(env.payload).strip(b" \t")
    if b"\n" in raw or b"\r" in raw:
        raw = json.dumps(json.loads(raw), separators=(",", ":")).encode()
        env = msgspec.structs.replace(env, payload=msgspec.Raw(raw))
    assert bytes(decode_line(encoded(env)).payload) == raw


@settings(max_examples=100, deadline=None)
@given(any_envelopes(), st.integers(0, 10**6), st.integers(1, 10**6))
def test_encode_record_matches_encode_into(env: Envelope, offset: int, gseq: int) -> None:
    """Stamping then encode_record writes the same line as encode_into."""
    line = encoded(env, offset, gseq, 5)
    if b"\n" not in bytes(env.payload) and b"\r" not in bytes(env.payload):
        assert encode_record(stamp(env, offset, gseq, 5)) == line


@settings(max_examples=200, deadline=None)
@given(
    st.lists(any_envelopes(), max_size=12),
    big_ints,
    st.integers(1, 2**62),
    big_ints,
    st.data(),
)
def test_encode_batch_writes_the_bytes_of_encode_into(
    envs: list[Envelope], first_offset: int, first_gseq: int, ts_log: int, data: st.DataObject
) -> None:
    """encode_batch appends exactly the lines encode_into gives one by one (odd payloads
    included), and the positions of the marked records."""
    gseqs = sorted(
        data.draw(
            st.sets(
                st.integers(first_gseq, first_gseq + 10**6), min_size=len(envs), max_size=len(envs)
            )
        )
    )
    marks = sorted(data.draw(st.sets(st.integers(0, max(len(envs) - 1, 0)), max_size=len(envs))))
    want = bytearray(b"prefix")
    positions = []
    for i, (env, gseq) in enumerate(zip(envs, gseqs, strict=True)):
        if i in marks:
            positions.append(len(want))
        encode_into(env, first_offset + i, gseq, ts_log, want)
    got = bytearray(b"prefix")
    assert encode_batch(envs, first_offset, gseqs, ts_log_suffix(ts_log), got, marks) == positions
    assert got == want


@settings(max_examples=100, deadline=None)
@given(any_envelopes())
def test_wire_form_is_the_line_without_crc(env: Envelope) -> None:
    """encode_wire(record) is the stored line minus its crc member and newline."""
    # Producers' payloads come from a JSON decode, which never keeps surrounding whitespace.
    raw = bytes(env.payload).strip(b" \t\r\n")
    env = msgspec.structs.replace(env, payload=msgspec.Raw(raw))
    line = encoded(env)
    rec = decode_line(line)
    pos = line.rfind(b',"crc":')
    assert encode_wire(rec) == line[:pos] + b"}"


def test_wire_form_of_a_payload_with_surrounding_whitespace() -> None:
    """A payload given with whitespace around it still gives a wire form equal to the stored line."""
    line = encoded(envelope(1, payload=msgspec.Raw(b' {"a":1} ')))
    pos = line.rfind(b',"crc":')
    assert encode_wire(decode_line(line)) == line[:pos] + b"}"


def test_crc_is_crc32c_of_the_bytes_before_it() -> None:
    """The crc member is the CRC-32C of every byte before ',"crc":' (DESIGN §5, codec docs)."""
    line = encoded(envelope(1))
    pos = line.rfind(b',"crc":')
    assert int(line[pos + 7 : -2]) == crc32c.crc32c(line[:pos])


@settings(max_examples=200, deadline=None)
@given(any_envelopes(), st.data())
def test_any_single_bit_flip_is_detected(env: Envelope, data: st.DataObject) -> None:
    """Flipping any one bit of a stored line makes it fail the codec."""
    line = bytearray(encoded(env))
    pos = data.draw(st.integers(0, len(line) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    line[pos] ^= 1 << bit
    with pytest.raises(CodecError):
        decode_line(bytes(line))


def test_every_single_bit_flip_of_one_line_is_detected() -> None:
    """Exhaustively: each of the 8·n bit flips of a line is refused."""
    line = encoded(envelope(12345))
    for pos in range(len(line)):
        for bit in range(8):
            damaged = bytearray(line)
            damaged[pos] ^= 1 << bit
            with pytest.raises(CodecError):
                decode_line(bytes(damaged))


@settings(max_examples=100, deadline=None)
@given(any_envelopes(), st.data())
def test_any_truncation_is_detected(env: Envelope, data: st.DataObject) -> None:
    """Every prefix of a stored line shorter than the record itself is refused (torn write)."""
    line = encoded(env)
    cut = data.draw(st.integers(0, len(line) - 2), label="cut")
    with pytest.raises(CodecError):
        decode_line(line[:cut])
    with pytest.raises(CodecError):
        decode_line(line[:cut] + b"\n")


def test_every_truncation_of_one_line_is_detected() -> None:
    """Exhaustively: each prefix cut inside the record, with or without a newline, is refused."""
    line = encoded(envelope(1))
    for cut in range(len(line) - 1):
        with pytest.raises(CodecError):
            decode_line(line[:cut])
        with pytest.raises(CodecError):
            decode_line(line[:cut] + b"\n")


@pytest.mark.parametrize(
    "line", [b"", b"garbage\n", b'{"a":1}\n', b'{"a":1,"crc":x}\n', b'{"a":1,"crc":1}\n', b"\n"]
)
def test_lines_that_are_not_records_are_refused(line: bytes) -> None:
    """Empty lines, garbage and objects that are not records raise CodecError with a reason."""
    with pytest.raises(CodecError) as info:
        decode_line(line)
    assert info.value.reason


def test_wrong_crc_is_a_checksum_mismatch() -> None:
    """A well-formed record whose crc does not match its bytes says 'checksum mismatch'."""
    line = encoded(envelope(1))
    pos = line.rfind(b',"crc":')
    crc = int(line[pos + 7 : -2])
    damaged = line[:pos] + b',"crc":%d}\n' % ((crc + 1) % 2**32)
    with pytest.raises(CodecError, match="checksum mismatch"):
        decode_line(damaged)


def test_valid_crc_over_a_non_record_is_refused() -> None:
    """A line with a correct CRC but not a record is refused with a reason."""
    body = b'{"hello":"world"'
    line = body + b',"crc":%d}\n' % crc32c.crc32c(body)
    with pytest.raises(CodecError, match="not a valid record"):
        decode_line(line)


def test_encode_into_appends_to_a_reused_buffer() -> None:
    """encode_into appends at the end of the buffer and returns the line's length."""
    buf = bytearray(b"prefix\n")
    n1 = encode_into(envelope(1), 0, 1, 0, buf)
    n2 = encode_into(envelope(2), 1, 2, 0, buf)
    assert len(buf) == 7 + n1 + n2
    lines = bytes(buf).splitlines(keepends=True)
    assert [decode_line(x).gseq for x in lines[1:]] == [1, 2]
