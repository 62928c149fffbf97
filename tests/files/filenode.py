"""A whole node for the file-operation tests: ``vfd up`` (mountd + daemon) and clients."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx
import pytest

from vfd.config import Config, load_config
from vfd.errors import VfdError
from vfd.mountctl import MountdClient

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))
from vfdcli import Cli

START_TIMEOUT = 90.0

T = TypeVar("T")


def fuse_missing() -> str | None:
    """Why FUSE cannot be used here, or None."""
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (apt-get install fuse3)"
    return None


def wait_until(what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``check`` until it returns something true; that value. Fails saying ``what`` did
    not happen in ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what} ({timeout}s)")


class Node:
    """A running ``vfd up`` and ways to talk to it."""

    @classmethod
    def launch(cls, state_dir: Path) -> Self:
        """Start ``vfd up`` on ``state_dir`` (its ``vfd.toml`` written), logging to ``up.log``
        there; call ``wait_ready`` next."""
        log = state_dir / "up.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "vfd"), "--state-dir", str(state_dir), "up"],
                stdout=out,
                stderr=subprocess.STDOUT,
                # VFD_FUSE_FAST_PATH passes: CI runs the tests again with mountd's fast path off
                env={
                    k: v
                    for k, v in os.environ.items()
                    if not k.startswith("VFD_") or k == "VFD_FUSE_FAST_PATH"
                },
            )
        return cls(state_dir, process, log)

    def __init__(self, state_dir: Path, process: subprocess.Popen[bytes], log: Path) -> None:
        self.state_dir = state_dir
        self.process = process
        self.log = log
        self.config: Config = load_config(state_dir=state_dir, env={})
        self.env = {"VFD_STATE_DIR": str(state_dir)}
        self.cli = Cli(self.env)

    def http(self, as_: str | None = None) -> httpx.Client:
        headers = {"X-Vfd-Act-As": as_} if as_ else {}
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.config.api_socket)),
            base_url="http://vfd",
            headers=headers,
            timeout=60,
        )

    def user(self, uid: int | None = None) -> dict[str, Any]:
        """A new user with its own uid/gid (the email is unique)."""
        uid = uid if uid is not None else 20000 + secrets.randbelow(20000)
        email = f"u{secrets.token_hex(4)}@example.org"
        return self.cli.json("admin", "user", "create", email, "--uid", str(uid), "--gid", str(uid))

    def folder(self, owner: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        name = name or f"f-{secrets.token_hex(3)}"
        created: dict[str, Any] = self.cli.json("vfolder", "create", name, as_=owner["email"])
        return created

    def project(self, *members: dict[str, Any]) -> dict[str, Any]:
        """A new project (the name is unique) with ``members`` in it."""
        made: dict[str, Any] = self.cli.json(
            "admin", "project", "create", f"p{secrets.token_hex(3)}"
        )
        for user in members:
            self.cli.ok("admin", "project", "add-member", made["name"], user["email"])
        return made

    def share(
        self,
        owner: dict[str, Any],
        name: str,
        guest: dict[str, Any],
        permission: str = "rw",
    ) -> None:
        """Invite ``guest`` to ``owner``'s folder ``name`` and accept as ``guest``."""
        inv = self.cli.json(
            "vfolder",
            "invite",
            name,
            guest["email"],
            "--permission",
            permission,
            as_=owner["email"],
        )
        self.cli.ok("vfolder", "accept", inv["invitations"][0]["id"], as_=guest["email"])

    def backing(self, folder: dict[str, Any]) -> Path:
        """The backing directory of a folder (for checks only: tests never write there
        unless they simulate an out-of-band change)."""
        kind, owner = folder["scope"].split(":")
        h = folder["id"]
        root = self.config.hosts[folder["host"]]
        return root / f"{kind}-{owner}" / h[:2] / h[2:4] / h[4:]

    def usage(self, folder: dict[str, Any]) -> dict[str, Any]:
        with MountdClient(self.config.mountd_socket) as client:
            return client.call("usage", host=folder["host"], scope=folder["scope"])

    def child_pid(self, module: bytes) -> int:
        """The pid of the child of ``vfd up`` running ``python -m <module>``."""
        children: list[str] = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            children += (task / "children").read_text().split()
        for pid in children:
            if module in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return int(pid)
        raise AssertionError(f"no {module!r} among the children {children} of vfd up")

    def mountd_pid(self) -> int | None:
        """mountd's pid, or None while it does not answer."""
        try:
            with MountdClient(self.config.mountd_socket, timeout=5) as mountd:
                pid: int = mountd.call("health")["pid"]
                return pid
        except VfdError:
            return None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"vfd up exited {self.process.returncode}:\n{self.log.read_text()}")
            if not self._accepts():
                time.sleep(0.2)
                continue
            try:
                with self.http() as http:
                    status = http.get("/v1/status").json()
                if status.get("mountd"):
                    return
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.2)
        pytest.fail(f"vfd up did not come up in {START_TIMEOUT}s:\n{self.log.read_text()}")

    def _accepts(self) -> bool:
        """A plain connect first: httpx leaks its socket when a unix connect fails."""
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(self.config.api_socket))
            except OSError:
                return False
        return True

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"vfd up did not stop on SIGINT:\n{self.log.read_text()}")


def running_node(database_url: str, *, prefix: str, extra: str = "") -> Iterator[Node]:
    """A whole node (``vfd up``) on a fresh short state dir (unix socket paths are limited to
    107 bytes) with ``extra`` TOML lines in its ``vfd.toml``, for a module-scoped fixture: it
    fails in CI and skips elsewhere without FUSE, and stops and removes the node after."""
    why = fuse_missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"FUSE is required in CI: {why}")
        print(f"node tests skipped: {why}")
        pytest.skip(why)
    state_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    (state_dir / "vfd.toml").write_text(f"database_url = {json.dumps(database_url)}\n{extra}")
    n = Node.launch(state_dir)
    try:
        n.wait_ready()
        yield n
    finally:
        n.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
