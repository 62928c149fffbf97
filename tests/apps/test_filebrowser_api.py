"""The web file manager's HTTP side, run standalone on a tmp directory (as root): the token,
every operation, read-only folders, containment, all-or-nothing uploads, large directories,
and nothing left open afterwards."""

from __future__ import annotations

import io
import os
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fbserver import FOLDERS, FileServer, file_server, make_tree, wait_for


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FileServer]:
    root = tmp_path / "root"
    make_tree(root)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("not yours\n")
    with file_server(root, FOLDERS, stall=1.0) as srv:
        yield srv


def names(client: httpx.Client, path: str) -> list[str]:
    answer = client.get("/api/list", params={"path": path})
    assert answer.status_code == 200, answer.text
    return [e["name"] for e in answer.json()["entries"]]


def code(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["code"])


def test_filebrowser_token_required(server: FileServer) -> None:
    with httpx.Client(base_url=server.base) as anon:
        assert anon.get("/").status_code == 401
        assert anon.get("/static/app.js").status_code == 401
        answer = anon.get("/api/list", params={"path": "data"})
        assert answer.status_code == 401 and code(answer) == "unauthenticated"
        wrong = anon.get("/", params={"vfd_token": server.token[:-1] + "x"})
        assert wrong.status_code == 403 and "Wrong token" in wrong.text
        assert server.cookie not in wrong.headers.get("set-cookie", "")
    with httpx.Client(base_url=server.base, cookies={server.cookie: "x" * 32}) as forged:
        assert forged.get("/api/list").status_code == 401
    with server.client() as client:
        head = client.get("/", params={"vfd_token": server.token})
        assert head.status_code == 303
        cookie = head.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert client.get("/").status_code == 200
        # a change without the header no other site's page can send is refused
        bare = client.post("/api/mkdir", json={"path": "data/x"}, headers={"X-Vfd-Files": ""})
        assert bare.status_code == 403 and code(bare) == "permission_denied"
        assert not (server.root / "data" / "x").exists()


def test_filebrowser_listing_and_quota(server: FileServer) -> None:
    with server.client() as client:
        top = client.get("/api/list").json()
        assert [(e["name"], e["readonly"]) for e in top["entries"]] == [
            ("data", False),
            ("refs", True),
        ]
        page = client.get("/api/list", params={"path": "data"}).json()
        assert [(e["name"], e["type"]) for e in page["entries"]] == [
            ("docs", "dir"),
            ("notes.txt", "file"),
        ]
        notes = page["entries"][1]
        assert notes["size"] == 6
        assert abs(notes["mtime"] - (server.root / "data" / "notes.txt").stat().st_mtime) < 1
        vfs = os.statvfs(server.root / "data")
        assert page["quota"]["limit"] == vfs.f_blocks * vfs.f_frsize
        assert 0 < page["quota"]["used"] <= page["quota"]["limit"]
        assert page["readonly"] is False
        assert client.get("/api/list", params={"path": "refs"}).json()["readonly"] is True
        os.close(os.open(bytes(server.root / "data") + b"/bad\xff", os.O_CREAT | os.O_WRONLY))
        odd = client.get("/api/list", params={"path": "data"}).json()["entries"]
        assert {"name": "bad\ufffd", "name_b64": "YmFk/w=="}.items() <= odd[1].items()
        missing = client.get("/api/list", params={"path": "nope"})
        assert missing.status_code == 404 and code(missing) == "vfolder_not_found"


