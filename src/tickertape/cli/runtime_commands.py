"""``tape replay``, ``tape clock`` and ``tape actor``: the runtime's commands.

- ``tape replay --from DATE [...]``: re-run actors over recorded history into
  ``runs/<run-id>`` (in this process, or distributed through a router).
- ``tape clock --mode live|backtest|replay``: the time authority service;
  ``tape clock ctl pause|resume|seek TIME|speed N|max`` controls it.
- ``tape actor NAME --router URL``: host one actor in this process through a router.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
import msgspec
import structlog
from rich.console import Console
from rich.table import Table

from tickertape.actors.runtime.resolution import ACTOR_PACKAGES, ActorSpec, config_hash, resolve
from tickertape.cli.options import data_dir_option, format_ns, parse_time, token_options
from tickertape.errors import ConfigError
from tickertape.replay.inprocess import run_in_process
from tickertape.replay.manifest import RunSettings
from tickertape.replay.progress import ReplayProgress
from tickertape.snapshots.policy import SnapshotPolicy
from tickertape.timeauthority import control as _clock_control  # noqa: F401 (registers the schema)
from tickertape.timeauthority.pacing import Pacer, parse_speed

DEFAULT_ACTORS: tuple[str, ...] = ("indicators", "risk", "orders", "pnl")
"""Actors replayed when ``--actors`` is not given (strategies must be named)."""

console = Console(stderr=True)


def resolve_actors(items: tuple[str, ...]) -> list[ActorSpec]:
    """Resolve ``--actors`` items (repeatable, comma-separated); defaults when empty.

    Raises:
        ConfigError: an item does not resolve, or two actors share a name.
    """
    names = [i.strip() for item in items for i in item.split(",") if i.strip()]
    specs: list[ActorSpec] = []
    if not names:
        for name in DEFAULT_ACTORS:
            try:
                specs.append(resolve(name))
            except ConfigError as exc:
                console.print(f"[yellow]skipping actor {name}:[/] {exc}")
    else:
        specs = [resolve(n) for n in names]
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.name in seen:
            raise ConfigError(f"two actors named {spec.name!r} ({seen[spec.name]}, {spec.origin})")
        seen[spec.name] = spec.origin
    return specs


def _estimate_end(data_dir: Path, settings: RunSettings) -> int | None:
    if settings.end_ns is not None:
        return settings.end_ns
    from tickertape.eventlog import LogReader

    reader = LogReader(data_dir, settings.source_namespace)
    ends = [reader.topic_summary(t).last_ts for t in reader.topics(settings.topics)]
    return max(ends, default=None)


@click.command("replay")
@click.option("--from", "from_", required=True, help="Start: 2024-01-01, an ISO time, or ns.")
@click.option("--to", "to", default=None, help="End (a bare date includes that day).")
@click.option("--speed", default="max", show_default=True, help="max, or N × wall time.")
@click.option("--topics", multiple=True, help="Input topic patterns (repeatable). Default: md.>")
@click.option(
    "--actors",
    multiple=True,
    help="NAME or package.module:Class, optionally @config.toml (repeatable, or comma-"
    f"separated). Default: {', '.join(DEFAULT_ACTORS)}. Packages: {', '.join(ACTOR_PACKAGES)}.",
)
@click.option("--in-process", "mode", flag_value="in-process", default=True, help="Default.")
@click.option("--router", "router_url", default=None, help="Distributed, via this router URL.")
@click.option(
    "--distributed",
    "mode",
    flag_value="distributed",
    help="Distributed on this machine: an embedded router and one process per actor.",
)
@click.option(
    "--token-dir",
    default=None,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="With --router, for a router with tokens: the folder of each identity's token "
    "file, <identity>.token (replay.token for this time authority, strategy.sma.token...).",
)
@click.option("--run-id", default=None, help="Default: <from>-<config hash>.")
@click.option("--source-namespace", default="main", show_default=True)
@data_dir_option("Directory holding logs/ and snapshots/.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of ctx.random.")
@click.option(
    "--snapshot-every",
    default=100_000,
    show_default=True,
    type=int,
    help="Snapshot the actors every N events (0: never).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its snapshots.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def replay_command(
    from_: str,
    to: str | None,
    speed: str,
    topics: tuple[str, ...],
    actors: tuple[str, ...],
    mode: str,
    router_url: str | None,
    token_dir: Path | None,
    run_id: str | None,
    source_namespace: str,
    data_dir: Path,
    seed: int,
    snapshot_every: int,
    resume: bool,
    quiet: bool,
) -> None:
    """Re-run actors over recorded history into runs/<run-id>, byte-identical every time."""
    if token_dir is not None and router_url is None:
        raise click.UsageError("--token-dir goes with --router URL (a router with tokens)")
    if resume and (mode != "in-process" or router_url is not None):
        raise click.UsageError(
            "--resume continues an in-process run only; a distributed run cannot be "
            "resumed (its actors restart from their snapshots while it runs): start it "
            "again under another --run-id"
        )
    start_ns = parse_time(from_)
    end_ns = None if to is None else parse_time(to, end=True)
    if end_ns is not None and end_ns <= start_ns:
        raise ConfigError(f"--to {to} is not after --from {from_}")
    specs = resolve_actors(actors)
    patterns = list(topics) or ["md.>"]
    settings = RunSettings(
        run_id=run_id or "pending",
        source_namespace=source_namespace,
        start_ns=start_ns,
        end_ns=end_ns,
        topics=patterns,
        seed=seed,
    )
    if run_id is None:
        unnamed = msgspec.structs.replace(settings, run_id="")
        digest = config_hash(specs, {"settings": msgspec.to_builtins(unnamed)})
        settings = msgspec.structs.replace(settings, run_id=f"{from_[:10]}-{digest[:10]}")
    policy = (
        SnapshotPolicy(every_events=snapshot_every, every_ns=None) if snapshot_every > 0 else None
    )
    pacer = Pacer(parse_speed(speed))
    if router_url is not None:
        mode = "router"
    from tickertape.replay.keyboard import KeyboardControl

    keyboard = KeyboardControl(
        pacer, announce=lambda change: console.print(f"[bold]{change}"), parse_time=parse_time
    )
    if mode != "in-process":
        from tickertape.replay.distributed import run_distributed_cli

        with keyboard:
            result = run_distributed_cli(
                data_dir,
                settings,
                specs,
                actor_items=actors,
                router_url=router_url,
                pacer=pacer,
                snapshot_every=snapshot_every,
                quiet=quiet,
                token_dir=token_dir,
            )
    else:
        with (
            ReplayProgress(
                start_ns,
                _estimate_end(data_dir, settings),
                enabled=not quiet and sys.stderr.isatty(),
            ) as progress,
            keyboard,
        ):
            result = run_in_process(
                data_dir,
                settings,
                specs,
                pacer=pacer,
                progress=progress,
                snapshot_policy=policy,
                resume=resume,
                respec=lambda: resolve_actors(actors),
            )
    table = Table(title=f"replay {result.run_id}")
    table.add_column("namespace")
    table.add_column("actors")
    table.add_column("steps", justify="right")
    table.add_column("inputs", justify="right")
    table.add_column("outputs", justify="right")
    table.add_column("divergences", justify="right")
    table.add_column("wall s", justify="right")
    table.add_row(
        result.namespace,
        ", ".join(sorted(s.name for s in specs)),
        f"{result.steps:,}",
        f"{result.input_events:,}",
        f"{result.output_events:,}",
        str(result.divergences),
        f"{result.wall_seconds:.2f}",
    )
    Console().print(table)
    if result.divergences:
        raise click.ClickException(
            f"{result.divergences} divergences: see the system.alert events of {result.namespace}"
        )


@click.command("actor")
@click.argument("name", required=False)
@click.option(
    "--router", "router_url", required=True, help="Router URL (ws://HOST:PORT or wss://HOST:PORT)."
)
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False))
@click.option("--strategy", default=None, help="package.module:Class (a Strategy or an Actor).")
@token_options
@click.option("--replay", "replay_run", default=None, help="Join the distributed replay RUN-ID.")
@click.option(
    "--source-namespace",
    default="main",
    show_default=True,
    help="With --replay: the namespace the replay reads (its control messages travel there).",
)
@data_dir_option("Where this actor's snapshots are kept.")
def actor_command(
    name: str | None,
    router_url: str,
    config_file: str | None,
    strategy: str | None,
    token: str | None,
    replay_run: str | None,
    source_namespace: str,
    data_dir: Path,
) -> None:
    """Host one actor in this process through the router.

    NAME is an actor package (indicators, strategy, risk, orders, pnl) or
    package.module:Class; --strategy loads a strategy or actor class by path. Live
    (without --replay), SIGINT or SIGTERM stops it cleanly: on_stop, outputs flushed,
    a final snapshot, exit status 0.
    """

    from tickertape.actors.runtime.resolution import resolve_package, resolve_path
    from tickertape.cli.process import run_until_stopped, serve_feed, serve_live_actor

    target = strategy or name
    if not target:
        raise click.UsageError("give an actor NAME or --strategy package.module:Class")
    if ":" in target:
        spec = resolve_path(target, config_file)
    else:
        spec = resolve_package(target, config_file)
    if replay_run is None and spec.name == "marketdata":
        # Live, the market-data actor is the venue feed (`tape feed` with its defaults:
        # the local exchange simulator); `tape feed` takes the venue's options.
        if config_file is not None:
            raise click.UsageError(
                "live market data takes the venue's options on `tape feed` "
                "(--url, --symbol, --bars); --config is for replays"
            )
        from tickertape.actors.marketdata.actor import LiveFeedConfig

        config = LiveFeedConfig()
        run_until_stopped(
            lambda stop: serve_feed(stop, router_url, config, data_dir, token=token),
            command="actor marketdata",
        )
        return
    if replay_run is None:
        actor = spec.actor
        run_until_stopped(
            lambda stop: serve_live_actor(
                stop, router_url, actor, spec.name, data_dir, token=token
            ),
            command=f"actor {spec.name}",
        )
        return
    from tickertape.actors.runtime.remote import run_replay_actor
    from tickertape.loop import unless_stopped

    async def replay_actor(stop: asyncio.Event) -> None:
        # SIGINT/SIGTERM: leave the run (the time authority waits for this actor, which
        # resumes from its newest snapshot when started again), exit 0.
        work = run_replay_actor(
            router_url,
            spec.actor,
            spec.name,
            replay_run,
            data_dir,
            token=token,
            control_namespace=source_namespace,
        )
        await unless_stopped(stop, work, name=f"actor-{spec.name}")

    run_until_stopped(replay_actor, command=f"actor {spec.name}", use_uvloop=True)


@click.group("clock", invoke_without_command=True)
@click.option(
    "--mode",
    type=click.Choice(["live", "backtest", "replay"]),
    default="live",
    show_default=True,
)
@click.option("--router", "router_url", default="ws://127.0.0.1:7400", show_default=True)
@token_options
@click.option("--namespace", default="main", show_default=True, help="Live: namespace served.")
@click.option("--drift-bound-ms", default=250.0, show_default=True, type=float)
@click.option("--from", "from_", default=None, help="Backtest/replay: start.")
@click.option("--to", "to", default=None, help="Backtest/replay: end.")
@click.option(
    "--speed",
    default=None,
    help="Backtest/replay: max or N times simulated time per wall time (default: "
    "backtest max, replay 1: as it happened).",
)
@click.option("--topics", multiple=True, help="Backtest/replay: input patterns (default md.>).")
@click.option("--actors", multiple=True, help="Backtest/replay: the actors that will join.")
@click.option("--run-id", default=None, help="Backtest/replay: the run (required).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--snapshot-every-steps", default=1_000, show_default=True, type=int)
@data_dir_option("Backtest/replay: the router's data directory (inputs are read from it).")
@click.pass_context
def clock_command(
    ctx: click.Context,
    mode: str,
    router_url: str,
    token: str | None,
    namespace: str,
    drift_bound_ms: float,
    from_: str | None,
    to: str | None,
    speed: str | None,
    topics: tuple[str, ...],
    actors: tuple[str, ...],
    run_id: str | None,
    seed: int,
    snapshot_every_steps: int,
    data_dir: Path,
) -> None:
    """The time authority: live clock and drift alerts, or the replay scheduler.

    Live: ticks on system.clock and system.clock.drift alerts beyond --drift-bound-ms.
    Backtest/replay: drives the actors started with `tape actor ... --replay RUN-ID`
    through the step/wave scheduler; the two modes differ only in their default pace
    (backtest: as fast as the slowest actor; replay: as it happened, speed 1).
    Control it with `tape clock ctl`. SIGINT or SIGTERM stops it cleanly (exit status
    0) in every mode; a replay stopped so is left without its summary.
    """
    from tickertape.client import Client

    if ctx.invoked_subcommand is not None:
        return
    if mode == "live":
        from tickertape.cli.process import run_until_stopped
        from tickertape.loop import unless_stopped
        from tickertape.timeauthority.drift import DriftMonitor
        from tickertape.timeauthority.service import IDENTITY, LiveClockService

        if not drift_bound_ms > 0:
            raise click.BadParameter("must be > 0", param_hint="--drift-bound-ms")
        monitor = DriftMonitor(bound_ns=int(drift_bound_ms * 1e6))

        async def serve() -> None:
            async with Client(router_url, IDENTITY, token) as client:
                service = LiveClockService(client, namespace=namespace, monitor=monitor)
                structlog.get_logger("tickertape.timeauthority").info(
                    "clock_started",
                    mode="live",
                    namespace=namespace,
                    drift_bound_ms=drift_bound_ms,
                )
                await service.run()

        async def live(stop: asyncio.Event) -> None:
            await unless_stopped(stop, serve(), name="clock")

        run_until_stopped(live, command="clock")
        return
    if from_ is None or run_id is None:
        raise click.UsageError(f"--mode {mode} needs --from and --run-id")
    from tickertape.replay.distributed import ReplayCoordinator
    from tickertape.replay.manifest import DRIVER_SOURCE

    start_ns = parse_time(from_)
    settings = RunSettings(
        run_id=run_id,
        source_namespace=namespace,
        start_ns=start_ns,
        end_ns=None if to is None else parse_time(to, end=True),
        topics=list(topics) or ["md.>"],
        seed=seed,
    )
    specs = resolve_actors(actors)
    digest = config_hash(specs, {"settings": msgspec.to_builtins(settings)})

    async def replay() -> None:
        async with Client(router_url, DRIVER_SOURCE, token) as client:
            coordinator = ReplayCoordinator(
                client,
                data_dir,
                settings,
                [s.name for s in specs],
                config_digest=digest,
                pacer=Pacer(parse_speed(speed or ("max" if mode == "backtest" else "1"))),
                snapshot_every_steps=snapshot_every_steps,
            )
            result = await coordinator.run()
            console.print(
                f"run {result.run_id}: {result.steps:,} steps, {result.input_events:,} inputs, "
                f"{result.output_events:,} outputs"
            )

    from tickertape.cli.process import run_until_stopped
    from tickertape.loop import unless_stopped

    async def replay_until_stopped(stop: asyncio.Event) -> None:
        # SIGINT/SIGTERM: stop announcing and exit 0; the run is left without its
        # summary (incomplete: `tape report` and a new run under another --run-id).
        finished, _ = await unless_stopped(stop, replay(), name="clock-replay")
        if not finished:
            structlog.get_logger("tickertape.timeauthority").warning(
                "replay_stopped", run_id=run_id, reason="signal: the run has no summary"
            )

    run_until_stopped(replay_until_stopped, command="clock", use_uvloop=True)


@clock_command.command("ctl")
@click.argument("command", type=click.Choice(["pause", "resume", "seek", "speed"]))
@click.argument("value", required=False)
@click.option("--router", "router_url", default="ws://127.0.0.1:7400", show_default=True)
@token_options
@click.option("--namespace", default="main", show_default=True, help="The namespace served.")
@click.option("--run-id", default=None, help="Address one run only.")
@click.option("--identity", default="clockctl", show_default=True)
def clock_ctl_command(
    command: str,
    value: str | None,
    router_url: str,
    token: str | None,
    namespace: str,
    run_id: str | None,
    identity: str,
) -> None:
    """Send pause, resume, seek TIME or speed N|max to the running time authority."""
    import asyncio
    import time

    from tickertape.client import Client
    from tickertape.schemas.registry import make_envelope
    from tickertape.timeauthority.control import CONTROL_TOPIC, ClockControl

    if command in ("seek", "speed") and value is None:
        raise click.UsageError(f"{command} needs a value")
    control = ClockControl(
        command=command,  # type: ignore[arg-type]
        run_id=run_id,
        time_ns=parse_time(value) if command == "seek" and value else None,
        speed=parse_speed(value) if command == "speed" and value else None,
    )
    now = time.time_ns()

    async def send() -> None:
        async with Client(router_url, identity, token) as client:
            env = make_envelope(
                control, topic=CONTROL_TOPIC, source=identity, source_seq=now, ts_event=now
            )
            await client.publish([env], ns=namespace, ephemeral=True)

    asyncio.run(send())
    console.print(f"sent {command}" + (f" {value}" if value else ""))


@clock_command.command("query")
@click.option("--router", "router_url", default="ws://127.0.0.1:7400", show_default=True)
@token_options
@click.option("--namespace", default="main", show_default=True, help="The namespace served.")
@click.option("--identity", default="clockctl", show_default=True)
@click.option("--samples", default=5, show_default=True, type=click.IntRange(1, 100))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object instead of text: authority_ns, rtt_ns, offset_ns (the "
    "authority's time minus this machine's: positive when this machine is behind).",
)
def clock_query_command(
    router_url: str, token: str | None, namespace: str, identity: str, samples: int, as_json: bool
) -> None:
    """Ask the live time authority for its time: this machine's offset and the round trip."""
    import asyncio

    from tickertape.client import Client
    from tickertape.timeauthority.query import TimeSample, query_time

    async def ask() -> TimeSample:
        async with Client(router_url, identity, token) as client:
            return await query_time(client, namespace=namespace, samples=samples)

    sample = asyncio.run(ask())
    if as_json:
        click.echo(msgspec.json.encode(sample).decode())
        return
    # offset_ns is the authority's time minus this machine's: positive, this one is behind.
    side = "behind" if sample.offset_ns > 0 else "ahead of"
    click.echo(
        f"authority time {format_ns(sample.authority_ns)}; this machine is "
        f"{abs(sample.offset_ns) / 1e6:.3f} ms {side} it (± {sample.rtt_ns / 2e6:.3f} ms, "
        f"round trip {sample.rtt_ns / 1e6:.3f} ms)"
    )


COMMANDS: list[click.Command] = [replay_command, actor_command, clock_command]
