"""Fixtures of the CLI tests: ``cli`` (``vfd`` in-process against the module's daemon) and
``vfd_bin`` (the installed console script)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
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


@pytest.fixture
def sock_path() -> Iterator[Path]:
    """A short socket path (unix socket paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        yield Path(tmp) / "api.sock"


@pytest.fixture
def serve(sock_path: Path) -> Iterator[Callable[[Callable[[socket.socket], None]], None]]:
    """Serve every connection on ``sock_path`` with one handler, in a thread.

    The client probes the socket with a bare connect first, so a handler also sees that
    connection (closed at once, without a request); its OSErrors are ignored.
    """
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen()
    threads: list[threading.Thread] = []

    def start(handler: Callable[[socket.socket], None]) -> None:
        def run() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:  # the listener was closed: the test is over
                    return
                with conn, contextlib.suppress(OSError):
                    handler(conn)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    for thread in threads:
        thread.join(10)
