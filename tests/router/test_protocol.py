"""Tests for tickertape.router.protocol: frame decoding, error codes, encoding."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from tickertape.router.protocol import (
    SERVER_FRAME_DECODER,
    Code,
    EventsFrame,
    FrameError,
    Hello,
    Pub,
    StartAt,
    Sub,
    decode_client_frame,
    encode_events_frame,
    error_frame,
    text_frame_header,
    validate_namespace,
)
from tickertape.schemas.envelope import Record

from .support import trade


def test_decodes_each_op_with_one_decoder() -> None:
    """hello, pub and sub frames decode to their Structs."""
    hello = decode_client_frame(b'{"op":"hello","ref":1,"identity":"md","token":"t"}')
    assert hello == Hello(ref=1, identity="md", token="t")
    env = msgspec.json.encode(trade("md", 1)).decode()
    pub = decode_client_frame(f'{{"op":"pub","ref":"a","events":[{env}]}}')
    assert isinstance(pub, Pub)
    assert pub.events[0].source_seq == 1
    sub = decode_client_frame(b'{"op":"sub","ref":2,"patterns":["md.>"],"start":{"gseq":5}}')
    assert sub == Sub(ref=2, patterns=["md.>"], start=StartAt(gseq=5))


@pytest.mark.parametrize(
    ("data", "code", "ref"),
    [
        (b"not json", Code.BAD_JSON, None),
        (b"[1,2]", Code.BAD_JSON, None),
        (b'{"op":"nope","ref":3}', Code.UNKNOWN_OP, 3),
        (b'{"op":"sub","ref":4}', Code.BAD_FRAME, 4),
        (b'{"op":"sub","ref":"x","patterns":"md.>"}', Code.BAD_FRAME, "x"),
        (b'{"op":"pub","ref":5,"events":[{"id":"a"}]}', Code.SCHEMA_INVALID, 5),
        (b'{"op":"sub","ref":[1],"patterns":["md.>"]}', Code.BAD_FRAME, None),
        (b'{"op":"sub","ref":true,"patterns":["md.>"]}', Code.BAD_FRAME, None),
        (b'{"op":"sub","ref":1.5,"patterns":["md.>"]}', Code.BAD_FRAME, None),
    ],
)
def test_bad_frames_get_stable_codes_and_their_ref(data: bytes, code: Code, ref: object) -> None:
    """Malformed frames raise FrameError with a stable code and the frame's ref when readable."""
    with pytest.raises(FrameError) as info:
        decode_client_frame(data)
    assert info.value.code == code
    assert info.value.frame_ref == ref


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_frame_error(data: bytes) -> None:
    """Arbitrary bytes never raise anything but FrameError."""
    try:
        decode_client_frame(data)
    except FrameError as exc:
        code = exc.code
    else:
        code = Code.BAD_FRAME
    assert code in set(Code)


@given(
    st.dictionaries(
        st.sampled_from(["op", "ref", "patterns", "events", "identity", "start", "sub", "gseq"]),
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=10),
            st.lists(st.text(max_size=5), max_size=3),
            st.sampled_from(["hello", "pub", "sub", "unsub", "fetch", "ack", "commit", "stats"]),
        ),
    )
)
def test_fuzzed_objects_decode_or_raise_frame_error(obj: dict[str, object]) -> None:
    """JSON objects with plausible keys and random values decode or raise FrameError."""
    try:
        decode_client_frame(msgspec.json.encode(obj))
    except FrameError as exc:
        code = exc.code
    else:
        code = Code.BAD_FRAME
    assert code in set(Code)


def test_events_frame_round_trips() -> None:
    """An events frame built from pre-encoded records decodes back to the same records."""
    from tickertape.schemas import stamp

    records = [stamp(trade("md", i), i - 1, i, 7) for i in (1, 2)]
    data = encode_events_frame("s1", [msgspec.json.encode(r) for r in records])
    frame = SERVER_FRAME_DECODER.decode(data)
    assert isinstance(frame, EventsFrame)
    assert frame.sub == "s1"
    assert not frame.ephemeral
    decoded = [msgspec.json.decode(raw, type=Record) for raw in frame.events]
    assert [r.gseq for r in decoded] == [1, 2]
    assert decoded[0].payload == records[0].payload


def test_error_frame_flags_follow_the_code() -> None:
    """retryable and fatal are derived from the code."""
    assert error_frame(Code.LOG_UNAVAILABLE, "x", 1).retryable
    assert error_frame(Code.AUTH_FAILED, "x", 1).fatal
    assert not error_frame(Code.FORBIDDEN, "x", 1).retryable


@pytest.mark.parametrize(
    ("ns", "ok"),
    [
        ("main", True),
        ("runs/2024-01-01_sma", True),
        ("runs/a/b", False),
        ("", False),
        ("a b", False),
    ],
)
def test_namespace_names(ns: str, ok: bool) -> None:
    """Namespaces are one or two /-separated tokens of [A-Za-z0-9_-]."""
    assert (validate_namespace(ns) is None) is ok


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65_535, 65_536, 300_000])
def test_text_frame_header_is_the_rfc_6455_header(length: int) -> None:
    """text_frame_header + payload is the frame websockets itself serializes (unmasked text)."""
    payload = b"x" * length
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert text_frame_header(length) + payload == expected


def test_text_frame_header_refuses_impossible_lengths() -> None:
    """A negative length or one past 63 bits has no header."""
    for length in (-1, 1 << 63):
        with pytest.raises(ValueError, match="cannot be encoded"):
            text_frame_header(length)
