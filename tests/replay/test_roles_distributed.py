"""Replays under the built-in roles only: distributed through an authenticating
router, and in one process.

Every identity gets a token from ``tape token create NAME --role ROLE`` and nothing
more (no ``--publish '>'``): the router (``tape router --token-file``) then enforces
exactly the roles of docs/protocol.md §11. The time authority is ``tape clock --mode
replay`` and each actor ``tape actor ... --replay RUN --token-file FILE``, the
per-identity way docs/deploy.md §4 gives; ``tape replay --router URL --token-dir DIR``
does the same from one command. The in-process host enforces the same roles on ``ctx.publish``
(:mod:`tickertape.roles`), so a backtest refuses what the role-only router refuses.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.system.processes import REPO, TAPE, Tape, eventually, run_tape
from tickertape.actors.runtime import PublishNotAllowedError
from tickertape.actors.runtime.resolution import resolve
from tickertape.cli.system_commands import hash_namespace
from tickertape.eventlog import LogReader
from tickertape.replay import RunSettings, run_in_process

BARS = REPO / "data" / "cme-6eh4-1m-2024-01" / "6EH4.XCME_1min_bars_20240101_20240131.csv.gz"
SMA = REPO / "examples" / "strategies" / "sma_cross.toml"
FROM, TO = "2024-01-02", "2024-01-02T06:00"  # 353 bars: intents, approvals and fills
ITEMS = f"marketdata,indicators,strategy@{SMA},risk,orders,pnl"
ACTORS: dict[str, tuple[list[str], str]] = {
    # identity: (the `tape actor` arguments, its role)
    "marketdata": (["marketdata"], "marketdata"),
    "indicators": (["indicators"], "indicators"),
    "strategy.sma": (["strategy", "--config", str(SMA)], "strategy"),
    "risk": (["risk"], "risk"),
    "orders": (["orders"], "orders"),
    "pnl": (["pnl"], "pnl"),
}
ROGUES = "tests.replay.rogue_actors"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding the bundled 6EH4 1-minute bars (January 2024) in main."""
    data = tmp_path_factory.mktemp("imported")
    run_tape(
        "import", "ohlcv-csv", str(BARS), "--market", "us", "--symbol", "6EH4",
        "--interval", "1m", "--stamp", "end", "--data-dir", str(data),
    )  # fmt: skip
    return data


def _tokens(tmp_path: Path, roles: Mapping[str, str]) -> tuple[Path, dict[str, Path]]:
    """``tape token create IDENTITY --role ROLE`` for each item of ``roles``; returns
    the router's token file and each identity's token file."""
    token_file = tmp_path / "tokens.toml"
    files: dict[str, Path] = {}
    for identity, role in roles.items():
        token = run_tape(
            "token", "create", identity, "--role", role, "--token-file", str(token_file)
        )
        files[identity] = tmp_path / f"{identity}.token"
        files[identity].write_text(token)
    return token_file, files


def _router(tmp_path: Path, data_dir: Path, token_file: Path) -> tuple[Tape, str]:
    """Start ``tape router --token-file`` on a free port; return it and its URL."""
    router = Tape(
        "router",
        ["router", "--port", "0", "--data-dir", str(data_dir), "--token-file", str(token_file)],
        tmp_path,
    )
    found = eventually(
        lambda: re.search(r"router listening on (ws://\S+)", router.output()), 20, "the router"
    )
    return router, found.group(1)


def _actor(tmp_path: Path, name: str, args: list[str], url: str, run_id: str, token: Path) -> Tape:
    return Tape(
        name,
        ["actor", *args, "--router", url, "--replay", run_id, "--token-file", str(token),
         "--data-dir", str(tmp_path / f"laptop-{name}")],
        tmp_path,
        cwd=REPO,
    )  # fmt: skip


def _clock(tmp_path: Path, url: str, data_dir: Path, run_id: str, items: str, token: Path) -> Tape:
    return Tape(
        "clock",
        ["clock", "--mode", "replay", "--router", url, "--token-file", str(token),
         "--data-dir", str(data_dir), "--from", FROM, "--to", TO, "--run-id", run_id,
         "--actors", items, "--speed", "max", "--snapshot-every-steps", "100"],
        tmp_path,
        cwd=REPO,
    )  # fmt: skip


