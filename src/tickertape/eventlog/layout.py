"""Where things are on disk (DESIGN §5) and small durable-file helpers.

::

    <data-dir>/logs/<namespace>/<topic>/<YYYY-MM-DD>.jsonl       an open day
    <data-dir>/logs/<namespace>/<topic>/<YYYY-MM-DD>.jsonl.zst   a sealed day
    <data-dir>/logs/<namespace>/<topic>/<YYYY-MM-DD>.idx         its sparse index (a cache)
    <data-dir>/logs/<namespace>/.lock                            the writer's lock
    <data-dir>/logs/<namespace>/HEAD                             committed head gseq (advisory)
    <data-dir>/logs/<namespace>/RETENTION                        what retention deleted (JSON)

A namespace is ``name`` or ``name/name``; one cannot be a path prefix of another
(``runs`` and ``runs/<id>`` would share ``logs/runs``): see :func:`check_namespace_free`
and :func:`namespace_creation_lock` (a ``flock`` on ``<data-dir>/logs`` while a writer
checks the name and creates the namespace's ``.lock``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import msgspec

from tickertape.errors import ConfigError, LogError

NS_PER_DAY = 86_400 * 1_000_000_000
_NAMESPACE = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)?$")
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl(\.zst)?$")

RUNS_PREFIX = "runs/"
"""Namespaces under it hold replay and backtest runs (``runs/<run-id>``, DESIGN §5)."""

RETENTION_FILE = "RETENTION"
"""The namespace's retention mark (:class:`RetentionMark`), beside ``HEAD``."""


def validate_namespace(namespace: str) -> None:
    """Raise :class:`ConfigError` unless ``namespace`` is ``name`` or ``name/name``."""
    if not _NAMESPACE.match(namespace):
        raise ConfigError(
            f"invalid namespace {namespace!r}: letters, digits, _ and -, at most one '/'"
        )


def check_namespace_free(data_dir: str | Path, namespace: str) -> None:
    """Raise :class:`ConfigError` when ``namespace`` would share its directory with another.

    A namespace's topics are the subdirectories of ``logs/<namespace>``, so a namespace
    ``name`` and a namespace ``name/other`` cannot both exist: ``logs/name/other``
    would be a topic of the first and the whole of the second. A directory is a
    namespace when it holds the writer's ``.lock`` (created on the first open for
    writing). Call it inside :func:`namespace_creation_lock`, up to the creation of
    ``.lock``, so that two processes creating colliding namespaces at the same instant
    cannot both pass it.

    Raises:
        ConfigError: invalid name, or ``namespace`` is a path prefix of an existing
            namespace or has one as a path prefix.
    """
    validate_namespace(namespace)
    root = Path(data_dir) / "logs"
    first, _, rest = namespace.partition("/")
    if rest:
        if (root / first / ".lock").exists():
            raise ConfigError(
                f"namespace {namespace!r} would be inside namespace {first!r} "
                f"({root / first}): a namespace cannot be a path prefix of another; "
                f"choose another name, e.g. {namespace.replace('/', '-')!r}"
            )
        return
    try:
        entries = os.scandir(root / first)
    except (FileNotFoundError, NotADirectoryError):
        return
    with entries:
        for entry in entries:
            if entry.is_dir() and os.path.exists(os.path.join(entry.path, ".lock")):
                raise ConfigError(
                    f"namespace {namespace!r} would contain namespace "
                    f"'{namespace}/{entry.name}' ({entry.path}): a namespace cannot be a "
                    "path prefix of another; choose another name"
                )


