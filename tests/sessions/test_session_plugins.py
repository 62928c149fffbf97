"""Plugins in a whole node with sessions, installed as distributions apart from the venv (on
the node's PYTHONPATH): the example plugin from ``examples/`` vetoes a session of a listed
image (the reason and the plugin shown by ``vfd session info``) and adds an env var to every
container; a recording plugin sees each session hook with the session as it is then.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sessionnode import (
    IMAGE,
    SessionNode,
    build_image,
    require_docker_and_fuse,
    start_node,
    stop_node,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "plugins"))
from fakedist import make_dist

REPO = Path(__file__).parents[2]
EXAMPLE = REPO / "examples" / "vfd-plugin-example"
DENIED = "vfd-test/busybox:denied"
"""The test image under a second tag, which the example plugin is configured to refuse."""

RECORDER = """
    import json
    from pathlib import Path
    from vfd.plugins import ContainerContribution, Reject, hookimpl

    OUT = None

    def _write(hook, session, **extra):
        line = {"hook": hook, "name": session.name, "status": session.status,
                "container_id": session.container_id, "exit_code": session.exit_code, **extra}
        with open(OUT, "a") as out:
            out.write(json.dumps(line) + "\\n")

    @hookimpl
    def vfd_configure(sections):
        global OUT
        OUT = sections["recorder"]["out"]

    @hookimpl
    def vfd_validate_session(request):
        if request.name.startswith("no-"):
            raise Reject(f"names starting with no- are refused ({request.user_email})")

    @hookimpl
    def vfd_container_spec(session):
        if session.name.startswith("fail-"):
            raise RuntimeError("cannot contribute to this one")
        return ContainerContribution(labels={"recorder.session": session.name})

    @hookimpl
    def vfd_session_started(session):
        _write("started", session)

    @hookimpl
    async def vfd_session_before_stop(session):
        _write("before_stop", session)

    @hookimpl
    def vfd_session_stopped(session):
        _write("stopped", session)

    @hookimpl
    def vfd_session_failed(session, reason):
        _write("failed", session, reason=reason)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed with pip into a directory of its own, and the recorder."""
    target = tmp_path_factory.mktemp("plugin-site")
    source = tmp_path_factory.mktemp("example-src") / "vfd-plugin-example"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    pip += ["--no-build-isolation", "--no-index", "--target", str(target), str(source)]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    make_dist(target, "vfd-test-recorder", {"recorder": "vfdt_rec"}, {"vfdt_rec": RECORDER})
    return target


@pytest.fixture(scope="module")
def node(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionNode]:
    require_docker_and_fuse()
    build_image()
    subprocess.run(["docker", "tag", IMAGE, DENIED], check=True, capture_output=True)
    out = tmp_path_factory.mktemp("recorder") / "hooks.jsonl"
    config = (
        '[plugins.example]\ndeny_images = ["*:denied"]\n\n'
        f"[plugins.recorder]\nout = {json.dumps(str(out))}\n"
    )
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PYTHONPATH", str(site))  # the node's processes find the plugins
            running = start_node(config)
        running.hooks_file = out  # type: ignore[attr-defined]
        try:
            yield running
        finally:
            stop_node(running)
    finally:
        subprocess.run(["docker", "rmi", DENIED], capture_output=True)


@pytest.fixture(scope="module")
def user(node: SessionNode) -> dict[str, Any]:
    return node.user()


def hooks_seen(node: SessionNode, name: str, hook: str, timeout: float = 30) -> dict[str, Any]:
    """The recorder's line for ``hook`` of session ``name`` (polled)."""
    path: Path = node.hooks_file  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                seen = json.loads(line)
                if seen["hook"] == hook and seen["name"] == name:
                    return seen
        time.sleep(0.1)
    lines = path.read_text() if path.exists() else ""
    pytest.fail(f"the recorder saw no {hook} of {name}: {lines}")


def detached(node: SessionNode, email: str, *args: str) -> str:
    """``vfd run -d ARGS...``: the new session's short id."""
    done = node.run("run", "-d", *args, as_=email)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


def test_plugins_listed_on_the_node(node: SessionNode) -> None:
    done = node.run("plugins", "--json")
    assert done.returncode == 0, done.stderr
    listed = {p["name"]: p for p in json.loads(done.stdout)["plugins"]}
    assert listed["example"]["distribution"] == "vfd-plugin-example"
    assert listed["example"]["error"] is None
    assert listed["example"]["hooks"] == [
        "vfd_configure",
        "vfd_container_spec",
        "vfd_register_schedulers",
        "vfd_session_before_start",
    ]
    assert listed["recorder"]["error"] is None


