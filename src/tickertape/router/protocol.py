"""The router's wire protocol (DESIGN §6, docs/protocol.md): frames, codes, limits.

Pure: this module turns bytes into frame values and values into bytes; it owns no
socket, no file and no clock. Every frame is one JSON object in one WebSocket text
frame; its ``op`` member is the tag of a msgspec tagged union, decoded by ONE
pre-built decoder (:data:`CLIENT_FRAME_DECODER`) for everything a client may send.

Client → router: :class:`Hello`, :class:`Pub`, :class:`Sub`, :class:`Unsub`,
:class:`Fetch`, :class:`Ack`, :class:`Commit`, :class:`Stats`.

Router → client: :class:`Welcome`, :class:`PubAck`, :class:`Subscribed`,
``events`` (built by :func:`events_head` and :func:`events_frame` from encoded records),
:class:`CaughtUp`, :class:`Lagging`, :class:`FetchEnd`, :class:`Unsubscribed`,
:class:`Committed`, :class:`StatsReply`, :class:`Error`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec

from tickertape.errors import RouterError
from tickertape.schemas.envelope import Envelope, Record
from tickertape.schemas.system import Divergence

PROTOCOL_VERSION = 1
"""Announced in ``welcome``; bumped only on an incompatible change."""

DEFAULT_NAMESPACE = "main"

_NAMESPACE = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)?$")

Ref = str | int
"""A client-chosen request reference, echoed in every answer."""

_ENCODER = msgspec.json.Encoder()

Count = Annotated[int, msgspec.Meta(ge=0)]
Gseq = Annotated[int, msgspec.Meta(ge=1)]


class Code(StrEnum):
    """Stable error codes carried by ``error`` frames and per-event ``puback`` results.

    The codes never change meaning; new ones may be added. ``RETRYABLE`` lists the
    codes after which the same request may succeed later unchanged; ``FATAL`` the
    codes after which the router closes the connection.
    """

    BAD_JSON = "BAD_JSON"
    """The frame is not a JSON object (or not UTF-8 text)."""
    BAD_FRAME = "BAD_FRAME"
    """A member is missing, of the wrong type, or out of range."""
    UNKNOWN_OP = "UNKNOWN_OP"
    """``op`` is not one of the documented operations."""
    FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
    """The frame exceeds ``max_frame_bytes`` (the connection is closed, code 1009)."""
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    """A ``pub`` carries more than ``max_batch_events`` envelopes."""
    RATE_LIMITED = "RATE_LIMITED"
    """The connection exceeded its frame or event rate; retry after a pause."""
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    """A request came before a successful ``hello``."""
    AUTH_FAILED = "AUTH_FAILED"
    """Unknown identity or wrong token (the connection is closed)."""
    ALREADY_AUTHENTICATED = "ALREADY_AUTHENTICATED"
    """A second ``hello`` on the same connection."""
    FORBIDDEN = "FORBIDDEN"
    """The identity's ACL does not allow this topic, pattern or operation."""
    SOURCE_MISMATCH = "SOURCE_MISMATCH"
    """An envelope's ``source`` is not the authenticated identity."""
    SCHEMA_INVALID = "SCHEMA_INVALID"
    """An envelope or its payload failed validation."""
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    """The router knows no schema for the envelope's (``type``, ``v``)."""
    BAD_ID = "BAD_ID"
    """An envelope's ``id`` is not ``"{source}:{source_seq}"``."""
    INVALID_TOPIC = "INVALID_TOPIC"
    """A topic name is not valid (DESIGN §4)."""
    TOPIC_OWNED = "TOPIC_OWNED"
    """Another identity already writes this topic (single writer per topic)."""
    TS_REGRESSION = "TS_REGRESSION"
    """``ts_event`` is earlier than the last stored on its topic; the producer must halt."""
    DAY_SEALED = "DAY_SEALED"
    """``ts_event`` falls on a sealed day of its topic; appends must be later."""
    TOPIC_DAMAGED = "TOPIC_DAMAGED"
    """The topic's newest file is damaged past its last readable record: its next
    offset is unknown until the file is restored."""
    INVALID_ENVELOPE = "INVALID_ENVELOPE"
    """The log cannot store the envelope faithfully: ``ts_event``, ``ts_init`` or
    ``source_seq`` outside 0..2**63-1, or a string JSON cannot carry."""
    BATCH_REJECTED = "BATCH_REJECTED"
    """This envelope was valid but another one of its batch was not: nothing was stored."""
    BAD_PATTERN = "BAD_PATTERN"
    """A subscription pattern is invalid."""
    BAD_START = "BAD_START"
    """A subscription or fetch start position is invalid."""
    BAD_NAMESPACE = "BAD_NAMESPACE"
    """A namespace name is invalid."""
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
    """The connection already has ``max_subscriptions`` subscriptions."""
    DUPLICATE_SUBSCRIPTION = "DUPLICATE_SUBSCRIPTION"
    """A subscription with this ``ref`` is already open on the connection."""
    UNKNOWN_SUBSCRIPTION = "UNKNOWN_SUBSCRIPTION"
    """``unsub`` or ``ack`` names no open subscription."""
    STAGE_INCOMPLETE = "STAGE_INCOMPLETE"
    """A ``commit``'s expected counts differ from what is staged; nothing was appended."""
    STAGE_UNKNOWN = "STAGE_UNKNOWN"
    """A ``commit`` expects events under a stage this router holds nothing for (staged
    events live in router memory: after a router restart the stagers must publish them
    again); nothing was appended."""
    LOG_UNAVAILABLE = "LOG_UNAVAILABLE"
    """The event log is unreachable or restarting; nothing was acknowledged."""
    DISK_FULL = "DISK_FULL"
    """The log has no space left; nothing of the batch was stored."""
    LOG_CORRUPT = "LOG_CORRUPT"
    """Reading the history hit a damaged record (the message names the file, the byte
    position and the offset): the subscription or fetch ends there; ``tape verify``
    reports the damage."""
    INTERNAL = "INTERNAL"
    """An unexpected router failure; reported and logged, the connection stays open."""


