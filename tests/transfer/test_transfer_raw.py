"""Bodies read straight from the socket and answers sent with ``sendfile`` (daemon/connections.py
"Raw bodies and sendfile"): HTTP as before on the wire, the same limits, nothing held after.

Uploads of 1 MiB or more take their ``Content-Length`` body from the socket in a thread of the
transfer pool (their connection closes after the answer); downloads from the backing file send
their bytes with ``sendfile`` (the connection stays open for the next request).
"""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from filenode import Node, running_node
from test_files_transfer import daemon_pid
from test_transfer_direct import fd_targets, part_files, raw_request, status_of, wait_for

MiB = 1 << 20
BODY_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def node(database_url: str) -> Iterator[Node]:
    extra = f"\n[limits]\nbody_timeout = {BODY_TIMEOUT}\nuser_transfer = 2\n"
    yield from running_node(database_url, prefix="vfd-raw-", extra=extra)


class UnixHTTPConnection(http.client.HTTPConnection):
    """:mod:`http.client` on the daemon's unix socket (keep-alive as any client does it)."""

    def __init__(self, path: Path) -> None:
        super().__init__("vfd", timeout=30)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(self._path)


def upload_url(folder: dict[str, Any], **params: object) -> str:
    return f"/v1/vfolders/{folder['name']}/upload?{urlencode(params)}"


def download_url(folder: dict[str, Any], path: str) -> str:
    return f"/v1/vfolders/{folder['name']}/download?{urlencode({'path': path})}"


def daemon_fds(node: Node) -> list[str]:
    """The daemon's fds, less sockets (the store's pool, the API's listeners)."""
    return [t for t in fd_targets(daemon_pid(node)) if "socket:" not in t and "pipe:" not in t]


def put(node: Node, folder: dict[str, Any], who: str, path: str, data: bytes) -> None:
    with node.http(who) as http:
        r = http.put(
            upload_url(folder, path=path, key=f"put-{path.replace('.', '-')}-key", size=len(data)),
            content=data,
        )
        assert r.status_code == 200 and r.json()["complete"], r.text


