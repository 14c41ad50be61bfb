"""Retention and recovery together (tickertape.eventlog.sealing.apply_retention, writer recovery).

Retention deletes whole days, which leaves gaps in the namespace's gseqs and can delete
the only records of a source. Recovery must never take those gaps for records lost in
a crash (and cut the durable records after them), and no position, ``ts_event`` bound
or ``source_seq`` of a deleted day may be given out or accepted again. Crashes are real
writer processes that die without closing; a power loss is simulated the way the
recovery tests do it: ``HEAD`` (never fsync'd) put back, unsynced bytes damaged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tickertape.errors import LogError
from tickertape.eventlog import EventLog, LogReader
from tickertape.eventlog.layout import RETENTION_FILE, load_retention_mark
from tickertape.eventlog.sealing import apply_retention

from .envelopes import (
    NS_PER_DAY,
    T0,
    TRADE_TOPIC,
    crash_head,
    day_file,
    envelope,
    envelopes,
    head_file,
    keys,
    published_head,
    stored_lines,
    topic_dir,
    verify_clean,
)

BARS = "md.bar.1d.us.AAA"
ROOT = Path(__file__).resolve().parents[2]


def lose_head(data_dir: Path, how: str) -> None:
    """What a power loss (HEAD is never fsync'd) or a restore without HEAD leaves."""
    if how == "missing":
        head_file(data_dir).unlink()
    else:
        crash_head(data_dir, 0)


def history_then_live(data_dir: Path) -> list[tuple[str, int]]:
    """Daily bars of ``BARS`` on days 1-5 (gseq 1-5), then 20 trades on day 5 (gseq
    6-25); retention then deletes the bars of days 1-4. Returns the remaining
    (source, source_seq), in gseq order."""
    with EventLog.open(data_dir) as lg:
        lg.append(
            [
                envelope(i + 1, topic=BARS, source="imp", ts_event=T0 + i * NS_PER_DAY)
                for i in range(5)
            ]
        )
        lg.append(envelopes(20, start_ns=T0 + 4 * NS_PER_DAY + 10))
    with EventLog.open(data_dir) as lg:
        deleted = apply_retention(lg, [("md.bar.>", 1)], T0 + 5 * NS_PER_DAY)
    assert len(deleted) == 4
    remaining = keys(LogReader(data_dir).read())
    assert len(remaining) == 21
    return remaining


_CRASHING_WRITER = r"""
import os, sys
from tickertape.eventlog import EventLog
from tests.eventlog.envelopes import envelope, NS_PER_DAY, T0, TRADE_TOPIC
lg = EventLog.open(sys.argv[1])
if sys.argv[2] == "group":
    # one group over two topics, written without fsync
    lg.append([envelope(100 + i, topic=t, source="late", ts_event=T0 + 4 * NS_PER_DAY + 10**9 + i)
               for i, t in enumerate([TRADE_TOPIC, "md.bar.1d.us.AAA"] * 2)], durable=False)
else:
    lg.append([envelope(2 + i, ts_event=T0 + 4 * NS_PER_DAY + 10**9 + i) for i in range(2)],
              durable=False)
os._exit(0)  # a crash: nothing closed, nothing synced, HEAD not moved
"""


def crash_after_append(data_dir: Path, what: str) -> None:
    """Run a real writer process that appends ``what`` without fsync and dies."""
    subprocess.run(
        [sys.executable, "-c", _CRASHING_WRITER, str(data_dir), what],
        cwd=ROOT,
        check=True,
        timeout=60,
    )


@pytest.mark.parametrize("how", ["zeroed", "missing"])
def test_a_lagging_head_after_retention_keeps_every_durable_record(
    data_dir: Path, how: str
) -> None:
    """HEAD lost or lagging after retention deleted days: the gseqs retention removed are
    not taken for an incomplete group (which cut every durable record after them)."""
    remaining = history_then_live(data_dir)
    lose_head(data_dir, how)
    with EventLog.open(data_dir) as lg:
        assert lg.recovery.dropped == []
        assert lg.recovery.corrupt == []
        assert lg.head_gseq == 25
        res = lg.append([envelope(21, ts_event=T0 + 4 * NS_PER_DAY + 10**9)])
        assert (res[0].offset, res[0].gseq) == (20, 26)
    assert keys(LogReader(data_dir).read()) == [*remaining, ("md", 21)]
    verify_clean(data_dir)


def test_an_incomplete_group_after_retention_is_still_cut(data_dir: Path) -> None:
    """Records of a group a crash left incomplete are cut from its first missing gseq
    on, and only those: the retention gap below them is not where the cut starts."""
    remaining = history_then_live(data_dir)
    crash_after_append(data_dir, "group")  # gseq 26-29 over both topics, unsynced
    bars = day_file(data_dir, BARS, T0 + 4 * NS_PER_DAY)
    lines = stored_lines(bars)
    assert len(lines) == 3  # the day's bar, then gseq 27 and 29
    bars.write_bytes(lines[0])  # a power loss: the bars' part of the group never reached the disk
    lose_head(data_dir, "zeroed")
    with EventLog.open(data_dir) as lg:
        assert [(Path(d.path).parent.name, d.records) for d in lg.recovery.dropped] == [
            (TRADE_TOPIC, 1)  # gseq 28; 26 is kept, 27 is missing
        ]
        assert "incomplete group" in lg.recovery.dropped[0].reason
        assert lg.head_gseq == 26
    assert keys(LogReader(data_dir).read()) == [*remaining, ("late", 100)]
    verify_clean(data_dir)


def retention_gap_below_a_quiet_topic(data_dir: Path) -> None:
    """A trade at gseq 1 (day 5), bars of days 1-4 (gseq 2-5) and 5 (gseq 6); retention
    deletes the bars of days 1-4: gseq 2-5 are gone, after the trade topic's last record."""
    with EventLog.open(data_dir) as lg:
        lg.append([envelope(1, ts_event=T0 + 4 * NS_PER_DAY)])
        lg.append(
            [
                envelope(i + 1, topic=BARS, source="imp", ts_event=T0 + i * NS_PER_DAY)
                for i in range(5)
            ]
        )
    with EventLog.open(data_dir) as lg:
        assert len(apply_retention(lg, [("md.bar.>", 1)], T0 + 5 * NS_PER_DAY)) == 4


def test_a_torn_tail_after_a_retention_gap_is_cut_not_kept_as_damage(data_dir: Path) -> None:
    """A torn write (its positions lost) on a topic whose last record comes before gseqs
    retention deleted is a torn write past the durable head: cut, and the topic takes
    appends (the gaps used to read as records it might hold: kept, TOPIC_DAMAGED)."""
    retention_gap_below_a_quiet_topic(data_dir)
    trades = day_file(data_dir, TRADE_TOPIC, T0 + 4 * NS_PER_DAY)
    with open(trades, "ab") as f:
        f.write(b'{"id":"md:2","topic":"md.trade.cry')
    assert published_head(data_dir) == 6
    with EventLog.open(data_dir) as lg:
        assert lg.recovery.corrupt == []
        assert [(d.path, d.reason) for d in lg.recovery.dropped] == [
            (str(trades), "torn or invalid tail")
        ]
        res = lg.append([envelope(2, ts_event=T0 + 4 * NS_PER_DAY + 1)])
        assert (res[0].error, res[0].offset, res[0].gseq) == (None, 1, 7)
    verify_clean(data_dir)


def test_crash_damage_after_a_retention_gap_is_cut_not_reported_as_corruption(
    data_dir: Path,
) -> None:
    """Unsynced records a power loss damaged, with a valid one after them, on a topic
    whose previous record comes before gseqs retention deleted: past the durable head,
    so cut (the gaps used to make them look possibly durable: kept as corruption)."""
    retention_gap_below_a_quiet_topic(data_dir)
    crash_after_append(data_dir, "trades")  # gseq 7 and 8, unsynced
    trades = day_file(data_dir, TRADE_TOPIC, T0 + 4 * NS_PER_DAY)
    lines = stored_lines(trades)
    assert len(lines) == 3
    zeroed = b"\0" * (len(lines[1]) - 1) + b"\n"  # a page of gseq 7 lost, gseq 8 written
    trades.write_bytes(lines[0] + zeroed + lines[2])
    with EventLog.open(data_dir) as lg:
        assert lg.recovery.corrupt == []
        assert [(d.path, d.from_pos, d.records) for d in lg.recovery.dropped] == [
            (str(trades), len(lines[0]), 2)
        ]
        assert lg.head_gseq == 6
        assert lg.next_offsets()[TRADE_TOPIC] == 1
    verify_clean(data_dir)


def test_retention_keeps_the_newest_day_that_holds_records(data_dir: Path) -> None:
    """A topic whose newest day file is empty (a crash as the day began) keeps its last
    day of records: offsets, the ts_event bound and duplicates are not forgotten."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(5))  # day 1: offsets 0-4
        lg.append(envelopes(5, start_seq=6, start_ns=T0 + NS_PER_DAY))  # day 2: offsets 5-9
    empty = topic_dir(data_dir, TRADE_TOPIC) / "2024-01-03.jsonl"
    empty.write_bytes(b"")  # created by the writer, its first record never written
    with EventLog.open(data_dir) as lg:
        deleted = apply_retention(lg, [("md.>", 1)], T0 + 10 * NS_PER_DAY)
    assert [p.name for p in deleted] == ["2024-01-01.jsonl"]
    assert sorted(p.name for p in topic_dir(data_dir, TRADE_TOPIC).glob("*.jsonl")) == [
        "2024-01-02.jsonl",
        "2024-01-03.jsonl",
    ]
    with EventLog.open(data_dir) as lg:
        assert lg.next_offsets() == {TRADE_TOPIC: 10}
        assert lg.last_ts_event(TRADE_TOPIC) == T0 + NS_PER_DAY + 4_000
        again = lg.append([envelope(7, ts_event=T0 + 2 * NS_PER_DAY)])[0]
        assert (again.duplicate, again.offset, again.gseq) == (True, 6, 7)
        late = lg.append([envelope(11, ts_event=T0 + 5)])[0]
        assert late.error == "TS_REGRESSION"
        new = lg.append([envelope(11, ts_event=T0 + 2 * NS_PER_DAY)])[0]
        assert (new.offset, new.gseq) == (10, 11)
    verify_clean(data_dir)


def test_source_seqs_outlive_retention_of_their_days(data_dir: Path) -> None:
    """A source whose every record retention deleted still has its duplicates
    recognised after a reopen (nothing of it is stored twice)."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(3, source="old"))  # day 1
        lg.append(envelopes(2, source="new", start_ns=T0 + 5 * NS_PER_DAY))  # day 6
    with EventLog.open(data_dir) as lg:
        assert [p.name for p in apply_retention(lg, [("md.>", 1)], T0 + 6 * NS_PER_DAY)] == [
            "2024-01-01.jsonl"
        ]
    with EventLog.open(data_dir) as lg:
        assert lg.last_source_seq("old") == 3
        res = lg.append(envelopes(4, source="old", start_ns=T0 + 5 * NS_PER_DAY + 10**6))
        assert [r.duplicate for r in res] == [True, True, True, False]
        assert (res[3].offset, res[3].gseq) == (5, 6)
    assert keys(LogReader(data_dir).read()) == [("new", 1), ("new", 2), ("old", 4)]


def test_open_never_sets_the_head_below_the_published_head(data_dir: Path) -> None:
    """When the files end below the published HEAD (a topic's newest file lost from
    outside), the gseqs up to HEAD are never given out again."""
    with EventLog.open(data_dir) as lg:
        lg.append(envelopes(5))
        lg.append([envelope(1, topic=BARS, source="imp", ts_event=T0 + NS_PER_DAY)])
    day_file(data_dir, BARS, T0 + NS_PER_DAY).unlink()
    assert published_head(data_dir) == 6
    with EventLog.open(data_dir) as lg:
        assert lg.head_gseq == 6
        assert lg.append([envelope(6)])[0].gseq == 7


def test_retention_saves_its_mark_before_it_deletes(data_dir: Path) -> None:
    """``RETENTION`` (JSON) holds the head, each topic's position and the sources'
    highest source_seq; a run that deletes nothing writes none."""
    history_mark = data_dir / "logs" / "main" / RETENTION_FILE
    with EventLog.open(data_dir) as lg:
        lg.append(
            [
                envelope(i + 1, topic=BARS, source="imp", ts_event=T0 + i * NS_PER_DAY)
                for i in range(3)
            ]
        )
        lg.append(envelopes(2, start_ns=T0 + 2 * NS_PER_DAY))
        assert apply_retention(lg, [("md.>", 30)], T0 + 3 * NS_PER_DAY) == []
        assert not history_mark.exists()
        assert len(apply_retention(lg, [("md.bar.>", 0)], T0 + 3 * NS_PER_DAY)) == 2
    assert json.loads(history_mark.read_bytes()) == {
        "version": 1,
        "head_gseq": 5,
        "topics": {
            BARS: {"next_offset": 3, "last_gseq": 3, "last_ts_event": T0 + 2 * NS_PER_DAY},
            TRADE_TOPIC: {
                "next_offset": 2,
                "last_gseq": 5,
                "last_ts_event": T0 + 2 * NS_PER_DAY + 1_000,
            },
        },
        "sources": {"imp": 3, "md": 2},
    }
    mark = load_retention_mark(data_dir / "logs" / "main")
    assert mark is not None
    assert mark.head_gseq == 5


def test_an_unreadable_retention_mark_refuses_the_open(data_dir: Path) -> None:
    """A damaged ``RETENTION`` stops the writer (without it, retention's gaps could be
    cut as lost records) with an error naming the file."""
    history_then_live(data_dir)
    mark = data_dir / "logs" / "main" / RETENTION_FILE
    mark.write_bytes(mark.read_bytes()[:20])
    with pytest.raises(LogError, match=RETENTION_FILE):
        EventLog.open(data_dir)
