"""The mountd control protocol over the real unix socket of a real mountd.

Covers every op of ``vfd.mountctl`` and the error answers: bad requests are answered
``invalid_argument`` and leave the connection usable; domain errors carry their codes.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import uuid

import pytest
from harness import Folder, MountdProcess, wait_until

from vfd.errors import ErrorCode, VfdError
from vfd.folders import layout

pytestmark = pytest.mark.fuse


def raw(mountd: MountdProcess, *lines: bytes) -> list[dict]:
    """Send raw request lines on one connection; the decoded replies, in order."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(mountd.config.mountd_socket))
        s.sendall(b"".join(line + b"\n" for line in lines))
        buf = b""
        while buf.count(b"\n") < len(lines):
            chunk = s.recv(65536)
            assert chunk, f"mountd closed the connection after {buf!r}"
            buf += chunk
    return [json.loads(line) for line in buf.splitlines()]


def code_of(mountd: MountdProcess, op: str, **fields: object) -> ErrorCode:
    with pytest.raises(VfdError) as exc:
        mountd.call(op, **fields)
    return exc.value.code


def test_control_health_and_socket_mode(mountd: MountdProcess) -> None:
    """health names the mount and the pid; the socket is private to root (0600)."""
    h = mountd.call("health")
    assert h["mount_point"] == str(mountd.mount_point) and h["pid"] == mountd.pid
    assert {"version", "folders", "scopes"} <= set(h)
    mode = os.stat(mountd.config.mountd_socket).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_control_bad_requests_keep_the_connection(mountd: MountdProcess) -> None:
    """Malformed requests are answered invalid_argument, in order, on the same connection,
    which then still serves a good request."""
    replies = raw(
        mountd,
        b"not json",
        b"[1, 2]",
        b'{"op": "explode"}',
        b'{"op": "detach"}',
        b'{"op": "detach", "vfid": 7}',
        b'{"op": "set_limits", "host": "local", "scope": "user:x", "max_bytes": -1, '
        b'"max_files": 0}',
        b'{"op": "health", "extra": 1}',
        b'{"op": "health"}',
    )
    codes = [r.get("error", {}).get("code") for r in replies[:-1]]
    assert codes == ["invalid_argument"] * 7, replies
    assert replies[-1]["ok"] is True and replies[-1]["result"]["pid"] == mountd.pid


def test_control_domain_errors_carry_codes(mountd: MountdProcess, folder: Folder) -> None:
    """Unknown host, bad scope or vfid, a path that is not the layout's, an unknown scope."""
    sc = folder.scope
    assert code_of(mountd, "usage", host="nope", scope=sc) is ErrorCode.HOST_NOT_FOUND
    assert code_of(mountd, "usage", host="local", scope="group:1") is ErrorCode.INVALID_ARGUMENT
    unknown = f"user:{uuid.uuid4().hex}"
    assert code_of(mountd, "usage", host="local", scope=unknown) is ErrorCode.SCOPE_NOT_FOUND
    assert code_of(mountd, "detach", vfid="XYZ") is ErrorCode.INVALID_ARGUMENT
    assert code_of(mountd, "detach", vfid=uuid.uuid4().hex) is ErrorCode.VFOLDER_NOT_FOUND
    bad = dict(vfid=folder.vfid, host="local", scope=sc, path="/etc")
    assert code_of(mountd, "attach", **bad) is ErrorCode.INVALID_PATH
    assert code_of(mountd, "purge", **bad) is ErrorCode.INVALID_PATH
    assert os.path.isdir("/etc")


