"""Tests for tickertape.router.auth: token files, hashing, ACL coverage, bind checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickertape.errors import AuthError, ConfigError
from tickertape.router.auth import (
    ROLES,
    Authority,
    Grant,
    check_bind,
    covers,
    create_token,
    load_token_file,
    may_publish,
    may_subscribe,
    role_patterns,
)
from tickertape.topics import matches


def test_token_file_stores_only_a_hash(tmp_path: Path) -> None:
    """create_token returns a token that authenticates, and the file never contains it."""
    path = tmp_path / "tokens.toml"
    token = create_token(path, "strat", publish=["strategy.intent.*"], subscribe=["md.>"])
    other = create_token(path, "risk", publish=["risk.>"], subscribe=[">"], commit=True)
    text = path.read_text()
    assert token not in text
    assert other not in text
    assert path.stat().st_mode & 0o777 == 0o600
    authority = Authority.from_file(path)
    grant = authority.authenticate("strat", token)
    assert grant.publish == ["strategy.intent.*"]
    assert authority.authenticate("risk", other).commit
    with pytest.raises(AuthError):
        authority.authenticate("strat", other)
    with pytest.raises(AuthError):
        authority.authenticate("nobody", token)
    with pytest.raises(AuthError):
        authority.authenticate("strat", None)


def test_invalid_token_file_is_a_config_error(tmp_path: Path) -> None:
    """Unknown members and bad patterns are refused with the file named."""
    path = tmp_path / "tokens.toml"
    path.write_text('[identities.a]\ntoken_sha256 = "x"\npublsh = ["md.>"]\n')
    with pytest.raises(ConfigError, match="publsh"):
        load_token_file(path)
    path.write_text('[identities.a]\ntoken_sha256 = "x"\npublish = ["md.>.x"]\n')
    with pytest.raises(ConfigError, match="must be the last"):
        load_token_file(path)


def test_acl_publish_and_subscribe() -> None:
    """An identity allowed strategy.intent.* cannot publish risk.approved.* nor subscribe beyond md.>."""
    path_grant = Authority(None).authenticate("x", None)
    assert may_publish(path_grant, "risk.approved.s1")

    grant = Grant(token_sha256="", publish=["strategy.intent.*"], subscribe=["md.>"])
    assert may_publish(grant, "strategy.intent.sma")
    assert not may_publish(grant, "risk.approved.sma")
    assert may_subscribe(grant, "md.trade.*.BTC")
    assert may_subscribe(grant, "md.>")
    assert not may_subscribe(grant, ">")
    assert not may_subscribe(grant, "risk.>")


_TOKENS = st.sampled_from(["a", "b", "*", "c"])


@given(
    st.lists(st.sampled_from(["a", "b", "*"]), min_size=1, max_size=4),
    st.booleans(),
    st.lists(_TOKENS, min_size=1, max_size=4),
    st.booleans(),
    st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=6),
)
def test_covers_is_sound(
    allowed: list[str], a_tail: bool, requested: list[str], r_tail: bool, topic: list[str]
) -> None:
    """When covers(A, R), every topic matching R also matches A."""
    a = ".".join([*allowed, ">"] if a_tail else allowed)
    r = ".".join([*requested, ">"] if r_tail else requested)
    t = ".".join(topic)
    if covers(a, r) and matches(r, t):
        assert matches(a, t)


def test_bind_beyond_loopback_needs_tokens(tmp_path: Path) -> None:
    """0.0.0.0 without a token file is refused; loopback is fine; with tokens it is allowed."""
    check_bind("127.0.0.1", Authority(None))
    check_bind("::1", Authority(None))
    with pytest.raises(ConfigError, match="token file"):
        check_bind("0.0.0.0", Authority(None))
    path = tmp_path / "t.toml"
    create_token(path, "a", publish=[], subscribe=[">"])
    check_bind("0.0.0.0", Authority.from_file(path))


def test_roles_fill_in_patterns(tmp_path: Path) -> None:
    """--role gives the role's patterns (a strategy only its own intents); extras add to them."""
    publish, subscribe, commit = role_patterns("strategy", "strategy.sma")
    grant = Grant(token_sha256="", publish=publish, subscribe=subscribe, commit=commit)
    assert may_publish(grant, "strategy.intent.sma")
    assert may_publish(grant, "system.alert.strategy.sma")
    for topic in (
        "strategy.intent.rsi",
        "risk.approved.sma",
        "order.filled.crypto",
        "md.trade.us.X",
    ):
        assert not may_publish(grant, topic), topic
    assert may_subscribe(grant, "md.bar.>")
    assert not may_subscribe(grant, "risk.approved.>")
    assert not commit
    with pytest.raises(ConfigError, match=r"strategy\.<id>"):
        role_patterns("strategy", "risk")
    with pytest.raises(ConfigError, match="unknown role"):
        role_patterns("admin", "x")
    path = tmp_path / "tokens.toml"
    create_token(path, "replay", role="replay", subscribe=["md.>"])
    stored = load_token_file(path).identities["replay"]
    assert stored.commit
    assert stored.subscribe == [">", "md.>"]
    # The replay driver publishes its control messages, manifests and alerts only:
    # not the operator's commands nor the clock's drift alerts (which halt trading).
    replay = Grant(token_sha256="", publish=stored.publish, subscribe=stored.subscribe)
    for topic in ("system.replay.step", "system.run_manifest", "system.alert"):
        assert may_publish(replay, topic), topic
    for topic in ("system.command.risk", "system.clock.drift", "md.bar.1m.us.X"):
        assert not may_publish(replay, topic), topic
    for name in ROLES:  # every role's patterns are valid for some identity
        role_patterns(name, "strategy.x" if name == "strategy" else name)


@pytest.mark.parametrize(
    ("role", "identity", "own"),
    [
        ("indicators", "indicators", "indicator.sma.v1.us.6EH4"),
        ("risk", "risk", "risk.approved.sma"),
        ("orders", "orders", "order.filled.crypto"),
        ("pnl", "pnl", "pnl.update.sma"),
        ("strategy", "strategy.sma", "strategy.intent.sma"),
    ],
)
def test_actor_roles_may_read_what_they_write(role: str, identity: str, own: str) -> None:
    """A live actor fetches its own stored outputs to compare them after a restart."""
    publish, subscribe, commit = role_patterns(role, identity)
    grant = Grant(token_sha256="", publish=publish, subscribe=subscribe, commit=commit)
    assert may_publish(grant, own)
    assert may_subscribe(grant, own)


def test_operator_may_ask_the_time() -> None:
    """The operator role may query the time as itself only, and read its own replies."""
    publish, subscribe, commit = role_patterns("operator", "alice")
    grant = Grant(token_sha256="", publish=publish, subscribe=subscribe, commit=commit)
    assert may_publish(grant, "system.clock.query.alice")
    assert not may_publish(grant, "system.clock.query.bob")
    assert may_subscribe(grant, "system.clock.reply.alice")
