"""Helpers of the runtime tests: look at a session's container with the docker CLI, and count
the daemon's descriptors (the session API's calls are in ``sessionapi``)."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
from pathlib import Path
from typing import Any

from filenode import wait_until
from sessionnode import SessionNode


def inspect(container_id: str) -> dict[str, Any] | None:
    """``docker inspect`` of the container; None when it does not exist."""
    done = subprocess.run(
        ["docker", "inspect", container_id], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(done.stdout)[0]
    return found


def daemon_pid(node: SessionNode) -> int:
    """The daemon's pid: the peer credentials of its API socket."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(node.config.api_socket))
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid: int = struct.unpack("3i", creds)[0]
    return pid


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def wait_fds_back(pid: int, baseline: int) -> None:
    """Poll until the daemon holds at most ``baseline`` descriptors."""
    wait_until(f"the daemon's fds back to {baseline}", lambda: fd_count(pid) <= baseline, 30)


def scratch(node: SessionNode, session_id: str) -> Path:
    return node.state_dir / "sessions" / session_id.replace("-", "")
