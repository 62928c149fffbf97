"""A session's I/O through the API: logs (followed too), exec, the shell WebSocket, and what a
client that goes away leaves behind (nothing: the daemon's descriptors come back)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess

import httpx
import pytest
from filenode import wait_until
from runtimekit import daemon_pid, fd_count, wait_fds_back
from sessionapi import read_frames, start
from sessionnode import SessionNode
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import unix_connect

from vfd.sessions import frames

PEER_CONNECTIONS = 6
NODE_CONFIG = f"[limits]\npeer_connections = {PEER_CONNECTIONS}\n"


def _running(node: SessionNode, email: str, command: list[str]) -> dict:
    made = start(node, email, command)
    return node.wait_status(made["id"], {"running"}, as_=email)


def test_runtime_io_exec_output_and_exit_code(node: SessionNode) -> None:
    user = node.user()
    s = _running(node, user["email"], ["sleep", "1000"])
    with node.http(user["email"]) as http:
        answer = http.post(
            f"/v1/sessions/{s['short_id']}/exec",
            json={
                "command": ["sh", "-c", "id -u; echo $X; pwd; echo oops >&2; exit 7"],
                "env": {"X": "from-exec"},
                "workdir": "/tmp",
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == frames.MEDIA_TYPE
        out, err, end = read_frames(answer.content)
        assert out.decode().splitlines() == [str(user["uid"]), "from-exec", "/tmp"]
        assert err == b"oops\n"
        assert end == {"exit_code": 7}
        assert http.delete(f"/v1/sessions/{s['id']}", params={"force": "true"}).is_success


def test_runtime_io_exec_refused_when_not_running(node: SessionNode) -> None:
    user = node.user()
    made = start(node, user["email"], ["true"])
    node.wait_status(made["id"], {"terminated"}, as_=user["email"])
    with node.http(user["email"]) as http:
        answer = http.post(f"/v1/sessions/{made['id']}/exec", json={"command": ["true"]})
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["code"] == "session_not_running"
        bad = http.post(f"/v1/sessions/{made['id']}/exec", json={"command": []})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_argument"


def test_runtime_io_logs_follow_until_the_end(node: SessionNode) -> None:
    user = node.user()
    made = start(node, user["email"], ["sh", "-c", "echo one; sleep 1; echo two >&2; exit 4"])
    with node.http(user["email"]) as http:
        answer = http.get(f"/v1/sessions/{made['id']}/logs", params={"follow": "true"})
    out, err, end = read_frames(answer.content)
    assert (out, err) == (b"one\n", b"two\n")
    assert end == {"status": "terminated", "exit_code": 4, "reason": "exited with code 4"}


def _shell_uri(ref: str) -> str:
    return f"ws://localhost/v1/sessions/{ref}/shell"


def test_runtime_io_shell_over_websocket(node: SessionNode) -> None:
    user = node.user()
    s = _running(node, user["email"], ["sleep", "1000"])
    with unix_connect(
        str(node.config.api_socket),
        _shell_uri(s["short_id"]),
        additional_headers={"X-Vfd-Act-As": user["email"]},
    ) as ws:
        ws.send(json.dumps({"resize": [91, 33]}))
        ws.send(b"stty size; id -u; pwd; exit 5\n")
        seen = b""
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                got = ws.recv(timeout=30)
                seen += got if isinstance(got, bytes) else got.encode()
    assert b"33 91" in seen, seen
    assert str(user["uid"]).encode() in seen and b"/home/work" in seen
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1000
    assert json.loads(closed.value.rcvd.reason) == {"exit_code": 5}
    with node.http(user["email"]) as http:
        assert http.delete(f"/v1/sessions/{s['id']}", params={"force": "true"}).is_success


def test_runtime_io_shell_refused_when_not_running(node: SessionNode) -> None:
    user = node.user()
    made = start(node, user["email"], ["true"])
    node.wait_status(made["id"], {"terminated"}, as_=user["email"])
    with (
        pytest.raises(InvalidStatus) as refused,
        unix_connect(
            str(node.config.api_socket),
            _shell_uri(made["id"]),
            additional_headers={"X-Vfd-Act-As": user["email"]},
        ),
    ):
        pass
    answer = refused.value.response
    assert answer.status_code == 409
    assert json.loads(answer.body)["error"]["code"] == "session_not_running"


def _processes_in(container_id: str, word: str) -> int:
    top = subprocess.run(
        ["docker", "top", container_id], capture_output=True, text=True, timeout=60
    ).stdout
    return sum(word in line for line in top.splitlines())


def test_runtime_io_clients_that_leave_release_everything(node: SessionNode) -> None:
    """A followed log, an exec and a shell whose clients vanish: the daemon's descriptors come
    back to their baseline and the exec's process is killed."""
    user = node.user()
    s = _running(node, user["email"], ["sleep", "1000"])
    pid = daemon_pid(node)
    with node.http(user["email"]) as http:  # warm up: the first requests open lasting fds
        http.get(f"/v1/sessions/{s['id']}/logs")
    baseline = fd_count(pid)
    for _ in range(3):
        client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(node.config.api_socket)),
            base_url="http://vfd",
            headers={"X-Vfd-Act-As": user["email"]},
            timeout=30,
        )
        with client.stream("GET", f"/v1/sessions/{s['id']}/logs", params={"follow": "true"}) as r:
            assert r.status_code == 200
            with client.stream(
                "POST",
                f"/v1/sessions/{s['id']}/exec",
                json={"command": ["sh", "-c", "echo started; exec sleep 777"]},
            ) as e:
                first = next(e.iter_bytes())
                assert b"started" in first
            # leaving the with-blocks closes both connections mid-stream
        client.close()
        with (
            contextlib.suppress(ConnectionClosed, OSError),
            unix_connect(
                str(node.config.api_socket),
                _shell_uri(s["id"]),
                additional_headers={"X-Vfd-Act-As": user["email"]},
            ) as ws,
        ):
            ws.send(b"exec sleep 778\n")
            wait_until("the shell's sleep", lambda: _processes_in(s["container_id"], "sleep 778"))
            ws.socket.shutdown(socket.SHUT_RDWR)  # gone without a close frame
    wait_until("the exec killed", lambda: _processes_in(s["container_id"], "sleep 777") == 0)
    wait_until("the shell killed", lambda: _processes_in(s["container_id"], "sleep 778") == 0)
    wait_fds_back(pid, baseline)
    with node.http(user["email"]) as http:
        assert http.delete(f"/v1/sessions/{s['id']}", params={"force": "true"}).is_success


