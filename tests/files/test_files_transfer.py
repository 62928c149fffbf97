"""Uploads and downloads through the CLI and the HTTP API, on the real mount."""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from filenode import Node
from rich.progress import Progress, TaskID

from vfd.cli import transfer
from vfd.cli.transfer import upload_key

MiB = 1 << 20
GiB = 1 << 30


def test_files_upload_and_download_round_trip(node: Node, tmp_path: Path) -> None:
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    payload = os.urandom(3 * 1024 * 1024 + 7)
    (src / "sub" / "deeper" / "big.bin").write_bytes(payload)
    (src / "small.txt").write_text("hello")
    (src / "empty").write_bytes(b"")
    result = node.cli.json("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    assert sorted(f["path"] for f in result["files"]) == [
        "src/empty",
        "src/small.txt",
        "src/sub/deeper/big.bin",
    ]
    listing = node.cli.json("vfolder", "ls", folder["name"], "src", as_=alice["email"])
    assert [(e["name"], e["type"]) for e in listing["entries"]] == [
        ("empty", "file"),
        ("small.txt", "file"),
        ("sub", "dir"),
    ]
    # files written on the user's behalf belong to the user, in the backing tree too
    backing = node.backing(folder)
    for p in (backing / "src", backing / "src/sub/deeper/big.bin", backing / "src/empty"):
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (alice["uid"], alice["gid"]), p
    assert (backing / "src/sub/deeper/big.bin").read_bytes() == payload
    dest = tmp_path / "dest"
    dest.mkdir()
    node.cli.ok(
        "vfolder",
        "download",
        folder["name"],
        "src",
        "src/small.txt",
        "--dest",
        str(dest),
        as_=alice["email"],
    )
    assert (dest / "src/sub/deeper/big.bin").read_bytes() == payload
    assert (dest / "src/empty").read_bytes() == b""
    assert (dest / "small.txt").read_text() == "hello"
    usage = node.usage(folder)
    assert usage["used_bytes"] == len(payload) + 5


