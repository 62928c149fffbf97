"""No user can hang the API for the others: connections that send nothing or half a request,
stalled bodies and too many connections from one peer are cut, and root is served meanwhile."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import IO, Any

import httpx
import pytest
from daemonapi import SYSTEM_PYTHON, free_uid

VfdDaemon = Any  # tests/conftest.py's VfdDaemon

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
PEER_CONNECTIONS = 64
HALF_OPEN = 1000

VFD_DAEMON_SETTINGS = {
    "limits": {
        "header_timeout": HEADER_TIMEOUT,
        "body_timeout": BODY_TIMEOUT,
        "peer_connections": PEER_CONNECTIONS,
        "retry_after": 2,
    }
}

# Run as another uid: opens HALF_OPEN connections (every other one sends half a request head),
# says how many the daemon refused at once, then waits until the daemon has closed them all.
_HALF_OPEN = r"""
import json, resource, select, socket, sys, time
path, count, wait_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
for i in range(count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    if i % 2:
        s.sendall(b"GET /v1/whoami HTTP/1.1\r\nHost: vfd\r\n")
    socks.append(s)
open_ = {s.fileno(): s for s in socks}
refused = closed = 0
def drain(timeout):
    global refused, closed
    poller = select.poll()
    for fd in open_:
        poller.register(fd, select.POLLIN)
    for fd, _ in poller.poll(timeout * 1000):
        s = open_.pop(fd)
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        if data.startswith(b"HTTP/1.1 429"):
            refused += 1
        else:
            closed += 1
        s.close()
deadline = time.monotonic() + 1.0
while open_ and time.monotonic() < deadline:
    drain(0.2)
print(json.dumps({"refused": refused, "open": len(open_)}), flush=True)
sys.stdin.readline()
deadline = time.monotonic() + wait_s
while open_ and time.monotonic() < deadline:
    drain(0.5)
print(json.dumps({"refused": refused, "closed": closed, "open": len(open_)}), flush=True)
"""


def said(errors: IO[str]) -> str:
    errors.seek(0)
    return errors.read()[-4000:]


def daemon_fds(daemon: VfdDaemon) -> int:
    return len(os.listdir(f"/proc/{daemon.process.pid}/fd"))


def warm_up(daemon: VfdDaemon) -> int:
    """The daemon's fd count once its pools and store connections are in use (a baseline)."""
    for _ in range(3):
        for _ in range(8):
            assert daemon.http.get("/v1/whoami").status_code == 200
            assert daemon.http.get("/v1/vfolders").status_code == 200
    return daemon_fds(daemon)


def wait_fds_back(daemon: VfdDaemon, baseline: int) -> None:
    deadline = time.monotonic() + 30
    while (count := daemon_fds(daemon)) > baseline:
        assert time.monotonic() < deadline, f"the daemon keeps {count} fds (baseline {baseline})"
        time.sleep(0.05)


def timed(call: Callable[[], httpx.Response]) -> float:
    start = time.monotonic()
    resp = call()
    took = time.monotonic() - start
    assert resp.status_code == 200, resp.text
    return took


def wait_closed(sock: socket.socket, limit: float) -> float:
    """Seconds until the daemon closes ``sock`` (read EOF); fails after ``limit``."""
    start = time.monotonic()
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        pytest.fail(f"the daemon kept the connection open for {limit}s (got {data!r})")
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_api_load_half_open_connections_leave_root_served(vfd_daemon: VfdDaemon) -> None:
    baseline = warm_up(vfd_daemon)
    uid = free_uid()
    # errors: what the client says if it fails
    with (
        tempfile.TemporaryFile("w+") as errors,
        subprocess.Popen(
            [
                SYSTEM_PYTHON,
                "-I",
                "-c",
                _HALF_OPEN,
                str(vfd_daemon.socket_path),
                str(HALF_OPEN),
                str(HEADER_TIMEOUT + 20),
            ],
            user=uid,
            group=uid,
            extra_groups=[],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        ) as proc,
    ):
        assert proc.stdout is not None and proc.stdin is not None
        try:
            line = proc.stdout.readline()
            assert line, f"the client of {HALF_OPEN} connections ended:\n{said(errors)}"
            first: dict[str, Any] = json.loads(line)
            # the daemon is busy with a thousand connections of one user; root's calls go on
            with vfd_daemon.client() as root:
                assert timed(lambda: root.get("/v1/whoami")) < 1.0
                assert timed(lambda: root.get("/v1/vfolders")) < 1.0
            # beyond the cap, connections were answered 429 and closed at once
            assert first["refused"] >= HALF_OPEN - PEER_CONNECTIONS, first
            assert first["open"] <= PEER_CONNECTIONS, first
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            assert line, f"the client of {HALF_OPEN} connections ended:\n{said(errors)}"
            last: dict[str, Any] = json.loads(line)
            assert last["open"] == 0, last  # the rest were closed after the header timeout
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    wait_fds_back(vfd_daemon, baseline)
    assert "refused a connection of uid" in vfd_daemon.log()
    assert vfd_daemon.log().count("refused a connection of uid") < 10  # rate-limited


@pytest.mark.parametrize("head", [b"", b"GET /v1/whoami HTTP/1.1\r\nHost: vfd\r\nX-A: "])
def test_api_load_stalled_head_is_closed_after_the_timeout(
    vfd_daemon: VfdDaemon, head: bytes
) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(vfd_daemon.socket_path))
        sock.sendall(head)
        took = wait_closed(sock, HEADER_TIMEOUT + 10)
    assert took >= HEADER_TIMEOUT * 0.9, took


