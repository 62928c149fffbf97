"""A node for the app tests: ``vfd up`` with FUSE (storage sessions need no docker), a
recording plugin installed as a distribution on the node's PYTHONPATH, and helpers to look
at app server processes from outside."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "files"))
sys.path.insert(0, str(Path(__file__).parents[1] / "plugins"))
from fakedist import make_dist
from filenode import Node, fuse_missing

RECORDER = """
    import json
    from vfd.plugins import Reject, hookimpl

    OUT = None

    def _write(hook, session, app):
        line = {"hook": hook, "session": session.name, "kind": session.kind,
                "session_status": session.status, "app": app.name, "status": app.status,
                "port": app.port, "endpoint": app.endpoint, "pid": app.pid, "reason": app.reason}
        with open(OUT, "a") as out:
            out.write(json.dumps(line) + "\\n")

    @hookimpl
    def vfd_configure(sections):
        global OUT
        OUT = sections["apprec"]["out"]

    @hookimpl
    def vfd_app_before_launch(session, app):
        _write("before_launch", session, app)
        if session.name.startswith("no-"):
            raise Reject(f"no {app.name} for sessions named no-*")

    @hookimpl
    async def vfd_app_launched(session, app):
        _write("launched", session, app)

    @hookimpl
    def vfd_app_stopped(session, app):
        _write("stopped", session, app)
"""


class AppNode(Node):
    hooks_file: Path

    def hooks(self) -> list[dict[str, Any]]:
        if not self.hooks_file.exists():
            return []
        return [json.loads(line) for line in self.hooks_file.read_text().splitlines()]

    def settled_hooks(
        self, session: str, hook: str, settle: float = 1.0, timeout: float = 30
    ) -> list[dict[str, Any]]:
        """The calls of ``hook`` for session ``session`` once there is one and no other came
        for ``settle`` seconds after it (a hook called twice shows twice)."""
        deadline = time.monotonic() + timeout
        while not (seen := self._calls(session, hook)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not seen:
            pytest.fail(f"{hook} was not called for session {session} in {timeout}s")
        time.sleep(settle)
        return self._calls(session, hook)

    def _calls(self, session: str, hook: str) -> list[dict[str, Any]]:
        return [h for h in self.hooks() if h["session"] == session and h["hook"] == hook]

    def post(self, path: str, as_: str, body: dict[str, Any]) -> Any:
        with self.http(as_) as http:
            return http.post(path, json=body)

    def delete(self, path: str, as_: str) -> Any:
        with self.http(as_) as http:
            return http.delete(path)

    def get(self, path: str, as_: str) -> Any:
        with self.http(as_) as http:
            return http.get(path)

    def session(self, ref: str, as_: str) -> dict[str, Any]:
        answer = self.get(f"/v1/sessions/{ref}", as_)
        assert answer.status_code == 200, answer.text
        out: dict[str, Any] = answer.json()
        return out

    def wait_session(
        self, ref: str, as_: str, statuses: set[str], timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            seen = self.session(ref, as_)
            if seen["status"] in statuses:
                return seen
            time.sleep(0.05)
        pytest.fail(f"session {ref} did not reach {statuses} in {timeout}s: {seen}")


def start_app_node(site: Path, out: Path, extra: str = "", sessions: str = "") -> AppNode:
    why = fuse_missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"FUSE is required in CI: {why}")
        print(f"app tests skipped: {why}")
        pytest.skip(why)
    state_dir = Path(tempfile.mkdtemp(prefix="vfd-app-", dir="/tmp"))
    config = (
        f'[sessions]\nnode = "app-{secrets.token_hex(3)}"\n{sessions}\n'
        f"[plugins.apprec]\nout = {json.dumps(str(out))}\n\n{extra}"
    )
    (state_dir / "vfd.toml").write_text(config)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(site))
        node = AppNode.launch(state_dir)
    node.hooks_file = out
    try:
        node.wait_ready()
    except BaseException:
        stop_app_node(node)
        raise
    return node


def stop_app_node(node: AppNode) -> None:
    try:
        node.stop()
    finally:
        shutil.rmtree(node.state_dir, ignore_errors=True)


def app_node_fixture(
    tmp_path_factory: pytest.TempPathFactory, extra: str = "", sessions: str = ""
) -> Iterator[AppNode]:
    """A node (see :func:`start_app_node`); ``extra`` is more of its config, ``sessions``
    more lines of its ``[sessions]`` table."""
    site = tmp_path_factory.mktemp("app-site")
    make_dist(site, "vfd-test-apprec", {"apprec": "vfdt_apprec"}, {"vfdt_apprec": RECORDER})
    out = tmp_path_factory.mktemp("apprec") / "hooks.jsonl"
    node = start_app_node(site, out, extra, sessions)
    try:
        yield node
    finally:
        stop_app_node(node)


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a dict ({} once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def wait_gone(pid: int, timeout: float = 30) -> None:
    """Until process ``pid`` is gone for good (reaped: no zombie left)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc_status(pid):
            return
        time.sleep(0.05)
    pytest.fail(f"process {pid} is still there: {proc_status(pid).get('State')}")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def app_servers(node: Node, module: str) -> list[int]:
    """The pids of this node's processes running ``python -m MODULE``."""
    found = []
    for pid in descendants(node.process.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if module.encode() in argv:
            found.append(pid)
    return found
