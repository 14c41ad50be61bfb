"""Records a host cannot decode are skipped and logged, never delivered and never fatal."""

from __future__ import annotations

import msgspec

from tests.actors.runtime.logs import captured_host_logs
from tests.actors.runtime.sample_actors import MeanActor, trade_envelopes
from tickertape.actors.runtime.remote import HostedActor
from tickertape.schemas.envelope import Record, stamp
from tickertape.timeauthority.clock import SimulatedClock


def records() -> list[Record]:
    good = [stamp(e, i, i + 1, 1) for i, e in enumerate(trade_envelopes(3))]
    unknown = msgspec.structs.replace(good[0], id="x:1", gseq=10, type="md.future_thing")
    newer = msgspec.structs.replace(good[0], id="x:2", gseq=11, v=99)
    invalid = msgspec.structs.replace(
        good[0], id="x:3", gseq=12, payload=msgspec.Raw(b'{"symbol": 5}')
    )
    return [unknown, good[0], newer, unknown, invalid, good[1], invalid, good[2]]


def test_undecodable_records_are_skipped_and_logged() -> None:
    clock = SimulatedClock(2_000_000_000_000_000_000)
    hosted = HostedActor(MeanActor(), "indicators", clock)
    with captured_host_logs() as logs:
        delivered = hosted.deliver(records())
    assert delivered == 3  # the three valid trades, in order, the rest skipped
    events = [(e["event"], e.get("id")) for e in logs if e["event"].endswith("_skipped")]
    # Unknown types are logged once per (type, v); invalid payloads every time.
    assert events == [
        ("unknown_type_skipped", "x:1"),
        ("unknown_type_skipped", "x:2"),
        ("invalid_payload_skipped", "x:3"),
        ("invalid_payload_skipped", "x:3"),
    ]
