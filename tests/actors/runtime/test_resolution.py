"""Tests of actor resolution (package names, import paths, TOML configuration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.actors.runtime.sample_actors import MeanActor, MeanConfig
from tickertape.actors.runtime.resolution import config_hash, resolve
from tickertape.errors import ConfigError

PATH = "tests.actors.runtime.sample_actors:MeanActor"


def test_import_path_with_config(tmp_path: Path) -> None:
    """package.module:Class@file.toml builds the actor with its validated config."""
    cfg = tmp_path / "mean.toml"
    cfg.write_text("window = 7\n")
    spec = resolve(f"{PATH}@{cfg}")
    assert isinstance(spec.actor, MeanActor)
    assert spec.actor.config == MeanConfig(window=7)
    assert (spec.name, spec.config) == ("indicators", {"window": 7})


def test_unknown_config_field_is_refused(tmp_path: Path) -> None:
    """Configuration files forbid unknown fields; the error names the file."""
    cfg = tmp_path / "mean.toml"
    cfg.write_text("window = 7\nwindwo = 8\n")
    with pytest.raises(ConfigError) as info:
        resolve(f"{PATH}@{cfg}")
    assert info.value.path == str(cfg)
    assert "windwo" in str(info.value)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    """Invalid TOML and unreadable files are ConfigErrors."""
    bad = tmp_path / "bad.toml"
    bad.write_text("window = = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        resolve(f"{PATH}@{bad}")
    with pytest.raises(ConfigError, match="cannot read"):
        resolve(f"{PATH}@{tmp_path / 'none.toml'}")


@pytest.mark.parametrize(
    "item",
    [
        "nosuchactor",
        "runtime",
        "tests.actors.runtime.sample_actors:Nope",
        "no.such.module:X",
        "bad:",
    ],
)
def test_unresolvable_items(item: str) -> None:
    """Unknown packages, modules and classes give a ConfigError."""
    with pytest.raises(ConfigError):
        resolve(item)


def test_package_name_uses_actor_class() -> None:
    """A package name resolves through its ACTOR_CLASS and CONFIG_CLASS."""
    spec = resolve("risk")
    import tickertape.actors.risk as risk

    assert isinstance(spec.actor, risk.ACTOR_CLASS)
    assert spec.origin == "risk"


def test_config_hash_is_order_independent() -> None:
    """The hash does not depend on the order actors are given in."""
    a, b = resolve(PATH), resolve("tests.actors.runtime.sample_actors:SignalActor")
    assert config_hash([a, b], {"x": 1}) == config_hash([b, a], {"x": 1})
    assert config_hash([a, b], {"x": 1}) != config_hash([a, b], {"x": 2})


def test_a_module_whose_own_import_fails_is_run_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The working directory is searched when the module itself is not found, not when
    the module is found and one of its own imports fails: that error is reported after
    the module's body ran once (not a second time from the working directory)."""
    runs = tmp_path / "runs.txt"
    (tmp_path / "broken_user_actor.py").write_text(
        f"with open({str(runs)!r}, 'a') as f:\n    f.write('x')\nimport no_such_dependency\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend("")  # the working directory, as `python -m` puts it
    with pytest.raises(ConfigError, match="no_such_dependency"):
        resolve("broken_user_actor:Actor")
    assert runs.read_text() == "x"