RETRYABLE: frozenset[str] = frozenset(
    {
        Code.RATE_LIMITED,
        Code.STAGE_INCOMPLETE,
        Code.STAGE_UNKNOWN,
        Code.LOG_UNAVAILABLE,
        Code.DISK_FULL,
        Code.INTERNAL,
    }
)
FATAL: frozenset[str] = frozenset({Code.AUTH_FAILED, Code.FRAME_TOO_LARGE})


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-connection limits, announced in ``welcome`` (defaults in docs/protocol.md).

    Attributes:
        max_frame_bytes: largest frame a client may send, bytes (8 MiB).
        max_batch_events: most envelopes in one ``pub`` (10 000).
        max_subscriptions: most open subscriptions (and fetches) per connection (64).
        max_frames_per_s: sustained frames per second per connection (5 000), with a
            burst of twice that (token bucket).
        max_events_per_s: sustained envelopes published per second per connection
            (500 000), burst twice that.
        send_queue_frames: frames buffered towards one client before its live feed
            is switched to reading the log (64).
        send_queue_bytes: bytes buffered towards one client, same effect (16 MiB).
        max_inflight_pubs: ``pub`` batches of one connection awaiting the log (32);
            the router stops reading that connection's frames beyond that.
        max_inflight_bytes: bytes of those batches' frames, as received (32 MiB); the
            router stops reading beyond that too, but always takes one batch when none
            is in flight, so a frame up to ``max_frame_bytes`` passes.
        events_per_frame: most events the router puts in one ``events`` frame (1 000).
        hello_timeout_s: seconds a new connection has to send ``hello`` (10).
    """

    max_frame_bytes: int = 8 * 1024 * 1024
    max_batch_events: int = 10_000
    max_subscriptions: int = 64
    max_frames_per_s: float = 5_000.0
    max_events_per_s: float = 500_000.0
    send_queue_frames: int = 64
    send_queue_bytes: int = 16 * 1024 * 1024
    max_inflight_pubs: int = 32
    max_inflight_bytes: int = 32 * 1024 * 1024
    events_per_frame: int = 1_000
    hello_timeout_s: float = 10.0


# --------------------------------------------------------------------------- start


class StartAt(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A start position given as conditions that are ANDed together.

    Attributes:
        gseq: deliver events with ``gseq`` ≥ this (≥ 1).
        time: deliver events with ``ts_event`` ≥ this, ns. Per topic, ``ts_event``
            never decreases, so this is a suffix of each topic.
        offsets: per topic, deliver events with ``offset`` ≥ the given one; topics not
            listed start at offset 0.
    """

    gseq: Gseq | None = None
    time: Count | None = None
    offsets: dict[str, Count] | None = None


