"""Fixtures of the CLI tests: ``cli`` (``vfd`` in-process against the module's daemon) and
``vfd_bin`` (the installed console script)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from vfdcli import Cli


@pytest.fixture(scope="module")
def cli(vfd_daemon: Any) -> Cli:
    """``vfd`` in-process against the module's daemon (sqlite and postgres)."""
    return Cli(vfd_daemon.env)


@pytest.fixture(scope="session")
def vfd_bin() -> Path:
    """The installed ``vfd`` console script."""
    candidate = Path(sys.executable).parent / "vfd"
    found = candidate if candidate.exists() else shutil.which("vfd")
    if found is None:
        pytest.fail("the vfd console script is not installed (pip install -e .)")
    return Path(found)