def test_filebrowser_manage(server: FileServer) -> None:
    data = server.root / "data"
    with server.client() as client:
        assert client.post("/api/mkdir", json={"path": "data/new"}).status_code == 200
        assert (data / "new").is_dir()
        again = client.post("/api/mkdir", json={"path": "data/new"})
        assert again.status_code == 409 and code(again) == "path_exists"
        answer = client.post("/api/rename", json={"path": "data/notes.txt", "name": "n.txt"})
        assert answer.status_code == 200 and answer.json()["name"] == "n.txt"
        taken = client.post("/api/rename", json={"path": "data/n.txt", "name": "docs"})
        assert taken.status_code == 409 and code(taken) == "path_exists"
        bad = client.post("/api/rename", json={"path": "data/n.txt", "name": "a/b"})
        assert bad.status_code == 400 and code(bad) == "invalid_name"
        moved = client.post(
            "/api/move", json={"paths": ["data/n.txt", "data/new"], "dest": "data/docs"}
        )
        assert moved.json() == {"moved": ["data/docs/n.txt", "data/docs/new"]}, moved.text
        assert sorted(os.listdir(data / "docs")) == ["a.txt", "n.txt", "new"]
        into_self = client.post("/api/move", json={"paths": ["data/docs"], "dest": "data/docs/new"})
        assert into_self.status_code == 400 and code(into_self) == "invalid_path"
        across = client.post("/api/move", json={"paths": ["data/docs"], "dest": "refs"})
        assert across.status_code == 403 and code(across) == "read_only"
        deleted = client.post("/api/delete", json={"paths": ["data/docs"]})
        assert deleted.status_code == 200
        assert os.listdir(data) == []
        with client.stream("GET", "/api/download", params={"path": "refs/paper.txt"}) as dl:
            assert dl.status_code == 200
            assert "paper.txt" in dl.headers["content-disposition"]
            assert dl.read() == b"read me\n"
    wait_for(lambda: server.files_open() == [], what="descriptors of the tree released")


def test_filebrowser_download_directory_as_tar(server: FileServer) -> None:
    pipes = sorted(f for f in server.fds() if f.startswith("pipe:"))
    (server.root / "data" / "docs" / "deep").mkdir()
    (server.root / "data" / "docs" / "deep" / "b.bin").write_bytes(os.urandom(3 << 20))
    with server.client() as client:
        answer = client.get("/api/download", params={"path": "data/docs"})
        assert answer.status_code == 200
        assert 'filename="docs.tar"' in answer.headers["content-disposition"]
        with tarfile.open(fileobj=io.BytesIO(answer.content)) as tar:
            members = {m.name: m for m in tar.getmembers()}
            assert set(members) == {"docs", "docs/a.txt", "docs/deep", "docs/deep/b.bin"}
            extracted = tar.extractfile(members["docs/deep/b.bin"])
            assert extracted is not None
            blob = (server.root / "data" / "docs" / "deep" / "b.bin").read_bytes()
            assert extracted.read() == blob
        # a client that goes away mid-archive releases the pipe, the thread and the tree
        with client.stream("GET", "/api/download", params={"path": "data"}) as partial:
            next(partial.iter_bytes(1024))
    wait_for(lambda: server.files_open() == [], what="descriptors of the tree released")
    wait_for(
        lambda: sorted(f for f in server.fds() if f.startswith("pipe:")) == pipes,
        what="the archive's pipe closed",
    )


def test_filebrowser_readonly_refused(server: FileServer) -> None:
    before = sorted(os.listdir(server.root / "refs"))
    with server.client() as client:
        calls = [
            ("/api/mkdir", {"path": "refs/x"}),
            ("/api/rename", {"path": "refs/paper.txt", "name": "p.txt"}),
            ("/api/move", {"paths": ["refs/paper.txt"], "dest": "data"}),
            ("/api/delete", {"paths": ["refs/paper.txt"]}),
            ("/api/uploads", {"dest": "refs", "names": ["up.txt"]}),
        ]
        for url, body in calls:
            answer = client.post(url, json=body)
            assert answer.status_code == 403, (url, answer.text)
            assert code(answer) == "read_only", (url, answer.text)
        top = client.post("/api/mkdir", json={"path": "newfolder"})
        assert top.status_code == 404 and code(top) == "vfolder_not_found"
    assert sorted(os.listdir(server.root / "refs")) == before