def _wait_run(clock: Tape, actors: Mapping[str, Tape], timeout: float) -> None:
    """Wait for the time authority to finish, failing at once when an actor exits
    non-zero (the run would wait for it forever)."""

    def finished() -> bool:
        for identity, actor in actors.items():
            code = actor.process.poll()
            assert code in (None, 0), f"{identity} exited {code}: {actor.output()[-3000:]}"
        code = clock.process.poll()
        assert code in (None, 0), f"the clock exited {code}: {clock.output()[-3000:]}"
        return code == 0

    eventually(finished, timeout, "the end of the run", interval=0.2)


@pytest.mark.slow
def test_role_only_distributed_replay_equals_in_process(imported: Path, tmp_path: Path) -> None:
    """With only their built-in roles, the time authority and six actor processes replay
    through an authenticating router without a refusal, into the in-process run's bytes."""
    reference = tmp_path / "reference"
    shutil.copytree(imported, reference)
    run_tape(
        "replay", "--from", FROM, "--to", TO, "--in-process", "--actors", ITEMS,
        "--run-id", "roles", "--data-dir", str(reference), "-q",
    )  # fmt: skip
    expected = hash_namespace(reference, "runs/roles")
    families = {topic.split(".")[0] + "." + topic.split(".")[1] for topic in expected}
    for family in ("strategy.intent", "risk.approved", "order.filled", "pnl.update"):
        assert family in families, f"the window has no {family}: choose another"

    source = tmp_path / "router-host"
    shutil.copytree(imported, source)
    roles = {identity: role for identity, (_, role) in ACTORS.items()} | {"replay": "replay"}
    token_file, tokens = _tokens(tmp_path, roles)
    processes: list[Tape] = []
    try:
        router, url = _router(tmp_path, source, token_file)
        processes.append(router)
        actors = {
            identity: _actor(tmp_path, identity, args, url, "roles", tokens[identity])
            for identity, (args, _) in ACTORS.items()
        }
        processes += actors.values()
        clock = _clock(tmp_path, url, source, "roles", ITEMS, tokens["replay"])
        processes.append(clock)
        _wait_run(clock, actors, 120)
        for identity, actor in actors.items():
            assert actor.process.wait(30) == 0, f"{identity}: {actor.output()[-3000:]}"
    finally:
        for process in reversed(processes):
            process.stop(5)

    refusals = [line for line in router.output().splitlines() if "refused" in line]
    assert refusals == []
    assert hash_namespace(source, "runs/roles") == expected


