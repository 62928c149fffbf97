"""vfd: virtual folders for compute clusters."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # ``__version__`` is read from the installed metadata on first use only: importing
    # importlib.metadata costs every ``vfd`` command a noticeable part of its start
    if name != "__version__":
        raise AttributeError(f"module 'vfd' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("vfd")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        found = "0.0.0"
    globals()["__version__"] = found
    return found
