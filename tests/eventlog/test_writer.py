"""Tests of tickertape.eventlog.writer: positions, dedupe, refusals, days, the lock, reopen."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tickertape.errors import LogClosedError, LogError
from tickertape.eventlog import EventLog
from tickertape.eventlog import writer as writer_module
from tickertape.eventlog.layout import list_segments
from tickertape.eventlog.sealing import compact
from tickertape.eventlog.verify import verify_namespace
from tickertape.schemas.envelope import Envelope

from .conftest import FixedClock
from .envelopes import (
    NS_PER_DAY,
    T0,
    TRADE_TOPIC,
    day_file,
    envelope,
    envelopes,
    keys,
    stored_records,
    topic_dir,
)

TOPICS = ("md.trade.crypto.BTCUSDT", "md.quote.crypto.BTCUSDT", "md.trade.us.AAPL")


def test_offsets_and_gseq_are_contiguous(log: EventLog) -> None:
    """offset counts per topic from 0 and gseq per namespace from 1, with no gap."""
    batch = envelopes(30, topics=TOPICS)
    results = log.append(batch[:10]) + log.append(batch[10:])
    assert [r.gseq for r in results] == list(range(1, 31))
    per_topic: dict[str, list[int]] = {}
    for env, res in zip(batch, results, strict=True):
        assert res.error is None
        assert not res.duplicate
        per_topic.setdefault(env.topic, []).append(res.offset)  # type: ignore[arg-type]
    for offsets in per_topic.values():
        assert offsets == list(range(len(offsets)))
    assert log.head_gseq == 30
    assert log.next_offsets() == dict.fromkeys(TOPICS, 10)
    assert [r.gseq for r in log.read()] == list(range(1, 31))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.sampled_from(TOPICS), st.integers(1, 5)), min_size=1, max_size=12))
def test_positions_property(tmp_path: Path, plan: list[tuple[str, int]]) -> None:
    """Any sequence of batches over any topics stores contiguous offsets and gseq, readable back."""
    data = tmp_path / f"p{len(list(tmp_path.iterdir()))}"
    seq = 0
    expected: list[tuple[str, int]] = []
    with EventLog.open(data) as lg:
        for topic, n in plan:
            batch = []
            for _ in range(n):
                seq += 1
                batch.append(envelope(seq, topic=topic))
            lg.append(batch)
            expected += [(topic, e.source_seq) for e in batch]
        records = list(lg.read())
    assert [(r.topic, r.source_seq) for r in records] == expected
    assert [r.gseq for r in records] == list(range(1, seq + 1))
    for topic in TOPICS:
        assert [r.offset for r in records if r.topic == topic] == list(
            range(sum(1 for t, _ in expected if t == topic))
        )


def test_duplicate_in_the_same_batch_returns_the_first_position(log: EventLog) -> None:
    """A (source, source_seq) repeated within one batch is stored once; both get its position."""
    e = envelope(1)
    res = log.append([e, e, envelope(2)])
    assert (res[0].offset, res[0].gseq, res[0].duplicate) == (0, 1, False)
    assert (res[1].offset, res[1].gseq, res[1].duplicate) == (0, 1, True)
    assert (res[2].offset, res[2].gseq) == (1, 2)
    assert log.head_gseq == 2


def test_duplicate_in_a_later_batch_returns_the_original_position(log: EventLog) -> None:
    """Re-appending stored envelopes returns their original offset and gseq, storing nothing."""
    first = log.append(envelopes(5, topics=TOPICS))
    again = log.append(envelopes(5, topics=TOPICS))
    assert all(r.duplicate for r in again)
    assert [(r.offset, r.gseq) for r in again] == [(r.offset, r.gseq) for r in first]
    assert log.head_gseq == 5


def test_duplicate_after_reopen_returns_the_original_position(data_dir: Path) -> None:
    """After a reopen the dedupe state is rebuilt from the files."""
    with EventLog.open(data_dir) as lg:
        first = lg.append(envelopes(5, topics=TOPICS))
    with EventLog.open(data_dir) as lg:
        assert lg.last_source_seq("md") == 5
        again = lg.append(envelopes(5, topics=TOPICS))
        assert lg.head_gseq == 5
    assert all(r.duplicate for r in again)
    assert [(r.offset, r.gseq) for r in again] == [(r.offset, r.gseq) for r in first]


def test_duplicate_older_than_the_window_is_found_by_topic_scan(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A duplicate evicted from the in-memory window still gets its original position:
    a retry (same ts_event) and a reuse of the source_seq with another ts_event alike."""
    monkeypatch.setattr(writer_module, "RECENT_KEYS", 64)
    with EventLog.open(data_dir) as lg:
        envs = envelopes(600, topics=TOPICS)
        first = []
        for i in range(0, 600, 50):
            first += lg.append(envs[i : i + 50])
        retry = lg.append([envs[1]])
        reuse = lg.append([envelope(2, topic=TOPICS[1], ts_event=T0 + 10**9)])
        assert lg.head_gseq == 600
    assert retry[0].duplicate
    assert reuse[0].duplicate
    assert (retry[0].offset, retry[0].gseq) == (first[1].offset, first[1].gseq)
    assert (reuse[0].offset, reuse[0].gseq) == (first[1].offset, first[1].gseq)


