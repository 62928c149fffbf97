"""A whole node for the file-operation tests: ``vfd up`` (mountd + daemon) and clients."""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from vfd.config import Config, load_config
from vfd.mountctl import MountdClient

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))
from vfdcli import Cli

START_TIMEOUT = 90.0


class Node:
    """A running ``vfd up`` and ways to talk to it."""

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
