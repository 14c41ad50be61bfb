"""`--token-file FILE` on every command that connects to a router (issue 7).

The option pair is defined once (``tickertape.cli.options.token_options``): the error
cases run in-process through click for each command; the working case runs real
processes against a router that requires tokens, with token files written by
`tape token create NAME --role ROLE`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.cli.support import connected
from tests.system.processes import TAPE, Tape, eventually, free_port
from tickertape.cli.main import cli

UNREACHABLE = "ws://127.0.0.1:9"
"""Nothing listens there: a command that got past its options would fail to connect."""

COMMANDS: dict[str, list[str]] = {
    "actor": ["actor", "risk", "--router", UNREACHABLE],
    "clock": ["clock", "--mode", "live", "--router", UNREACHABLE],
    "clock ctl": ["clock", "ctl", "pause", "--router", UNREACHABLE],
    "clock query": ["clock", "query", "--router", UNREACHABLE],
    "feed": ["feed", "--router", UNREACHABLE],
    "tail": ["tail", "--router", UNREACHABLE],
    "stats": ["stats", "--router", UNREACHABLE],
    "append": ["append", "--router", UNREACHABLE, "--identity", "md"],
    "halt": ["halt", "--reason", "test", "--router", UNREACHABLE],
    "resume": ["resume", "--router", UNREACHABLE],
}


def _invoke(args: list[str]) -> tuple[int, str]:
    env = {"TAPE_TOKEN": None, "TAPE_TOKEN_FILE": None}
    result = CliRunner().invoke(cli, args, env=env, input="")
    return result.exit_code, result.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_missing_token_file_is_a_usage_error_naming_it(command: str, tmp_path: Path) -> None:
    """A token file that does not exist: exit 2, naming --token-file and the path."""
    missing = tmp_path / "nope.token"
    code, output = _invoke([*COMMANDS[command], "--token-file", str(missing)])
    assert code == 2, output
    assert "--token-file" in output
    assert str(missing) in output
    assert "not found" in output


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"  \n\n", "empty"),
        (b'# tokens\n[identities.risk]\ntoken_sha256 = "ab"\n', "more than one word"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
    ids=["empty", "blank", "acl-file", "binary"],
)
@pytest.mark.parametrize("command", ["actor", "clock", "feed", "tail"])
def test_unusable_token_file_is_a_usage_error_saying_why(
    command: str, content: bytes, reason: str, tmp_path: Path
) -> None:
    """An empty, blank, multi-line (the router's tokens.toml) or binary token file:
    exit 2 with what is wrong and where."""
    path = tmp_path / "bad.token"
    path.write_bytes(content)
    code, output = _invoke([*COMMANDS[command], "--token-file", str(path)])
    assert code == 2, output
    assert str(path) in output
    assert reason in output


def test_a_directory_is_not_a_token_file(tmp_path: Path) -> None:
    """A directory given as --token-file: exit 2 saying so."""
    code, output = _invoke([*COMMANDS["actor"], "--token-file", str(tmp_path)])
    assert code == 2, output
    assert "directory" in output


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_token_file_is_a_usage_error(tmp_path: Path) -> None:
    """A token file without read permission: exit 2 with the system's reason."""
    path = tmp_path / "secret.token"
    path.write_text("abc\n")
    path.chmod(0)
    code, output = _invoke([*COMMANDS["clock"], "--token-file", str(path)])
    assert code == 2, output
    assert "Permission denied" in output


@pytest.mark.parametrize("command", ["actor", "clock", "feed", "stats"])
def test_token_and_token_file_are_mutually_exclusive(command: str, tmp_path: Path) -> None:
    """--token with --token-file on one command line: exit 2, naming both."""
    path = tmp_path / "x.token"
    path.write_text("abc\n")
    code, output = _invoke([*COMMANDS[command], "--token", "abc", "--token-file", str(path)])
    assert code == 2, output
    assert "--token and --token-file are mutually exclusive" in output


def test_every_connecting_command_documents_token_file() -> None:
    """`--help` of each command that connects lists --token-file next to --token."""
    for command in COMMANDS:
        code, output = _invoke([*command.split(), "--help"])
        assert code == 0, output
        assert "--token-file FILE" in output, command
        assert "--token TEXT" in output, command


def _create_token(tmp_path: Path, name: str, role: str) -> Path:
    """`tape token create NAME --role ROLE` into tokens.toml; the token's file."""
    proc = subprocess.run(
        [str(TAPE), "token", "create", name, "--role", role, "--token-file", "tokens.toml"],
        cwd=tmp_path,
        capture_output=True,
        check=True,
    )
    path = tmp_path / f"{name}.token"
    path.write_bytes(proc.stdout)
    return path


@pytest.mark.slow
def test_actor_and_clock_authenticate_with_their_token_files(tmp_path: Path) -> None:
    """Against a router that requires tokens, `tape actor risk --token-file` and `tape
    clock --token-file` connect (the inspector sees them, through its own token file);
    another identity's token file is refused with a clear error (exit 1)."""
    risk = _create_token(tmp_path, "risk", "risk")
    clock = _create_token(tmp_path, "timeauthority", "timeauthority")
    inspector = _create_token(tmp_path, "inspector", "inspector")
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    router = Tape(
        "router",
        [
            "router",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "router"),
            "--token-file",
            str(tmp_path / "tokens.toml"),
        ],
        tmp_path,
    )
    processes = [router]
    try:
        eventually(lambda: "router listening" in router.output(), 30, "the router")
        actor = Tape(
            "risk",
            [
                "actor",
                "risk",
                "--router",
                url,
                "--token-file",
                str(risk),
                "--data-dir",
                str(tmp_path / "risk"),
            ],
            tmp_path,
        )
        time_authority = Tape(
            "clock", ["clock", "--mode", "live", "--router", url], tmp_path,
            env={"TAPE_TOKEN_FILE": str(clock)},
        )  # fmt: skip
        processes += [actor, time_authority]
        eventually(connected(url, "risk", token_file=inspector), 30, "risk to connect")
        eventually(connected(url, "timeauthority", token_file=inspector), 30, "the clock")
        for process in (actor, time_authority):
            process.signal(signal.SIGTERM)
            assert process.process.wait(30) == 0, process.output()[-2000:]

        wrong = subprocess.run(
            [
                str(TAPE),
                "actor",
                "pnl",
                "--router",
                url,
                "--token-file",
                str(risk),
                "--data-dir",
                str(tmp_path / "pnl"),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert wrong.returncode == 1
        assert b"identity 'pnl'" in wrong.stderr
        assert b"Traceback" not in wrong.stderr
    finally:
        for process in reversed(processes):
            process.stop()
    logs = [json.loads(line) for line in router.output().splitlines() if line.startswith("{")]
    identities = {e.get("identity") for e in logs if e.get("event") == "authenticated"}
    assert {"risk", "timeauthority", "inspector"} <= identities
