"""Tests of the live drift monitor."""

from __future__ import annotations

from tickertape.timeauthority.drift import DriftMonitor

MS = 1_000_000


def test_within_bound_is_quiet() -> None:
    """A clock 250 ms off is within the default bound."""
    assert DriftMonitor().report("risk", 1_000 * MS + 250 * MS, 1_000 * MS) is None


def test_beyond_bound_alerts_with_signed_drift() -> None:
    """A clock 300 ms behind gives an alert with drift -300 ms."""
    alert = DriftMonitor().report("risk", 700 * MS, 1_000 * MS)
    assert alert is not None
    assert (alert.actor, alert.drift_ns, alert.bound_ns) == ("risk", -300 * MS, 250 * MS)


def test_alerts_are_rate_limited_and_rearm() -> None:
    """A drifting actor is alerted again only after repeat_ns; recovery re-arms."""
    m = DriftMonitor(bound_ns=10, repeat_ns=1_000)
    assert m.report("a", 100, 0) is not None
    assert m.report("a", 600, 500) is None
    assert m.report("a", 1_100, 1_000) is not None
    assert m.report("a", 1_000, 1_000) is None
    assert m.report("a", 1_100, 1_001) is not None
