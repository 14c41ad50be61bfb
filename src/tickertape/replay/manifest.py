"""The first and last events of a run: manifest and summary (both drivers share them).

Every run namespace ``runs/<run-id>`` starts with a ``system.run_manifest`` event and
ends with a ``system.run_summary`` event, both published by the driver's identity
``replay`` with ``source_seq`` 1 and ``2 + alerts`` respectively. Their times are
simulated (the manifest at the replay's start, the summary at its last step), and
``ts_init`` equals ``ts_event``, so two runs of the same inputs and configuration
store the same bytes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec

from tickertape import __version__
from tickertape.schemas.envelope import Envelope, Record
from tickertape.schemas.registry import make_envelope
from tickertape.schemas.replay import RunSettings as RunSettings  # re-exported
from tickertape.schemas.system import Alert, RunManifest, RunSummary

DRIVER_SOURCE = "replay"
"""The identity the replay drivers publish manifests, alerts and summaries with."""

MANIFEST_TOPIC = "system.run_manifest"
SUMMARY_TOPIC = "system.run_summary"
ALERT_TOPIC = "system.alert"


def driver_envelope(topic: str, payload: msgspec.Struct, source_seq: int, ts_ns: int) -> Envelope:
    """Return an envelope of the driver (``source`` ``replay``) at simulated ``ts_ns``."""
    return make_envelope(
        payload, topic=topic, source=DRIVER_SOURCE, source_seq=source_seq, ts_event=ts_ns
    )


def manifest_envelope(
    settings: RunSettings,
    *,
    actors: list[str],
    config_hash: str,
    input_positions: dict[str, int],
) -> Envelope:
    """The run's first event (``system.run_manifest``, ``source_seq`` 1)."""
    manifest = RunManifest(
        run_id=settings.run_id,
        source_namespace=settings.source_namespace,
        start_ns=settings.start_ns,
        end_ns=settings.end_ns,
        topics=list(settings.topics),
        actors=sorted(actors),
        config_hash=config_hash,
        code_version=__version__,
        seed=settings.seed,
        input_positions=dict(sorted(input_positions.items())),
    )
    return driver_envelope(MANIFEST_TOPIC, manifest, 1, settings.start_ns)


def alert_envelope(alert: Alert, source_seq: int, ts_ns: int) -> Envelope:
    """A driver alert (divergence...) on ``system.alert``."""
    return driver_envelope(ALERT_TOPIC, alert, source_seq, ts_ns)


class OutputCounter:
    """Counts a run's outputs per topic family (the topic's first two tokens)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.last_ts_event = 0

    def add(self, records: Iterable[Record]) -> None:
        """Count ``records`` (a stored wave)."""
        for r in records:
            self.counts[".".join(r.topic.split(".")[:2])] += 1
            self.total += 1
            if r.ts_event > self.last_ts_event:
                self.last_ts_event = r.ts_event


def family_counts(next_offsets: dict[str, int]) -> dict[str, int]:
    """Events per topic family (first two tokens) from a log's per-topic counts,
    leaving out the manifest and summary topics."""
    counts: Counter[str] = Counter()
    for topic, n in next_offsets.items():
        if topic in (MANIFEST_TOPIC, SUMMARY_TOPIC):
            continue
        counts[".".join(topic.split(".")[:2])] += n
    return dict(sorted(counts.items()))


def summary_envelope(
    settings: RunSettings,
    *,
    source_seq: int,
    ts_ns: int,
    input_events: int,
    steps: int,
    counts: dict[str, int],
    last_ts_event: int,
) -> Envelope:
    """The run's last event (``system.run_summary``).

    ``counts`` covers every event between the manifest and the summary, per topic
    family (:func:`family_counts`); ``output_events`` is their total.
    """
    summary = RunSummary(
        run_id=settings.run_id,
        input_events=input_events,
        output_events=sum(counts.values()),
        steps=steps,
        last_ts_event=last_ts_event,
        counts=dict(sorted(counts.items())),
    )
    return driver_envelope(SUMMARY_TOPIC, summary, source_seq, ts_ns)
