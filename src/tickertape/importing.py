"""Loading user code by import path (``package.module:Name``): actors, strategies, venue
adapters."""

from __future__ import annotations

import importlib
import os
import sys

from tickertape.errors import ConfigError


def import_object(path: str, what: str) -> object | None:
    """Import ``package.module:Name`` and return the attribute (None when the module has
    no such name).

    Like ``python -m``, the current directory is searched too: when the module itself
    (or a package on its path) is not found on ``sys.path``, the working directory is
    appended to it and the import is tried once more (so
    ``examples.strategies.sma_cross:SmaCross`` works from a checkout). A module found
    whose own imports fail is not imported twice.

    Args:
        path: ``package.module:Name``.
        what: what is loaded, for the error messages (``strategy``, ``venue``, ``actor``).

    Raises:
        ConfigError: a malformed path, or a module that cannot be imported.
    """
    module_name, sep, name = path.partition(":")
    if not sep or not module_name or not name:
        raise ConfigError(f"{what} {path!r} must look like 'package.module:Name'")
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            cwd = os.getcwd()
            if exc.name is None or not module_name.startswith(exc.name) or cwd in sys.path:
                raise
            sys.path.append(cwd)
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {what} module {module_name!r}: {exc}") from None
    return getattr(module, name, None)
