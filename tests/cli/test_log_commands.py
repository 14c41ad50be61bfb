"""Tests of the log commands: tape append, tail, verify, stats, compact, retention (real files)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from tests.eventlog.envelopes import (
    NS_PER_DAY,
    T0,
    envelope,
    envelope_json,
    envelopes,
    run_tape,
    stored_lines,
    topic_dir,
)
from tickertape.cli.main import cli
from tickertape.eventlog import LogReader

TOPICS = ("md.trade.crypto.BTCUSDT", "md.quote.crypto.BTCUSDT", "md.trade.us.AAPL")


def input_lines(envs: list[object]) -> bytes:
    return b"".join(envelope_json(e) for e in envs)  # type: ignore[arg-type]


def three_days() -> list[object]:
    """90 envelopes: 3 topics, 3 UTC days (2024-01-01..03), 30 a day."""
    out: list[object] = []
    for day in range(3):
        out += envelopes(
            30,
            topics=TOPICS,
            start_seq=1 + 30 * day,
            start_ns=T0 + day * NS_PER_DAY + 3_600 * 10**9,
            step_ns=60 * 10**9,
        )
    return out


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """A data directory with three_days() appended through `tape append`."""
    data_dir = tmp_path / "data"
    proc = run_tape("append", data_dir=data_dir, stdin=input_lines(three_days()))
    assert proc.returncode == 0, proc.stderr.decode()
    return data_dir


def tail(data_dir: Path, *args: str) -> list[dict[str, object]]:
    """`tape tail --json ARGS` in-process; the parsed records."""
    result = CliRunner().invoke(
        cli, ["tail", "--json", *args, "--data-dir", str(data_dir)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout_bytes.splitlines()]


def gseqs(records: list[dict[str, object]]) -> list[int]:
    return [r["gseq"] for r in records]  # type: ignore[misc]


# ---------------------------------------------------------------- append


def test_append_reports_and_exits_zero(tmp_path: Path) -> None:
    """`tape append` stores every envelope and prints the summary on stderr, nothing on stdout."""
    data_dir = tmp_path / "data"
    envs = three_days()
    proc = run_tape("append", "--batch", "7", data_dir=data_dir, stdin=input_lines(envs))
    assert proc.returncode == 0
    assert proc.stdout == b""
    assert b"appended 90, duplicates 0, refused 0" in proc.stderr
    assert [r.source_seq for r in LogReader(data_dir).read()] == list(range(1, 91))


def test_append_rerun_stores_nothing_twice(filled: Path) -> None:
    """Re-running `tape append` on the same input acknowledges duplicates and stores nothing."""
    proc = run_tape("append", data_dir=filled, stdin=input_lines(three_days()))
    assert proc.returncode == 0
    assert b"appended 0, duplicates 90, refused 0" in proc.stderr
    assert LogReader(filled).head_gseq() == 90


def test_append_refuses_bad_lines_and_exits_one(tmp_path: Path) -> None:
    """Bad lines are refused with their line number and reason; the good ones are stored; exit 1."""
    data_dir = tmp_path / "data"
    good = envelope(1)
    bad_payload = msgspec.structs.replace(
        envelope(2), payload=msgspec.Raw(b'{"symbol":"X","price":"high"}')
    )
    unknown = msgspec.structs.replace(envelope(3), type="md.nope")
    regression = envelope(4, ts_event=T0 - 1)
    bad_topic = msgspec.structs.replace(envelope(5), topic="md..x")
    lines = [
        envelope_json(good),
        b"this is not json\n",
        b'{"id": "x"}\n',
        envelope_json(bad_payload),
        envelope_json(unknown),
        envelope_json(regression),
        envelope_json(bad_topic),
        b"\n",
        envelope_json(envelope(6)),
    ]
    proc = run_tape("append", data_dir=data_dir, stdin=b"".join(lines))
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "appended 2, duplicates 0, refused 6" in err
    for lineno, word in [
        (2, "not JSON"),
        (3, "invalid envelope"),
        (4, "price"),
        (5, "unknown type"),
        (6, "TS_REGRESSION"),
        (7, "INVALID_TOPIC"),
    ]:
        assert any(f"line {lineno}" in ln and word in ln for ln in err.splitlines()), (lineno, err)
    assert [r.source_seq for r in LogReader(data_dir).read()] == [1, 6]


def test_append_of_nothing(tmp_path: Path) -> None:
    """Empty input appends nothing and exits 0."""
    proc = run_tape("append", data_dir=tmp_path / "data", stdin=b"")
    assert proc.returncode == 0
    assert b"appended 0, duplicates 0, refused 0" in proc.stderr


def test_append_to_a_namespace(tmp_path: Path) -> None:
    """--namespace writes to logs/<namespace>; main stays empty."""
    data_dir = tmp_path / "data"
    proc = run_tape(
        "append", "--namespace", "runs/r1", data_dir=data_dir, stdin=input_lines(envelopes(3))
    )
    assert proc.returncode == 0
    assert LogReader(data_dir, "runs/r1").head_gseq() == 3
    assert LogReader(data_dir).head_gseq() == 0


# ------------------------------------------------------------------ tail


def test_tail_json_prints_exactly_the_stored_records(filled: Path) -> None:
    """Each --json line is a stored record with all its fields, in gseq order, nothing else on stdout."""
    proc = run_tape("tail", "--json", data_dir=filled)
    assert proc.returncode == 0
    printed = [json.loads(line) for line in proc.stdout.splitlines()]
    assert gseqs(printed) == list(range(1, 91))
    stored = {}
    for topic in TOPICS:
        for path in sorted(topic_dir(filled, topic).glob("*.jsonl")):
            for line in stored_lines(path):
                rec = json.loads(line)
                stored[rec["gseq"]] = rec
    for rec in printed:
        want = {k: v for k, v in stored[rec["gseq"]].items() if k != "crc"}  # type: ignore[index]
        got = {k: v for k, v in rec.items() if k != "crc"}
        assert got == want


def test_tail_json_is_byte_identical_to_stored_lines_without_crc(filled: Path) -> None:
    """Each --json line equals its stored line with the crc member removed, byte for byte."""
    proc = run_tape("tail", "--json", data_dir=filled)
    stored = {}
    for topic in TOPICS:
        for path in sorted(topic_dir(filled, topic).glob("*.jsonl")):
            for line in stored_lines(path):
                stored[json.loads(line)["gseq"]] = line[: line.rfind(b',"crc":')] + b"}"
    printed = proc.stdout.splitlines()
    assert printed == [stored[g] for g in range(1, 91)]


def test_tail_from_gseq_to_gseq_and_limit(filled: Path) -> None:
    """--from N and --to M (gseq, inclusive) and --limit select a gseq range."""
    assert gseqs(tail(filled, "--from", "10", "--to", "20")) == list(range(10, 21))
    assert gseqs(tail(filled, "--from", "85")) == list(range(85, 91))
    assert gseqs(tail(filled, "--limit", "5")) == [1, 2, 3, 4, 5]
    assert gseqs(tail(filled, "--from", "30", "--limit", "2")) == [30, 31]
    assert tail(filled, "--from", "1000") == []


def test_tail_from_date_and_iso_time(filled: Path) -> None:
    """--from DATE starts at that UTC day; --from ISO-TIME at the first ts_event ≥ it; --to DATE is exclusive."""
    day2 = tail(filled, "--from", "2024-01-02", "--to", "2024-01-03")
    assert gseqs(day2) == list(range(31, 61))
    # records are at 01:00, 01:01, ... each day
    assert gseqs(
        tail(filled, "--from", "2024-01-02T01:10:00Z", "--to", "2024-01-02T01:15:00Z")
    ) == [
        41,
        42,
        43,
        44,
        45,
    ]
    assert gseqs(tail(filled, "--from", "2024-01-03T01:29:00+00:00")) == [90]
    assert gseqs(tail(filled, "--from", "2024-01-03T02:29:00+01:00")) == [90]
    assert gseqs(tail(filled, "--to", "2024-01-02")) == list(range(1, 31))
    assert gseqs(tail(filled, "--from", "2024-01-02", "--to", "40")) == list(range(31, 41))


def test_tail_patterns(filled: Path) -> None:
    """Patterns (NATS wildcards) select topics; several patterns are merged in gseq order."""
    trades = tail(filled, "md.trade.>")
    assert {r["topic"] for r in trades} == {TOPICS[0], TOPICS[2]}
    assert gseqs(trades) == [g for g in range(1, 91) if (g - 1) % 3 != 1]
    assert {r["topic"] for r in tail(filled, "md.*.crypto.*")} == {TOPICS[0], TOPICS[1]}
    both = tail(filled, "md.quote.>", "md.trade.us.*")
    assert gseqs(both) == [g for g in range(1, 91) if (g - 1) % 3 != 0]
    assert tail(filled, "nothing.>") == []


def test_tail_bad_from_is_a_usage_error(filled: Path) -> None:
    """An unparsable --from says what it expected and exits 2."""
    proc = run_tape("tail", "--from", "yesterday", data_dir=filled)
    assert proc.returncode == 2
    assert b"not a date" in proc.stderr


def test_tail_default_output_is_one_row_per_event(filled: Path) -> None:
    """The readable form prints a header and one row per event with gseq, topic and offset."""
    proc = run_tape("tail", "--limit", "4", "md.quote.>", data_dir=filled)
    assert proc.returncode == 0
    lines = [ln for ln in proc.stdout.decode().splitlines() if ln.strip()]
    assert len(lines) == 5
    assert "gseq" in lines[0]
    assert "topic" in lines[0]
    assert all(TOPICS[1] in ln for ln in lines[1:])
    assert lines[1].split()[0] == "2"


# ---------------------------------------------------------- verify, stats


def test_verify_json_clean(filled: Path) -> None:
    """`tape verify --json` on a clean log: exit 0 and a report with counts and no problems."""
    proc = run_tape("verify", "--json", data_dir=filled)
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    assert report["problems"] == []
    assert (report["records"], report["files"], report["head_gseq"]) == (90, 9, 90)
    assert report["namespace"] == "main"


def test_verify_json_reports_damage(filled: Path) -> None:
    """A damaged record: exit 1, the problem names the file, byte position and offset."""
    path = topic_dir(filled, TOPICS[1]) / "2024-01-02.jsonl"
    lines = stored_lines(path)
    data = bytearray(path.read_bytes())
    at = len(lines[0]) + lines[1].index(b'"source_seq":') + len(b'"source_seq":')
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    proc = run_tape("verify", "--json", data_dir=filled)
    assert proc.returncode == 1
    problems = [p for p in json.loads(proc.stdout)["problems"] if p["path"] == str(path)]
    assert [(p["position"], p["offset"]) for p in problems] == [(len(lines[0]), 11)]


def test_stats_json(filled: Path) -> None:
    """`tape stats --json`: per topic records, bytes, offsets and times; the head gseq."""
    proc = run_tape("stats", "--json", data_dir=filled)
    assert proc.returncode == 0
    stats = json.loads(proc.stdout)
    assert stats["head_gseq"] == 90
    assert [t["topic"] for t in stats["topics"]] == sorted(TOPICS)
    reader = LogReader(filled)
    for row in stats["topics"]:
        mine = list(reader.read_topic(row["topic"]))
        assert row["records"] == 30
        assert (row["first_offset"], row["last_offset"]) == (0, 29)
        assert (row["first_ts_event"], row["last_ts_event"]) == (
            mine[0].ts_event,
            mine[-1].ts_event,
        )
        size = sum(p.stat().st_size for p in topic_dir(filled, row["topic"]).glob("*.jsonl"))
        assert (row["open_bytes"], row["sealed_bytes"]) == (size, 0)


# ------------------------------------------------------- compact, retention


def test_compact_all_seals_and_reads_alike(filled: Path) -> None:
    """`tape compact --all` seals every day; tail (byte for byte), stats and verify agree with before."""
    before = tail(filled)
    raw_before = run_tape("tail", "--json", data_dir=filled).stdout
    proc = run_tape("compact", "--all", data_dir=filled)
    assert proc.returncode == 0
    assert b"sealed 9 day file(s)" in proc.stderr
    assert not list(filled.rglob("*.jsonl"))
    assert len(list(filled.rglob("*.jsonl.zst"))) == 9
    assert tail(filled) == before
    assert run_tape("tail", "--json", data_dir=filled).stdout == raw_before
    stats = json.loads(run_tape("stats", "--json", data_dir=filled).stdout)
    assert all(t["open_bytes"] == 0 and t["sealed_bytes"] > 0 for t in stats["topics"])
    assert run_tape("verify", data_dir=filled).returncode == 0
    # appends to a sealed day are refused; later days are fine
    late = envelope(1000, ts_event=T0 + 2 * NS_PER_DAY + 7_200 * 10**9)
    proc = run_tape("append", data_dir=filled, stdin=envelope_json(late))
    assert proc.returncode == 1
    assert b"DAY_SEALED" in proc.stderr


def test_compact_seals_closed_days_only(filled: Path) -> None:
    """`tape compact` seals the days that are over and keeps each topic's newest day open."""
    before = tail(filled)
    proc = run_tape("compact", data_dir=filled)
    assert proc.returncode == 0
    assert sorted(p.name for p in topic_dir(filled, TOPICS[0]).glob("*.jsonl*")) == [
        "2024-01-01.jsonl.zst",
        "2024-01-02.jsonl.zst",
        "2024-01-03.jsonl",
    ]
    assert tail(filled) == before