def test_hook_vfd_session_before_start(node: SessionNode, user: dict[str, Any]) -> None:
    """The example plugin, installed from examples/, vetoes a session of a listed image."""
    ref = detached(node, user["email"], DENIED, "true")
    ended = node.wait_status(ref, {"cancelled", "error", "terminated"}, as_=user["email"])
    reason = "image vfd-test/busybox:denied is not allowed here (matches '*:denied')"
    assert (ended["status"], ended["status_plugin"], ended["status_reason"]) == (
        "cancelled",
        "example",
        reason,
    )
    assert ended["container_id"] is None
    info = node.run("session", "info", ref, as_=user["email"])
    assert info.returncode == 0, info.stderr
    assert f"cancelled by plugin example: {reason}" in " ".join(info.stdout.split())
    assert "example" in info.stdout.split("\n", 5)[-1]  # the history names the plugin


def test_hook_vfd_container_spec(node: SessionNode, user: dict[str, Any]) -> None:
    """The example plugin adds its env var to every container; the recorder's label is
    merged in beside it."""
    for _ in range(2):
        done = node.run("run", "--rm", IMAGE, "sh", "-c", "echo $EXAMPLE_PLUGIN", as_=user["email"])
        assert (done.returncode, done.stdout) == (0, "1\n"), done.stderr
    name = f"spec-{secrets.token_hex(3)}"
    ref = detached(node, user["email"], "--name", name, IMAGE, "sleep", "300")
    running = node.wait_status(ref, {"running"}, as_=user["email"])
    labels = subprocess.run(
        ["docker", "inspect", "-f", "{{json .Config.Labels}}", running["container_id"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(labels)["recorder.session"] == name
    node.run("session", "destroy", "--force", ref, as_=user["email"])


def test_hook_vfd_validate_session(node: SessionNode, user: dict[str, Any]) -> None:
    done = node.run("run", "-d", "--name", "no-thanks", IMAGE, "true", as_=user["email"])
    assert done.returncode == 125  # as docker run: vfd itself refused
    assert (
        f"plugin recorder refused the session: names starting with no- are refused "
        f"({user['email']}) [session_rejected]"
    ) in done.stderr
    listed = node.run("session", "list", "--all", "--json", as_=user["email"])
    assert "no-thanks" not in listed.stdout


def test_hook_vfd_session_started(node: SessionNode, user: dict[str, Any]) -> None:
    name = f"started-{secrets.token_hex(3)}"
    ref = detached(node, user["email"], "--name", name, IMAGE, "sleep", "300")
    running = node.wait_status(ref, {"running"}, as_=user["email"])
    seen = hooks_seen(node, name, "started")
    assert (seen["status"], seen["container_id"]) == ("running", running["container_id"])
    node.run("session", "destroy", "--force", ref, as_=user["email"])


def test_hook_vfd_session_before_stop(node: SessionNode, user: dict[str, Any]) -> None:
    name = f"stopping-{secrets.token_hex(3)}"
    ref = detached(node, user["email"], "--name", name, IMAGE, "sleep", "300")
    node.wait_status(ref, {"running"}, as_=user["email"])
    done = node.run("session", "destroy", ref, as_=user["email"])
    assert done.returncode == 0, done.stderr
    seen = hooks_seen(node, name, "before_stop")
    assert seen["status"] == "terminating"
    assert seen["exit_code"] is None  # its container still ran
    node.wait_status(ref, {"terminated"}, as_=user["email"])


def test_hook_vfd_session_stopped(node: SessionNode, user: dict[str, Any]) -> None:
    name = f"exits-{secrets.token_hex(3)}"
    ref = detached(node, user["email"], "--name", name, IMAGE, "sh", "-c", "exit 7")
    node.wait_status(ref, {"terminated"}, as_=user["email"])
    seen = hooks_seen(node, name, "stopped")
    assert (seen["status"], seen["exit_code"]) == ("terminated", 7)


def test_hook_vfd_session_failed(node: SessionNode, user: dict[str, Any]) -> None:
    name = f"fail-{secrets.token_hex(3)}"
    ref = detached(node, user["email"], "--name", name, IMAGE, "true")
    ended = node.wait_status(ref, {"error", "terminated", "cancelled"}, as_=user["email"])
    assert ended["status"] == "error"
    assert ended["status_plugin"] == "recorder"
    assert "plugin recorder failed to contribute to the container" in ended["status_reason"]
    seen = hooks_seen(node, name, "failed")
    assert seen["status"] == "error"
    assert "RuntimeError: cannot contribute to this one" in seen["reason"]
