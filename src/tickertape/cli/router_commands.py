"""``tape router``, ``tape eventlog`` and ``tape token create``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click

from tickertape.allocator import fix_mmap_threshold
from tickertape.cli.options import data_dir_option, parse_retention
from tickertape.cli.process import run_until_stopped
from tickertape.errors import ConfigError
from tickertape.loop import unless_stopped
from tickertape.router.auth import ROLES, create_token, role_patterns
from tickertape.router.logservice import LogService
from tickertape.router.protocol import Limits
from tickertape.router.server import Router, RouterConfig

seal_option = click.option(
    "--seal/--no-seal",
    default=True,
    show_default=True,
    help="Seal each topic's day files that are over (zstd) while running.",
)
"""``--seal/--no-seal`` of the commands that run the event log (docs/operations.md)."""


retain_option = click.option(
    "--retain",
    "retention",
    multiple=True,
    metavar="PATTERN=DAYS",
    callback=parse_retention,
    help="While running, delete whole days of topics matching PATTERN older than DAYS "
    "days (first match wins; checked at start and hourly; not in runs/ namespaces).",
)
"""``--retain`` of the commands that run the event log (docs/operations.md)."""


def _serve(main: Callable[[], Coroutine[Any, Any, None]], command: str) -> None:
    """Run ``main`` on uvloop (asyncio elsewhere) until SIGINT or SIGTERM (exit status 0),
    with glibc's mmap threshold fixed (:func:`~tickertape.allocator.fix_mmap_threshold`)."""

    async def until_stopped(stop: asyncio.Event) -> None:
        await unless_stopped(stop, main(), name=command)

    fix_mmap_threshold()  # before the log's writer threads start (tickertape.allocator)
    run_until_stopped(until_stopped, command=command, use_uvloop=True)


@click.command("router")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=7400, show_default=True, type=int, help="TCP port (0: any).")
@data_dir_option("Data directory of the embedded event log.")
@click.option("--namespace", default="main", show_default=True, help="Default namespace.")
@click.option(
    "--log-url",
    default=None,
    help="URL of a `tape eventlog` process; the log runs embedded when omitted.",
)
@click.option(
    "--token-file",
    default=None,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Tokens and ACL (TOML); required to bind beyond loopback.",
)
@click.option("--tls-cert", default=None, type=click.Path(dir_okay=False, exists=True))
@click.option("--tls-key", default=None, type=click.Path(dir_okay=False, exists=True))
@click.option("--max-frame-bytes", default=Limits().max_frame_bytes, show_default=True, type=int)
@click.option("--max-batch-events", default=Limits().max_batch_events, show_default=True, type=int)
@click.option(
    "--max-subscriptions", default=Limits().max_subscriptions, show_default=True, type=int
)
@click.option(
    "--max-frames-per-s", default=Limits().max_frames_per_s, show_default=True, type=float
)
@click.option(
    "--max-events-per-s", default=Limits().max_events_per_s, show_default=True, type=float
)
@click.option(
    "--send-queue-frames", default=Limits().send_queue_frames, show_default=True, type=int
)
@click.option("--health-interval", default=1.0, show_default=True, type=float, help="Seconds.")
@click.option("--accept-unknown-types", is_flag=True, help="Let through (type, v) with no schema.")
@click.option("--compression", is_flag=True, help="Enable permessage-deflate (slower on a LAN).")
@seal_option
@retain_option
def router_command(
    host: str,
    port: int,
    data_dir: Path,
    namespace: str,
    log_url: str | None,
    token_file: Path | None,
    tls_cert: str | None,
    tls_key: str | None,
    max_frame_bytes: int,
    max_batch_events: int,
    max_subscriptions: int,
    max_frames_per_s: float,
    max_events_per_s: float,
    send_queue_frames: int,
    health_interval: float,
    accept_unknown_types: bool,
    compression: bool,
    seal: bool,
    retention: tuple[tuple[str, int], ...],
) -> None:
    """Run the router: authenticate, validate, log, fan out (ws://127.0.0.1:7400)."""
    config = RouterConfig(
        host=host,
        port=port,
        data_dir=str(data_dir),
        namespace=namespace,
        log_url=log_url,
        token_file=None if token_file is None else str(token_file),
        tls_cert=tls_cert,
        tls_key=tls_key,
        limits=Limits(
            max_frame_bytes=max_frame_bytes,
            max_batch_events=max_batch_events,
            max_subscriptions=max_subscriptions,
            max_frames_per_s=max_frames_per_s,
            max_events_per_s=max_events_per_s,
            send_queue_frames=send_queue_frames,
        ),
        health_interval_s=health_interval,
        accept_unknown_types=accept_unknown_types,
        compression=compression,
        seal=seal,
        retention=retention,
    )

    async def main() -> None:
        router = Router(config)
        try:
            await router.start()
            click.echo(f"router listening on {router.url}", err=True)
            await router.serve_forever()
        finally:
            await router.close()

    _serve(main, "router")