@contextlib.contextmanager
def namespace_creation_lock(data_dir: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<data-dir>/logs`` (created if missing).

    Writers take it around checking a namespace name (:func:`check_namespace_free`)
    and creating the namespace's ``.lock``, which makes the two atomic with respect to
    each other: of two processes creating ``runs`` and ``runs/x`` at once, the second
    sees the first's ``.lock`` and is refused. Held for a few directory operations only.

    Raises:
        OSError: ``<data-dir>/logs`` cannot be created or opened.
    """
    root = Path(data_dir) / "logs"
    makedirs_durable(root)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def namespace_dir(data_dir: str | Path, namespace: str) -> Path:
    """Return ``<data-dir>/logs/<namespace>``."""
    validate_namespace(namespace)
    return Path(data_dir) / "logs" / namespace


def day_of(ts_ns: int) -> int:
    """Return the UTC day number (days since 1970-01-01) of a time in ns."""
    return ts_ns // NS_PER_DAY


def day_name(day: int) -> str:
    """Return ``YYYY-MM-DD`` of a UTC day number."""
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def day_number(name: str) -> int:
    """Return the UTC day number of ``YYYY-MM-DD``."""
    return (dt.date.fromisoformat(name) - dt.date(1970, 1, 1)).days


@dataclass(frozen=True, slots=True)
class Segment:
    """One day file of a topic.

    Attributes:
        topic: the topic.
        day: UTC day number.
        path: the data file (``.jsonl`` or ``.jsonl.zst``).
        sealed: True for ``.jsonl.zst``.
    """

    topic: str
    day: int
    path: Path
    sealed: bool

    @property
    def index_path(self) -> Path:
        """The ``<YYYY-MM-DD>.idx`` beside the data file."""
        return self.path.with_name(f"{day_name(self.day)}.idx")


def list_segments(topic_dir: Path, topic: str) -> list[Segment]:
    """Return a topic's day files, oldest first.

    When both a ``.jsonl`` and a ``.jsonl.zst`` exist for a day (a crash during
    sealing, after the rename and before the unlink), the sealed one wins and the
    open one is left for :func:`tickertape.eventlog.sealing.finish_interrupted` to remove.
    A day sealed while the directory is read is listed (:func:`listdir_whole`).
    """
    by_day: dict[int, Segment] = {}
    try:
        names = listdir_whole(topic_dir)
    except FileNotFoundError:
        return []
    for name in names:
        m = _DAY_FILE.match(name)
        if not m:
            continue
        day = day_number(m.group(1))
        sealed = m.group(2) is not None
        seg = Segment(topic, day, topic_dir / name, sealed)
        if day not in by_day or sealed:
            by_day[day] = seg
    return [by_day[d] for d in sorted(by_day)]


SETTLED_NS = 1_000_000_000
"""How long a directory must have been left alone for one read of it to be trusted
whole (:func:`listdir_whole`): far more than the kernel's coarse clock tick, in which
two changes can leave its modification time the same."""


def listdir_whole(path: Path) -> list[str]:
    """The names in directory ``path``, missing none of the files renamed into it
    while it is read.

    A directory is read in several system calls (``getdents``) when it holds more
    than a few hundred names, and a file renamed into it between two of them may be
    missed, while the file it replaces is removed before the read reaches it: a day
    sealed during the listing was then in neither form (a report beside a sealing
    log counted 599 days of 600). When the directory changed during the read, or
    shortly before it (its modification time moves on the kernel's coarse clock), it
    is read a second time and the union returned: a file renamed in during the
    first read is there for the whole second one, and a file removed during the
    second was there for the whole first. Names of files removed meanwhile may be in
    the result (readers meet FileNotFoundError and re-list, :func:`read_current`).

    Raises:
        FileNotFoundError: the directory does not exist.
    """
    before = os.stat(path).st_mtime_ns
    names = os.listdir(path)
    after = os.stat(path).st_mtime_ns
    if after == before and time.time_ns() - after > SETTLED_NS:
        return names
    return sorted({*names, *os.listdir(path)})


_T = TypeVar("_T")


def read_current(listed: Segment, read: Callable[[Segment], _T]) -> tuple[Segment, _T] | None:
    """``(listed, read(listed))``, or, when ``listed``'s file is gone since it was listed,
    the same of the file that replaced it: the day's sealed file (``tape compact``
    sealed it meanwhile). None when the day is gone (deleted by retention; a sealed day
    is only ever deleted).

    ``read`` must not have used anything of a file when it raises FileNotFoundError
    (open the file before reading it).

    Raises:
        Whatever ``read`` raises, FileNotFoundError excepted.
    """
    seg = listed
    while True:
        try:
            return seg, read(seg)
        except FileNotFoundError:
            if seg.sealed:
                return None
            now = list_segments(seg.path.parent, seg.topic)
            sealed = next((s for s in now if s.day == seg.day and s.sealed), None)
            if sealed is None:
                return None
            seg = sealed


def list_topics(ns_dir: Path) -> list[str]:
    """Return the topics of a namespace directory, sorted."""
    try:
        entries = os.scandir(ns_dir)
    except FileNotFoundError:
        return []
    with entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def fsync_dir(path: Path) -> None:
    """fsync a directory so that creations and renames in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes, *, mode: int = 0o644, tmp: Path | None = None) -> None:
    """Replace the file ``path`` with ``data`` atomically and durably.

    ``data`` goes to a temporary file in the same directory (``tmp``, default
    ``<name>.tmp``) created with ``mode``, written in full (short writes looped) and
    fsync'd, then renamed over ``path``, and the directory is fsync'd: after a crash
    ``path`` holds either its previous content or ``data``, never a mix.

    Raises:
        OSError: the write or fsync of the temporary file, or the rename, failed
            (``path`` is unchanged; the temporary file may be left behind), or the
            directory's fsync failed (``path`` may already hold ``data``, not yet
            durably).
    """
    tmp = path.with_name(path.name + ".tmp") if tmp is None else tmp
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def makedirs_durable(path: Path) -> None:
    """Create ``path`` and missing parents, fsyncing each parent of a created directory."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            continue
        fsync_dir(d.parent)


class RetainedTopic(msgspec.Struct, frozen=True, kw_only=True):
    """Where a topic stood when retention last ran (see :class:`RetentionMark`).

    Attributes:
        next_offset: the offset its next record gets.
        last_gseq: the gseq of its last record.
        last_ts_event: the ``ts_event`` of its last record (ns).
    """

    next_offset: int
    last_gseq: int
    last_ts_event: int


class RetentionMark(msgspec.Struct, frozen=True, kw_only=True):
    """What the last run of retention knew, written durably before it deleted a file.

    Retention leaves gaps in the namespace's gseqs and can delete the only records of a
    source; recovery reads this file so that it never takes those gaps for records
    lost in a crash, and never gives out again a position or accepts again a
    ``source_seq`` that retention's deletions would otherwise make it forget.

    Attributes:
        version: the file's format version (1).
        head_gseq: the namespace's head when retention ran, every record up to it
            fsync'd first: every gseq at or below it was durable, and every gseq
            retention deleted (then or earlier) is at or below it.
        topics: per topic that held records, where it stood then.
        sources: the highest ``source_seq`` stored per source then.
    """

    version: int = 1
    head_gseq: int = 0
    topics: dict[str, RetainedTopic] = msgspec.field(default_factory=dict)
    sources: dict[str, int] = msgspec.field(default_factory=dict)


_RETENTION_DECODER = msgspec.json.Decoder(RetentionMark)


def load_retention_mark(ns_dir: Path) -> RetentionMark | None:
    """Return the namespace's retention mark, or None when retention never deleted a file.

    Raises:
        LogError: the file exists but does not decode (damaged or edited): recovery
            cannot tell retention's gaps from lost records without it.
    """
    path = ns_dir / RETENTION_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        mark = _RETENTION_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise LogError(
            f"retention mark {path} is unreadable ({exc}); restore it from a copy "
            "(it says which gseqs retention deleted)"
        ) from None
    if mark.version != 1:
        raise LogError(f"retention mark {path} has unknown version {mark.version}")
    return mark


def save_retention_mark(ns_dir: Path, mark: RetentionMark) -> None:
    """Replace the namespace's retention mark atomically and durably (fsync'd).

    Raises:
        OSError: as :func:`write_durably`.
    """
    write_durably(ns_dir / RETENTION_FILE, msgspec.json.encode(mark) + b"\n")