Start = Literal["now", "beginning"] | StartAt
"""Where a subscription or fetch starts: ``"now"`` (only events after the current
head), ``"beginning"`` (everything), or a :class:`StartAt` object."""


# --------------------------------------------------------------------------- client frames


class ClientFrame(msgspec.Struct, frozen=True, kw_only=True, tag_field="op"):
    """Base of every client → router frame; ``ref`` is echoed in every answer."""

    ref: Ref


class Hello(ClientFrame, tag="hello", frozen=True):
    """First frame: who is connecting.

    Attributes:
        identity: the identity to authenticate as (also the ``source`` of its events).
        token: the identity's token; may be omitted when the router has no token file.
        client: free text naming the client library and version, for logs.
    """

    identity: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    token: str | None = None
    client: str | None = None


class Pub(ClientFrame, tag="pub", frozen=True):
    """A batch of envelopes to append (or to stage, or to fan out ephemerally).

    Attributes:
        events: the envelopes, without log fields.
        ns: namespace; the router's default when None.
        stage: when set, hold the events under this stage id until ``commit``.
        ephemeral: when True, fan out to live subscribers only: never logged.
        ack: with False on an ephemeral batch, the router answers only a refusal (a
            ``puback`` naming the refused events); a delivered batch gets no answer.
            Ephemeral delivery is best effort either way; this saves a frame per batch
            for control messages that the receiver answers anyway (docs/protocol.md §8).
            Ignored for logged and staged batches, which are always answered.
    """

    events: list[Envelope]
    ns: str | None = None
    stage: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    ephemeral: bool = False
    ack: bool = True


class Sub(ClientFrame, tag="sub", frozen=True):
    """Open a subscription; its id is this frame's ``ref``.

    Attributes:
        patterns: NATS-style topic patterns.
        start: where to start (see :data:`Start`).
        ns: namespace; the router's default when None.
    """

    patterns: Annotated[list[str], msgspec.Meta(min_length=1, max_length=256)]
    start: Start = "now"
    ns: str | None = None


class Unsub(ClientFrame, tag="unsub", frozen=True):
    """Close the subscription opened by the ``sub`` whose ref was ``sub``."""

    sub: Ref


class Fetch(ClientFrame, tag="fetch", frozen=True):
    """Stream a bounded range of history, then ``fetch_end``.

    Attributes:
        patterns: topic patterns.
        start: where to start; ``"now"`` yields nothing.
        to_gseq: last gseq included; the head at the time of the request when None.
        limit: most events to send; unbounded when None.
        ns: namespace.
    """

    patterns: Annotated[list[str], msgspec.Meta(min_length=1, max_length=256)]
    start: Start = "beginning"
    to_gseq: Gseq | None = None
    limit: Count | None = None
    ns: str | None = None


class Ack(ClientFrame, tag="ack", frozen=True):
    """Progress report: the client fully processed subscription ``sub`` up to ``gseq``."""

    sub: Ref
    gseq: Count


class Commit(ClientFrame, tag="commit", frozen=True):
    """Append every event staged under ``stage`` as one batch (distributed replay).

    Attributes:
        stage: the stage id used in the ``pub`` frames.
        expect: per source, how many distinct events must be staged.
        ts_log: the ``ts_log`` stamped on every record, ns (the simulated time).
        ns: namespace.
    """

    stage: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    expect: dict[str, Count]
    ts_log: Count
    ns: str | None = None


class Stats(ClientFrame, tag="stats", frozen=True):
    """Ask for the router's health snapshot (answered by ``stats``)."""


ClientFrameT = Hello | Pub | Sub | Unsub | Fetch | Ack | Commit | Stats