def test_compact_twice_keeps_everything(filled: Path) -> None:
    """Running `tape compact` twice loses nothing."""
    before = tail(filled)
    assert run_tape("compact", data_dir=filled).returncode == 0
    assert run_tape("compact", data_dir=filled).returncode == 0
    assert tail(filled) == before


def test_retention_deletes_old_days(filled: Path) -> None:
    """`tape retention --keep PATTERN=DAYS` deletes whole old days (all are years old here) but the newest."""
    proc = run_tape("retention", "--keep", "md.trade.>=30", data_dir=filled)
    assert proc.returncode == 0
    assert b"deleted 4 day file(s)" in proc.stderr
    for topic in (TOPICS[0], TOPICS[2]):
        assert [p.name for p in topic_dir(filled, topic).glob("*.jsonl*")] == ["2024-01-03.jsonl"]
    assert len(list(topic_dir(filled, TOPICS[1]).glob("*.jsonl"))) == 3


def test_retention_rule_syntax_error(filled: Path) -> None:
    """A malformed --keep rule is a usage error naming the rule."""
    proc = run_tape("retention", "--keep", "md.trade.>", data_dir=filled)
    assert proc.returncode == 2
    assert b"PATTERN=DAYS" in proc.stderr


def test_commands_on_a_held_namespace_fail_clearly(filled: Path) -> None:
    """A writer command on a namespace another process holds exits 1 with one clear line."""
    import subprocess
    import sys

    hold = (
        "import sys; from tickertape.eventlog import EventLog; "
        "log = EventLog.open(sys.argv[1]); print('open', flush=True); sys.stdin.readline()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", hold, str(filled)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            assert child.stdout.readline() == b"open\n"
            proc = run_tape("compact", data_dir=filled)
            assert proc.returncode == 1
            assert b"error:" in proc.stderr
            assert b"another process" in proc.stderr
        finally:
            child.stdin.write(b"\n")
            child.stdin.close()
            child.wait(timeout=30)


def test_tail_follow_prints_new_events_as_they_are_appended(tmp_path: Path) -> None:
    """`tape tail --follow --json` prints history, then each event appended later by another process."""
    import subprocess

    from tests.eventlog.envelopes import TAPE

    data_dir = tmp_path / "data"
    first = envelopes(3, topics=TOPICS)
    assert run_tape("append", data_dir=data_dir, stdin=input_lines(first)).returncode == 0
    with subprocess.Popen(
        [TAPE, "tail", "--follow", "--json", "md.trade.>", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as follower:
        assert follower.stdout is not None
        try:
            got = [json.loads(follower.stdout.readline()) for _ in range(2)]
            later = envelopes(6, topics=TOPICS, start_seq=4, start_ns=T0 + 10**9)
            assert run_tape("append", data_dir=data_dir, stdin=input_lines(later)).returncode == 0
            got += [json.loads(follower.stdout.readline()) for _ in range(4)]
        finally:
            follower.kill()
    assert gseqs(got) == [1, 3, 4, 6, 7, 9]
    assert {r["topic"] for r in got} == {TOPICS[0], TOPICS[2]}


def damage_second_quote_record(data_dir: Path) -> tuple[Path, int]:
    """Flip a bit inside the second record of the quote topic's first day; return (file, position)."""
    path = topic_dir(data_dir, TOPICS[1]) / "2024-01-01.jsonl"
    lines = stored_lines(path)
    data = bytearray(path.read_bytes())
    at = len(lines[0]) + lines[1].index(b'"source_seq":') + len(b'"source_seq":')
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    return path, len(lines[0])


def test_tail_stops_at_corruption_with_a_clear_error(filled: Path) -> None:
    """`tape tail --json` prints the records before a corrupt one, then exits 1 naming file and byte."""
    path, position = damage_second_quote_record(filled)
    proc = run_tape("tail", "--json", data_dir=filled)
    assert proc.returncode == 1
    printed = [json.loads(line) for line in proc.stdout.splitlines()]
    assert gseqs(printed) == list(range(1, len(printed) + 1))
    assert len(printed) < 90
    err = proc.stderr.decode()
    assert str(path) in err
    assert f"byte {position}" in err


def test_compact_refuses_a_corrupt_day_and_changes_nothing(filled: Path) -> None:
    """`tape compact --all` on a day with a bad record exits 1 and leaves that day's file as it was."""
    path, _position = damage_second_quote_record(filled)
    before = path.read_bytes()
    proc = run_tape("compact", "--all", data_dir=filled)
    assert proc.returncode == 1
    assert b"corrupt" in proc.stderr
    assert path.read_bytes() == before
    assert not path.with_name(path.name + ".zst").exists()


def test_append_on_a_full_disk_exits_one_with_a_clear_error(filled: Path) -> None:
    """`tape append` past RLIMIT_FSIZE exits 1, says no space was left, and stores nothing of that batch."""
    import resource
    import subprocess

    from tests.eventlog.envelopes import TAPE

    before = {p: p.read_bytes() for p in filled.rglob("*.jsonl")}
    limit = max(len(b) for b in before.values()) + 100
    more = envelopes(50, topics=TOPICS, start_seq=91, start_ns=T0 + 2 * NS_PER_DAY + 7_200 * 10**9)

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [TAPE, "append", "--data-dir", str(filled)],
        input=input_lines(more),
        capture_output=True,
        preexec_fn=preexec,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert b"no space left" in proc.stderr
    assert {p: p.read_bytes() for p in filled.rglob("*.jsonl")} == before
    assert run_tape("verify", data_dir=filled).returncode == 0


@pytest.mark.parametrize("command", ["append", "compact"])
def test_unusable_data_dir_is_one_clear_line(tmp_path: Path, command: str) -> None:
    """A data directory that cannot be created gives a one-line error and exit 1, not a traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = run_tape(command, data_dir=blocker / "data", stdin=b"")
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert "Traceback" not in err
    assert "error:" in err
    assert str(blocker) in err


@pytest.mark.parametrize("pattern", ["md.>.x", "", "md..trade"])
def test_tail_refuses_a_malformed_pattern(filled: Path, pattern: str) -> None:
    """A malformed pattern is a usage error naming the problem, not an empty result."""
    proc = run_tape("tail", pattern, data_dir=filled)
    assert proc.returncode == 2
    assert b"pattern" in proc.stderr
