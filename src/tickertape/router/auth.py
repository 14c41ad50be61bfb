"""Tokens and access control lists of the router (DESIGN §6, docs/protocol.md).

The token file is TOML, one table per identity; only the SHA-256 of each token is
stored (tokens are 32 random bytes, so a fast hash is enough: there is nothing to
brute-force). Example::

    # tickertape router tokens: written by `tape token create`
    [identities.strategy-sma]
    token_sha256 = "5e88...c2a1"
    publish = ["strategy.intent.sma"]
    subscribe = ["md.>", "indicator.>"]
    commit = false

- ``publish``: topic patterns the identity may publish on (its envelopes' ``source``
  must also equal the identity).
- ``subscribe``: patterns it may subscribe to and fetch; a requested pattern is allowed
  only when every topic it can match is matched by one of these (:func:`tickertape.topics.covers`).
- ``commit``: whether it may ``commit`` staged batches (the replay driver).

Without a token file the router runs *open*: any identity, no token, every topic
(loopback only; :func:`check_bind` enforces it).

Roles (:data:`ROLES`, ``tape token create NAME --role ROLE``) fill in the patterns of
each built-in process: what it publishes (DESIGN §1.4: strategies only their own
intents, only risk approvals, only the order engine orders; the actors' patterns are
:mod:`tickertape.roles`, the table the hosts enforce too) and what it reads. The
table is documented in docs/protocol.md ("Roles").
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import tomllib
from collections.abc import Sequence
from pathlib import Path

import msgspec

from tickertape.errors import AuthError, ConfigError
from tickertape.eventlog.layout import write_durably
from tickertape.roles import STRATEGY_PREFIX, own_system_topics, publish_patterns
from tickertape.topics import covers, matches_any, validate_pattern


class Grant(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What one identity may do.

    Attributes:
        token_sha256: hex SHA-256 of the identity's token.
        publish: topic patterns it may publish on.
        subscribe: topic patterns it may subscribe to or fetch.
        commit: whether it may commit staged batches.
    """

    token_sha256: str
    publish: list[str] = msgspec.field(default_factory=list)
    subscribe: list[str] = msgspec.field(default_factory=list)
    commit: bool = False


class TokenFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The token file: ``identities`` maps an identity name to its :class:`Grant`."""

    identities: dict[str, Grant] = msgspec.field(default_factory=dict)


OPEN_GRANT = Grant(token_sha256="", publish=[">"], subscribe=[">"], commit=True)
"""The grant every identity has when the router runs without a token file."""


def hash_token(token: str) -> str:
    """Return the hex SHA-256 of ``token`` (UTF-8), as stored in the token file."""
    return hashlib.sha256(token.encode()).hexdigest()


class Authority:
    """Authenticates identities and answers ACL questions.

    Args:
        tokens: the parsed token file, or None to run open (no authentication).
    """

    def __init__(self, tokens: TokenFile | None) -> None:
        self._tokens = tokens

    @classmethod
    def from_file(cls, path: str | Path | None) -> Authority:
        """Load a token file (or run open when ``path`` is None).

        Raises:
            ConfigError: the file is missing, not TOML, or has unknown or wrong members
                (the message names the field path), or a pattern is invalid.
        """
        if path is None:
            return cls(None)
        return cls(load_token_file(path))

    @property
    def is_open(self) -> bool:
        """True when there is no token file: every identity may do everything."""
        return self._tokens is None

    def authenticate(self, identity: str, token: str | None) -> Grant:
        """Return the identity's grant when the token is right.

        Raises:
            AuthError: unknown identity, or missing or wrong token (compared in
                constant time).
        """
        if self._tokens is None:
            return OPEN_GRANT
        grant = self._tokens.identities.get(identity)
        if grant is None or token is None:
            raise AuthError(f"identity {identity!r}: unknown identity or missing token")
        if not hmac.compare_digest(hash_token(token), grant.token_sha256):
            raise AuthError(f"identity {identity!r}: wrong token")
        return grant


class Role(msgspec.Struct, frozen=True, kw_only=True):
    """The patterns one kind of process needs; ``{id}`` stands for the identity and
    ``{strategy}`` for the strategy id (the identity ``strategy.<id>`` without its prefix).

    Attributes:
        description: what the role is, for ``tape token roles``.
        publish: topic patterns it may publish.
        subscribe: patterns it may subscribe to and fetch.
        commit: whether it may commit staged batches.
        actor: True for actors: they also publish their own ``system.alert.{id}``,
            ``system.clock.actor.{id}`` and ``system.clock.query.{id}`` and the replay
            handshake (:data:`ACTOR_PUBLISH`), and read clock ticks, drift alerts,
            their clock replies and replay steps (:data:`ACTOR_SUBSCRIBE`).
    """

    description: str
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    commit: bool = False
    actor: bool = True


ACTOR_PUBLISH: tuple[str, ...] = (
    *own_system_topics("{id}"),
    "system.replay.hello",
    "system.replay.done",
)
"""What every actor publishes about itself (alerts, clock reports and queries) and in a
distributed replay (its hello and each wave's done)."""

ACTOR_SUBSCRIBE: tuple[str, ...] = (
    "system.clock",
    "system.clock.drift",
    "system.clock.reply.{id}",
    "system.replay.step",
    "system.replay.step.{id}",
    "system.replay.welcome",
)
"""What every actor reads: clock ticks, drift alerts, answers to its own time queries,
and a distributed replay's steps (those for every actor, and its own)."""


def _publishes(identity: str) -> tuple[str, ...]:
    """What :mod:`tickertape.roles` lets ``identity`` publish, without its own system
    topics (every actor role adds them through :data:`ACTOR_PUBLISH`)."""
    own = own_system_topics(identity)
    return tuple(p for p in publish_patterns(identity) or () if p not in own)


ROLES: dict[str, Role] = {
    "marketdata": Role(
        description="market data: trades, quotes, bars, gaps, corporate actions, raw venue messages",
        publish=_publishes("marketdata"),
        subscribe=("md.>", "raw.>"),
    ),
    "indicators": Role(
        description="indicator values computed from bars",
        publish=_publishes("indicators"),
        subscribe=("md.>",),
    ),
    "strategy": Role(
        description="one strategy (identity strategy.<id>): its own intents only",
        publish=_publishes(STRATEGY_PREFIX + "{strategy}"),
        subscribe=("md.>", "indicator.>", "order.>", "risk.state"),
    ),
    "risk": Role(
        description="the risk gate: approvals, rejections, trading state (the kill switch)",
        publish=_publishes("risk"),
        subscribe=(
            "strategy.intent.>",
            "order.>",
            "pnl.update.>",
            "md.>",
            "system.command.risk",
            "system.clock_drift",
        ),
    ),
    "orders": Role(
        description="the order engine: order lifecycle events, acting on approvals only",
        publish=_publishes("orders"),
        subscribe=("risk.approved.>", "risk.state", "md.>"),
    ),
    "pnl": Role(
        description="positions, PnL, equity and drawdown",
        publish=_publishes("pnl"),
        subscribe=("order.>", "md.>"),
    ),
    "timeauthority": Role(
        description="the clock service (tape clock): ticks, drift alerts, time replies",
        publish=("system.clock", "system.clock.drift", "system.clock.reply.>"),
        subscribe=("system.clock.actor.>", "system.clock.query.>", "system.clock.control"),
        actor=False,
    ),
    "replay": Role(
        description="the distributed replay driver: control messages, run manifests, commits",
        # What the time authority of a distributed replay publishes and nothing more:
        # with system.> a leaked replay token could halt or resume the risk gate
        # (system.command.risk) or forge a drift alert in main.
        publish=(
            "system.replay.step",
            "system.replay.step.>",
            "system.replay.welcome",
            "system.run_manifest",
            "system.run_summary",
            "system.alert",
        ),
        subscribe=(">",),
        commit=True,
        actor=False,
    ),
    "operator": Role(
        description="a person: tape halt / resume / clock ctl / clock query, and reading everything",
        publish=("system.command.risk", "system.clock.control", "system.clock.query.{id}"),
        subscribe=(">",),
        actor=False,
    ),
    "inspector": Role(
        description="read only (tape tail, tape stats)",
        subscribe=(">",),
        actor=False,
    ),
}
"""The built-in roles, by name (docs/protocol.md, "Roles")."""


def role_patterns(role: str, identity: str) -> tuple[list[str], list[str], bool]:
    """The (publish, subscribe, commit) a role gives ``identity``.

    Raises:
        ConfigError: unknown role, or the ``strategy`` role for an identity that is not
            ``strategy.<id>``.
    """
    spec = ROLES.get(role)
    if spec is None:
        raise ConfigError(f"unknown role {role!r}; roles: {', '.join(sorted(ROLES))}")
    strategy = ""
    if role == "strategy":
        strategy = identity.removeprefix(STRATEGY_PREFIX)
        if not identity.startswith(STRATEGY_PREFIX) or not strategy or "." in strategy:
            raise ConfigError(
                f"the strategy role is for identities strategy.<id> (one token), not {identity!r}"
            )
    publish = list(spec.publish) + (list(ACTOR_PUBLISH) if spec.actor else [])
    subscribe = list(spec.subscribe)
    if spec.actor:
        # An actor also reads what it writes: a live actor that finds one of its
        # outputs already stored fetches the stored one to compare (divergences).
        subscribe += [p for p in spec.publish if p not in subscribe] + list(ACTOR_SUBSCRIBE)

    def fill(patterns: list[str]) -> list[str]:
        return [p.format(id=identity, strategy=strategy) for p in patterns]

    return fill(publish), fill(subscribe), spec.commit


def may_publish(grant: Grant, topic: str) -> bool:
    """True when ``grant`` allows publishing on ``topic``."""
    return matches_any(grant.publish, topic)


def may_subscribe(grant: Grant, pattern: str) -> bool:
    """True when every topic ``pattern`` can match is allowed by ``grant.subscribe``."""
    return any(covers(a, pattern) for a in grant.subscribe)


def load_token_file(path: str | Path) -> TokenFile:
    """Read and validate a token file.

    Raises:
        ConfigError: unreadable, not TOML, unknown or wrong members, or invalid patterns.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read token file: {exc.strerror}", path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path) from None
    try:
        tokens = msgspec.convert(data, TokenFile)
    except msgspec.ValidationError as exc:
        raise ConfigError(str(exc), path) from None
    for name, grant in tokens.identities.items():
        for pattern in (*grant.publish, *grant.subscribe):
            problem = validate_pattern(pattern)
            if problem is not None:
                raise ConfigError(f"identities.{name}: {problem}", path)
    return tokens


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def render_token_file(tokens: TokenFile) -> str:
    """Render a token file as TOML (identities sorted by name)."""
    lines = ["# tickertape router tokens: written by `tape token create`; only hashes are kept"]
    for name in sorted(tokens.identities):
        grant = tokens.identities[name]
        lines += [
            "",
            f"[identities.{json.dumps(name)}]",
            f"token_sha256 = {json.dumps(grant.token_sha256)}",
            f"publish = {_toml_list(grant.publish)}",
            f"subscribe = {_toml_list(grant.subscribe)}",
            f"commit = {'true' if grant.commit else 'false'}",
        ]
    return "\n".join(lines) + "\n"


def create_token(
    path: str | Path,
    identity: str,
    *,
    publish: Sequence[str] = (),
    subscribe: Sequence[str] = (),
    commit: bool = False,
    role: str | None = None,
) -> str:
    """Create (or replace) ``identity`` in the token file and return its new token.

    The file is written to a temporary name, fsync'd and renamed, with mode 0600.
    With ``role``, the role's patterns (:func:`role_patterns`) come first and
    ``publish``/``subscribe`` add to them; ``commit`` is the role's or the argument.

    Returns:
        The token (43 URL-safe characters); it is not stored and cannot be recovered.

    Raises:
        ConfigError: the existing file is invalid, or a pattern or the name is invalid.
    """
    if not identity or len(identity) > 128 or any(c.isspace() for c in identity):
        raise ConfigError(f"invalid identity name {identity!r}")
    if role is not None:
        role_publish, role_subscribe, role_commit = role_patterns(role, identity)
        publish = list(dict.fromkeys([*role_publish, *publish]))
        subscribe = list(dict.fromkeys([*role_subscribe, *subscribe]))
        commit = commit or role_commit
    for pattern in (*publish, *subscribe):
        problem = validate_pattern(pattern)
        if problem is not None:
            raise ConfigError(problem)
    target = Path(path)
    existing = load_token_file(target) if target.exists() else TokenFile()
    token = secrets.token_urlsafe(32)
    identities = dict(existing.identities)
    identities[identity] = Grant(
        token_sha256=hash_token(token),
        publish=list(publish),
        subscribe=list(subscribe),
        commit=commit,
    )
    text = render_token_file(TokenFile(identities=identities))
    write_durably(target, text.encode(), mode=0o600)
    return token


def is_loopback(host: str) -> bool:
    """True when ``host`` names only the loopback interface (``localhost``, 127/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, authority: Authority) -> None:
    """Refuse to listen beyond loopback without tokens (DESIGN §6).

    Raises:
        ConfigError: ``host`` is not loopback and the router runs open.
    """
    if not is_loopback(host) and authority.is_open:
        raise ConfigError(
            f"refusing to listen on {host!r} without a token file: pass --token-file "
            "(create one with `tape token create`) or bind 127.0.0.1"
        )