def test_control_attach_detach_views(mountd: MountdProcess, folder: Folder) -> None:
    """detach makes both views disappear at once (the kernel's entries are invalidated);
    attach brings them back with the data; a second attach is a no-op."""
    (folder.rw / "kept").write_text("yes")
    assert os.path.exists(folder.ro / "kept")
    assert mountd.call("detach", vfid=folder.vfid) == {"vfid": folder.vfid}
    assert not os.path.exists(folder.rw) and not os.path.exists(folder.ro)
    assert folder.vfid not in os.listdir(mountd.mount_point / "rw")
    assert code_of(mountd, "detach", vfid=folder.vfid) is ErrorCode.VFOLDER_NOT_FOUND
    fields = dict(vfid=folder.vfid, host="local", scope=folder.scope, path=str(folder.backing))
    result = mountd.call("attach", **fields)
    assert result == {"vfid": folder.vfid, "rw": str(folder.rw), "ro": str(folder.ro)}
    assert mountd.call("attach", **fields) == result
    assert (folder.ro / "kept").read_text() == "yes"


def test_control_set_limits_and_usage(mountd: MountdProcess, folder: Folder) -> None:
    """set_limits answers the scope's state; usage follows writes through the mount."""
    r = mountd.call("set_limits", host="local", scope=folder.scope, max_bytes=5000, max_files=9)
    assert r == {
        "host": "local",
        "scope": folder.scope,
        "max_bytes": 5000,
        "max_files": 9,
        "used_bytes": 0,
        "used_files": 0,
    }
    (folder.rw / "a").write_bytes(b"z" * 1234)
    (folder.rw / "d").mkdir()
    u = mountd.usage(folder)
    assert (u["used_bytes"], u["used_files"], u["max_bytes"]) == (1234, 2, 5000)


def test_control_rescan_reports_drift(mountd: MountdProcess, folder: Folder) -> None:
    """Files put in the backing directory behind mountd's back are found by rescan, which
    reports the counters before and after and fixes them."""
    (folder.rw / "a").write_bytes(b"a" * 100)
    (folder.backing / "sneaky").write_bytes(b"s" * 50)
    (folder.backing / "dir").mkdir()
    result = mountd.call("rescan", host="local", scope=folder.scope)
    assert result == {
        "scopes": [
            {
                "host": "local",
                "scope": folder.scope,
                "before": {"bytes": 100, "files": 1},
                "after": {"bytes": 150, "files": 3},
            }
        ]
    }
    assert mountd.usage(folder)["used_bytes"] == 150
    again = mountd.call("rescan", host="local", scope=folder.scope)["scopes"][0]
    assert again["before"] == again["after"]
    everything = mountd.call("rescan")["scopes"]
    assert any(s["scope"] == folder.scope for s in everything)


def test_control_purge_needs_detach_and_frees_usage(mountd: MountdProcess) -> None:
    """purge of an attached folder is refused; of a detached one it removes the backing
    tree and subtracts what the folder used, leaving the scope's other folders alone."""
    a = mountd.new_folder()
    b = mountd.new_folder(scope=a.scope)
    (a.rw / "x").write_bytes(b"x" * 700)
    (a.rw / "d").mkdir()
    (b.rw / "y").write_bytes(b"y" * 30)
    fields = dict(vfid=a.vfid, host="local", scope=a.scope, path=str(a.backing))
    assert code_of(mountd, "purge", **fields) is ErrorCode.INVALID_STATUS
    assert a.backing.exists()
    mountd.call("detach", vfid=a.vfid)
    assert mountd.call("purge", **fields) == {
        "vfid": a.vfid,
        "freed_bytes": 700,
        "freed_files": 2,
    }
    assert not a.backing.exists()
    u = mountd.usage(a)
    assert (u["used_bytes"], u["used_files"]) == (30, 1)
    # purging again finds nothing to free
    assert mountd.call("purge", **fields)["freed_files"] == 0


def test_control_attach_of_missing_directory_fails(mountd: MountdProcess) -> None:
    """A folder whose backing directory does not exist cannot be attached."""
    sc = layout.Scope("user", uuid.uuid4())
    vfid = uuid.uuid4()
    path = layout.folder_path(mountd.host_root, sc, vfid)
    fields = dict(vfid=vfid.hex, host="local", scope=str(sc), path=str(path))
    assert code_of(mountd, "attach", **fields) is ErrorCode.PATH_NOT_FOUND
    wait_until(lambda: not os.path.exists(mountd.mount_point / "rw" / vfid.hex), 5, "no view")
