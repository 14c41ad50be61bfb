"""Tests for tickertape.router.validation: per-envelope checks of a published batch."""

from __future__ import annotations

import msgspec

from tickertape.router.validation import check_envelopes

from .support import trade


def _with(env: object, **changes: object) -> object:
    return msgspec.structs.replace(env, **changes)  # type: ignore[type-var]


def test_an_acceptable_batch_shares_its_strings() -> None:
    """A fine batch returns None and its source and topic become one object each."""
    batch = [msgspec.json.decode(msgspec.json.encode(trade("md", i)), type=type(trade("md", 1)))
             for i in range(1, 4)]  # fmt: skip
    identity = "".join(["m", "d"])  # a distinct object equal to "md"
    assert check_envelopes(batch, identity, {"md.trade.crypto.BTC": None}) is None
    assert all(env.source is identity for env in batch)
    assert len({id(env.topic) for env in batch}) == 1


def test_each_envelope_gets_its_own_problem() -> None:
    """Source, id, topic, payload and unknown-type problems are reported where they are."""
    topic = "md.trade.crypto.BTC"
    batch = [
        trade("md", 1),
        trade("other", 2),
        _with(trade("md", 3), id="md:99"),
        _with(trade("md", 4), payload=msgspec.Raw(b'{"symbol":1}')),
        _with(trade("md", 5), type="no.such", v=1),
        _with(trade("md", 6), topic="md.trade.crypto.ETH"),
        trade("md", 7),
    ]
    problems = {topic: None, "md.trade.crypto.ETH": ("FORBIDDEN", "not yours")}
    found = check_envelopes(batch, "md", problems)  # type: ignore[arg-type]
    assert found is not None
    codes = [p[0] if p else None for p in found]
    assert codes == [None, "SOURCE_MISMATCH", "BAD_ID", "SCHEMA_INVALID", "UNKNOWN_TYPE",
                     "FORBIDDEN", None]  # fmt: skip
    assert "$.symbol" in found[3][1]  # type: ignore[index]
    lenient = check_envelopes(batch[4:5], "md", problems, accept_unknown=True)  # type: ignore[arg-type]
    assert lenient is None
