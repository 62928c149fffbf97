"""FIFOs, sockets and one user's slow requests cannot hang the file API for the others.

A FIFO (which any user can make in their folder through a session or a mount) blocks
``open()`` until someone opens the other end; downloads, archives and uploads whose part file
is one are refused at once. One user's slow requests hold at most their share of the files
pool (``429 too_many_requests`` beyond it), and a body that stalls ends its request.
"""

from __future__ import annotations

import io
import os
import select
import socket
import stat
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from filenode import Node
from sqlalchemy.engine import make_url
from test_files_transfer import daemon_pid, open_fds, raw_request, read_response, upload_url

FILES_POOL = 4
USER_FILES = FILES_POOL // 2  # the default per-user cap: half the pool
BODY_TIMEOUT = 5.0

NODE_CONFIG = f"""
[workers]
files = {FILES_POOL}

[limits]
body_timeout = {BODY_TIMEOUT}
retry_after = 2
"""


def store_sockets(pid: int, database_url: str) -> set[str]:
    """``socket:[inode]`` of ``pid``'s connections to the store's PostgreSQL server."""
    url = make_url(database_url)
    if not url.drivername.startswith("postgresql"):
        return set()
    port = f"{url.port or 5432:04X}"
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2].endswith(f":{port}"):
                found.add(f"socket:[{fields[9]}]")
    return found


def client_fds(pid: int, database_url: str) -> list[str]:
    """What ``pid``'s fds refer to, less its store connections (a pool that grows to its
    size under concurrent requests and keeps them: not held by any request)."""
    store = store_sockets(pid, database_url)
    db_file = make_url(database_url).database or "" if database_url.startswith("sqlite") else ""
    return [t for t in open_fds(pid) if t not in store and not (db_file and t.startswith(db_file))]


def special(node: Node, user: dict[str, Any], folder: dict[str, Any], path: str, kind: int) -> Path:
    """Make a FIFO or socket node in the folder's ``rw/`` view, owned by ``user`` (as a user's
    session would)."""
    target = Path(folder["views"]["rw"]) / path
    os.mknod(target, kind | 0o644)
    os.chown(target, user["uid"], user["gid"], follow_symlinks=False)
    return target


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    resp = call()
    return resp, time.monotonic() - start


def error_code(resp: httpx.Response) -> str:
    code: str = resp.json()["error"]["code"]
    return code


