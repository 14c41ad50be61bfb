"""Fault tests with real processes and sockets: router and log killed, subscriber stopped.

Sizes are kept small for CI; set TICKERTAPE_FAULT_EVENTS=100000 for the full run. The
stopped-subscriber test uses the issue's 20 s pause (TICKERTAPE_PAUSE_S changes it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tickertape.eventlog import LogReader

from .support import eventlog, free_port, kill, python, tape, wait_port

N_EVENTS = int(os.environ.get("TICKERTAPE_FAULT_EVENTS", "20000"))
ROOT = Path(__file__).resolve().parents[2]

PUBLISHER = """
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[4])
import msgspec
from tickertape.client import Client
from tests.router.support import trade

async def main(url, n, rate):
    async with Client(url, "md", max_backoff_s=0.3) as c:
        step = 200 if rate == 0 else 50
        started = time.monotonic()
        for s in range(1, n + 1, step):
            if rate:  # paced on a schedule, whatever each publish took
                await asyncio.sleep(max(0.0, started + (s - 1) / rate - time.monotonic()))
            batch = [trade("md", i) for i in range(s, min(s + step, n + 1))]
            if rate:
                now = time.time_ns()
                batch = [msgspec.structs.replace(e, ts_init=now) for e in batch]
            await c.publish(batch)
        print(json.dumps({"acked": n, "reconnects": c.reconnects}), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""

SUBSCRIBER = """
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[4])
from tickertape.client import Client

async def main(url, n, name):
    gseqs, seqs, lat = [], [], []
    async with Client(url, name, max_backoff_s=0.3) as c:
        sub = c.subscribe(["md.>"], "beginning")
        print("subscribed", flush=True)
        async for r in sub:
            gseqs.append(r.gseq)
            seqs.append(r.source_seq)
            lat.append((time.time_ns(), time.time_ns() - r.ts_init))
            if len(gseqs) >= n:
                break
    print(json.dumps({"gseqs": gseqs, "seqs": seqs, "lat": lat, "reconnects": c.reconnects,
                      "lagging": sub.lagging_count}), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""


FLOODER = """
import asyncio, json, sys, time
from collections import Counter
from websockets.asyncio.client import connect

BAD_PUB = json.dumps({"op": "pub", "ref": 5, "events": [{"id": "x:1", "topic": "md.x",
    "type": "md.trade", "v": 1, "market": "crypto", "ts_event": 1, "ts_init": 1,
    "source": "someone-else", "source_seq": 1, "payload": {"symbol": 1}}]})
FRAMES = [b"not json", b'{"op":"nope","ref":1}', b'{"op":"stats","ref":2}',
          b'{"op":"sub","ref":3,"patterns":["md..x"]}', b'{"op":"ack","ref":4,"sub":9,"gseq":1}',
          BAD_PUB.encode(), b'{"op":"hello","ref":6,"identity":"again"}']

async def main(url, seconds):
    codes, sent = Counter(), 0
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"op": "hello", "ref": 0, "identity": "flood"}))
        await ws.recv()
        async def read():
            async for message in ws:
                frame = json.loads(message)
                codes[frame.get("code") or frame["op"]] += 1
                for result in frame.get("results", []):
                    codes[result.get("error")] += 1
        reader = asyncio.create_task(read())
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for frame in FRAMES:  # as fast as the socket takes them
                await ws.send(frame, text=True)
            sent += len(FRAMES)
        await asyncio.sleep(1.0)
        reader.cancel()
    print(json.dumps({"sent": sent, "codes": codes}), flush=True)

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