CLIENT_FRAME_DECODER: msgspec.json.Decoder[ClientFrameT] = msgspec.json.Decoder(ClientFrameT)
"""The one decoder for every client → router frame."""


class _RefOnly(msgspec.Struct):
    ref: Any = None  # checked after: a ref of the wrong type is a BAD_FRAME, not BAD_JSON
    op: Any = None


_REF_DECODER = msgspec.json.Decoder(_RefOnly)
_OPS = frozenset({"hello", "pub", "sub", "unsub", "fetch", "ack", "commit", "stats"})


class FrameError(RouterError):
    """A client frame could not be decoded (raised by :func:`decode_client_frame`).

    Attributes:
        code: :attr:`Code.BAD_JSON`, :attr:`Code.UNKNOWN_OP`, :attr:`Code.BAD_FRAME` or
            :attr:`Code.SCHEMA_INVALID` (an envelope of a ``pub`` is invalid).
        ref: the frame's ``ref`` as text, when it could be read.
        frame_ref: the frame's ``ref`` with its JSON type, so the error can answer it.
    """

    def __init__(self, code: str, message: str, ref: Ref | None = None) -> None:
        super().__init__(code, message, None if ref is None else str(ref))
        self.frame_ref = ref


def decode_client_frame(data: bytes | str) -> ClientFrameT:
    """Decode one client frame.

    Args:
        data: the WebSocket message (text or binary), a JSON object.

    Returns:
        The frame value.

    Raises:
        FrameError: not JSON, unknown ``op``, or a member missing or of the wrong type;
            the message carries msgspec's field path (``$.events[3].ts_event``).
    """
    try:
        return CLIENT_FRAME_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        ref: Ref | None = None
        op: Any = None
        try:
            head = _REF_DECODER.decode(data)
        except msgspec.DecodeError:
            raise FrameError(Code.BAD_JSON, f"frame is not a JSON object: {exc}") from None
        ref, op = head.ref, head.op
        if ref is not None and (not isinstance(ref, str | int) or isinstance(ref, bool)):
            raise FrameError(
                Code.BAD_FRAME, f"ref must be a string or an integer, not {ref!r} - at `$.ref`"
            ) from None
        if not isinstance(op, str) or op not in _OPS:
            raise FrameError(Code.UNKNOWN_OP, f"unknown op {op!r}", ref) from None
        message = str(exc)
        code = Code.SCHEMA_INVALID if "$.events[" in message else Code.BAD_FRAME
        raise FrameError(code, message, ref) from None


# --------------------------------------------------------------------------- router frames


class ServerFrame(msgspec.Struct, frozen=True, kw_only=True, tag_field="op"):
    """Base of every router → client frame."""


class Welcome(ServerFrame, tag="welcome", frozen=True):
    """Answer to ``hello``: session parameters.

    Attributes:
        ref: the ``hello``'s ref.
        session: a router-chosen id of this connection, for logs.
        identity: the authenticated identity.
        namespace: the default namespace of this router.
        server_time_ns: the router's wall clock, ns since the epoch.
        head_gseq: the last gseq of the default namespace known to the router.
        version: :data:`PROTOCOL_VERSION`.
        limits: this connection's :class:`Limits`.
        boot: an id of the router process, new at each start: when it changes between
            two connections, events staged before were lost (see ``STAGE_UNKNOWN``).
    """

    ref: Ref
    session: str
    identity: str
    namespace: str
    server_time_ns: int
    head_gseq: int
    version: int
    limits: Limits
    boot: str = ""