def test_files_fifo_download_is_refused_not_waited_on(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    special(node, alice, folder, "pipe", stat.S_IFIFO)
    base = f"/v1/vfolders/{folder['name']}/download"
    with node.http(alice["email"]) as http:
        http.timeout = httpx.Timeout(10)
        for params in ({"path": "pipe"}, {"path": "pipe", "archive": "true"}):
            resp, took = timed(lambda params=params: http.get(base, params=params))
            assert resp.status_code == 409, resp.text
            assert error_code(resp) == "not_a_regular_file"
            assert "FIFO" in resp.json()["error"]["message"]
            assert took < 5
        r = http.get(f"/v1/vfolders/{folder['name']}/files", params={"path": "pipe"})
        assert r.json()["entries"][0]["type"] == "other"  # listed, never opened


def test_files_archive_leaves_out_fifos_and_sockets(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    with node.http(alice["email"]) as http:
        assert http.post(f"/v1/vfolders/{folder['name']}/mkdir", json={"path": "d"}).is_success
        r = http.put(upload_url(folder, path="d/a.txt", key="fifo-tar-1", size=2), content=b"hi")
        assert r.json()["complete"] is True, r.text
        special(node, alice, folder, "d/pipe", stat.S_IFIFO)
        special(node, alice, folder, "d/sock", stat.S_IFSOCK)
        resp, took = timed(
            lambda: http.get(
                f"/v1/vfolders/{folder['name']}/download", params={"path": "d", "archive": "true"}
            )
        )
    assert resp.status_code == 200, resp.text
    assert took < 10
    with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
        assert sorted(tar.getnames()) == ["d", "d/a.txt"]
    # the daemon's log reaches the node's log through vfd up's forwarding: poll for it
    line = "left out 2 FIFOs, sockets or devices: d/pipe (a FIFO), d/sock (a socket)"
    deadline = time.monotonic() + 10
    while line not in node.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert line in node.log.read_text()


def test_files_fifo_part_file_is_refused_not_waited_on(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    key = "fifo-part-0001"
    special(node, alice, folder, f".vfd-upload-{key}.part", stat.S_IFIFO)
    with node.http(alice["email"]) as http:
        http.timeout = httpx.Timeout(10)
        for offset in (0, 0):  # twice: the refusal leaves nothing held
            resp, took = timed(
                lambda offset=offset: http.put(
                    upload_url(folder, path="up.bin", key=key, size=5, offset=offset),
                    content=b"hello",
                )
            )
            assert resp.status_code == 409, resp.text
            assert error_code(resp) == "not_a_regular_file"
            assert f".vfd-upload-{key}.part is a FIFO" in resp.json()["error"]["message"]
            assert took < 5
        # aborting the upload removes the FIFO; then the upload goes through
        r = http.delete(
            f"/v1/vfolders/{folder['name']}/upload", params={"path": "up.bin", "key": key}
        )
        assert r.status_code == 200, r.text
        r = http.put(upload_url(folder, path="up.bin", key=key, size=5), content=b"hello")
        assert r.json()["complete"] is True, r.text


def test_files_fifo_downloads_beyond_the_pool_leave_others_served(node: Node) -> None:
    """One user's pool-size-plus-one FIFO downloads at once: each is answered (refused, or
    429 past the user's cap), none waits; root's calls answer within a second meanwhile."""
    alice = node.user()
    folder = node.folder(alice)
    special(node, alice, folder, "pipe", stat.S_IFIFO)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def fetch() -> None:
        with node.http(alice["email"]) as http:
            http.timeout = httpx.Timeout(20)
            r = http.get(f"/v1/vfolders/{folder['name']}/download", params={"path": "pipe"})
            with lock:
                answers.append((r.status_code, error_code(r)))

    threads = [threading.Thread(target=fetch) for _ in range(FILES_POOL + 1)]
    for t in threads:
        t.start()
    with node.http() as root:
        root.timeout = httpx.Timeout(10)
        for path in ("/v1/whoami", "/v1/vfolders"):
            resp, took = timed(lambda path=path: root.get(path))
            assert resp.status_code == 200, resp.text
            assert took < 1.0, (path, took)
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "a FIFO download hangs"
    assert len(answers) == FILES_POOL + 1
    assert set(answers) <= {(409, "not_a_regular_file"), (429, "too_many_requests")}, answers
    assert (409, "not_a_regular_file") in answers


def test_files_user_cap_answers_429_and_stalled_bodies_end(node: Node) -> None:
    """Uploads whose bodies stall hold their user's slots until the body timeout ends them;
    the user's next requests beyond the cap are answered 429 with Retry-After at once, root
    is served meanwhile, and afterwards nothing is held: fds, slots, and the part files keep
    what came (for a resume)."""
    alice = node.user()
    folder = node.folder(alice)
    with node.http(alice["email"]) as http:  # warm up: the daemon's pools and store
        for i in range(FILES_POOL):
            url = upload_url(folder, path=f"w{i}", key=f"warm-up-{i:04d}", size=1)
            r = http.put(url, content=b"w")
            assert r.status_code == 200, r.text
    pid = daemon_pid(node)
    db = node.config.database_url
    before = client_fds(pid, db)
    baseline = len(before)
    socks: list[socket.socket] = []
    try:
        for i in range(FILES_POOL + 1):
            sock = raw_request(
                node,
                "PUT",
                upload_url(folder, path=f"s{i}", key=f"stalled-{i:04d}", size=100),
                alice["email"],
                {"Content-Length": "100"},
            )
            sock.sendall(b"x" * 10)
            socks.append(sock)
        # the requests past the cap are answered at once; the others wait for their bodies
        refused: list[socket.socket] = []
        deadline = time.monotonic() + BODY_TIMEOUT / 2
        while len(refused) < FILES_POOL + 1 - USER_FILES and time.monotonic() < deadline:
            waiting = [s for s in socks if s not in refused]
            for sock in select.select(waiting, [], [], 0.1)[0]:
                status, headers, body = read_response(sock)
                assert status == 429, body
                assert headers["retry-after"] == "2"
                assert b"too_many_requests" in body
                refused.append(sock)
        held = [s for s in socks if s not in refused]
        assert (len(refused), len(held)) == (FILES_POOL + 1 - USER_FILES, USER_FILES)
        with node.http() as root:
            root.timeout = httpx.Timeout(10)
            for path in ("/v1/whoami", "/v1/vfolders"):
                resp, took = timed(lambda path=path: root.get(path))
                assert resp.status_code == 200, resp.text
                assert took < 1.0, (path, took)
        # the stalled bodies end: the daemon closes their connections
        for sock in held:
            sock.settimeout(BODY_TIMEOUT + 20)
            try:
                while sock.recv(65536):
                    pass
            except ConnectionResetError:
                pass
    finally:
        for sock in socks:
            sock.close()
    deadline = time.monotonic() + 30
    while True:
        fds = client_fds(pid, db)
        parts = [t for t in fds if ".vfd-upload-" in t]
        if len(fds) <= baseline and not parts:
            break
        assert time.monotonic() < deadline, f"{len(fds)} fds, {baseline} before: {sorted(fds)}"
        time.sleep(0.05)
    with node.http(alice["email"]) as http:
        for i in range(FILES_POOL + 1):
            r = http.get(
                f"/v1/vfolders/{folder['name']}/upload",
                params={"path": f"s{i}", "key": f"stalled-{i:04d}"},
            )
            assert r.json()["offset"] in (0, 10), r.text  # 10 where the body was being read
        # the slots are free again
        r = http.put(upload_url(folder, path="after", key="after-0001", size=1), content=b"a")
        assert r.status_code == 200, r.text
    assert "its request body stalled" in node.log.read_text()


def test_files_download_not_read_is_cut_after_the_body_timeout(node: Node) -> None:
    """A client that stops reading an answer holds its slot and descriptors only until the
    body timeout."""
    alice = node.user()
    folder = node.folder(alice)
    payload = os.urandom(32 << 20)
    with node.http(alice["email"]) as http:
        r = http.put(
            upload_url(folder, path="big", key="unread-0001", size=len(payload)), content=payload
        )
        assert r.json()["complete"] is True, r.text
    pid = daemon_pid(node)
    db = node.config.database_url
    baseline = len(client_fds(pid, db))
    start = time.monotonic()
    sock = raw_request(
        node, "GET", f"/v1/vfolders/{folder['name']}/download?path=big", alice["email"], {}
    )
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        # nothing more is read: the daemon's buffers fill up, then it gives up on us
        deadline = time.monotonic() + BODY_TIMEOUT + 30
        while not any(t.endswith("/big") for t in client_fds(pid, db)):
            assert time.monotonic() < deadline, "the download never opened the file"
            time.sleep(0.05)
        while any(t.endswith("/big") for t in client_fds(pid, db)):
            assert time.monotonic() < deadline, "the daemon holds the unread download"
            time.sleep(0.1)
    assert time.monotonic() - start >= BODY_TIMEOUT * 0.9
    deadline = time.monotonic() + 30
    while len(client_fds(pid, db)) > baseline:
        assert time.monotonic() < deadline, client_fds(pid, db)
        time.sleep(0.05)
    assert "it read nothing of its answer" in node.log.read_text()
