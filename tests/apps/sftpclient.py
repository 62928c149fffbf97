"""OpenSSH's ``sftp`` client in batch mode, as a user runs it against a session's SFTP app."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def require_sftp() -> str:
    """The ``sftp`` binary; skip (fail in CI) without it."""
    found = shutil.which("sftp")
    if found is None:
        why = "the OpenSSH sftp client is not installed (apt-get install openssh-client)"
        if os.environ.get("CI"):
            pytest.fail(why)
        print(f"sftp tests skipped: {why}")
        pytest.skip(why)
    return found


def sftp(
    key: Path, port: int, user: str, script: str, *, host: str = "127.0.0.1", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (one sftp command a line) with ``sftp -b -``; a command that fails ends
    the batch with a non-zero exit (prefix it with ``-`` to go on)."""
    argv = [
        require_sftp(),
        "-b",
        "-",
        "-i",
        str(key),
        "-P",
        str(port),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=20",
        f"{user}@{host}",
    ]
    return subprocess.run(argv, input=script, capture_output=True, text=True, timeout=timeout)
