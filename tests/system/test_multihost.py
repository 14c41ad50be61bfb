"""A distributed replay with every component its own OS process, talking TCP.

As root with `ip netns`, the router and the time authority run in one network
namespace and each actor in a namespace of its own, joined by veth pairs (separate
machines, as far as the network goes); otherwise everything runs on loopback, each
actor through a TCP proxy the test controls (``TAPE_TEST_LOOPBACK=1`` forces this
variant). Mid-run, one actor's link is cut for a
few seconds and restored, and another actor is SIGKILLed and restarted. The run
namespace must come out byte for byte equal to an uninterrupted in-process replay of
the same window and run id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.processes import REPO, Tape, eventually, free_port, run_tape
from tickertape.cli.system_commands import hash_namespace
from tickertape.eventlog import LogReader

pytestmark = pytest.mark.slow

SMA = REPO / "examples" / "strategies" / "sma_cross.toml"
BARS = REPO / "data" / "cme-6eh4-1m-2024-01" / "6EH4.XCME_1min_bars_20240101_20240131.csv.gz"
ACTORS: dict[str, list[str]] = {
    "marketdata": ["marketdata"],
    "indicators": ["indicators"],
    "strategy": ["strategy", "--config", str(SMA)],
    "risk": ["risk"],
    "orders": ["orders"],
    "pnl": ["pnl"],
}
ITEMS = f"marketdata,indicators,strategy@{SMA},risk,orders,pnl"
IDENTITIES = ("marketdata", "indicators", "strategy.sma", "risk", "orders", "pnl", "replay")
FROM, TO = "2024-01-02", "2024-01-02T08:00"
SPEED = "1440"  # 8 h of bars in about 20 s, unless the machine is slower
RUN_ID = "multihost"
CUT, KILL = "risk", "orders"


# ---------------------------------------------------------------- the network


class Network:
    """Where each process runs and how an actor's link is cut."""

    router_host = "127.0.0.1"
    bind = "127.0.0.1"

    def prefix(self, actor: str | None) -> list[str]:
        """Command prefix running a process on ``actor``'s host (None: the router's)."""
        return []

    def router_url(self, actor: str, port: int) -> str:
        """The URL ``actor`` reaches the router at."""
        return f"ws://{self.router_host}:{port}"

    def cut(self, actor: str, seconds: float) -> None:
        """Disconnect ``actor`` from the router for ``seconds``, then reconnect it."""
        raise NotImplementedError

    def close(self) -> None:
        """Tear everything down."""


class Namespaces(Network):
    """One network namespace for the router and one per actor, veth pairs between."""

    bind = "0.0.0.0"

    def __init__(self, actors: list[str]) -> None:
        tag = f"tt{os.getpid() % 100000}"
        self.router_ns = f"{tag}-router"
        self.actor_ns = {a: f"{tag}-{i}" for i, a in enumerate(actors, start=1)}
        self.links = {a: (f"{tag}r{i}", f"{tag}a{i}", i) for i, a in enumerate(actors, start=1)}
        self.created: list[str] = []
        self._ip("netns", "add", self.router_ns)
        self.created.append(self.router_ns)
        self._ip("-n", self.router_ns, "link", "set", "lo", "up")
        for actor, ns in self.actor_ns.items():
            router_end, actor_end, i = self.links[actor]
            self._ip("netns", "add", ns)
            self.created.append(ns)
            self._ip("-n", ns, "link", "set", "lo", "up")
            self._ip("link", "add", router_end, "type", "veth", "peer", "name", actor_end)
            self._ip("link", "set", router_end, "netns", self.router_ns)
            self._ip("link", "set", actor_end, "netns", ns)
            self._ip("-n", self.router_ns, "addr", "add", f"10.231.{i}.1/24", "dev", router_end)
            self._ip("-n", self.router_ns, "link", "set", router_end, "up")
            self._ip("-n", ns, "addr", "add", f"10.231.{i}.2/24", "dev", actor_end)
            self._ip("-n", ns, "link", "set", actor_end, "up")

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def prefix(self, actor: str | None) -> list[str]:
        return ["ip", "netns", "exec", self.router_ns if actor is None else self.actor_ns[actor]]

    def router_url(self, actor: str, port: int) -> str:
        return f"ws://10.231.{self.links[actor][2]}.1:{port}"

    def cut(self, actor: str, seconds: float) -> None:
        router_end = self.links[actor][0]
        self._ip("-n", self.router_ns, "link", "set", router_end, "down")
        time.sleep(seconds)
        self._ip("-n", self.router_ns, "link", "set", router_end, "up")

    def close(self) -> None:
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


