"""mountd away means 503: when mountd dies or stalls, file calls answer
``503 mountd_unavailable`` with what to do (never ``500 internal``), the daemon logs it, and
the calls work again once mountd is back. A stalled call answers after ``[workers]
mountd_wait`` while its thread keeps its slot of the files pool until mountd resumes."""

from __future__ import annotations

import errno
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from filenode import Node, wait_until

from vfd import mountinfo
from vfd.daemon.userfs import VIEWS_GONE

WAIT = 1.5
NODE_CONFIG = f"[workers]\nmountd_wait = {WAIT}\n"


def _mount_dead(node: Node) -> bool:
    try:
        os.stat(node.config.mount_point / "rw")
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


@pytest.fixture
def owner(node: Node) -> dict[str, Any]:
    return node.user()


@pytest.fixture
def client(node: Node, owner: dict[str, Any]) -> Iterator[httpx.Client]:
    with node.http(as_=owner["email"]) as http:
        yield http


def _calls(http: httpx.Client, name: str) -> dict[str, httpx.Response]:
    """ls, mkdir, upload (status and body), download of folder ``name``."""
    base = f"/v1/vfolders/{name}"
    key = "k" * 16
    return {
        "ls": http.get(f"{base}/files", params={"path": ""}),
        "mkdir": http.post(f"{base}/mkdir", json={"path": "newdir"}),
        "upload status": http.get(f"{base}/upload", params={"path": "up.txt", "key": key}),
        "upload": http.put(
            f"{base}/upload",
            params={"path": "up.txt", "key": key, "size": "5"},
            content=b"hello",
        ),
        "download": http.get(f"{base}/download", params={"path": "kept.txt"}),
    }


def test_mountd_killed_answers_503_then_works_again_after_vfd_up_restarts_it(
    node: Node, owner: dict[str, Any], client: httpx.Client
) -> None:
    folder = node.folder(owner)
    name = folder["name"]
    assert client.put(
        f"/v1/vfolders/{name}/upload",
        params={"path": "kept.txt", "key": "a" * 16, "size": "4"},
        content=b"data",
    ).is_success
    pid = node.mountd_pid()
    assert pid is not None
    # hold vfd up (the supervisor) so that it cannot restart mountd while we look
    os.kill(node.process.pid, signal.SIGSTOP)
    try:
        os.kill(pid, signal.SIGKILL)
        wait_until("the mount going dead", lambda: _mount_dead(node))
        for what, resp in _calls(client, name).items():
            assert resp.status_code == 503, (what, resp.status_code, resp.text)
            error = resp.json()["error"]
            assert error["code"] == "mountd_unavailable", (what, error)
            assert error["message"] == VIEWS_GONE, (what, error)
        # a bind mount of the dead view is refused too (the kernel may still have its
        # attributes cached: only asking the server tells)
        target = Path(tempfile.mkdtemp(prefix="vfd-away-", dir="/tmp"))
        os.chown(target, owner["uid"], owner["gid"])
        try:
            resp = client.post(f"/v1/vfolders/{name}/mount", json={"target": str(target)})
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"]["message"].startswith(VIEWS_GONE), resp.text
            assert not mountinfo.mounts_at(target)
        finally:
            target.rmdir()
    finally:
        os.kill(node.process.pid, signal.SIGCONT)
    wait_until("mountd's restart", lambda: node.mountd_pid() not in (None, pid))
    wait_until(
        "the file calls working again",
        lambda: client.get(f"/v1/vfolders/{name}/files", params={"path": ""}).is_success,
    )
    calls = _calls(client, name)
    assert {what: r.status_code for what, r in calls.items()} == {
        "ls": 200,
        "mkdir": 201,
        "upload status": 200,
        "upload": 200,
        "download": 200,
    }, {what: r.text for what, r in calls.items()}
    assert calls["download"].content == b"data"
    log = node.log.read_text(errors="replace")
    assert f"answered mountd_unavailable: {VIEWS_GONE}" in log


def test_mountd_stalled_answers_503_after_the_deadline_and_the_slot_comes_back(
    node: Node, owner: dict[str, Any], client: httpx.Client
) -> None:
    folder = node.folder(owner)
    name = folder["name"]
    assert client.post(f"/v1/vfolders/{name}/mkdir", json={"path": "d"}).status_code == 201
    assert client.put(
        f"/v1/vfolders/{name}/upload",
        params={"path": "d/f", "key": "b" * 16, "size": "3"},
        content=b"abc",
    ).is_success
    pid = node.mountd_pid()
    assert pid is not None
    with node.http() as admin:

        def files_busy() -> int:
            busy: int = admin.get("/v1/status").json()["workers"]["files"]["busy"]
            return busy

        assert files_busy() == 0
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            resp = client.get(f"/v1/vfolders/{name}/files", params={"path": "d"})
            took = time.monotonic() - started
            assert resp.status_code == 503, resp.text
            error = resp.json()["error"]
            assert error["code"] == "mountd_unavailable"
            assert error["details"]["may_complete"] is True
            assert "may still complete" in error["message"]
            assert WAIT <= took < WAIT + 10, node.log.read_text(errors="replace")[-4000:]
            # the stalled call still holds its thread: the pool stays bounded
            assert files_busy() == 1
            # uploads and downloads are bounded too (their opens; a late fd is closed)
            for what, call in {
                "upload": lambda: client.put(
                    f"/v1/vfolders/{name}/upload",
                    params={"path": "d/new", "key": "c" * 16, "size": "3"},
                    content=b"xyz",
                ),
                "download": lambda: client.get(
                    f"/v1/vfolders/{name}/download", params={"path": "d/f"}
                ),
            }.items():
                started = time.monotonic()
                resp = call()
                took = time.monotonic() - started
                assert resp.status_code == 503, (what, resp.text)
                assert resp.json()["error"]["details"]["may_complete"] is True, what
                assert took < WAIT + 10, what
            assert files_busy() == 3
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_until("the files worker coming back", lambda: files_busy() == 0)
    resp = client.get(f"/v1/vfolders/{name}/files", params={"path": "d"})
    assert resp.status_code == 200, resp.text
    assert client.get(f"/v1/vfolders/{name}/download", params={"path": "d/f"}).content == b"abc"
    log = node.log.read_text(errors="replace")
    assert "answered mountd_unavailable: the folder's view did not answer" in log
    wait_until(
        "the late call's log line",
        lambda: "a files call finished" in node.log.read_text(errors="replace"),
    )
