"""Helpers of the runtime tests: start a session over the API, read its frames, look at its
container with the docker CLI, and count the daemon's descriptors."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

from sessionnode import IMAGE, SessionNode

from vfd.sessions import frames


def start(node: SessionNode, email: str, command: list[str], **body: Any) -> dict[str, Any]:
    """POST /v1/sessions; the new session's JSON."""
    with node.http(email) as http:
        answer = http.post("/v1/sessions", json={"image": IMAGE, "command": command, **body})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def run_to_end(node: SessionNode, email: str, command: list[str], **body: Any) -> dict[str, Any]:
    made = start(node, email, command, **body)
    return node.wait_status(made["id"], {"terminated", "error", "cancelled"}, as_=email)


def read_frames(data: bytes) -> tuple[bytes, bytes, dict[str, Any] | None]:
    """(stdout, stderr, END payload) of a complete frame stream."""
    out, err, end = bytearray(), bytearray(), None
    decoder = frames.Decoder()
    for kind, payload in decoder.feed(data):
        if kind is frames.Kind.STDOUT:
            out += payload
        elif kind is frames.Kind.STDERR:
            err += payload
        elif kind is frames.Kind.END:
            end = json.loads(payload)
        else:
            raise AssertionError(f"error frame: {payload!r}")
    assert decoder.pending == 0, "the stream was cut"
    return bytes(out), bytes(err), end


def logs(node: SessionNode, email: str, ref: str) -> tuple[bytes, bytes, dict[str, Any] | None]:
    with node.http(email) as http:
        answer = http.get(f"/v1/sessions/{ref}/logs")
    assert answer.status_code == 200, answer.text
    return read_frames(answer.content)


def inspect(container_id: str) -> dict[str, Any] | None:
    """``docker inspect`` of the container; None when it does not exist."""
    done = subprocess.run(
        ["docker", "inspect", container_id], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(done.stdout)[0]
    return found


def wait_until(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


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
