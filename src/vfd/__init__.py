"""vfd: virtual folders for compute clusters."""

from __future__ import annotations

import os
import sys
from typing import Any


def __getattr__(name: str) -> Any:
    # ``__version__`` is read from the installed metadata on first use only, and without
    # importlib.metadata, whose imports (email, zipfile, csv...) cost ``vfd status`` more than
    # its request
    if name != "__version__":
        raise AttributeError(f"module 'vfd' has no attribute {name!r}")
    found = _installed_version()
    if found is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("vfd")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            found = "0.0.0"
    globals()["__version__"] = found
    return found


def _installed_version() -> str | None:
    """The ``Version`` of the first ``vfd`` distribution on ``sys.path`` (where
    importlib.metadata looks first), or None when there is none to read."""
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for kind, metadata in ((".dist-info", "METADATA"), (".egg-info", "PKG-INFO")):
            for dirname in names:
                stem = dirname.removesuffix(kind)
                if stem == dirname or stem.split("-")[0].lower().replace("_", "-") != "vfd":
                    continue
                try:
                    with open(os.path.join(entry or ".", dirname, metadata), "rb") as f:
                        for line in f:
                            if line.startswith(b"Version:"):
                                return line.split(b":", 1)[1].strip().decode()
                            if not line.strip():  # the headers ended without a version
                                break
                except OSError:
                    continue
    return None