def test_api_load_slow_drip_head_is_closed_from_its_first_byte(vfd_daemon: VfdDaemon) -> None:
    """A head sent a byte at a time does not restart the timer."""
    start = time.monotonic()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(vfd_daemon.socket_path))
        sock.settimeout(HEADER_TIMEOUT + 10)
        try:
            for byte in b"GET /v1/whoami HTTP/1.1\r\nHost: vfd\r\n" * 10:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)  # a client's pace, not a wait for the daemon
        except (BrokenPipeError, ConnectionResetError):
            pass
        wait_closed(sock, HEADER_TIMEOUT + 10)
    assert time.monotonic() - start < HEADER_TIMEOUT + 5


def test_api_load_keep_alive_connection_serves_requests_past_the_head_timeout(
    vfd_daemon: VfdDaemon,
) -> None:
    """The head timer runs per request: a connection that keeps sending whole requests is
    not cut."""
    with vfd_daemon.client() as client:
        deadline = time.monotonic() + HEADER_TIMEOUT * 2
        while time.monotonic() < deadline:
            assert client.get("/v1/whoami").status_code == 200


def test_api_load_stalled_body_is_closed_after_the_timeout(vfd_daemon: VfdDaemon) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(vfd_daemon.socket_path))
        sock.sendall(
            b"POST /v1/vfolders HTTP/1.1\r\nHost: vfd\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"name": "x'
        )
        took = wait_closed(sock, BODY_TIMEOUT + 10)
    assert took >= BODY_TIMEOUT * 0.9, took
    assert vfd_daemon.http.get("/v1/whoami").status_code == 200


def test_api_load_tcp_connections_per_address_are_capped(vfd_daemon: VfdDaemon) -> None:
    assert vfd_daemon.tcp_url is not None
    host, port = vfd_daemon.tcp_url.removeprefix("http://").rsplit(":", 1)
    held = []
    try:
        for _ in range(PEER_CONNECTIONS):
            held.append(socket.create_connection((host, int(port)), timeout=10))
        with socket.create_connection((host, int(port)), timeout=10) as extra:
            data = b""
            while chunk := extra.recv(4096):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429"), data
        assert b"retry-after: 2" in head.lower()
        assert json.loads(body)["error"]["code"] == "too_many_requests"
    finally:
        for sock in held:
            sock.close()
    # once they are gone, the address may connect again
    deadline = time.monotonic() + 10
    while True:
        resp = httpx.get(f"{vfd_daemon.tcp_url}/v1/whoami", timeout=10)
        if resp.status_code == 401:  # served (no token): no longer refused
            break
        assert resp.status_code == 429 and time.monotonic() < deadline, resp.text
        time.sleep(0.05)


def test_api_load_daemon_raises_its_open_file_limit() -> None:
    """systemd starts services with a soft limit of 1024 descriptors; the daemon takes its
    hard limit (each connection is one)."""
    script = (
        "import resource, sys\n"
        "from vfd.daemon.server import raise_fd_limit\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "got = raise_fd_limit()\n"
        "assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard), got\n"
        "assert got == hard\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