def test_duplicates_of_sources_spread_over_topics_and_batches(log: EventLog) -> None:
    """Sources writing to several topics, and topics written by several sources: every
    duplicate (later or within the same batch) gets its own record's position."""
    envs = [
        envelope(seq, source=source, topic=TOPICS[(seq + k) % 3], ts_event=T0 + seq)
        for seq in range(1, 40)
        for k, source in enumerate(("a", "b", "c"))
        if source != "c" or seq % 7 == 0
    ]
    first = log.append(envs)
    where = {(e.source, e.source_seq): (r.offset, r.gseq) for e, r in zip(envs, first, strict=True)}
    again = log.append(list(reversed(envs)))
    assert [(r.offset, r.gseq) for r in again] == [
        where[(e.source, e.source_seq)] for e in reversed(envs)
    ]
    more = [
        envelope(seq, source="a", topic=TOPICS[seq % 3], ts_event=T0 + 100 + seq)
        for seq in range(40, 46)
    ]
    res = log.append([*more, more[2], envs[0], more[5]])
    assert [r.duplicate for r in res] == [False] * 6 + [True] * 3
    assert (res[6].offset, res[6].gseq) == (res[2].offset, res[2].gseq)
    assert (res[7].offset, res[7].gseq) == where[("a", 1)]
    assert (res[8].offset, res[8].gseq) == (res[5].offset, res[5].gseq)


