"""The record codec: one stored record per line, with a CRC-32 of the line.

A stored line is the envelope's JSON object with the log's fields appended, then a
checksum member covering every byte before it (DESIGN §5)::

    {"id":"md:1",...,"payload":{...},"offset":0,"gseq":1,"ts_log":1700000000000000000,"crc":123456789}\\n

``crc`` is the CRC-32C (Castagnoli polynomial 0x1EDC6F41, RFC 3720 §B.4; the
checksum of Kafka's record batches and of ext4) of the bytes from the opening ``{`` up
to, not including, ``,"crc":``, as an unsigned decimal integer. CRC-32C is computed in
hardware on x86-64 (SSE 4.2) and ARMv8, which on this machine halves its cost against
zlib's CRC-32; ``crc32c("123456789") == 0xE3069283`` is the standard check value. The envelope part is encoded by
msgspec in the field order of :class:`~tickertape.schemas.Envelope`, so the same
envelope always yields the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice

import crc32c
import msgspec

from tickertape.schemas.envelope import Envelope, Record, StoredRecord, unstamp

_ENCODER = msgspec.json.Encoder()
_encode_into = _ENCODER.encode_into
_crc32c = crc32c.crc32c
_RECORD_DECODER = msgspec.json.Decoder(StoredRecord)
_CRC_TAG = b',"crc":'
_JSON_SPACE = frozenset(b" \t\r\n")


class CodecError(ValueError):
    """A line is not a valid record; ``reason`` says why (used by readers and recovery)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def ts_log_suffix(ts_log: int) -> bytes:
    """The encoded ``ts_log`` member, computed once per group (for :func:`encode_batch`)."""
    return b',"ts_log":%d' % ts_log


def encode_into(
    envelope: Envelope, offset: int, gseq: int, ts_log: int | bytes, buffer: bytearray
) -> int:
    """Append the stored line of ``envelope`` to ``buffer``; return the line's length.

    Args:
        envelope: the producer's envelope.
        offset, gseq: the log's positions.
        ts_log: append time in ns, or its :func:`ts_log_suffix` (faster in a loop).
        buffer: a reused buffer; the line is appended at its end.
    """
    start = len(buffer)
    _encode_into(envelope, buffer, start)
    # The closing brace gives way to the log fields, then the checksum of all before it
    # (del + += is cheaper here than a slice assignment).
    end = len(buffer) - 1
    del buffer[end]
    suffix = ts_log if isinstance(ts_log, bytes) else ts_log_suffix(ts_log)
    buffer += b',"offset":%d,"gseq":%d%b' % (offset, gseq, suffix)
    line = buffer[start:]
    # The payload, the envelope's last member, is stored verbatim (msgspec.Raw) and ends
    # just before the closing brace.
    if (
        line.find(b"\n") >= 0
        or buffer[end - 1] in _JSON_SPACE
        or buffer[end - len(envelope.payload)] in _JSON_SPACE
    ):
        del buffer[start:]
        _encode_clean(envelope, buffer, start)
        del buffer[-1]
        buffer += b',"offset":%d,"gseq":%d%b' % (offset, gseq, suffix)
        line = buffer[start:]
    buffer += b',"crc":%d}\n' % _crc32c(line)
    return len(buffer) - start


def encode_batch(
    envelopes: Sequence[Envelope],
    first_offset: int,
    gseqs: Sequence[int],
    ts_log: bytes,
    buffer: bytearray,
    marks: Sequence[int] = (),
) -> list[int]:
    """Append the stored lines of a topic's records to ``buffer``, as :func:`encode_into`
    would one by one (the same bytes), at less cost per record.

    Each envelope is encoded into one reused scratch buffer, where the closing brace
    gives way to the log fields; its CRC is taken there, and it is copied to ``buffer``
    followed by the ``crc`` member (no slice of ``buffer`` copied for the CRC, no fresh
    buffer per record).

    Args:
        envelopes: the records' envelopes, in offset order.
        first_offset: the offset of the first; the others follow, contiguous.
        gseqs: the gseq of each record (same length as ``envelopes``).
        ts_log: the encoded ``ts_log`` member (:func:`ts_log_suffix`).
        buffer: the lines are appended at its end.
        marks: indices (into ``envelopes``, increasing) of records whose position is
            wanted (the sparse index's entries).

    Returns:
        The byte position in ``buffer`` of the line of each record of ``marks``.
    """
    scratch = bytearray()
    encode = _encode_into
    crc = _crc32c
    space = _JSON_SPACE
    offset = first_offset
    positions: list[int] = []
    if marks:
        bounds: Sequence[int] = [*marks, len(envelopes)]
        parts: Iterable[tuple[Iterable[Envelope], Iterable[int]]] = (
            (islice(envelopes, a, b), islice(gseqs, a, b))
            for a, b in zip([0, *marks], bounds, strict=True)
        )
    else:
        bounds = (len(envelopes),)
        parts = ((envelopes, gseqs),)
    for (records, record_gseqs), stop in zip(parts, bounds, strict=True):
        for envelope, gseq in zip(records, record_gseqs, strict=True):
            encode(envelope, scratch)
            end = len(scratch) - 1
            # The payload (the last member, stored verbatim) may not hold a line break
            # or surrounding whitespace (see _encode_clean).
            if (
                scratch.find(b"\n") >= 0
                or scratch[end - 1] in space
                or scratch[end - len(envelope.payload)] in space
            ):
                _encode_clean(envelope, scratch, 0)
            del scratch[-1]
            scratch += b',"offset":%d,"gseq":%d%b' % (offset, gseq, ts_log)
            buffer += scratch
            buffer += b',"crc":%d}\n' % crc(scratch)
            offset += 1
        if stop < len(envelopes):
            positions.append(len(buffer))
    return positions


def _encode_clean(envelope: Envelope, buffer: bytearray, start: int) -> None:
    """Encode an envelope whose raw payload has surrounding whitespace or line breaks.

    Stored payloads carry no surrounding whitespace, so the wire form of a record
    (decoded and re-encoded) is byte-identical to its stored line; line breaks (only
    possible as whitespace between JSON tokens: strings escape them) would split the
    line, so they are dropped.
    """
    payload = bytes(envelope.payload).strip(b" \t\r\n").replace(b"\n", b"")
    _encode_into(msgspec.structs.replace(envelope, payload=msgspec.Raw(payload)), buffer, start)


def encode_record(record: Record) -> bytes:
    """Return the stored line of an already stamped record (the same bytes as :func:`encode_into`)."""
    buffer = bytearray()
    encode_into(unstamp(record), record.offset, record.gseq, record.ts_log, buffer)
    return bytes(buffer)


def decode_line(line: bytes) -> Record:
    """Decode one stored line into a :class:`Record`, checking its CRC.

    The line may end with its newline or not; a line cut anywhere fails to parse.

    Raises:
        CodecError: torn, checksum mismatch, or not a valid record.
    """
    try:
        rec = _RECORD_DECODER.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        if not line.endswith((b"}\n", b"}")):
            raise CodecError("torn record (no closing brace and newline)") from None
        raise CodecError(f"not a valid record: {exc}") from None
    pos = line.rfind(_CRC_TAG)
    if pos < 0 or crc32c.crc32c(line[:pos]) != rec.crc:
        raise CodecError("checksum mismatch")
    return rec


def encode_wire(record: Record) -> bytes:
    """Encode a record as compact JSON without the crc member (the wire and ``--json``)."""
    data = _ENCODER.encode(record)
    if isinstance(record, StoredRecord):
        data = data[: data.rfind(_CRC_TAG)] + b"}"
    return data