class AckItem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The result of one envelope of a ``pub`` (in the batch's order).

    Attributes:
        id: the envelope's id.
        offset: its offset in its topic (None when not stored).
        gseq: its gseq (None when not stored).
        duplicate: True when the log already had this (source, source_seq); offset and
            gseq are then the stored ones.
        staged: True when the event is held for a ``commit``.
        error: an error :class:`Code`, or None when accepted.
        message: what was wrong, for humans.
    """

    id: str
    offset: int | None = None
    gseq: int | None = None
    duplicate: bool = False
    staged: bool = False
    error: str | None = None
    message: str | None = None


class StoredAck(msgspec.Struct, frozen=True, gc=False):
    """The result of an envelope that was stored: encodes as ``AckItem(id, offset, gseq)``.

    The router's fast path for the common answer (no object per optional field).
    """

    id: str
    offset: int
    gseq: int


class PubAck(ServerFrame, tag="puback", frozen=True):
    """Answer to ``pub``: one :class:`AckItem` per envelope, in order."""

    ref: Ref
    results: list[AckItem]


def encode_puback(ref: Ref, results: Sequence[AckItem | StoredAck]) -> bytes:
    """Encode a ``puback`` frame (the bytes of ``PubAck(ref, results)``)."""
    return b"".join(
        (
            b'{"op":"puback","ref":',
            _ENCODER.encode(ref),
            b',"results":',
            _ENCODER.encode(results),
            b"}",
        )
    )


class Subscribed(ServerFrame, tag="subscribed", frozen=True):
    """Answer to ``sub``: the subscription is open.

    Attributes:
        ref: the ``sub``'s ref (the subscription id).
        ns: its namespace.
        from_gseq: the first gseq it may deliver (head + 1 for ``"now"``).
        head_gseq: the namespace's head when it was opened.
    """

    ref: Ref
    ns: str
    from_gseq: int
    head_gseq: int


class CaughtUp(ServerFrame, tag="caught_up", frozen=True):
    """Every matching event up to ``gseq`` was delivered; what follows is live."""

    sub: Ref
    gseq: int


class Lagging(ServerFrame, tag="lagging", frozen=True):
    """The client fell behind: the subscription now reads the log from after ``gseq``."""

    sub: Ref
    gseq: int


class FetchEnd(ServerFrame, tag="fetch_end", frozen=True):
    """A fetch is complete: ``count`` events were sent, the last at ``last_gseq``."""

    ref: Ref
    count: int
    last_gseq: int


class Unsubscribed(ServerFrame, tag="unsubscribed", frozen=True):
    """Answer to ``unsub``."""

    ref: Ref
    sub: Ref


class Committed(ServerFrame, tag="committed", frozen=True, omit_defaults=True):
    """Answer to ``commit``: positions of the committed batch (0 and 0 when empty).

    Attributes:
        divergences: staged events the log already held under their (``source``,
            ``source_seq``) but with other content (payload, topic, times, ids of
            cause: :func:`~tickertape.schemas.system.compare`), in the log's order;
            the stored ones stay. Empty (and left out of the frame) when every
            duplicate matched or there was none.
    """

    ref: Ref
    stage: str
    first_gseq: int
    last_gseq: int
    count: int
    divergences: list[Divergence] = msgspec.field(default_factory=list)


class StatsReply(ServerFrame, tag="stats", frozen=True):
    """Answer to ``stats``: the router's health snapshot (the ``system.health`` payload)."""

    ref: Ref
    health: dict[str, Any]


class Error(ServerFrame, tag="error", frozen=True):
    """An error answering ``ref`` (None when the frame's ref could not be read).

    Attributes:
        code: a :class:`Code`.
        message: what was wrong and what to do.
        retryable: the same request may succeed later.
        fatal: the router closes the connection after this frame.
    """

    ref: Ref | None
    code: str
    message: str
    retryable: bool = False
    fatal: bool = False


def error_frame(code: Code | str, message: str, ref: Ref | None) -> Error:
    """Build an :class:`Error` with ``retryable`` and ``fatal`` set from the code."""
    return Error(
        ref=ref,
        code=str(code),
        message=message,
        retryable=code in RETRYABLE,
        fatal=code in FATAL,
    )


ServerFrameT = (
    Welcome
    | PubAck
    | Subscribed
    | CaughtUp
    | Lagging
    | FetchEnd
    | Unsubscribed
    | Committed
    | StatsReply
    | Error
)


def encode_frame(frame: ServerFrame | ClientFrame) -> bytes:
    """Encode any frame to its JSON bytes."""
    return _ENCODER.encode(frame)


def events_head(sub: Ref, *, ephemeral: bool = False) -> bytes:
    """The start of an ``events`` frame up to its array: ``{"op":"events","sub":<sub>,"events":``.

    The router builds it once per subscription and batch, and shares the array of
    records (:func:`events_frame`) between every subscription that takes it.
    """
    head = b'{"op":"events","sub":' + _ENCODER.encode(sub)
    if ephemeral:
        head += b',"ephemeral":true'
    return head + b',"events":'


EVENTS_TAIL = b"}"
"""What closes an ``events`` frame after its array: head + body + tail is the frame."""


def events_frame(head: bytes, body: bytes) -> bytes:
    """A whole ``events`` frame from :func:`events_head` and a JSON array of records."""
    return b"".join((head, body, EVENTS_TAIL))


def text_frame_header(length: int) -> bytes:
    """The header of an unmasked, unfragmented WebSocket text frame of ``length`` bytes.

    RFC 6455 §5.2: FIN set, opcode 1 (text), no mask (a server's frames are never
    masked), then the payload length in 7 bits, or 126 and 16 bits, or 127 and 64
    bits, big-endian. The header followed by the payload is the frame, with no
    extension negotiated (the router writes ``events`` frames this way: the shared
    body is not re-encoded per connection, only joined once into the transport's
    write on Python 3.11, not even copied on 3.12+).

    Raises:
        ValueError: ``length`` is negative or does not fit in 63 bits.
    """
    if length < 0 or length >= 1 << 63:
        raise ValueError(f"a frame payload of {length} bytes cannot be encoded")
    if length < 126:
        return bytes((0x81, length))
    if length < 1 << 16:
        return _HEADER_16.pack(0x81, 126, length)
    return _HEADER_64.pack(0x81, 127, length)


_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def encode_events_frame(
    sub: Ref, encoded_events: Sequence[bytes], *, ephemeral: bool = False
) -> bytes:
    """Build an ``events`` frame from records already encoded as JSON objects.

    Args:
        sub: the subscription (or fetch) ref.
        encoded_events: the events' JSON objects, in gseq order.
        ephemeral: True for ephemeral envelopes (no offset, gseq or ts_log).

    Returns:
        ``{"op":"events","sub":<sub>,"events":[...]}`` (plus ``"ephemeral":true``).
    """
    return events_frame(
        events_head(sub, ephemeral=ephemeral), b"[" + b",".join(encoded_events) + b"]"
    )


class EventsFrame(msgspec.Struct, frozen=True, kw_only=True, tag="events", tag_field="op"):
    """An ``events`` frame as a client decodes it (events kept as raw JSON).

    Decode each event with :data:`RECORD_DECODER` (or as an :class:`Envelope` when
    ``ephemeral``); :data:`RECORDS_FRAME_DECODER` decodes a frame of records at once.
    """

    sub: Ref
    events: list[msgspec.Raw]
    ephemeral: bool = False


class RecordsFrame(msgspec.Struct, frozen=True, kw_only=True, tag="events", tag_field="op"):
    """An ``events`` frame of records (not ephemeral), decoded in one call.

    Decoding an ephemeral ``events`` frame with it fails (its envelopes lack the log
    fields): decode those with :data:`SERVER_FRAME_DECODER`.
    """

    sub: Ref
    events: list[Record]
    ephemeral: bool = False


RECORDS_FRAME_DECODER: msgspec.json.Decoder[RecordsFrame] = msgspec.json.Decoder(RecordsFrame)
"""Decodes an ``events`` frame and all its records at once (the client's hot path)."""

RECORD_DECODER: msgspec.json.Decoder[Record] = msgspec.json.Decoder(Record)
"""Decodes one record (an element of an ``events`` frame)."""

SERVER_FRAME_DECODER: msgspec.json.Decoder[ServerFrameT | EventsFrame] = msgspec.json.Decoder(
    ServerFrameT | EventsFrame
)
"""The one decoder for every router → client frame (used by :mod:`tickertape.client`)."""


def validate_namespace(ns: str) -> str | None:
    """Return None when ``ns`` is a valid namespace name, else what is wrong.

    Valid: one or two ``/``-separated tokens of ``[A-Za-z0-9_-]`` (``main``,
    ``runs/2024-01-01-sma``), at most 128 characters.
    """
    if len(ns) > 128:
        return "namespace is longer than 128 characters"
    if not _NAMESPACE.match(ns):
        return f"namespace {ns!r} must be tokens of letters, digits, _ and -, with at most one /"
    return None