@pytest.mark.slow
def test_tape_replay_router_with_a_token_dir(imported: Path, tmp_path: Path) -> None:
    """``tape replay --router URL --token-dir DIR``: the time authority connects as
    ``replay`` with ``DIR/replay.token`` and gives each actor process it starts
    ``--token-file DIR/<identity>.token``; with role-only tokens the run equals the
    in-process one. A missing token file is named before anything starts."""
    window = ("--from", FROM, "--to", "2024-01-02T02:00")
    reference = tmp_path / "reference"
    shutil.copytree(imported, reference)
    run_tape(
        "replay", *window, "--in-process", "--actors", ITEMS, "--run-id", "dir",
        "--data-dir", str(reference), "-q",
    )  # fmt: skip
    source = tmp_path / "router-host"
    shutil.copytree(imported, source)
    roles = {identity: role for identity, (_, role) in ACTORS.items()} | {"replay": "replay"}
    (tmp_path / "tokens").mkdir()
    token_file, _files = _tokens(tmp_path / "tokens", roles)
    router, url = _router(tmp_path, source, token_file)
    try:
        replay = [str(TAPE), "--log-level", "warning", "replay", *window, "--router", url,
                  "--actors", ITEMS, "--run-id", "dir", "--data-dir", str(source), "-q"]  # fmt: skip
        (tmp_path / "tokens" / "pnl.token").rename(tmp_path / "pnl.token")
        missing = subprocess.run(
            [*replay, "--token-dir", str(tmp_path / "tokens")],
            capture_output=True, text=True, cwd=REPO, check=False,
        )  # fmt: skip
        assert missing.returncode != 0
        assert "pnl.token" in missing.stderr
        assert "token file not found" in missing.stderr
        assert not (source / "logs" / "runs" / "dir").exists()
        (tmp_path / "pnl.token").rename(tmp_path / "tokens" / "pnl.token")
        done = subprocess.run(
            [*replay, "--token-dir", str(tmp_path / "tokens")],
            capture_output=True, text=True, cwd=REPO, check=False, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        router.stop(5)
    assert "refused" not in router.output()
    assert hash_namespace(source, "runs/dir") == hash_namespace(reference, "runs/dir")


@pytest.mark.slow
def test_actor_publishing_outside_its_role_is_refused(imported: Path, tmp_path: Path) -> None:
    """In a role-only distributed replay, a strategy approving its own order is stopped by
    its host, a user's actor with the indicators role forging a clock drift alert by the
    router (FORBIDDEN); each exits non-zero saying what it may not publish, nothing of
    either is stored, and the run waits for them."""
    source = tmp_path / "router-host"
    shutil.copytree(imported, source)
    main_before = hash_namespace(source, "main")
    token_file, tokens = _tokens(
        tmp_path, {"strategy.sma": "strategy", "signals": "indicators", "replay": "replay"}
    )
    processes: list[Tape] = []
    try:
        router, url = _router(tmp_path, source, token_file)
        processes.append(router)
        strategy = _actor(
            tmp_path, "strategy", [f"{ROGUES}:SelfApprovingStrategy"], url, "rogue",
            tokens["strategy.sma"],
        )  # fmt: skip
        forger = _actor(
            tmp_path, "signals", [f"{ROGUES}:DriftForger"], url, "rogue", tokens["signals"]
        )
        processes += [strategy, forger]
        items = f"{ROGUES}:SelfApprovingStrategy,{ROGUES}:DriftForger"
        clock = _clock(tmp_path, url, source, "rogue", items, tokens["replay"])
        processes.append(clock)

        assert strategy.process.wait(30) == 1, strategy.output()[-3000:]
        assert (
            "error: actor 'strategy.sma' may not publish on 'risk.approved.sma': its role "
            "allows strategy.intent.sma, strategy.intent.sma.>" in strategy.output()
        ), strategy.output()[-3000:]
        assert forger.process.wait(30) == 1, forger.output()[-3000:]
        refused = "error: [FORBIDDEN] 1 envelope(s) refused; first signals:1: identity 'signals'"
        assert refused in forger.output(), forger.output()[-3000:]
        assert "may not publish on 'system.clock.drift'" in forger.output()
        forbidden = [
            line
            for line in router.output().splitlines()
            if '"FORBIDDEN"' in line and '"identity":"signals"' in line
        ]
        assert forbidden, "the router did not log the refusal with the identity"
        # The run waits for the actors it lost (docs/deploy.md §4): nothing to commit.
        eventually(lambda: clock.log_events("reannounce"), 20, "the clock to re-announce")
        assert clock.alive()
    finally:
        for process in reversed(processes):
            process.stop(5)

    assert LogReader(source, "runs/rogue").topics() == ["system.run_manifest"]
    assert hash_namespace(source, "main") == main_before


def test_in_process_replay_refuses_an_operator_command_from_an_actor(source_dir: Path) -> None:
    """In one process, a user's own actor sending the risk gate a command (``resume``)
    is refused at publish time, as the role-only router refuses it (only the operator
    role may): nothing of it is stored."""
    specs = [resolve(f"{ROGUES}:OperatorImpostor"), resolve("risk")]
    with pytest.raises(PublishNotAllowedError) as failed:
        run_in_process(source_dir, RunSettings(run_id="r1", start_ns=0), specs)
    assert (failed.value.actor, failed.value.topic) == ("signals", "system.command.risk")
    assert "system.command.>" in failed.value.allowed  # the reserved families, in words
    assert "system.command.risk" not in LogReader(source_dir, "runs/r1").topics()