def _result(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, f"no result; stderr: {err.decode()[-2000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _wait_line(proc: subprocess.Popen[bytes], text: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert text in line, line


def _check_exactly_once(result: dict[str, Any], n: int) -> None:
    assert result["gseqs"] == list(range(1, n + 1)), "gap, repeat or disorder in gseqs"
    assert result["seqs"] == list(range(1, n + 1)), "an event was stored twice or lost"


@pytest.mark.slow
def test_router_sigkilled_and_restarted_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """Three SIGKILL+restarts of the router while publishing: each subscriber gets every event once, in order."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    data = tmp_path / "data"
    args = ("router", "--port", str(port), "--data-dir", str(data))
    router = tape(*args, log=tmp_path / "router.log")
    wait_port(port)
    subs = [python(SUBSCRIBER, url, str(N_EVENTS), f"reader{i}", str(ROOT)) for i in range(3)]
    for s in subs:
        _wait_line(s, "subscribed")
    pub = python(PUBLISHER, url, str(N_EVENTS), "0", str(ROOT))
    try:
        for _ in range(3):
            time.sleep(0.8)
            kill(router)
            time.sleep(0.2)
            router = tape(*args, log=tmp_path / "router.log")
            wait_port(port)
        assert _result(pub, 60)["acked"] == N_EVENTS
        for s in subs:
            _check_exactly_once(_result(s, 60), N_EVENTS)
    finally:
        for p in (pub, *subs, router):
            kill(p)
    stored = list(LogReader(data, "main").read(["md.>"]))
    assert [r.source_seq for r in stored] == list(range(1, N_EVENTS + 1))


@pytest.mark.slow
def test_log_process_sigkilled_and_restarted_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """Killing the separate eventlog process repeatedly loses no acknowledged event and stores none twice."""
    log_port, port = free_port(), free_port()
    url = f"ws://127.0.0.1:{port}"
    data = tmp_path / "data"
    log_process = eventlog(log_port, data, tmp_path / "eventlog.log")
    router = tape(
        "router", "--port", str(port), "--log-url", f"ws://127.0.0.1:{log_port}",
        log=tmp_path / "router.log",
    )  # fmt: skip
    wait_port(port)
    sub = python(SUBSCRIBER, url, str(N_EVENTS), "reader", str(ROOT))
    _wait_line(sub, "subscribed")
    pub = python(PUBLISHER, url, str(N_EVENTS), "0", str(ROOT))
    try:
        for _ in range(3):
            time.sleep(0.8)
            kill(log_process)
            time.sleep(0.3)
            log_process = eventlog(log_port, data, tmp_path / "eventlog.log")
        assert _result(pub, 90)["acked"] == N_EVENTS
        _check_exactly_once(_result(sub, 60), N_EVENTS)
    finally:
        for p in (pub, sub, router, log_process):
            kill(p)
    stored = list(LogReader(data, "main").read(["md.>"]))
    assert [r.source_seq for r in stored] == list(range(1, N_EVENTS + 1))


@pytest.mark.slow
def test_stopped_subscriber_does_not_slow_others_and_catches_up(tmp_path: Path) -> None:
    """A subscriber SIGSTOP'd for 20 s under load leaves the others' latency within 2x; after SIGCONT it catches up with no gap."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    router = tape("router", "--port", str(port), "--data-dir", str(tmp_path / "d"),
                  "--send-queue-frames", "64", log=tmp_path / "router.log")  # fmt: skip
    wait_port(port)
    pause_s = float(os.environ.get("TICKERTAPE_PAUSE_S", "20"))
    rate, lead_s, tail_s = 2_000.0, 2.5, 1.5
    n = int(rate * (lead_s + pause_s + tail_s))
    subs = [python(SUBSCRIBER, url, str(n), f"reader{i}", str(ROOT)) for i in range(3)]
    for s in subs:
        _wait_line(s, "subscribed")
    pub = python(PUBLISHER, url, str(n), str(rate), str(ROOT))
    try:
        time.sleep(lead_s)
        paused_at = time.time_ns()
        subs[0].send_signal(signal.SIGSTOP)
        time.sleep(pause_s)
        resumed_at = time.time_ns()
        subs[0].send_signal(signal.SIGCONT)
        assert _result(pub, 120)["acked"] == n
        results = [_result(s, 120) for s in subs]
    finally:
        for p in (pub, *subs, router):
            kill(p)
    assert results[0]["gseqs"] == list(range(1, n + 1)), "the stopped subscriber has a gap"
    for r in results[1:]:
        assert r["gseqs"] == list(range(1, n + 1))
        # "Normal" is the latency before the pause, skipping the first second (start-up).
        before = sorted(lat for t, lat in r["lat"] if paused_at - 2_000_000_000 <= t < paused_at)
        during = sorted(lat for t, lat in r["lat"] if paused_at <= t < resumed_at)
        p50_before, p50_during = before[len(before) // 2], during[len(during) // 2]
        # 2x of normal; 1 ms of slack for a normal below 1 ms on a shared machine.
        assert p50_during <= 2 * max(p50_before, 1_000_000), (p50_before, p50_during)


@pytest.mark.slow
def test_flooding_client_is_answered_and_others_streams_are_intact(tmp_path: Path) -> None:
    """A raw client flooding bad and expensive frames gets errors and rate limits; the router stays up and others lose nothing."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    router = tape("router", "--port", str(port), "--data-dir", str(tmp_path / "d"),
                  "--max-frames-per-s", "2000", log=tmp_path / "router.log")  # fmt: skip
    wait_port(port)
    n = 12_000
    sub = python(SUBSCRIBER, url, str(n), "reader", str(ROOT))
    _wait_line(sub, "subscribed")
    flood = python(FLOODER, url, "5")
    pub = python(PUBLISHER, url, str(n), "2000", str(ROOT))
    try:
        flooded = _result(flood, 60)
        assert _result(pub, 60)["acked"] == n
        got = _result(sub, 60)
        assert router.poll() is None, "the router died"
    finally:
        for p in (pub, sub, flood, router):
            kill(p)
    _check_exactly_once(got, n)
    codes = flooded["codes"]
    for code in ("BAD_JSON", "UNKNOWN_OP", "BAD_PATTERN", "UNKNOWN_SUBSCRIPTION",
                 "SOURCE_MISMATCH", "ALREADY_AUTHENTICATED", "RATE_LIMITED"):  # fmt: skip
        assert codes.get(code), (code, codes)