@click.command("eventlog")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=7401, show_default=True, type=int, help="TCP port (0: any).")
@data_dir_option("Data directory of the log.")
@seal_option
@retain_option
def eventlog_command(
    host: str, port: int, data_dir: Path, seal: bool, retention: tuple[tuple[str, int], ...]
) -> None:
    """Run the event log as its own process, for `tape router --log-url`."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise click.BadParameter(
            "the log service trusts its clients: bind loopback", param_hint="--host"
        )

    async def main() -> None:
        service = LogService(data_dir, host, port, seal=seal, retention=retention)
        try:
            await service.start()
            click.echo(f"eventlog listening on ws://{host}:{service.port}", err=True)
            await service.serve_forever()
        finally:
            await service.close()

    _serve(main, "eventlog")


@click.group("token")
def token_group() -> None:
    """Manage router tokens and ACLs."""


@token_group.command("create")
@click.argument("name")
@click.option(
    "--role",
    default=None,
    type=click.Choice(sorted(ROLES)),
    help="Start from this role's patterns (see `tape token roles`).",
)
@click.option("--publish", "publish", multiple=True, help="Topic pattern it may publish (repeat).")
@click.option("--subscribe", "subscribe", multiple=True, help="Pattern it may subscribe (repeat).")
@click.option("--commit", is_flag=True, help="May commit staged batches (the replay driver).")
@click.option(
    "--token-file",
    default="tokens.toml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The token file to create or update.",
)
def token_create(
    name: str,
    role: str | None,
    publish: tuple[str, ...],
    subscribe: tuple[str, ...],
    commit: bool,
    token_file: Path,
) -> None:
    """Create or replace NAME's token; prints the token once (only its hash is kept).

    With --role, NAME gets the role's patterns (a strategy's identity is
    strategy.<id>); --publish and --subscribe add to them.
    """
    try:
        token = create_token(
            token_file, name, publish=publish, subscribe=subscribe, commit=commit, role=role
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(token)
    click.echo(
        f"identity {name!r} written to {token_file} (keep the token: it is not stored)", err=True
    )


@token_group.command("roles")
def token_roles() -> None:
    """Print the built-in roles and the patterns they grant ({id}: the identity)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="roles for `tape token create NAME --role ROLE`")
    for column in ("role", "publishes", "subscribes", "commit", "what"):
        table.add_column(column)
    for name in sorted(ROLES):
        identity = "strategy.{strategy}" if name == "strategy" else "{id}"
        publish, subscribe, commit = role_patterns(name, identity)
        table.add_row(
            name,
            "\n".join(publish) or "-",
            "\n".join(subscribe) or "-",
            "yes" if commit else "",
            ROLES[name].description,
        )
    Console().print(table)


COMMANDS: list[click.Command] = [router_command, eventlog_command, token_group]
