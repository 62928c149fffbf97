"""Uploads and downloads through the CLI and the HTTP API, on the real mount."""

from __future__ import annotations

import os
from pathlib import Path

from filenode import Node

from vfd.cli.transfer import upload_key


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
