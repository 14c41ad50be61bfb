"""The bundled datasets under data/ match their recorded SHA-256 checksums."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[2] / "data"


def _entries() -> list[tuple[str, str]]:
    lines = (DATA_DIR / "SHA256SUMS").read_text(encoding="ascii").splitlines()
    entries = []
    for line in lines:
        if line.strip():
            digest, name = line.split(maxsplit=1)
            entries.append((digest, name.lstrip("*").removeprefix("./")))
    return entries


@pytest.mark.parametrize(("digest", "name"), _entries(), ids=lambda x: x)
def test_file_matches_checksum(digest: str, name: str) -> None:
    """Each listed file exists and its SHA-256 equals the recorded one."""
    path = DATA_DIR / name
    assert path.is_file(), f"{name} is listed in SHA256SUMS but missing"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_every_data_file_is_listed() -> None:
    """No data file is bundled without a checksum (README and SHA256SUMS excepted)."""
    listed = {name for _, name in _entries()}
    present = {
        p.relative_to(DATA_DIR).as_posix()
        for p in DATA_DIR.rglob("*")
        if p.is_file() and p.name not in {"README.md", "SHA256SUMS"}
    }
    assert present == listed