def test_filebrowser_containment(server: FileServer, tmp_path: Path) -> None:
    data = server.root / "data"
    os.symlink(tmp_path / "outside", data / "escape")
    os.symlink(tmp_path / "outside" / "secret.txt", data / "secret-link")
    with server.client() as client:
        listing = {
            e["name"]: e["type"]
            for e in client.get("/api/list", params={"path": "data"}).json()["entries"]
        }
        assert listing["escape"] == "link" and listing["secret-link"] == "link"
        for path in [
            "data/escape",
            "data/escape/secret.txt",
            "data/../outside/secret.txt",
            "../outside",
        ]:
            answer = client.get("/api/list", params={"path": path})
            assert answer.status_code in (400, 404, 409), (path, answer.text)
        for path in ["data/secret-link", "data/escape/secret.txt", "data/../../outside/secret.txt"]:
            answer = client.get("/api/download", params={"path": path})
            assert answer.status_code in (400, 404, 409), (path, answer.text)
            assert b"not yours" not in answer.content
        into_link = client.post("/api/mkdir", json={"path": "data/escape/made"})
        assert into_link.status_code == 409 and code(into_link) == "not_a_directory"
        up = client.post("/api/uploads", json={"dest": "data/escape", "names": ["x"]})
        assert up.status_code == 409
        # the link itself may be removed, never what it points at
        assert client.post("/api/delete", json={"paths": ["data/escape"]}).status_code == 200
    assert (tmp_path / "outside" / "secret.txt").read_text() == "not yours\n"
    assert not (tmp_path / "outside" / "made").exists()


def upload(client: httpx.Client, dest: str, files: dict[str, bytes]) -> httpx.Response:
    names = sorted({rel.split("/")[0] for rel in files})
    key = client.post("/api/uploads", json={"dest": dest, "names": names}).json()["key"]
    for rel, blob in files.items():
        answer = client.put(f"/api/uploads/{key}/file", params={"path": rel}, content=blob)
        assert answer.status_code == 200, answer.text
    return client.post(f"/api/uploads/{key}/commit")


def hidden(root: Path) -> list[str]:
    return [name for name in os.listdir(root) if name.startswith(".vfd-upload-")]


def test_filebrowser_upload_tree(server: FileServer) -> None:
    data = server.root / "data"
    files = {"proj/a.txt": b"a", "proj/sub/b.bin": os.urandom(2 << 20), "top.txt": b"t"}
    with server.client() as client:
        key = client.post(
            "/api/uploads", json={"dest": "data", "names": ["proj", "top.txt"]}
        ).json()["key"]
        assert (
            client.post(f"/api/uploads/{key}/dir", params={"path": "proj/empty"}).status_code == 200
        )
        for rel, blob in files.items():
            answer = client.put(f"/api/uploads/{key}/file", params={"path": rel}, content=blob)
            assert answer.status_code == 200 and answer.json()["size"] == len(blob)
            # nothing shows before the commit
            assert names(client, "data") == ["docs", "notes.txt"]
        outside = client.put(f"/api/uploads/{key}/file", params={"path": "other/x"}, content=b"x")
        assert outside.status_code == 400 and code(outside) == "invalid_path"
        dotdot = client.put(
            f"/api/uploads/{key}/file", params={"path": "proj/../../x"}, content=b"x"
        )
        assert dotdot.status_code == 400
        done = client.post(f"/api/uploads/{key}/commit")
        assert done.json() == {"placed": ["data/proj", "data/top.txt"]}, done.text
        assert names(client, "data") == ["docs", "proj", "notes.txt", "top.txt"]
        for rel, blob in files.items():
            assert (data / rel).read_bytes() == blob
        assert (data / "proj" / "empty").is_dir()
        assert hidden(data) == []
        # a name that exists refuses the upload before any byte is sent
        taken = client.post("/api/uploads", json={"dest": "data", "names": ["proj"]})
        assert taken.status_code == 409 and code(taken) == "path_exists"
        # an aborted upload leaves nothing
        key = client.post("/api/uploads", json={"dest": "data", "names": ["gone"]}).json()["key"]
        client.put(f"/api/uploads/{key}/file", params={"path": "gone/f"}, content=b"f")
        assert client.delete(f"/api/uploads/{key}").status_code == 200
        assert not (data / "gone").exists() and hidden(data) == []
    assert server.files_open() == []


