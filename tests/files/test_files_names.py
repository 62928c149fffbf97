"""File names that are not UTF-8, through the API and the CLI (as a process), on a real node:
listed and addressed losslessly (``name_b64``/``path_b64``), shown escaped, and kept as bytes
by uploads and downloads."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from filenode import Node

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))
from vfdcli import run_vfd

VFD = Path(sys.executable).parent / "vfd"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def s(raw: bytes) -> str:
    """A name as Python hands it to programs (argv, os.listdir): surrogateescape."""
    return os.fsdecode(raw)


def vfd(node: Node, *args: str, as_: str) -> Any:
    """The real ``vfd`` process acting for ``as_``; must succeed without a traceback; its
    stdout (parsed with ``--json``)."""
    argv = ["--as", as_, *args]
    proc = run_vfd(VFD, *argv, env=node.env)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return json.loads(proc.stdout) if "--json" in args else proc.stdout


def by_name(entries: list[dict[str, Any]]) -> dict[bytes, dict[str, Any]]:
    """Entries keyed by the bytes of their names (``name_b64`` when present)."""
    return {
        base64.b64decode(e["name_b64"]) if "name_b64" in e else e["name"].encode(): e
        for e in entries
    }


def test_files_names_not_utf8_round_trip(node: Node, tmp_path: Path) -> None:
    alice, bob = node.user(), node.user()
    a, b = alice["email"], bob["email"]
    folder = node.folder(alice)
    name = folder["name"]
    # local sources whose names are not UTF-8: a file and a directory holding one
    src = tmp_path / "src"
    src.mkdir()
    srcb = os.fsencode(src)
    with open(srcb + b"/name\xff.txt", "wb") as f:
        f.write(b"ff")
    os.mkdir(srcb + b"/d\xfe")
    with open(srcb + b"/d\xfe/in\xfd.bin", "wb") as f:
        f.write(b"fd")
    up = vfd(
        node, "vfolder", "upload", name, s(srcb + b"/name\xff.txt"), s(srcb + b"/d\xfe"), as_=a
    )
    assert "Uploaded 2 file(s)" in up
    backing = os.fsencode(node.backing(folder))
    assert sorted(os.listdir(backing)) == [b"d\xfe", b"name\xff.txt"]
    assert os.listdir(backing + b"/d\xfe") == [b"in\xfd.bin"]
    # a link whose name and target are not UTF-8, made in the view as root (as a session could)
    view = os.fsencode(node.config.mount_point / "rw" / folder["id"])
    os.symlink(b"t\xfc", view + b"/l\xfb")

    # the API lists them, for the owner and for a user the folder is shared with
    inv = node.cli.json("vfolder", "invite", name, b, "--permission", "ro", as_=a)
    node.cli.ok("vfolder", "accept", inv["invitations"][0]["id"], as_=b)
    for who in (a, b):
        with node.http(who) as http:
            r = http.get(f"/v1/vfolders/{name}/files", params={"path": ""})
        assert r.status_code == 200, r.text
        entries = by_name(r.json()["entries"])
        assert set(entries) == {b"d\xfe", b"name\xff.txt", b"l\xfb"}
        assert entries[b"name\xff.txt"]["name"] == "name\ufffd.txt"
        assert entries[b"d\xfe"]["type"] == "dir"
        link = entries[b"l\xfb"]
        assert (link["target"], link["target_b64"]) == ("t\ufffd", b64(b"t\xfc"))
    with node.http(a) as http:
        # a path that is not UTF-8 is addressed as path_b64 (stat: a file lists itself)
        r = http.get(f"/v1/vfolders/{name}/files", params={"path_b64": b64(b"name\xff.txt")})
        assert r.status_code == 200, r.text
        assert r.json()["path_b64"] == b64(b"name\xff.txt")
        assert [e["name_b64"] for e in r.json()["entries"]] == [b64(b"name\xff.txt")]
        r = http.get(f"/v1/vfolders/{name}/files", params={"path_b64": b64(b"d\xfe")})
        assert [e["name_b64"] for e in r.json()["entries"]] == [b64(b"in\xfd.bin")]
        # an error about such a path is JSON too, with the path both ways
        r = http.get(f"/v1/vfolders/{name}/files", params={"path_b64": b64(b"gone\xff")})
        assert r.status_code == 404, r.text
        err = r.json()["error"]
        assert err["code"] == "path_not_found" and "gone\\xff" in err["message"]
        assert err["details"]["path_b64"] == b64(b"gone\xff")
        # one form at a time, valid base64, no lone surrogates in text
        both = {"path": "x", "path_b64": b64(b"x")}
        for params in (both, {"path_b64": "!!"}):
            r = http.get(f"/v1/vfolders/{name}/files", params=params)
            assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_argument")
        body = b'{"path": "bad\\udcff", "parents": true}'
        r = http.post(f"/v1/vfolders/{name}/mkdir", content=body)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_argument"), r.text
        r = http.get(f"/v1/vfolders/{name}/download", params={"path_b64": b64(b"name\xff.txt")})
        assert r.status_code == 200 and r.content == b"ff"
        assert "name%FF.txt" in r.headers["content-disposition"]

    # the CLI shows them escaped, like ls -b, and reads them from its arguments
    listing = vfd(node, "vfolder", "ls", name, as_=a)
    assert "name\\xff.txt" in listing and "d\\xfe/" in listing and "l\\xfb -> t\\xfc" in listing
    assert "in\\xfd.bin" in vfd(node, "vfolder", "ls", name, s(b"d\xfe"), as_=a)
    stat = vfd(node, "vfolder", "ls", name, s(b"name\xff.txt"), "--json", as_=a)
    assert stat["type"] == "file" and stat["entries"][0]["name_b64"] == b64(b"name\xff.txt")
    assert "name\\xff.txt" in vfd(node, "vfolder", "ls", name, as_=b)

    # downloads keep the bytes: a file, a directory (tar), the folder root
    dest = tmp_path / "dest"
    vfd(
        node,
        "vfolder",
        "download",
        name,
        s(b"name\xff.txt"),
        s(b"d\xfe"),
        "--dest",
        str(dest),
        as_=a,
    )
    destb = os.fsencode(dest)
    assert sorted(os.listdir(destb)) == [b"d\xfe", b"name\xff.txt"]
    with open(destb + b"/name\xff.txt", "rb") as f:
        assert f.read() == b"ff"
    with open(destb + b"/d\xfe/in\xfd.bin", "rb") as f:
        assert f.read() == b"fd"

    # mkdir, move and remove address them
    vfd(node, "vfolder", "mkdir", name, s(b"new\xf9/sub"), "-p", as_=a)
    moved = vfd(
        node, "vfolder", "mv", name, s(b"name\xff.txt"), s(b"moved\xfa.txt"), "--json", as_=a
    )
    assert moved["name_b64"] == b64(b"moved\xfa.txt")
    assert "Moved moved\\xfa.txt to name\\xff.txt" in vfd(
        node, "vfolder", "mv", name, s(b"moved\xfa.txt"), s(b"name\xff.txt"), as_=a
    )
    removed = vfd(
        node, "vfolder", "rm", name, "-r", s(b"d\xfe"), s(b"new\xf9"), s(b"l\xfb"), "--json", as_=a
    )
    assert removed["removed_b64"] == [b64(b"d\xfe"), b64(b"new\xf9"), b64(b"l\xfb")]
    assert os.listdir(backing) == [b"name\xff.txt"]
    assert node.usage(folder)["used_files"] == 1