def test_duplicate_of_a_refused_source_seq_has_no_position(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source_seq refused when first sent (then passed by later ones) is a duplicate
    without position, inside the window and older than it."""
    monkeypatch.setattr(writer_module, "RECENT_KEYS", 64)
    with EventLog.open(data_dir) as lg:
        lg.append([envelope(1, ts_event=T0 + 10)])
        refused = lg.append([envelope(2, ts_event=T0)])  # a ts_event regression
        assert refused[0].error == "TS_REGRESSION"
        lg.append(envelopes(10, start_seq=3, start_ns=T0 + 20))
        again = lg.append([envelope(2, ts_event=T0 + 15)])
        assert (again[0].duplicate, again[0].offset, again[0].gseq) == (True, None, None)
        # refused and passed within one batch, then sent again in it
        res = lg.append(
            [
                envelope(13, ts_event=T0),
                envelope(14, ts_event=T0 + 10**5),
                envelope(13, ts_event=T0 + 10**5 + 1),
            ]
        )
        assert [r.error for r in res] == ["TS_REGRESSION", None, None]
        assert (res[2].duplicate, res[2].offset, res[2].gseq) == (True, None, None)
        lg.append(envelopes(500, start_seq=15, start_ns=T0 + 10**6))
        old = lg.append([envelope(2, ts_event=T0 + 15), envelope(5, ts_event=T0 + 22)])
        assert (old[0].duplicate, old[0].offset, old[0].gseq) == (True, None, None)
        assert (old[1].duplicate, old[1].offset, old[1].gseq) == (True, 3, 4)
        assert lg.head_gseq == 512


def test_duplicate_after_sealing_and_reopen_is_found(data_dir: Path) -> None:
    """A duplicate of a record in a sealed day (not in memory after reopen) gets its position."""
    with EventLog.open(data_dir) as lg:
        first = lg.append(envelopes(6, topics=TOPICS))
        compact(lg, include_open=True)
    with EventLog.open(data_dir) as lg:
        again = lg.append([envelope(3, topic=TOPICS[2])])
    assert again[0].duplicate
    assert (again[0].offset, again[0].gseq) == (first[2].offset, first[2].gseq)


def test_source_seq_below_the_last_is_a_duplicate(log: EventLog) -> None:
    """An envelope at or below its source's last stored source_seq is acknowledged, not stored."""
    log.append([envelope(10)])
    res = log.append([envelope(3, ts_event=T0 + 10**9)])
    assert res[0].duplicate
    assert res[0].error is None
    assert log.head_gseq == 1


def test_sources_are_deduplicated_independently(log: EventLog) -> None:
    """Two sources with the same source_seq are both stored."""
    res = log.append([envelope(1, source="a"), envelope(1, source="b", ts_event=T0 + 5000)])
    assert [r.gseq for r in res] == [1, 2]
    assert log.last_source_seq("a") == 1
    assert log.last_source_seq("b") == 1
    assert log.last_source_seq("nobody") == 0


def test_ts_regression_is_refused_naming_topic_and_timestamps(log: EventLog) -> None:
    """A ts_event below the topic's last is refused with TS_REGRESSION naming both times."""
    log.append([envelope(1, ts_event=T0 + 500)])
    res = log.append([envelope(2, ts_event=T0 + 100), envelope(3, ts_event=T0 + 600)])
    assert res[0].error == "TS_REGRESSION"
    assert res[0].offset is None
    assert res[0].gseq is None
    assert TRADE_TOPIC in (res[0].message or "")
    assert str(T0 + 100) in (res[0].message or "")
    assert str(T0 + 500) in (res[0].message or "")
    assert (res[1].error, res[1].gseq) == (None, 2)
    assert keys(log.read()) == [("md", 1), ("md", 3)]


def test_ts_regression_within_one_batch_is_refused(log: EventLog) -> None:
    """The regression check applies between envelopes of the same batch."""
    res = log.append([envelope(1, ts_event=T0 + 500), envelope(2, ts_event=T0 + 499)])
    assert res[1].error == "TS_REGRESSION"
    assert log.head_gseq == 1


def test_equal_ts_event_is_accepted(log: EventLog) -> None:
    """ts_event may repeat on a topic (it never decreases)."""
    res = log.append([envelope(1, ts_event=T0), envelope(2, ts_event=T0)])
    assert [r.gseq for r in res] == [1, 2]


def test_other_topics_are_not_affected_by_a_regression(log: EventLog) -> None:
    """Per-topic time: an earlier ts_event on another topic is fine."""
    res = log.append(
        [envelope(1, ts_event=T0 + 500), envelope(2, topic=TOPICS[1], ts_event=T0 + 1)]
    )
    assert [r.error for r in res] == [None, None]


@pytest.mark.parametrize("topic", ["", "md..trade", "md trade", ".md", "md.", "md.*", "md.>"])
def test_invalid_topic_is_refused(log: EventLog, topic: str) -> None:
    """An invalid topic name is refused with INVALID_TOPIC; the rest of the batch is stored."""
    bad = envelope(1).__class__(**{**_fields(envelope(1)), "topic": topic})
    res = log.append([bad, envelope(2)])
    assert res[0].error == "INVALID_TOPIC"
    assert res[0].message
    assert res[1].gseq == 1
    assert log.topics() == [TRADE_TOPIC]


def _fields(env: object) -> dict[str, object]:
    return {f: getattr(env, f) for f in env.__struct_fields__}  # type: ignore[attr-defined]


def test_day_sealed_after_compact_all(log: EventLog) -> None:
    """After `compact --all`, appends to a sealed day are refused with DAY_SEALED, a later day works."""
    log.append([envelope(1)])
    compact(log, include_open=True)
    res = log.append([envelope(2), envelope(3, ts_event=T0 + NS_PER_DAY)])
    assert res[0].error == "DAY_SEALED"
    assert "2024-01-01" in (res[0].message or "")
    assert (res[1].error, res[1].offset, res[1].gseq) == (None, 1, 2)
    assert keys(log.read()) == [("md", 1), ("md", 3)]


def test_days_roll_at_utc_midnight(log: EventLog, data_dir: Path) -> None:
    """Records go to the file of their ts_event's UTC day; the last ns before midnight stays."""
    midnight = T0 + NS_PER_DAY
    log.append(
        [
            envelope(1, ts_event=T0),
            envelope(2, ts_event=midnight - 1),
            envelope(3, ts_event=midnight),
        ]
    )
    log.append([envelope(4, ts_event=midnight + 2 * NS_PER_DAY)])
    d = topic_dir(data_dir, TRADE_TOPIC)
    assert sorted(p.name for p in d.glob("*.jsonl")) == [
        "2024-01-01.jsonl",
        "2024-01-02.jsonl",
        "2024-01-04.jsonl",
    ]
    assert keys(stored_records(d / "2024-01-01.jsonl")) == [("md", 1), ("md", 2)]
    assert keys(stored_records(d / "2024-01-02.jsonl")) == [("md", 3)]
    assert [r.offset for r in log.read_topic(TRADE_TOPIC)] == [0, 1, 2, 3]


def test_one_batch_spanning_days_and_topics(log: EventLog, data_dir: Path) -> None:
    """A batch crossing midnight on several topics lands in the right files with right positions."""
    batch = envelopes(40, topics=TOPICS, step_ns=NS_PER_DAY // 10, start_ns=T0 + NS_PER_DAY // 2)
    log.append(batch)
    records = list(log.read())
    assert [(r.topic, r.source_seq) for r in records] == [(e.topic, e.source_seq) for e in batch]
    for rec in records:
        in_file = stored_records(day_file(data_dir, rec.topic, rec.ts_event))
        assert rec.gseq in {r.gseq for r in in_file}


def test_records_store_the_envelope_and_ts_log(data_dir: Path) -> None:
    """Stored fields equal the envelope's; ts_log comes from the clock or the argument."""
    clock = FixedClock(start=42)
    with EventLog.open(data_dir, now_ns=clock) as lg:
        lg.append([envelope(1)])
        lg.append([envelope(2)], ts_log=7)
        r1, r2 = lg.read()
    assert r1.ts_log == 43
    assert r2.ts_log == 7
    env = envelope(1)
    for f in env.__struct_fields__:
        if f != "payload":
            assert getattr(r1, f) == getattr(env, f)
    assert bytes(r1.payload) == bytes(env.payload)


_HOLD_LOCK = """
import sys, time
from tickertape.eventlog import EventLog
log = EventLog.open(sys.argv[1])
print("open", flush=True)
sys.stdin.readline()
log.close()
"""


def test_second_writer_in_another_process_is_refused(data_dir: Path) -> None:
    """While a process holds the namespace, EventLog.open elsewhere raises LogError; after it closes, open works."""
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            assert child.stdout.readline() == b"open\n"
            with pytest.raises(LogError, match="open for writing by another process"):
                EventLog.open(data_dir)
            # another namespace is independent
            EventLog.open(data_dir, "runs/r1").close()
        finally:
            child.stdin.write(b"\n")
            child.stdin.close()
            child.wait(timeout=30)
    EventLog.open(data_dir).close()


def test_reopen_restores_head_offsets_and_source_seq(data_dir: Path) -> None:
    """Reopening restores head_gseq, next offsets and last source_seq, and appends continue."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(10, topics=TOPICS))
        lg.append(envelopes(3, source="other", start_ns=T0 + NS_PER_DAY))
        head, nxt = lg.head_gseq, lg.next_offsets()
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == head == 13
        assert lg.next_offsets() == nxt
        assert lg.last_source_seq("md") == 10
        assert lg.last_source_seq("other") == 3
        assert lg.recovery.dropped == []
        assert lg.recovery.corrupt == []
        res = lg.append([envelope(11, topic=TOPICS[0], ts_event=T0 + 2 * NS_PER_DAY)])
        assert (res[0].offset, res[0].gseq) == (nxt[TOPICS[0]], 14)


def test_reopen_restores_state_from_sealed_days(data_dir: Path) -> None:
    """A namespace whose days are all sealed reopens with the same head, offsets and sources."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(10, topics=TOPICS))
        compact(lg, include_open=True)
        head, nxt = lg.head_gseq, lg.next_offsets()
    with EventLog.open(data_dir) as lg:
        assert (lg.head_gseq, lg.next_offsets(), lg.last_source_seq("md")) == (head, nxt, 10)


def test_append_after_close_is_refused(data_dir: Path) -> None:
    """A closed log refuses appends with LogClosedError."""
    lg = EventLog.open(data_dir)
    lg.close()
    lg.close()
    with pytest.raises(LogClosedError):
        lg.append([envelope(1)])


def test_empty_append_stores_nothing(log: EventLog) -> None:
    """An empty batch returns no results and changes nothing."""
    assert log.append([]) == []
    assert log.head_gseq == 0


def test_large_batch_is_split_into_groups(log: EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch larger than MAX_GROUP is stored whole, in order, with contiguous positions."""
    monkeypatch.setattr(writer_module, "MAX_GROUP", 7)
    res = log.append(envelopes(50, topics=TOPICS))
    assert [r.gseq for r in res] == list(range(1, 51))
    assert [r.source_seq for r in log.read()] == list(range(1, 51))


def test_large_records_round_trip_open_and_sealed(log: EventLog) -> None:
    """Records far larger than the read buffers (300 KB payloads) read back intact, open and sealed."""
    import msgspec

    big = [
        envelope(i, payload=msgspec.Raw(b'{"blob":"' + bytes([97 + i]) * 300_000 + b'"}'))
        for i in range(1, 6)
    ]
    log.append(big)
    before = [bytes(r.payload) for r in log.read()]
    assert before == [bytes(e.payload) for e in big]
    compact(log, include_open=True)
    assert [bytes(r.payload) for r in log.read()] == before
    assert [r.offset for r in log.read_topic(TRADE_TOPIC, 3)] == [3, 4]


def test_missing_head_file_is_rebuilt(data_dir: Path) -> None:
    """Without the HEAD file readers fall back to the files, and the next open writes it again."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(7, topics=TOPICS))
    head = data_dir / "logs" / "main" / "HEAD"
    head.unlink()
    from tickertape.eventlog import LogReader

    assert LogReader(data_dir).head_gseq() == 7
    assert [r.gseq for r in LogReader(data_dir).read()] == list(range(1, 8))
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == 7
    assert head.exists()
    assert LogReader(data_dir).head_gseq() == 7


_MANY_TOPICS = r"""
import sys
from tickertape.eventlog import EventLog, LogReader
from tests.eventlog.envelopes import envelope
data_dir, n = sys.argv[1], int(sys.argv[2])
with EventLog.open(data_dir) as lg:
    lg.append([envelope(i + 1, topic=f"md.trade.crypto.S{i:04d}") for i in range(n // 2)])
    for i in range(n // 2, n):
        lg.append([envelope(i + 1, topic=f"md.trade.crypto.S{i:04d}")])
with EventLog.open(data_dir) as lg:
    print(lg.head_gseq, len(lg.topics()), flush=True)
"""


def test_more_topics_than_file_descriptors(tmp_path: Path) -> None:
    """A namespace with more topics than the process may open files keeps working."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _MANY_TOPICS, str(tmp_path / "data"), "1200"],
        capture_output=True,
        preexec_fn=limit,
        cwd=root,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-500:]
    assert proc.stdout.split() == [b"1200", b"1200"]


@pytest.mark.parametrize("sealed", [False, True], ids=["open", "sealed"])
def test_refusals_survive_reopen(data_dir: Path, sealed: bool) -> None:
    """After a reopen the last ts_event per topic (and sealed days) are restored: regressions are refused."""
    with EventLog.open(data_dir) as lg:
        lg.append([envelope(1, ts_event=T0 + 500)])
        if sealed:
            compact(lg, include_open=True)
    with EventLog.open(data_dir) as lg:
        res = lg.append([envelope(2, ts_event=T0 + 100)])
        assert res[0].error == "TS_REGRESSION"
        res = lg.append([envelope(3, ts_event=T0 + 600)])
        assert res[0].error == ("DAY_SEALED" if sealed else None)
        res = lg.append([envelope(4, ts_event=T0 + NS_PER_DAY)])
        assert (res[0].error, res[0].offset) == (None, 1 if sealed else 2)


MODEL_TOPICS = tuple(f"md.trade.crypto.S{i}" for i in range(12))


class LogModel(RuleBasedStateMachine):
    """Random appends, duplicates, reopens, compactions and day changes against a plain model."""

    def __init__(self) -> None:
        super().__init__()
        self.data_dir = Path(tempfile.mkdtemp(prefix="tape-model-"))
        self.log = EventLog.open(self.data_dir, now_ns=FixedClock())
        self.stored: list[tuple[str, int, int]] = []  # (topic, source_seq, ts_event) in gseq order
        self.envs: dict[int, Envelope] = {}
        self.last_ts: dict[str, int] = {}
        self.sealed_day: dict[str, int] = {}
        self.now = T0
        self.seq = 0

    def _ts(self, topic: str, step: int) -> int:
        floor = max(self.last_ts.get(topic, 0), (self.sealed_day.get(topic, -1) + 1) * NS_PER_DAY)
        return max(self.now, floor) + step

    @rule(
        picks=st.lists(
            st.tuples(st.integers(0, len(MODEL_TOPICS) - 1), st.integers(0, 10**9)),
            min_size=1,
            max_size=8,
        )
    )
    def append(self, picks: list[tuple[int, int]]) -> None:
        batch = []
        for t, step in picks:
            topic = MODEL_TOPICS[t]
            self.seq += 1
            env = envelope(self.seq, topic=topic, ts_event=self._ts(topic, step))
            self.last_ts[topic] = env.ts_event
            batch.append(env)
        results = self.log.append(batch)
        for env, res in zip(batch, results, strict=True):
            assert res.error is None, res
            assert res.gseq == len(self.stored) + 1
            self.stored.append((env.topic, env.source_seq, env.ts_event))
            self.envs[env.source_seq] = env

    @precondition(lambda self: self.stored)
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.stored) - 1))
        res = self.log.append([self.envs[self.stored[i][1]]])
        assert res[0].duplicate
        assert res[0].gseq == i + 1

    @rule()
    def reopen(self) -> None:
        self.log.close()
        self.log = EventLog.open(self.data_dir, now_ns=FixedClock())
        assert self.log.recovery.dropped == []
        assert self.log.head_gseq == len(self.stored)

    @rule(include_open=st.booleans())
    def compact(self, include_open: bool) -> None:
        compact(self.log, include_open=include_open)
        for topic in self.log.topics():
            days = [s.day for s in list_segments(self.log.dir / topic, topic) if s.sealed]
            if days:
                self.sealed_day[topic] = max(days)

    @rule(days=st.integers(1, 3))
    def next_day(self, days: int) -> None:
        self.now = (self.now // NS_PER_DAY + days) * NS_PER_DAY

    @invariant()
    def reads_match_the_model(self) -> None:
        records = list(self.log.read())
        assert [(r.topic, r.source_seq, r.ts_event) for r in records] == self.stored
        assert [r.gseq for r in records] == list(range(1, len(self.stored) + 1))

    def teardown(self) -> None:
        self.log.close()
        report = verify_namespace(self.data_dir)
        assert report.ok, report.problems
        shutil.rmtree(self.data_dir)


@pytest.mark.slow
def test_log_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The log agrees with a plain model under random operations (few open files allowed)."""
    monkeypatch.setattr(writer_module, "MAX_OPEN_FILES", 4)
    run_state_machine_as_test(
        LogModel,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
        ),
    )


def test_old_duplicates_on_several_topics_in_one_batch(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Duplicates evicted from memory, on several topics in one batch, all get their original positions."""
    monkeypatch.setattr(writer_module, "RECENT_KEYS", 64)
    with EventLog.open(data_dir) as lg:
        envs = envelopes(600, topics=TOPICS)
        first = []
        for i in range(0, 600, 40):
            first += lg.append(envs[i : i + 40])
        picks = [2, 7, 11, 30, 31, 32, 59, 598, 599]
        again = lg.append([envs[i] for i in picks])
        assert lg.head_gseq == 600
    assert all(r.duplicate for r in again)
    assert [(r.offset, r.gseq) for r in again] == [(first[i].offset, first[i].gseq) for i in picks]


def test_a_duplicate_in_its_own_batch_keeps_its_position_past_the_window(
    data_dir: Path,
) -> None:
    """A batch that repeats one of its own envelopes after pushing it out of the
    in-memory window (20,000 sources: more than the window holds) still answers the
    repeat with the position the first copy got in that batch."""
    envs = [envelope(1, source=f"client-{i}", ts_event=T0 + i) for i in range(20_000)]
    with EventLog.open(data_dir) as lg:
        results = lg.append([*envs, envs[0]])
    first, repeat = results[0], results[-1]
    assert repeat.duplicate
    assert (repeat.offset, repeat.gseq) == (first.offset, first.gseq) == (0, 1)
