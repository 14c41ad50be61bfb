"""The project's exception tree.

Every error raised on purpose by tickertape derives from :class:`TickertapeError`.
Errors carry structured fields (topic, offset, path, byte position) and build their
own message from them, so the message and the fields never disagree.

.. code-block:: text

    TickertapeError
    ├── ConfigError                 a configuration file or option is invalid
    ├── SchemaError                 an envelope or payload failed validation
    │   └── UnknownTypeError        (type, v) is not known to this reader
    ├── LogError                    the event log refused or failed
    │   ├── TimestampRegressionError    ts_event went backwards on a topic
    │   ├── CorruptRecordError          a stored record failed its checksum or parse
    │   ├── LogClosedError              the log was closed or has failed
    │   ├── LogFatalError               an fsync or write failed; the process must exit
    │   ├── DiskFullError               no space left: the append was refused
    │   └── PositionError               a read position is out of range
    ├── RouterError                 the router answered with an error frame
    │   └── ProtocolError           a frame is malformed or not allowed
    ├── AuthError                   authentication or authorization failed
    ├── ClockError                  a clock or timer rule was broken
    ├── BiasError                   look-ahead, backwards time or zero latency
    ├── SnapshotError               a snapshot is corrupt or of another version
    ├── ImportDataError             a historical data row or file is invalid
    ├── RiskError                   a risk rule or configuration problem
    └── OrderError                  an order lifecycle rule was broken
"""

from __future__ import annotations

from pathlib import Path


class TickertapeError(Exception):
    """Root of every error raised on purpose by tickertape."""


class ConfigError(TickertapeError):
    """A configuration file or command-line option is invalid.

    Attributes:
        path: the file that holds the bad value, or None for an option.
        detail: what was wrong and where (a field path when known).
    """

    def __init__(self, detail: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.detail = detail
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{detail}")


class SchemaError(TickertapeError):
    """An envelope or payload failed validation.

    Attributes:
        type: the envelope's ``type`` when known.
        v: the envelope's ``v`` when known.
        detail: msgspec's message, which names the field path and what was expected.
    """

    def __init__(self, detail: str, type: str | None = None, v: int | None = None) -> None:
        self.type = type
        self.v = v
        self.detail = detail
        what = f"{type} v{v}: " if type is not None else ""
        super().__init__(f"{what}{detail}")


class UnknownTypeError(SchemaError):
    """The (``type``, ``v``) pair has no schema in this reader (readers skip it)."""

    def __init__(self, type: str, v: int) -> None:
        super().__init__("unknown type or newer version than this reader knows", type, v)


class LogError(TickertapeError):
    """The event log refused an operation or failed."""


class TimestampRegressionError(LogError):
    """An append's ``ts_event`` is earlier than the last one stored on its topic.

    The producer must halt: per-topic time never goes backwards.
    """

    def __init__(self, topic: str, last_ts_event: int, new_ts_event: int, id: str) -> None:
        self.topic = topic
        self.last_ts_event = last_ts_event
        self.new_ts_event = new_ts_event
        self.id = id
        super().__init__(
            f"ts_event regression on topic {topic!r}: event {id!r} has ts_event "
            f"{new_ts_event} < last stored {last_ts_event}"
        )


class CorruptRecordError(LogError):
    """A stored record failed its checksum, did not parse, or broke an invariant.

    Attributes:
        path: the file.
        position: byte position of the start of the bad record in the (uncompressed) file.
        offset: the topic offset expected at that position, when known.
        reason: what is wrong.
    """

    def __init__(self, path: str | Path, position: int, offset: int | None, reason: str) -> None:
        self.path = str(path)
        self.position = position
        self.offset = offset
        self.reason = reason
        at = f", offset {offset}" if offset is not None else ""
        super().__init__(f"corrupt record in {self.path} at byte {position}{at}: {reason}")


class LogClosedError(LogError):
    """The log is closed, or failed earlier and refuses further work."""


class LogFatalError(LogError):
    """A write or fsync failed: durability can no longer be promised.

    The process hosting the log must exit; recovery on the next open decides
    what is valid.
    """

    def __init__(self, path: str | Path, cause: OSError) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"fatal I/O error on {self.path}: {cause.strerror or cause}")


class DiskFullError(LogError):
    """No space left on the device (or the file size limit was reached).

    Nothing of the refused batch is stored: the file was truncated back to its
    last durable length. The producer keeps the events and retries later.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(f"no space left to append to {self.path}; nothing of the batch was stored")


class PositionError(LogError):
    """A read position (offset, gseq, time) is out of range or malformed."""


class RouterError(TickertapeError):
    """The router answered a request with an ``error`` frame.

    Attributes:
        code: the stable error code (see docs/protocol.md).
        ref: the ``ref`` of the request it answers, when any.
    """

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        self.code = code
        self.ref = ref
        self.message = message
        super().__init__(f"[{code}] {message}" + (f" (ref {ref})" if ref else ""))


class ProtocolError(RouterError):
    """A frame is malformed, of an unknown op, or not allowed in this state."""


class AuthError(TickertapeError):
    """Authentication or authorization failed."""


class ClockError(TickertapeError):
    """A clock rule was broken (time going backwards, a bad timer)."""


class BiasError(TickertapeError):
    """A backtest bias was detected: look-ahead, backwards time, zero latency.

    Always a hard error, never a warning.
    """


class SnapshotError(TickertapeError):
    """A snapshot is corrupt, truncated or of another state version."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"snapshot {self.path}: {reason}")


class ImportDataError(TickertapeError):
    """A historical data row or file is invalid.

    Attributes:
        path: the file.
        line: 1-based line number, when the problem is one row.
        reason: what is wrong.
    """

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        at = f":{line}" if line is not None else ""
        super().__init__(f"{self.path}{at}: {reason}")


class RiskError(TickertapeError):
    """A risk rule or risk configuration problem."""


class OrderError(TickertapeError):
    """An order lifecycle rule was broken (unknown order, illegal transition)."""