def test_runtime_io_shells_release_their_connection_slot(node: SessionNode) -> None:
    """A WebSocket is an upgraded HTTP connection: it counts against ``[limits]
    peer_connections`` while open, and gives its slot back when closed — more shells than
    the cap, one after another, all open."""
    user = node.user()
    s = _running(node, user["email"], ["sleep", "1000"])
    for n in range(PEER_CONNECTIONS + 3):
        with unix_connect(
            str(node.config.api_socket),
            _shell_uri(s["id"]),
            additional_headers={"X-Vfd-Act-As": user["email"]},
        ) as ws:
            ws.send(f"exit {n}\n".encode())
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=30)
        assert closed.value.rcvd is not None
        assert json.loads(closed.value.rcvd.reason) == {"exit_code": n}
    with node.http(user["email"]) as http:
        assert http.delete(f"/v1/sessions/{s['id']}", params={"force": "true"}).is_success


def test_runtime_io_exec_and_shell_stamp_activity(node: SessionNode) -> None:
    """An exec and a shell are the session's activity (what the idle reaper counts): its
    ``last_activity_at`` moves when each opens and closes; a followed log is not activity."""
    user = node.user()
    s = _running(node, user["email"], ["sleep", "1000"])
    assert s["last_activity_at"] is None
    with node.http(user["email"]) as http:
        with http.stream("GET", f"/v1/sessions/{s['id']}/logs") as answer:
            answer.read()
        assert node.session(s["id"], as_=user["email"])["last_activity_at"] is None
        answer = http.post(f"/v1/sessions/{s['id']}/exec", json={"command": ["sleep", "0.3"]})
        assert answer.status_code == 200, answer.text
        after_exec = node.session(s["id"], as_=user["email"])["last_activity_at"]
        assert after_exec is not None
    with unix_connect(
        str(node.config.api_socket),
        _shell_uri(s["id"]),
        additional_headers={"X-Vfd-Act-As": user["email"]},
    ) as ws:
        ws.send(b"exit 0\n")
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=30)
    wait_until(
        "the shell's stamp",
        lambda: node.session(s["id"], as_=user["email"])["last_activity_at"] > after_exec,
    )
    with node.http(user["email"]) as http:
        assert http.delete(f"/v1/sessions/{s['id']}", params={"force": "true"}).is_success