def test_files_upload_resumes_after_interruption(node: Node, tmp_path: Path) -> None:
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "data.bin"
    payload = os.urandom(2 * 1024 * 1024)
    src.write_bytes(payload)
    key = upload_key(src, src.stat(), "data.bin")
    half = len(payload) // 2
    base = f"/v1/vfolders/{folder['name']}/upload"
    with node.http(alice["email"]) as http:
        r = http.put(
            base,
            params={"path": "data.bin", "key": key, "size": len(payload), "offset": 0},
            content=payload[:half],
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"path": "data.bin", "key": key, "offset": half, "complete": False}
        # nothing is visible under the final name while the upload is incomplete
        names = [
            e["name"] for e in http.get(f"/v1/vfolders/{folder['name']}/files").json()["entries"]
        ]
        assert "data.bin" not in names
        # a wrong offset is refused with the offset to resume from
        r = http.put(
            base,
            params={"path": "data.bin", "key": key, "size": len(payload), "offset": 10},
            content=b"x",
        )
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "upload_offset_mismatch"
        assert r.json()["error"]["details"]["offset"] == half
    result = node.cli.json("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    assert result["files"][0]["resumed_from"] == half
    assert (node.backing(folder) / "data.bin").read_bytes() == payload
    assert sorted(p.name for p in node.backing(folder).iterdir()) == ["data.bin"]


def test_files_upload_past_quota_leaves_nothing(node: Node, tmp_path: Path) -> None:
    alice = node.user()
    folder = node.folder(alice)
    node.cli.ok("admin", "quota", "set", "--user", alice["email"], "--bytes", "1M")
    (tmp_path / "ok.bin").write_bytes(b"a" * 1000)
    node.cli.ok("vfolder", "upload", folder["name"], str(tmp_path / "ok.bin"), as_=alice["email"])
    (tmp_path / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    err = node.cli.fails(
        "vfolder",
        "upload",
        folder["name"],
        str(tmp_path / "big.bin"),
        code="quota_exceeded",
        as_=alice["email"],
    )
    assert "quota" in err["message"]
    assert sorted(p.name for p in node.backing(folder).iterdir()) == ["ok.bin"]
    assert node.usage(folder)["used_bytes"] == 1000
    usage = node.cli.json("vfolder", "usage", folder["name"], as_=alice["email"])
    assert (usage["used_bytes"], usage["max_bytes"], usage["live"]) == (1000, 1 << 20, True)


def test_files_download_range_and_errors(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    payload = bytes(range(256)) * 40
    base = f"/v1/vfolders/{folder['name']}"
    with node.http(alice["email"]) as http:
        r = http.put(
            f"{base}/upload",
            params={"path": "f.bin", "key": "range-test-1", "size": len(payload)},
            content=payload,
        )
        assert r.json()["complete"] is True
        r = http.get(f"{base}/download", params={"path": "f.bin"})
        assert r.status_code == 200 and r.content == payload
        assert r.headers["accept-ranges"] == "bytes"
        r = http.get(f"{base}/download", params={"path": "f.bin"}, headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == payload[10:20]
        assert r.headers["content-range"] == f"bytes 10-19/{len(payload)}"
        r = http.get(f"{base}/download", params={"path": "f.bin"}, headers={"Range": "bytes=-5"})
        assert r.status_code == 206 and r.content == payload[-5:]
        r = http.get(
            f"{base}/download", params={"path": "f.bin"}, headers={"Range": "bytes=99999-"}
        )
        assert r.status_code == 416
        assert r.json()["error"]["code"] == "range_not_satisfiable"
        r = http.get(f"{base}/download", params={"path": "missing"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "path_not_found"
        r = http.get(f"{base}/download", params={"path": "missing", "archive": "true"})
        assert r.status_code == 404
        r = http.put(
            f"{base}/upload",
            params={"path": "g.bin", "key": "too-long-1", "size": 3},
            content=b"abcdef",
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument"
        names = [e["name"] for e in http.get(f"{base}/files").json()["entries"]]
        assert names == ["f.bin"]  # the refused upload left nothing


# -- the daemon's side of a transfer: its fds and what it reads ------------------------------


def daemon_pid(node: Node) -> int:
    """The daemon's pid: the peer credentials of its API socket."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(node.config.api_socket))
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid: int = struct.unpack("3i", creds)[0]
    assert b"daemon" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return pid


def open_fds(pid: int) -> list[str]:
    """What each fd of ``pid`` refers to."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            continue  # closed while listing
    return targets


def not_store(targets: list[str]) -> list[str]:
    """``targets`` less the SQLite store's files (its connection pool may grow meanwhile)."""
    return [t for t in targets if not t.endswith((".db", ".db-wal", ".db-shm", ".db-journal"))]


def wait_fds_back(pid: int, baseline: int, marker: str) -> None:
    """Poll until ``pid`` holds at most ``baseline`` fds (not counting the store's) and none
    whose target has ``marker``."""
    deadline = time.monotonic() + 30
    while True:
        fds = not_store(open_fds(pid))
        held = [t for t in fds if marker in t]
        if len(fds) <= baseline and not held:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the daemon keeps {len(fds)} fds (baseline {baseline}): {sorted(fds)}")
        time.sleep(0.05)


def bytes_read(pid: int) -> int:
    """All bytes ``pid`` got from read calls so far (files and sockets alike)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/<pid>/io")


def raw_request(
    node: Node, method: str, url: str, as_: str, headers: dict[str, str]
) -> socket.socket:
    """A connection to the daemon on which the head of a request has been sent."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(node.config.api_socket))
    lines = [f"{method} {url} HTTP/1.1", "Host: vfd", f"X-Vfd-Act-As: {as_}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of the answer on ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the answer"
        body += chunk
    return int(status_line.split()[1]), headers, body


def upload_url(folder: dict[str, Any], **params: object) -> str:
    return f"/v1/vfolders/{folder['name']}/upload?{urlencode(params)}"


def stored(node: Node, user: dict[str, Any], folder: dict[str, Any], path: str, key: str) -> int:
    with node.http(user["email"]) as http:
        r = http.get(f"/v1/vfolders/{folder['name']}/upload", params={"path": path, "key": key})
        assert r.status_code == 200, r.text
        offset: int = r.json()["offset"]
        return offset


def wait_stored(
    node: Node, user: dict[str, Any], folder: dict[str, Any], path: str, key: str, least: int
) -> int:
    deadline = time.monotonic() + 30
    while (offset := stored(node, user, folder, path, key)) < least:
        assert time.monotonic() < deadline, f"the daemon stored only {offset} bytes"
        time.sleep(0.02)
    return offset


def test_files_aborted_uploads_close_their_fds(node: Node, tmp_path: Path) -> None:
    """A client that goes away mid-body (Ctrl-C) leaves no fd open in the daemon; what it
    sent is kept, and the CLI resumes from there."""
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "big.bin"
    payload = os.urandom(8 * MiB)
    src.write_bytes(payload)
    key = upload_key(src, src.stat(), "big.bin")
    (tmp_path / "warm.bin").write_bytes(b"w")
    node.cli.ok("vfolder", "upload", folder["name"], str(tmp_path / "warm.bin"), as_=alice["email"])
    pid = daemon_pid(node)
    baseline = len(not_store(open_fds(pid)))
    offset = 0
    for _ in range(4):
        sock = raw_request(
            node,
            "PUT",
            upload_url(folder, path="big.bin", key=key, size=len(payload), offset=offset),
            alice["email"],
            {"Content-Length": str(len(payload) - offset)},
        )
        with sock:
            sock.sendall(payload[offset : offset + MiB + MiB // 2])
            # the daemon has the part file open and has written to it
            offset = wait_stored(node, alice, folder, "big.bin", key, offset + MiB)
        # the socket is closed here, mid-body
    wait_fds_back(pid, baseline, ".vfd-upload-")
    assert offset >= 4 * MiB
    result = node.cli.json("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    assert result["files"][0]["resumed_from"] == offset
    assert (node.backing(folder) / "big.bin").read_bytes() == payload


def test_files_aborted_downloads_close_their_fds(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    payload = os.urandom(16 * MiB)
    with node.http(alice["email"]) as http:
        r = http.put(
            upload_url(folder, path="d/big.bin", key="abort-dl-1", size=len(payload)),
            content=payload,
        )
        assert r.status_code == 404  # no directory d yet: answered early, seen by httpx too
        http.post(f"/v1/vfolders/{folder['name']}/mkdir", json={"path": "d"})
        r = http.put(
            upload_url(folder, path="d/big.bin", key="abort-dl-1", size=len(payload)),
            content=payload,
        )
        assert r.json()["complete"] is True, r.text
        http.get(f"/v1/vfolders/{folder['name']}/download", params={"path": "d/big.bin"})
    pid = daemon_pid(node)
    baseline = len(not_store(open_fds(pid)))
    base = f"/v1/vfolders/{folder['name']}/download"
    for query in ("path=d/big.bin", "path=d&archive=true", "path=d/big.bin&archive=true") * 2:
        with raw_request(node, "GET", f"{base}?{query}", alice["email"], {}) as sock:
            got = sock.recv(65536)
            assert got.startswith(b"HTTP/1.1 200"), got[:200]
        # closed after the first bytes
    wait_fds_back(pid, baseline, "big.bin")  # the count covers the tar streams' pipes


def test_files_upload_of_existing_file_is_refused_before_the_body(
    node: Node, tmp_path: Path
) -> None:
    alice = node.user()
    folder = node.folder(alice)
    name = folder["name"]
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "b.bin").write_bytes(b"old")
    node.cli.ok("vfolder", "upload", name, str(tree), as_=alice["email"])
    used = node.usage(folder)["used_bytes"]
    # an API client: the answer comes with no body sent, and the connection closes
    sock = raw_request(
        node,
        "PUT",
        upload_url(folder, path="tree/b.bin", key="exists-key-1", size=GiB),
        alice["email"],
        {"Content-Length": str(GiB)},
    )
    with sock:
        status, headers, body = read_response(sock)
        assert status == 409, body
        assert json.loads(body)["error"]["code"] == "path_exists"
        assert headers["connection"] == "close"
        assert sock.recv(1) == b""  # closed: the client need not send the body
    # the CLI: refused before any byte travels, and before anything is made
    (tree / "b.bin").write_bytes(os.urandom(32 * MiB))
    (tree / "a.bin").write_bytes(os.urandom(MiB))
    pid = daemon_pid(node)
    before = bytes_read(pid)
    err = node.cli.fails(
        "vfolder", "upload", name, str(tree), code="path_exists", as_=alice["email"]
    )
    assert err["details"]["path"] == "tree/b.bin"
    # two attempts (human, --json), neither sent the file (the rest: requests, the store)
    assert bytes_read(pid) - before < 2 * MiB
    backing = node.backing(folder)
    assert sorted(p.name for p in (backing / "tree").iterdir()) == ["b.bin"]  # no a.bin, no part
    assert (backing / "tree" / "b.bin").read_bytes() == b"old"
    assert node.usage(folder)["used_bytes"] == used
    # with --overwrite it goes through
    node.cli.ok("vfolder", "upload", name, str(tree), "--overwrite", as_=alice["email"])
    assert (backing / "tree" / "b.bin").read_bytes() == (tree / "b.bin").read_bytes()


def test_files_upload_whose_destination_appears_meanwhile_leaves_no_part(
    node: Node,
) -> None:
    alice = node.user()
    folder = node.folder(alice)
    payload = os.urandom(2 * MiB)
    sock = raw_request(
        node,
        "PUT",
        upload_url(folder, path="race.bin", key="race-key-01", size=len(payload)),
        alice["email"],
        {"Content-Length": str(len(payload))},
    )
    with sock:
        sock.sendall(payload[: MiB + MiB // 2])
        wait_stored(node, alice, folder, "race.bin", "race-key-01", MiB)
        with node.http(alice["email"]) as http:
            r = http.put(
                upload_url(folder, path="race.bin", key="race-key-02", size=5), content=b"first"
            )
            assert r.json()["complete"] is True, r.text
        sock.sendall(payload[MiB + MiB // 2 :])
        status, _headers, body = read_response(sock)
    assert status == 409 and json.loads(body)["error"]["code"] == "path_exists"
    backing = node.backing(folder)
    assert sorted(p.name for p in backing.iterdir()) == ["race.bin"]
    assert (backing / "race.bin").read_bytes() == b"first"
    assert node.usage(folder)["used_bytes"] == 5


# -- download validators -------------------------------------------------------------------


def test_files_download_validators(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    base = f"/v1/vfolders/{folder['name']}/download"
    with node.http(alice["email"]) as http:
        r = http.put(
            upload_url(folder, path="v.txt", key="validator-1", size=10), content=b"0123456789"
        )
        assert r.json()["complete"] is True
        r = http.get(base, params={"path": "v.txt"})
        etag, modified = r.headers["etag"], r.headers["last-modified"]
        assert etag.startswith('"') and etag.endswith('"') and r.content == b"0123456789"
        assert modified.endswith(" GMT")
        q = {"path": "v.txt"}
        r = http.get(base, params=q, headers={"Range": "bytes=4-", "If-Range": etag})
        assert (r.status_code, r.content, r.headers["etag"]) == (206, b"456789", etag)
        for stale in ('"other"', f"W/{etag}", modified):  # another tag, a weak one, a date
            r = http.get(base, params=q, headers={"Range": "bytes=4-", "If-Range": stale})
            assert (r.status_code, r.content) == (200, b"0123456789"), stale
        r = http.get(base, params=q, headers={"If-None-Match": f'"x", {etag}'})
        assert (r.status_code, r.content, r.headers["etag"]) == (304, b"", etag)
        r = http.get(base, params=q, headers={"If-None-Match": '"x"'})
        assert r.status_code == 200
        r = http.get(base, params=q, headers={"If-Match": etag, "Range": "bytes=0-1"})
        assert (r.status_code, r.content) == (206, b"01")
        r = http.get(base, params=q, headers={"If-Match": '"x"'})
        assert r.status_code == 412 and r.json()["error"]["code"] == "precondition_failed"
        # a new version (same size, written in place) has another tag
        view = Path(folder["views"]["rw"]) / "v.txt"
        with open(view, "r+b") as f:
            f.write(b"abcdefghij")
        r = http.get(base, params=q, headers={"Range": "bytes=4-", "If-Range": etag})
        assert (r.status_code, r.content) == (200, b"abcdefghij")
        assert r.headers["etag"] != etag


def interrupt_downloads_after(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """Make the CLI's next download stop (as on Ctrl-C) once ``limit`` bytes are written
    (its progress is rich's on a terminal, none otherwise: both are counted)."""
    seen = [0]

    for kind in (Progress, transfer._NoProgress):
        real = kind.advance

        def advance(self: Any, task_id: TaskID, advance: float = 1, real: Any = real) -> None:
            real(self, task_id, advance)
            seen[0] += int(advance)
            if seen[0] >= limit:
                raise KeyboardInterrupt

        monkeypatch.setattr(kind, "advance", advance)


def test_files_download_resumes_only_the_same_version(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = node.user()
    folder = node.folder(alice)
    name, email = folder["name"], alice["email"]
    first = os.urandom(8 * MiB)
    with node.http(email) as http:
        r = http.put(
            upload_url(folder, path="f.bin", key="resume-dl-1", size=len(first)), content=first
        )
        assert r.json()["complete"] is True
    dest = tmp_path / "dest"
    dest.mkdir()
    part = dest / "f.bin.vfd-part"
    pid = daemon_pid(node)

    def stop_partway() -> int:
        interrupt_downloads_after(monkeypatch, 5 * MiB)
        result = node.cli.run("vfolder", "download", name, "f.bin", "--dest", str(dest), as_=email)
        monkeypatch.undo()
        assert result.exit_code == 130, result.output  # as on Ctrl-C
        assert not (dest / "f.bin").exists()
        size = part.stat().st_size
        assert 5 * MiB <= size < len(first)
        return size

    # unchanged: only the rest is sent (a 206), and the file is whole
    have = stop_partway()
    before = bytes_read(pid)
    result = node.cli.json("vfolder", "download", name, "f.bin", "--dest", str(dest), as_=email)
    assert result["downloaded"][0]["resumed_from"] == have
    assert bytes_read(pid) - before < len(first) - have + 2 * MiB  # not the whole file again
    assert (dest / "f.bin").read_bytes() == first
    assert sorted(p.name for p in dest.iterdir()) == ["f.bin"]
    (dest / "f.bin").unlink()
    # changed in place (same size, same inode) while stopped: the download starts over
    have = stop_partway()
    second = os.urandom(len(first))
    with open(Path(folder["views"]["rw"]) / "f.bin", "r+b") as f:
        f.write(second)
    result = node.cli.json("vfolder", "download", name, "f.bin", "--dest", str(dest), as_=email)
    assert result["downloaded"][0]["resumed_from"] == 0
    assert (dest / "f.bin").read_bytes() == second
    (dest / "f.bin").unlink()
    # replaced by an upload while stopped: starts over too
    have = stop_partway()
    third = os.urandom(len(first) - 1)
    node_src = tmp_path / "f.bin"
    node_src.write_bytes(third)
    node.cli.ok("vfolder", "upload", name, str(node_src), "--overwrite", as_=email)
    result = node.cli.json("vfolder", "download", name, "f.bin", "--dest", str(dest), as_=email)
    assert result["downloaded"][0]["resumed_from"] == 0
    assert (dest / "f.bin").read_bytes() == third
    assert sorted(p.name for p in dest.iterdir()) == ["f.bin"]
    # a part file without a validator (from elsewhere) is never resumed
    (dest / "f.bin").unlink()
    part.write_bytes(b"junk" * 1000)
    result = node.cli.json("vfolder", "download", name, "f.bin", "--dest", str(dest), as_=email)
    assert result["downloaded"][0]["resumed_from"] == 0
    assert (dest / "f.bin").read_bytes() == third
