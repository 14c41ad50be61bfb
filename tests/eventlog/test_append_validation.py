"""Envelopes the log cannot store faithfully are refused one by one, before any position
is given: nothing stored is lost or changed, and the rest of the batch is stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from tickertape.errors import LogClosedError, LogError
from tickertape.eventlog import AsyncEventLog, EventLog, LogReader

from .envelopes import envelope


def stored(data_dir: Path) -> list[tuple[int, int, str]]:
    """(gseq, offset, id) of every record, in gseq order."""
    return [(r.gseq, r.offset, r.id) for r in LogReader(data_dir).read()]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (envelope(2, payload=msgspec.Raw(b'{"price":')), "payload is not one JSON value"),
        (envelope(2, payload=msgspec.Raw(b"")), "payload is not one JSON value"),
        (envelope(2, payload=msgspec.Raw(b'{"a":1} {"b":2}')), "payload is not one JSON value"),
        (envelope(2, ts_event=3 * 10**20), "ts_event 300000000000000000000 is outside"),
        (msgspec.structs.replace(envelope(2), ts_init=-1), "ts_init -1 is outside"),
        (msgspec.structs.replace(envelope(2), source_seq=1 << 63), "source_seq"),
        (msgspec.structs.replace(envelope(2), id="md:\ud800"), "cannot be encoded as JSON"),
        (msgspec.structs.replace(envelope(2), ts_event=1.7e18), "ts_event must be an integer"),
    ],
    ids=[
        "truncated",
        "empty",
        "two-values",
        "far-future",
        "negative",
        "seq-past-int64",
        "surrogate",
        "float",
    ],
)
def test_a_bad_envelope_is_refused_and_the_rest_of_the_batch_stored(
    tmp_path: Path, bad: object, reason: str
) -> None:
    """The bad envelope gets ``INVALID_ENVELOPE`` naming what is wrong; its neighbours
    take contiguous positions; reopened, the log holds exactly them, reads them
    without error, and the next append continues after them."""
    data_dir = tmp_path / "data"
    with EventLog.open(data_dir) as lg:
        first, refused, third = lg.append([envelope(1), bad, envelope(3)])  # type: ignore[list-item]
        assert refused.error == "INVALID_ENVELOPE"
        assert reason in (refused.message or "")
        assert (first.gseq, first.offset, third.gseq, third.offset) == (1, 0, 2, 1)
    with EventLog.open(data_dir) as lg:
        assert lg.recovery.dropped == []
        assert lg.recovery.corrupt == []
        (fourth,) = lg.append([envelope(4)])
        assert (fourth.gseq, fourth.offset) == (3, 2)
    assert stored(data_dir) == [(1, 0, "md:1"), (2, 1, "md:3"), (3, 2, "md:4")]


def test_payload_checks_can_be_left_to_a_caller_that_decoded_them(tmp_path: Path) -> None:
    """``check_payloads=False`` (payloads decoded from JSON or encoded by msgspec) skips
    the JSON check (a caller that passes bad bytes anyway has them stored); the
    integer bounds hold all the same."""
    with EventLog.open(tmp_path / "data", check_payloads=False) as lg:
        ok, far, unchecked = lg.append(
            [envelope(1), envelope(2, ts_event=1 << 63), envelope(3, payload=msgspec.Raw(b"{"))]
        )
    assert ok.error is None
    assert far.error == "INVALID_ENVELOPE"
    assert (unchecked.error, unchecked.gseq) == (None, 2)


async def test_an_unexpected_writer_error_answers_every_append_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the writer thread (here an append that raises RuntimeError) fails the
    appends waiting on it with a LogError naming it, and later ones with
    LogClosedError: none waits for ever."""
    alog = await AsyncEventLog.open(tmp_path / "data")
    (ok,) = await alog.append([envelope(1)])
    assert ok.gseq == 1

    def broken(*_args: object, **_kwargs: object) -> list[object]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(EventLog, "append", broken)
    with pytest.raises(LogError, match="RuntimeError: a bug"):
        await asyncio.wait_for(alog.append([envelope(2)]), 5)
    with pytest.raises(LogClosedError):
        await asyncio.wait_for(alog.append([envelope(3)]), 5)
    await asyncio.wait_for(alog.close(), 5)
    monkeypatch.undo()
    assert stored(tmp_path / "data") == [(1, 0, "md:1")]
