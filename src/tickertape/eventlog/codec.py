"""The record codec: one stored record per line, with a CRC-32 of the line.

A stored line is the envelope's JSON object with the log's fields appended, then a
checksum member covering every byte before it (DESIGN §5)::

    {"id":"md:1",...,"payload":{...},"offset":0,"gseq":1,"ts_log":1700000000000000000,"crc":123456789}\\n

``crc`` is zlib's CRC-32 (ISO-HDLC polynomial, as in gzip and PNG) of the bytes from
the opening ``{`` up to, not including, ``,"crc":``. The envelope part is encoded by
msgspec in the field order of :class:`~tickertape.schemas.Envelope`, so the same
envelope always yields the same bytes.
"""

from __future__ import annotations

import zlib

import msgspec

from tickertape.schemas.envelope import Envelope, Record

_ENCODER = msgspec.json.Encoder()
_RECORD_DECODER = msgspec.json.Decoder(Record)
_CRC_TAG = b',"crc":'


class CodecError(ValueError):
    """A line is not a valid record; ``reason`` says why (used by readers and recovery)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def encode_into(envelope: Envelope, offset: int, gseq: int, ts_log: int, buffer: bytearray) -> int:
    """Append the stored line of ``envelope`` to ``buffer``; return the line's length.

    Args:
        envelope: the producer's envelope.
        offset, gseq, ts_log: the log's fields (ts_log in ns).
        buffer: a reused buffer; the line is appended at its end.
    """
    start = len(buffer)
    _ENCODER.encode_into(envelope, buffer, start)
    if buffer.find(b"\n", start) >= 0 or buffer.find(b"\r", start) >= 0:
        # A raw payload with line breaks (only possible as whitespace between JSON
        # tokens: strings escape them) would split the line: drop them.
        del buffer[start:]
        payload = bytes(envelope.payload).replace(b"\n", b"").replace(b"\r", b"")
        _ENCODER.encode_into(
            msgspec.structs.replace(envelope, payload=msgspec.Raw(payload)), buffer, start
        )
    del buffer[-1]  # the closing brace: the log fields follow
    buffer += b',"offset":%d,"gseq":%d,"ts_log":%d' % (offset, gseq, ts_log)
    crc = zlib.crc32(memoryview(buffer)[start:])
    buffer += b',"crc":%d}\n' % crc
    return len(buffer) - start


def encode_record(record: Record) -> bytes:
    """Return the stored line of an already stamped record (tests and sealing)."""
    buffer = bytearray()
    body = _ENCODER.encode(record)
    buffer += body[:-1]
    crc = zlib.crc32(buffer)
    buffer += b',"crc":%d}\n' % crc
    return bytes(buffer)


def check_line(line: bytes) -> None:
    """Verify a line's framing and checksum without decoding it.

    Raises:
        CodecError: no trailing newline (torn), no checksum, or checksum mismatch.
    """
    if not line.endswith(b"}\n"):
        raise CodecError("torn record (no closing brace and newline)")
    end = len(line) - 2
    pos = line.rfind(_CRC_TAG, 0, end)
    if pos < 0:
        raise CodecError("no crc member")
    try:
        stored = int(line[pos + len(_CRC_TAG) : end])
    except ValueError:
        raise CodecError("crc member is not an integer") from None
    if zlib.crc32(memoryview(line)[:pos]) != stored:
        raise CodecError("checksum mismatch")


def decode_line(line: bytes) -> Record:
    """Decode one stored line (with its newline) into a :class:`Record`, checking its CRC.

    Raises:
        CodecError: torn, checksum mismatch, or not a valid record.
    """
    check_line(line)
    try:
        return _RECORD_DECODER.decode(line)
    except msgspec.DecodeError as exc:
        raise CodecError(f"not a valid record: {exc}") from None


def decode_trusted(line: bytes) -> Record:
    """Decode a line without the CRC check (only for bytes just verified)."""
    return _RECORD_DECODER.decode(line)


def encode_wire(record: Record) -> bytes:
    """Encode a record as compact JSON without the crc (for the wire and ``--json``)."""
    return _ENCODER.encode(record)
