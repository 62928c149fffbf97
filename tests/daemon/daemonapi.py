"""Helpers of the daemon tests: error assertions, unique names, and a client running as
another Linux user (for SO_PEERCRED)."""

from __future__ import annotations

import contextlib
import grp
import json
import pwd
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter lives under /root (0700)


def unique(prefix: str = "f") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert an error answer; return its details."""
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["code"] == code, body
    details: dict[str, Any] = body["details"]
    return details


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


_CLIENT = r"""
import json, os, socket, sys
path, method, target, body, headers = json.loads(sys.argv[1])
data = b"" if body is None else json.dumps(body).encode()
head = [f"{method} {target} HTTP/1.1", "Host: vfd", "Connection: close",
        "Content-Type: application/json", f"Content-Length: {len(data)}"]
head += [f"{k}: {v}" for k, v in headers.items()]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
buf = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
top, _, rest = buf.partition(b"\r\n\r\n")
print(json.dumps({"uid": os.getuid(), "status": int(top.split()[1]), "body": rest.decode()}))
"""


@dataclass
class Answer:
    status: int
    body: Any

    def error_code(self) -> str:
        code: str = self.body["error"]["code"]
        return code


def call_as(
    uid: int,
    gid: int,
    socket_path: Path,
    method: str,
    target: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One HTTP request over the unix socket from a process running as ``uid:gid``."""
    proc = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-I",
            "-c",
            _CLIENT,
            json.dumps([str(socket_path), method, target, body, headers or {}]),
        ],
        user=uid,
        group=gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["uid"] == uid
    return Answer(out["status"], json.loads(out["body"]))


def free_uid(start: int = 42000) -> int:
    """A uid (and gid) with no passwd or group entry."""
    uid = start + secrets.randbelow(20000)
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            try:
                grp.getgrgid(uid)
            except KeyError:
                return uid
        uid += 1


@contextlib.contextmanager
def host_account(*groups: str) -> Iterator[pwd.struct_passwd]:
    """A Linux account made with useradd (its own group), removed afterwards."""
    login = f"vfdt{secrets.token_hex(4)}"
    uid = free_uid()
    subprocess.run(["groupadd", "-g", str(uid), login], check=True)
    cmd = ["useradd", "-M", "-N", "-u", str(uid), "-g", str(uid), "-s", "/usr/sbin/nologin"]
    if groups:
        cmd += ["-G", ",".join(groups)]
    subprocess.run([*cmd, login], check=True)
    try:
        yield pwd.getpwnam(login)
    finally:
        subprocess.run(["userdel", login], check=False)
        subprocess.run(["groupdel", login], check=False)


@contextlib.contextmanager
def group(name: str) -> Iterator[int]:
    """Group ``name`` (created, then removed, when it does not exist yet)."""
    try:
        existing: int | None = grp.getgrnam(name).gr_gid
    except KeyError:
        existing = None
    if existing is not None:
        yield existing
        return
    subprocess.run(["groupadd", name], check=True)
    try:
        yield grp.getgrnam(name).gr_gid
    finally:
        subprocess.run(["groupdel", name], check=False)


def backing_dir(config: Any, folder: dict[str, Any]) -> Path:
    """Where the daemon keeps a folder's data (from its Folder JSON)."""
    import uuid

    from vfd.folders.layout import Scope, folder_path

    return folder_path(
        config.hosts[folder["host"]], Scope.parse(folder["scope"]), uuid.UUID(folder["id"])
    )