def test_filebrowser_upload_interrupted(server: FileServer) -> None:
    """A client gone mid-file, or silent for longer than ``stall``, leaves nothing."""
    data = server.root / "data"
    with server.client() as client:
        key = client.post("/api/uploads", json={"dest": "data", "names": ["big.bin"]}).json()["key"]
        cookie = f"{server.cookie}={server.token}"
        head = (
            f"PUT /api/uploads/{key}/file?path=big.bin HTTP/1.1\r\nHost: x\r\n"
            f"Cookie: {cookie}\r\nX-Vfd-Files: 1\r\nContent-Length: {50 << 20}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head + os.urandom(3 << 20))
            wait_for(lambda: any(hidden(data)), what="the upload's staging directory")
        wait_for(lambda: hidden(data) == [], what="the cut upload removed")
        assert not (data / "big.bin").exists()
        gone = client.post(f"/api/uploads/{key}/commit")
        assert gone.status_code == 404
        # silent: begun, one file sent, never committed
        key = client.post("/api/uploads", json={"dest": "data", "names": ["quiet"]}).json()["key"]
        client.put(f"/api/uploads/{key}/file", params={"path": "quiet/f"}, content=b"f")
        assert hidden(data)
        wait_for(lambda: hidden(data) == [], what="the stalled upload removed")
        assert client.post(f"/api/uploads/{key}/commit").status_code == 404
        assert names(client, "data") == ["docs", "notes.txt"]
    wait_for(lambda: server.files_open() == [], what="descriptors released")


def test_filebrowser_large_directory_pages(server: FileServer) -> None:
    big = server.root / "data" / "many"
    big.mkdir()
    for i in range(10_000):
        (big / f"f{i:05d}").touch()
    (big / "zdir").mkdir()
    with server.client() as client:
        started = time.monotonic()
        first = client.get("/api/list", params={"path": "data/many"}).json()
        took = time.monotonic() - started
        assert first["total"] == 10_001
        assert len(first["entries"]) == 200
        assert first["entries"][0]["name"] == "zdir"  # directories first
        assert first["entries"][1]["name"] == "f00000"
        last = client.get(
            "/api/list", params={"path": "data/many", "offset": 10_000, "limit": 200}
        ).json()
        assert [e["name"] for e in last["entries"]] == ["f09999"]
        assert took < 2.0, f"a page of a 10,000-entry directory took {took:.2f} s"
        bad = client.get("/api/list", params={"path": "data/many", "limit": 5000})
        assert bad.status_code == 400 and code(bad) == "invalid_argument"


def test_filebrowser_stops_cleanly(tmp_path: Path) -> None:
    """SIGTERM with an upload open: the upload is removed and the server exits 0."""
    root = tmp_path / "root"
    make_tree(root)
    with file_server(root, FOLDERS) as srv, srv.client() as client:
        client.post("/api/uploads", json={"dest": "data", "names": ["x"]})
        assert hidden(root / "data")
        srv.proc.terminate()
        assert srv.proc.wait(15) == 0, srv.log.read_text()
    assert hidden(root / "data") == []


def test_filebrowser_slow_clients_are_cut(tmp_path: Path) -> None:
    """A request head that never ends, and an upload body that stalls, lose their connection
    after their timeouts; the stalled upload is removed then (not by the stall sweeper, which
    waits far longer here) and nothing else waits for them."""
    root = tmp_path / "root"
    make_tree(root)
    settings = {"header_timeout": 1, "body_timeout": 1, "stall": 600}
    with file_server(root, FOLDERS, **settings) as srv, srv.client() as client:
        with socket.create_connection(("127.0.0.1", srv.port)) as slow_head:
            slow_head.sendall(b"GET /api/list HTTP/1.1\r\nHost: x\r\n")
            slow_head.settimeout(10)
            started = time.monotonic()
            assert names(client, "data") == ["docs", "notes.txt"]  # others are served
            assert slow_head.recv(4096) == b""  # closed by the server
            assert time.monotonic() - started < 5
        key = client.post("/api/uploads", json={"dest": "data", "names": ["s.bin"]}).json()["key"]
        head = (
            f"PUT /api/uploads/{key}/file?path=s.bin HTTP/1.1\r\nHost: x\r\n"
            f"Cookie: {srv.cookie}={srv.token}\r\nX-Vfd-Files: 1\r\nContent-Length: 1000000\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", srv.port)) as slow_body:
            slow_body.sendall(head + b"x" * 1000)
            slow_body.settimeout(10)
            started = time.monotonic()
            while slow_body.recv(4096):
                pass
            assert time.monotonic() - started < 5
        wait_for(lambda: hidden(root / "data") == [], timeout=5, what="the stalled upload removed")
        assert client.post(f"/api/uploads/{key}/commit").status_code == 404
    assert not (root / "data" / "s.bin").exists()