class Proxies(Network):
    """Loopback only: each actor reaches the router through a TCP proxy; a cut closes
    its connections and refuses new ones for a while."""

    def __init__(self, actors: list[str], router_port: int) -> None:
        self.router_port = router_port
        self.ports = {a: free_port() for a in actors}
        self.cut_until: dict[str, float] = {}
        self.writers: dict[str, list[asyncio.StreamWriter]] = {a: [] for a in actors}
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stopping: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),))
        self.thread.start()
        assert self.ready.wait(10), "the proxies did not start"

    async def _serve(self) -> None:
        self.stopping = asyncio.Event()
        servers = [
            await asyncio.start_server(self._handler(actor), "127.0.0.1", port)
            for actor, port in self.ports.items()
        ]
        self.ready.set()
        await self.stopping.wait()
        for server in servers:
            server.close()
            await server.wait_closed()
        for writers in self.writers.values():
            for writer in writers:
                writer.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _handler(self, actor: str):  # type: ignore[no-untyped-def]
        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if time.monotonic() < self.cut_until.get(actor, 0.0):
                writer.transport.abort()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.router_port)
            self.writers[actor] += [writer, up_writer]
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        return handle

    def router_url(self, actor: str, port: int) -> str:
        return f"ws://127.0.0.1:{self.ports[actor]}"

    def cut(self, actor: str, seconds: float) -> None:
        self.cut_until[actor] = time.monotonic() + seconds

        def drop() -> None:
            for writer in self.writers[actor]:
                writer.transport.abort()
            self.writers[actor].clear()

        self.loop.call_soon_threadsafe(drop)
        time.sleep(seconds)

    def close(self) -> None:
        if self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)
        self.loop.close()


def _namespaces_available() -> bool:
    if os.environ.get("TAPE_TEST_LOOPBACK") == "1":  # force the loopback variant
        return False
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"tt{os.getpid() % 100000}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return made.returncode == 0


@contextlib.contextmanager
def network(router_port: int) -> Iterator[Network]:
    """Network namespaces when possible, else loopback proxies; torn down at the end."""
    net: Network = (
        Namespaces(list(ACTORS)) if _namespaces_available() else Proxies(list(ACTORS), router_port)
    )
    try:
        yield net
    finally:
        net.close()


# ----------------------------------------------------------------------- test


def _run_head(data_dir: Path) -> int:
    reader = LogReader(data_dir, f"runs/{RUN_ID}")
    return reader.head_gseq() if reader.dir.exists() else 0


def test_distributed_replay_over_tcp_survives_a_cut_and_a_kill(tmp_path: Path) -> None:
    """Router, time authority and six actors as separate processes (separate network
    namespaces as root); one actor's link cut for 4 s, another SIGKILLed and restarted:
    the run namespace equals an in-process replay's, file for file."""
    source = tmp_path / "router-host"
    run_tape(
        "import", "ohlcv-csv", str(BARS), "--market", "us", "--symbol", "6EH4",
        "--interval", "1m", "--stamp", "end", "--data-dir", str(source),
    )  # fmt: skip
    reference = tmp_path / "reference"
    shutil.copytree(source / "logs", reference / "logs")
    run_tape(
        "replay", "--from", FROM, "--to", TO, "--in-process", "--actors", ITEMS,
        "--run-id", RUN_ID, "--data-dir", str(reference), "-q", cwd=REPO,
    )  # fmt: skip
    expected = hash_namespace(reference, f"runs/{RUN_ID}")
    total = _run_head(reference)
    assert total > 1000

    tokens = tmp_path / "tokens.toml"
    secrets = {
        identity: run_tape(
            "token", "create", identity, "--publish", ">", "--subscribe", ">",
            *(["--commit"] if identity == "replay" else []), "--token-file", str(tokens),
        ).strip()
        for identity in IDENTITIES
    }  # fmt: skip
    port = free_port()
    processes: list[Tape] = []
    with network(port) as net:
        try:
            router = Tape(
                "router",
                ["router", "--host", net.bind, "--port", str(port), "--data-dir", str(source),
                 "--token-file", str(tokens)],
                tmp_path,
                prefix=net.prefix(None),
            )  # fmt: skip
            processes.append(router)
            eventually(lambda: "router listening" in router.output(), 20, "the router")

            def start_actor(name: str, log: str) -> Tape:
                identity = "strategy.sma" if name == "strategy" else name
                return Tape(
                    log,
                    ["actor", *ACTORS[name], "--router", net.router_url(name, port),
                     "--replay", RUN_ID, "--data-dir", str(tmp_path / f"laptop-{name}")],
                    tmp_path,
                    env={"TAPE_TOKEN": secrets[identity]},
                    prefix=net.prefix(name),
                )  # fmt: skip

            actors = {name: start_actor(name, name) for name in ACTORS}
            processes += actors.values()
            clock = Tape(
                "clock",
                ["clock", "--mode", "replay", "--router", f"ws://127.0.0.1:{port}",
                 "--data-dir", str(source), "--from", FROM, "--to", TO, "--run-id", RUN_ID,
                 "--actors", ITEMS, "--speed", SPEED, "--snapshot-every-steps", "50"],
                tmp_path,
                env={"TAPE_TOKEN": secrets["replay"]},
                prefix=net.prefix(None),
                cwd=REPO,
            )  # fmt: skip
            processes.append(clock)

            eventually(lambda: _run_head(source) > total // 4, 60, "a quarter of the run")
            net.cut(CUT, 4.0)
            eventually(lambda: _run_head(source) > total // 2, 60, "half of the run")
            actors[KILL].signal(signal.SIGKILL)
            actors[KILL].process.wait()
            assert _run_head(source) < total, "the run ended before the kill: slow it down"
            restarted = start_actor(KILL, f"{KILL}-restarted")
            processes.append(restarted)

            assert clock.process.wait(90) == 0, clock.output()[-3000:]
            for actor in [*(a for n, a in actors.items() if n != KILL), restarted]:
                assert actor.process.wait(30) == 0, actor.output()[-3000:]
        finally:
            for process in reversed(processes):
                process.stop(5)

    assert hash_namespace(source, f"runs/{RUN_ID}") == expected
