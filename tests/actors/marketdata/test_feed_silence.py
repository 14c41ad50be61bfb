"""Silences in the live feed (`tape feed`'s code path) as real processes: the exchange
simulator pauses or runs out of data, the feed reports its quiet trade and quote
topics open within the bound, once, across restarts, and whole when they resume."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import pytest

from tests.system.processes import CAPTURE, REPO, Tape, eventually, free_port, wait_http
from tickertape.eventlog import LogReader
from tickertape.schemas.envelope import Record
from tickertape.schemas.market import Gap

pytestmark = pytest.mark.slow

SECOND = 1_000_000_000
BOUND_S = 1.5
"""The feed's silence bound. The simulator plays at speed 10 with its times rebased
(as in `tape up`: venue time ≈ the machine's clock): the captures' longest natural
silences are then 0.2 s (BTCUSDT trades), 0.38 s (ETHUSDT trades) and under 0.1 s
(book tickers), by event time and by clock: only a stopped venue or feed goes past it."""
MARGIN_S = 1.0
"""How late after its deadline an open gap may be stored (a loaded 2-core machine)."""
SPEED = "10"

# The feed as `tape feed` runs it (serve_feed, run_until_stopped), with a short bound:
# `tape feed` takes the default bound (60 s), too long for a test.
FEED = """
import sys
from pathlib import Path

from tickertape import logconfig
from tickertape.actors.marketdata.actor import LiveFeedConfig
from tickertape.cli.process import run_until_stopped, serve_feed

router, venue, data_dir, bound, symbols = sys.argv[1:]
logconfig.configure("info", json=True)
config = LiveFeedConfig(
    ws_url=venue, symbols=symbols.split(","), max_silence_s={"crypto": float(bound)}
)
config.validate()
run_until_stopped(
    lambda stop: serve_feed(stop, router, config, Path(data_dir)), command="feed"
)
"""


class Feed(Tape):
    """The feed process: FEED under this interpreter, output in ``<log_dir>/<name>.log``."""

    def __init__(
        self, name: str, router_url: str, sim_port: int, data_dir: Path, symbols: str, log_dir: Path
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        args = [router_url, f"ws://127.0.0.1:{sim_port}", str(data_dir), str(BOUND_S), symbols]
        env = dict(os.environ)
        env.pop("PYTHONASYNCIODEBUG", None)  # as Tape: debug mode slows real processes
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", FEED, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=env,
            )


def _capture(tmp_path: Path, symbol: str, lines: int) -> Path:
    """The first ``lines`` lines of the symbol's capture of 2024-08-08."""
    name = f"{symbol.lower()}_20240808.gz"
    data = gzip.decompress((CAPTURE / name).read_bytes()).split(b"\n")[:lines]
    path = tmp_path / f"{symbol.lower()}_capture.gz"
    path.write_bytes(gzip.compress(b"\n".join(data)))
    return path


def _records(data_dir: Path, pattern: str) -> list[Record]:
    reader = LogReader(data_dir, "main")
    if not reader.topics([pattern]):
        return []
    return list(reader.read([pattern]))


def _gaps(data_dir: Path) -> list[tuple[Record, Gap]]:
    return [(r, msgspec.json.decode(r.payload, type=Gap)) for r in _records(data_dir, "md.gap.>")]


def _silences(data_dir: Path, *, open_: bool) -> dict[tuple[str, str], list[tuple[Record, Gap]]]:
    """The time gaps stored, open or whole, by (symbol, stream)."""
    out: dict[tuple[str, str], list[tuple[Record, Gap]]] = {}
    for record, gap in _gaps(data_dir):
        if gap.kind == "time" and bool(gap.open) == open_:
            out.setdefault((gap.symbol, gap.stream), []).append((record, gap))
    return out


def _assert_open_in_time(data_dir: Path, record: Record, gap: Gap) -> None:
    """The open gap's topic had its last event ``gap.last_seen``, handled (ts_init) the
    bound before the gap's time, and the gap was stored within the bound + the margin."""
    topic = f"md.{gap.stream}.crypto.{gap.symbol}"
    before = [r for r in _records(data_dir, topic) if r.gseq < record.gseq]
    last = before[-1]
    assert last.ts_event == gap.last_seen
    assert (gap.next_seen, gap.missing, gap.open) == (0, 0, True)
    bound, margin = round(BOUND_S * SECOND), round(MARGIN_S * SECOND)
    assert last.ts_init + bound < record.ts_event <= last.ts_init + bound + margin
    assert record.ts_log <= last.ts_init + bound + margin, "stored later than the bound + margin"
    assert record.ts_init == record.ts_event  # found on the feed's clock
    assert b'"open":true' in bytes(record.payload)


def _assert_sequence(data_dir: Path) -> None:
    """The feed's source_seq strictly increases and no event is stored twice."""
    seqs = [r.source_seq for r in _records(data_dir, ">") if r.source == "marketdata"]
    assert seqs == sorted(set(seqs)), "source_seq repeated or out of order"


@contextmanager
def _system(tmp_path: Path, captures: list[Path]) -> Iterator[tuple[str, int, Tape, list[Tape]]]:
    """A router and the exchange simulator serving ``captures`` at speed 10, times
    rebased to the machine's clock; yields the
    router's URL, the simulator's port and process, and a list to add processes to
    (stopped at the end, newest first)."""
    router_port, sim_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    router = Tape(
        "router", ["router", "--port", str(router_port), "--data-dir", str(data_dir)], tmp_path
    )
    capture_args = [arg for path in captures for arg in ("--capture", str(path))]
    sim = Tape(
        "sim",
        [
            "exchange-sim",
            *capture_args,
            "--speed",
            SPEED,
            "--rebase-times",
            "--port",
            str(sim_port),
        ],
        tmp_path,
    )
    processes: list[Tape] = [router, sim]
    try:
        wait_http(f"http://127.0.0.1:{sim_port}/api/v3/depth?symbol=BTCUSDT&limit=5")
        yield f"ws://127.0.0.1:{router_port}", sim_port, sim, processes
    finally:
        sim.signal(signal.SIGCONT)
        for process in reversed(processes):
            process.stop()


def test_a_paused_venue_is_reported_open_within_the_bound_then_whole(tmp_path: Path) -> None:
    """The simulator is stopped (SIGSTOP) while trades flow: the feed stores an open gap
    for BTCUSDT's trades and one for its quotes within the bound + margin of their last
    event, while the venue is still stopped; resumed (SIGCONT), each topic's next event
    brings its whole gap with the same last_seen; no silence is reported twice."""
    data_dir = tmp_path / "data"
    # The whole day's capture, 33 s at speed 10 (16,000 lines were 15 s): one that runs
    # out before the feed is stopped adds the open gaps of its end, which a loaded
    # machine's slower polling reached in CI.
    capture = _capture(tmp_path, "BTCUSDT", 41_250)
    with _system(tmp_path, [capture]) as (router_url, sim_port, sim, processes):
        feed = Feed("feed", router_url, sim_port, data_dir, "BTCUSDT", tmp_path)
        processes.append(feed)
        trades = "md.trade.crypto.BTCUSDT"
        eventually(lambda: len(_records(data_dir, trades)) >= 200, 60, "200 trades in the log")
        sim.signal(signal.SIGSTOP)
        stopped_at = time.time_ns()
        eventually(
            lambda: len(_silences(data_dir, open_=True)) == 2, 30, "open gaps for trades and quotes"
        )
        assert not _silences(data_dir, open_=False), "a whole gap before the venue resumed"
        resumed_at = time.time_ns()
        sim.signal(signal.SIGCONT)
        eventually(
            lambda: len(_silences(data_dir, open_=False)) == 2, 30, "whole gaps after resuming"
        )
        assert feed.stop() == 0, feed.output()[-3000:]

    opened = _silences(data_dir, open_=True)
    whole = _silences(data_dir, open_=False)
    assert sorted(opened) == sorted(whole) == [("BTCUSDT", "quote"), ("BTCUSDT", "trade")]
    for key in opened:
        # No silence is reported open twice, nor whole twice. A loaded machine can starve
        # the simulator past the bound at another moment too (CI did): that is another
        # silence (another last_seen), with its own open and whole gap. The pause's is
        # the one found while the venue was stopped.
        assert len({gap.last_seen for _, gap in opened[key]}) == len(opened[key])
        assert len({gap.last_seen for _, gap in whole[key]}) == len(whole[key])
        ((open_record, open_gap),) = [
            (r, gap) for r, gap in opened[key] if stopped_at < r.ts_event < resumed_at
        ]
        ((whole_record, whole_gap),) = [
            (r, gap) for r, gap in whole[key] if gap.last_seen == open_gap.last_seen
        ]
        _assert_open_in_time(data_dir, open_record, open_gap)
        assert whole_gap.next_seen > whole_gap.last_seen
        assert whole_gap.open is msgspec.UNSET
        assert b'"open"' not in bytes(whole_record.payload)
        assert whole_record.gseq > open_record.gseq
        assert whole_record.ts_event >= open_record.ts_event  # a gap topic never goes back
        # The venue's times barely moved (the simulator sends what was due during the
        # pause at once): the event came late, within the bound by its own time.
        assert whole_gap.detail.endswith(
            "; within the bound by event time, reported open before it arrived"
        )
        # The event that ended the silence is stored just before its whole gap.
        topic = f"md.{key[1]}.crypto.BTCUSDT"
        ended = [r for r in _records(data_dir, topic) if r.ts_event == whole_gap.next_seen]
        assert ended
        assert ended[0].gseq < whole_record.gseq
    assert [g for _, g in _gaps(data_dir) if g.kind == "sequence"] == []
    _assert_sequence(data_dir)
    assert [e["silence_gaps"] for e in feed.log_events("stopped")] == [4]


@pytest.mark.parametrize("restart", ["killed_without_snapshots", "stopped"])
def test_a_silence_that_never_ends_is_reported_once_across_a_restart(
    tmp_path: Path, restart: str
) -> None:
    """BTCUSDT's capture ends early: the feed stores its trades' and quotes' open gaps.
    The feed is then restarted — SIGKILLed with its snapshots deleted (everything read
    back from the log), or stopped cleanly (its final snapshot) — while ETHUSDT still
    flows; ETHUSDT's capture ends later, and the restarted feed stores its open gaps,
    after which a forgotten BTCUSDT silence would have been stored again (its deadline
    after the restart comes first): each silence is stored open once. The only whole
    gap allowed is the hole the downtime left in ETHUSDT's quotes (trades are
    backfilled from the venue, quotes cannot be) when it is longer than the bound."""
    data_dir = tmp_path / "data"
    captures = [_capture(tmp_path, "BTCUSDT", 2_000), _capture(tmp_path, "ETHUSDT", 16_000)]
    with _system(tmp_path, captures) as (router_url, sim_port, _sim, processes):
        feed = Feed("feed-1", router_url, sim_port, data_dir, "BTCUSDT,ETHUSDT", tmp_path)
        processes.append(feed)

        def opened(symbol: str) -> int:
            return sum(s == symbol for s, _ in _silences(data_dir, open_=True))

        eventually(lambda: opened("BTCUSDT") == 2, 60, "BTCUSDT's open gaps")
        assert opened("ETHUSDT") == 0, "ETHUSDT stopped before the restart: the test is void"
        if restart == "stopped":
            eventually(feed.catches, 30, "the feed's stop handlers")
            assert feed.stop() == 0, feed.output()[-3000:]
        else:
            feed.kill()
            shutil.rmtree(data_dir / "snapshots" / "main" / "marketdata")
        restarted_at = time.time_ns()
        feed = Feed("feed-2", router_url, sim_port, data_dir, "BTCUSDT,ETHUSDT", tmp_path)
        processes.append(feed)
        eventually(lambda: opened("ETHUSDT") == 2, 60, "ETHUSDT's open gaps")
        # ETHUSDT's open gaps can come from the first feed's last moments: wait for the
        # second to be running before stopping it.
        eventually(feed.catches, 30, "the feed's stop handlers")
        assert feed.stop() == 0, feed.output()[-3000:]

    silences = _silences(data_dir, open_=True)
    assert sorted(silences) == [
        ("BTCUSDT", "quote"),
        ("BTCUSDT", "trade"),
        ("ETHUSDT", "quote"),
        ("ETHUSDT", "trade"),
    ]
    for key, found in silences.items():
        assert len(found) == 1, f"{key} reported {len(found)} times"
        _assert_open_in_time(data_dir, *found[0])
        if key[0] == "ETHUSDT":  # found by the restarted feed, a bound after its restart
            assert found[0][0].ts_event > restarted_at + round(BOUND_S * SECOND)
    whole = _silences(data_dir, open_=False)
    assert set(whole) <= {("ETHUSDT", "quote")}, whole
    for record, gap in whole.get(("ETHUSDT", "quote"), []):
        assert gap.last_seen < restarted_at < record.ts_init  # across the downtime
        assert gap.next_seen - gap.last_seen > round(BOUND_S * SECOND)
        assert not gap.detail.endswith("reported open before it arrived")
    assert len(whole.get(("ETHUSDT", "quote"), [])) <= 1
    _assert_sequence(data_dir)
    (restored,) = feed.log_events("restored")
    assert restored["snapshot"] is (restart == "stopped")
    assert restored["silences_open"] == ["md.quote.crypto.BTCUSDT", "md.trade.crypto.BTCUSDT"]
