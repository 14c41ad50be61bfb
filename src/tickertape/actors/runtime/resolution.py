"""From a name or an import path to a configured actor instance.

Convention (docs/replay.md): each actor package ``tickertape.actors.<name>`` exposes in
its ``__init__``

- ``ACTOR_CLASS``: the :class:`~tickertape.actors.base.Actor` subclass the runtime hosts;
- ``CONFIG_CLASS``: its configuration, a msgspec Struct with ``forbid_unknown_fields=True``;

and the actor's constructor takes ``(config: CONFIG_CLASS | None = None)``.

Anything else is loaded by import path, ``package.module:Class``:

- an :class:`Actor` subclass is hosted as is; its configuration type is its
  ``CONFIG_CLASS`` class attribute, when it has one;
- a user strategy (a subclass of ``tickertape.actors.strategy.Strategy``) is hosted by the
  strategy package's actor, with ``strategy`` set to the path in its configuration.

Configuration files are TOML (``tomllib``), converted with msgspec: unknown fields,
wrong types and missing required fields are :class:`~tickertape.errors.ConfigError`
naming the file and the field path.
"""

from __future__ import annotations

import hashlib
import importlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from tickertape.actors.base import Actor
from tickertape.errors import ConfigError
from tickertape.importing import import_object

ACTOR_PACKAGES: tuple[str, ...] = ("indicators", "strategy", "risk", "orders", "pnl", "marketdata")
"""The actor packages of the project, in pipeline order."""


@dataclass(frozen=True, slots=True)
class ActorSpec:
    """A resolved actor: the instance, where it came from and its configuration.

    Attributes:
        name: the actor's source identity (``actor.name`` after construction).
        actor: the instance.
        origin: the package name or ``package.module:Class`` it was loaded from.
        config: the configuration as JSON-ready builtins (None when it takes none).
    """

    name: str
    actor: Actor
    origin: str
    config: Any

    def fingerprint(self) -> dict[str, Any]:
        """The part of a run's configuration hash this actor contributes."""
        return {"name": self.name, "origin": self.origin, "config": self.config}


def load_config(path: str | Path | None, config_class: type[Any] | None) -> Any:
    """Load ``path`` (TOML) as ``config_class``; None without a file.

    Raises:
        ConfigError: unreadable file, invalid TOML, or a value msgspec refuses; or a
            file given for an actor that takes no configuration.
    """
    if path is None:
        return None
    if config_class is None:
        raise ConfigError("this actor takes no configuration file", path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path) from None
    try:
        return msgspec.convert(raw, config_class)
    except msgspec.ValidationError as exc:
        raise ConfigError(str(exc), path) from None


def resolve_package(name: str, config_path: str | Path | None = None) -> ActorSpec:
    """Build the actor of package ``tickertape.actors.<name>``.

    Raises:
        ConfigError: unknown package, no ``ACTOR_CLASS``, or a bad configuration.
    """
    if not name.isidentifier() or name == "runtime":
        raise ConfigError(f"{name!r} is not an actor package name")
    try:
        module = importlib.import_module(f"tickertape.actors.{name}")
    except ModuleNotFoundError:
        raise ConfigError(
            f"no actor package {name!r} (known: {', '.join(ACTOR_PACKAGES)}); "
            "load other actors with package.module:Class"
        ) from None
    actor_class = getattr(module, "ACTOR_CLASS", None)
    if actor_class is None:
        raise ConfigError(f"tickertape.actors.{name} exposes no ACTOR_CLASS")
    config_class = getattr(module, "CONFIG_CLASS", None)
    return _build(actor_class, config_class, config_path, origin=name)


def resolve_path(path: str, config_path: str | Path | None = None) -> ActorSpec:
    """Build the actor (or strategy) class at import path ``package.module:Class``.

    Raises:
        ConfigError: the path does not import, is neither an Actor nor a Strategy
            subclass, or the configuration is bad.
    """
    cls = import_object(path, "actor")
    if cls is None:
        raise ConfigError(f"{path!r}: no {path.partition(':')[2]!r} in its module")
    if isinstance(cls, type) and issubclass(cls, Actor):
        return _build(cls, getattr(cls, "CONFIG_CLASS", None), config_path, origin=path)
    from tickertape.actors.strategy import CONFIG_CLASS, Strategy, StrategyActor

    if isinstance(cls, type) and issubclass(cls, Strategy):
        config = load_config(config_path, CONFIG_CLASS) or CONFIG_CLASS()
        config = msgspec.structs.replace(config, strategy=path)
        actor = _construct(StrategyActor, config, config_path)
        return ActorSpec(
            name=actor.name, actor=actor, origin=path, config=msgspec.to_builtins(config)
        )
    raise ConfigError(f"{path!r} is neither an Actor nor a Strategy subclass")


def resolve(item: str) -> ActorSpec:
    """Resolve one ``--actors`` item: ``NAME`` or ``package.module:Class``, then
    optionally ``@config.toml``.

    Raises:
        ConfigError: as :func:`resolve_package` and :func:`resolve_path`.
    """
    target, _, config = item.partition("@")
    config_path = config or None
    if ":" in target:
        return resolve_path(target, config_path)
    return resolve_package(target, config_path)


def config_hash(specs: list[ActorSpec], extra: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of the actors' fingerprints and ``extra``."""
    doc = {"actors": sorted((s.fingerprint() for s in specs), key=lambda d: d["name"]), **extra}
    return hashlib.sha256(msgspec.json.encode(doc, order="sorted")).hexdigest()


def _build(
    actor_class: type[Actor],
    config_class: type[Any] | None,
    config_path: str | Path | None,
    *,
    origin: str,
) -> ActorSpec:
    config = load_config(config_path, config_class)
    if config is None and config_class is not None:
        try:
            config = config_class()
        except TypeError as exc:
            raise ConfigError(f"{origin}: configuration required ({exc})") from None
    actor = _construct(actor_class, config, config_path)
    builtins = None if config is None else msgspec.to_builtins(config)
    return ActorSpec(name=actor.name, actor=actor, origin=origin, config=builtins)


def _construct(actor_class: type[Actor], config: Any, config_path: str | Path | None) -> Actor:
    try:
        return actor_class(config) if config is not None else actor_class()  # type: ignore[call-arg]
    except ConfigError as exc:
        if exc.path is None and config_path is not None:
            raise ConfigError(exc.detail, config_path) from None
        raise
