"""A whole node with sessions on: ``vfd up`` (mountd + daemon) with docker, and the test image.

Tests of sessions run real containers of ``vfd-test/busybox:latest`` (built by
``scripts/build-test-image.sh`` from busybox-static: no registry is needed). Each node has a
node name of its own, so its containers (labelled ``vfd.node=<name>``) are removed at the end
whatever the tests left.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "files"))
from filenode import Node, fuse_missing

REPO = Path(__file__).parents[2]
IMAGE = "vfd-test/busybox:latest"


def docker_missing() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not installed (apt-get install docker.io)"
    ok = subprocess.run(["docker", "info"], capture_output=True, timeout=60)
    if ok.returncode != 0:
        return "dockerd is not running (start it: dockerd &)"
    return None


def require_docker_and_fuse() -> None:
    """Skip (fail in CI) when docker or FUSE is missing, printing why."""
    why = fuse_missing() or docker_missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"docker and FUSE are required in CI: {why}")
        print(f"session tests skipped: {why}")
        pytest.skip(why)


def build_image() -> str:
    subprocess.run([str(REPO / "scripts" / "build-test-image.sh"), IMAGE], check=True)
    return IMAGE


def containers_labelled(label: str, check: bool = True) -> list[str]:
    """The ids of the containers, running or not, labelled ``label`` (``key=value``)."""
    found = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=check,
    )
    return found.stdout.split()


def remove_containers(node_name: str) -> None:
    ids = containers_labelled(f"vfd.node={node_name}", check=False)
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


class SessionNode(Node):
    """A running ``vfd up`` with sessions on."""

    node_name: str

    def argv(self, *args: str, as_: str | None = None) -> list[str]:
        """The command line of ``vfd [--as EMAIL] ARGS...``."""
        as_args = ["--as", as_] if as_ else []
        return [str(Path(sys.executable).parent / "vfd"), *as_args, *args]

    def run(
        self, *args: str, as_: str | None = None, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """``vfd [--as EMAIL] ARGS...``, its output captured (not checked)."""
        return subprocess.run(
            self.argv(*args, as_=as_),
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=kw.pop("timeout", 120),
            **kw,
        )

    def containers(self) -> list[str]:
        """The ids of this node's containers, running or not."""
        return containers_labelled(f"vfd.node={self.node_name}")

    def session(self, ref: str, as_: str | None = None) -> dict[str, Any]:
        with self.http(as_) as http:
            answer = http.get(f"/v1/sessions/{ref}")
            answer.raise_for_status()
            out: dict[str, Any] = answer.json()
            return out

    def wait_status(
        self, ref: str, statuses: set[str], as_: str | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        """Poll the session until its status is one of ``statuses``."""
        deadline = time.monotonic() + timeout
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            seen = self.session(ref, as_)
            if seen["status"] in statuses:
                return seen
            time.sleep(0.1)
        pytest.fail(f"session {ref} did not reach {statuses} in {timeout}s: {seen}")


def start_node(extra_config: str = "", database_url: str | None = None) -> SessionNode:
    """Start ``vfd up`` on a fresh state dir with sessions on (stop it with ``stop_node``)."""
    state_dir = Path(tempfile.mkdtemp(prefix="vfd-ses-", dir="/tmp"))
    node_name = f"test-{secrets.token_hex(4)}"
    lines = [f"database_url = {json.dumps(database_url)}"] if database_url else []
    text = "\n".join(lines) + "\n" + extra_config
    if "[sessions]" in text:
        text = text.replace("[sessions]", f'[sessions]\nnode = "{node_name}"\nenabled = "on"', 1)
    else:
        text += f'\n[sessions]\nnode = "{node_name}"\nenabled = "on"\n'
    (state_dir / "vfd.toml").write_text(text)
    node = SessionNode.launch(state_dir)
    node.node_name = node_name
    try:
        node.wait_ready()
    except BaseException:
        stop_node(node)
        raise
    return node


def stop_node(node: SessionNode) -> None:
    try:
        node.stop()
    finally:
        remove_containers(node.node_name)
        shutil.rmtree(node.state_dir, ignore_errors=True)


def node_fixture(request: pytest.FixtureRequest) -> Iterator[SessionNode]:
    require_docker_and_fuse()
    build_image()
    node = start_node(getattr(request.module, "NODE_CONFIG", ""))
    try:
        yield node
    finally:
        stop_node(node)