def test_raw_upload_answers_100_continue_and_closes_after(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    data = os.urandom(8 * MiB + 3)
    url = upload_url(folder, path="big.bin", key="raw-continue-1", size=len(data))
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(30)
    sock.connect(str(node.config.api_socket))
    with sock:
        head = (
            f"PUT {url} HTTP/1.1\r\nHost: vfd\r\nX-Vfd-Act-As: {alice['email']}\r\n"
            f"Content-Length: {len(data)}\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.sendall(head.encode())
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        sock.sendall(data)
        status, answer = status_of(sock)
        assert status == 200, answer
        assert b"connection: close" in answer.lower()
        assert sock.recv(1) == b""  # closed: h11 never saw this body's end
    assert (node.backing(folder) / "big.bin").read_bytes() == data
    assert node.usage(folder)["used_bytes"] == len(data)


def test_raw_upload_longer_than_size_is_refused_before_its_body(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    url = upload_url(folder, path="x.bin", key="raw-long-0001", size=2 * MiB)
    with raw_request(node, "PUT", url, alice["email"], 4 * MiB) as sock:
        status, answer = status_of(sock)  # nothing of the body was sent
    assert status == 400 and b"longer than size" in answer, answer
    assert part_files(node, folder) == []


def test_raw_upload_cut_short_keeps_what_was_stored_and_resumes(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    data = os.urandom(12 * MiB)
    before = daemon_fds(node)
    key = "raw-cut-0001"
    with raw_request(
        node,
        "PUT",
        upload_url(folder, path="cut.bin", key=key, size=len(data)),
        alice["email"],
        len(data),
    ) as sock:
        sock.sendall(data[: 9 * MiB])
        part = node.backing(folder) / f".vfd-upload-{key}.part"
        wait_for("the first 8 MiB stored", lambda: part.exists() and part.stat().st_size >= 8 * MiB)
    with node.http(alice["email"]) as http:

        def offset() -> int:
            r = http.get(
                f"/v1/vfolders/{folder['name']}/upload", params={"path": "cut.bin", "key": key}
            )
            return int(r.json()["offset"])

        stored = wait_for("the cut upload ended", lambda: offset() if offset() >= 8 * MiB else 0)
        assert stored <= 9 * MiB
        r = http.put(
            upload_url(folder, path="cut.bin", key=key, size=len(data), offset=stored),
            content=data[stored:],
        )
        assert r.status_code == 200 and r.json()["complete"], r.text
    assert (node.backing(folder) / "cut.bin").read_bytes() == data
    wait_for("the daemon's fds back", lambda: len(daemon_fds(node)) <= len(before))
    assert node.usage(folder)["used_bytes"] == len(data)


def test_raw_upload_that_stalls_ends_after_the_body_timeout(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    before = daemon_fds(node)
    url = upload_url(folder, path="slow.bin", key="raw-stall-01", size=4 * MiB)
    start = time.monotonic()
    with raw_request(node, "PUT", url, alice["email"], 4 * MiB) as sock:
        sock.sendall(os.urandom(MiB))
        sock.settimeout(BODY_TIMEOUT + 30)
        status, answer = status_of(sock)
    assert time.monotonic() - start >= BODY_TIMEOUT * 0.9
    assert status == 400 and b"ended early" in answer, answer
    assert "its request body stalled" in node.log.read_text()
    wait_for("the daemon's fds back", lambda: len(daemon_fds(node)) <= len(before))


def test_sendfile_downloads_keep_the_connection_and_honour_ranges(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    data = os.urandom(5 * MiB + 11)
    put(node, folder, alice["email"], "f.bin", data)
    conn = UnixHTTPConnection(node.config.api_socket)
    headers = {"X-Vfd-Act-As": alice["email"]}
    try:
        for _ in range(2):
            conn.request("GET", download_url(folder, "f.bin"), headers=headers)
            r = conn.getresponse()
            assert r.status == 200 and r.read() == data
            assert (r.getheader("connection") or "").lower() != "close"
        etag = r.getheader("etag")
        assert etag
        ranged = {**headers, "Range": "bytes=1048000-3145727", "If-Range": etag}
        conn.request("GET", download_url(folder, "f.bin"), headers=ranged)
        r = conn.getresponse()
        assert r.status == 206 and r.read() == data[1048000:3145728]
        conn.request("GET", f"/v1/vfolders/{folder['name']}/files", headers=headers)
        r = conn.getresponse()
        assert r.status == 200 and b"f.bin" in r.read()
    finally:
        conn.close()


def test_sendfile_download_left_early_holds_nothing(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    data = os.urandom(32 * MiB)
    put(node, folder, alice["email"], "g.bin", data)
    before = daemon_fds(node)
    for _ in range(3):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(30)
        sock.connect(str(node.config.api_socket))
        with sock:
            sock.sendall(
                f"GET {download_url(folder, 'g.bin')} HTTP/1.1\r\nHost: vfd\r\n"
                f"X-Vfd-Act-As: {alice['email']}\r\n\r\n".encode()
            )
            got = b""
            while len(got) < 2 * MiB:
                got += sock.recv(1 << 16)
    wait_for("the daemon's fds back", lambda: len(daemon_fds(node)) <= len(before))
    log = node.log.read_text()
    assert "Exception in ASGI application" not in log
    assert "without completing response" not in log


def test_transfers_past_the_users_transfer_slots_are_refused(node: Node) -> None:
    """``[limits] user_transfer = 2``: a third large transfer of one user at once is a 429
    before anything of it is sent, and the others' transfers go on."""
    alice, bob = node.user(), node.user()
    folder, bobs = node.folder(alice), node.folder(bob)
    data = os.urandom(4 * MiB)
    put(node, bobs, bob["email"], "b.bin", data)
    held = []
    try:
        for i in range(2):  # two stalled uploads hold alice's two transfer slots
            url = upload_url(folder, path=f"s{i}.bin", key=f"raw-slot-{i:03d}", size=4 * MiB)
            sock = raw_request(node, "PUT", url, alice["email"], 4 * MiB)
            sock.sendall(b"x" * 1024)
            held.append(sock)
        # each has its slot once its thread has spliced what came into its part file
        parts = [node.backing(folder) / f".vfd-upload-raw-slot-{i:03d}.part" for i in range(2)]
        wait_for(
            "both bodies in their part files",
            lambda: all(p.exists() and p.stat().st_size == 1024 for p in parts),
        )
        url = upload_url(folder, path="third.bin", key="raw-slot-003", size=4 * MiB)
        with raw_request(node, "PUT", url, alice["email"], 4 * MiB) as sock:
            status, answer = status_of(sock)
        assert status == 429 and b"transfer" in answer, answer
        with node.http(alice["email"]) as http:  # an archive download too, before any byte
            r = http.get(
                f"/v1/vfolders/{folder['name']}/download", params={"path": "", "archive": "true"}
            )
            assert r.status_code == 429 and r.json()["error"]["details"]["pool"] == "transfer"
        with node.http(bob["email"]) as http:
            r = http.get(download_url(bobs, "b.bin"))
            assert r.status_code == 200 and r.content == data
    finally:
        for sock in held:
            sock.close()
