"""mountd's clone jobs over the control socket: start, follow, cancel, refuse, survive a stop.

The daemon's side (statuses, the CLI) is in ``tests/files/test_files_clone.py``; here mountd
is driven directly, as the daemon drives it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from harness import Folder, MountdProcess, wait_until

from vfd.errors import ErrorCode, VfdError
from vfd.folders import layout
from vfd.folders.quota import scan_trees

pytestmark = pytest.mark.fuse

UID = GID = 31337


def target(mountd: MountdProcess, scope: str | None = None) -> dict[str, str]:
    """A new folder's empty, unattached backing directory: the ``clone`` fields naming it."""
    sc = layout.Scope.parse(scope) if scope else layout.Scope("user", uuid.uuid4())
    vfid = uuid.uuid4()
    path = layout.folder_path(mountd.host_root, sc, vfid)
    layout.create_folder_dir(path, uid=UID, gid=GID, project=False)
    return {"vfid": vfid.hex, "host": "local", "scope": str(sc), "path": str(path)}


def source_fields(folder: Folder) -> dict[str, str]:
    return {
        "src_vfid": folder.vfid,
        "src_host": "local",
        "src_scope": folder.scope,
        "src_path": str(folder.backing),
    }


def fill(folder: Folder, files: int) -> None:
    for d in range(files // 1000):
        sub = folder.backing / f"d{d}"
        sub.mkdir()
        for i in range(1000):
            (sub / f"f{i}").write_bytes(b"x" * 10)


def code_of(mountd: MountdProcess, op: str, **fields: object) -> ErrorCode:
    with pytest.raises(VfdError) as exc:
        mountd.call(op, **fields)
    return exc.value.code


def finished(mountd: MountdProcess, vfid: str) -> dict[str, Any]:
    job: dict[str, Any] = wait_until(
        lambda: (j := mountd.call("clone_status", vfid=vfid))["state"] != "running" and j,
        120,
        f"clone job {vfid} to end",
    )
    return job


def test_control_clone_copies_charges_and_guards_the_target(mountd: MountdProcess) -> None:
    src = mountd.new_folder()
    (src.rw / "d").mkdir()
    (src.rw / "d" / "f").write_bytes(b"z" * 5000)
    (src.rw / "l").symlink_to("/etc")
    fill(src, 3000)
    mountd.call("rescan", scope=src.scope)
    new = target(mountd)
    job = mountd.call("clone", **new, **source_fields(src))
    assert job["state"] in ("running", "done") and job["total_files"] == 3000 + 3 + 2 + 1
    if job["state"] == "running":  # the new folder must not appear before the copy is done
        assert code_of(mountd, "attach", **new) in (ErrorCode.INVALID_STATUS,)
        assert code_of(mountd, "purge", **new) is ErrorCode.INVALID_STATUS
    again = mountd.call("clone", **new, **source_fields(src))  # a retry finds the same job
    assert again["started_at"] == job["started_at"]
    done = finished(mountd, new["vfid"])
    assert done["state"] == "done" and done["error"] is None
    assert (done["done_bytes"], done["done_files"]) == (done["total_bytes"], done["total_files"])
    counted = scan_trees([Path(new["path"])])
    usage = mountd.call("usage", host="local", scope=new["scope"])
    assert (usage["used_bytes"], usage["used_files"]) == (counted.bytes, counted.files)
    assert (Path(new["path"]) / "d" / "f").stat().st_uid == UID
    views = mountd.call("attach", **new)
    assert Path(views["ro"], "d", "f").read_bytes() == b"z" * 5000
    assert Path(views["rw"], "l").readlink() == Path("/etc")


def test_control_clone_refusals(mountd: MountdProcess) -> None:
    src = mountd.new_folder()
    (src.rw / "blob").write_bytes(b"b" * 4096)
    new = target(mountd)
    mountd.call("set_limits", host="local", scope=new["scope"], max_bytes=4000, max_files=0)
    assert code_of(mountd, "clone", **new, **source_fields(src)) is ErrorCode.QUOTA_EXCEEDED
    assert not list(Path(new["path"]).iterdir())
    assert mountd.call("usage", host="local", scope=new["scope"])["used_bytes"] == 0
    full = target(mountd)
    (Path(full["path"]) / "x").write_text("x")
    assert code_of(mountd, "clone", **full, **source_fields(src)) is ErrorCode.INVALID_STATUS
    gone = {**source_fields(src), "src_vfid": uuid.uuid4().hex}
    gone["src_path"] = str(
        layout.folder_path(
            mountd.host_root, layout.Scope.parse(src.scope), uuid.UUID(gone["src_vfid"])
        )
    )
    assert code_of(mountd, "clone", **target(mountd), **gone) is ErrorCode.PATH_NOT_FOUND
    wrong = {**source_fields(src), "src_path": "/etc"}
    assert code_of(mountd, "clone", **target(mountd), **wrong) is ErrorCode.INVALID_PATH
    attached = mountd.new_folder()
    fields = {"vfid": attached.vfid, "host": "local", "scope": attached.scope}
    fields["path"] = str(attached.backing)
    assert code_of(mountd, "clone", **fields, **source_fields(src)) is ErrorCode.INVALID_STATUS
    assert code_of(mountd, "clone_status", vfid=uuid.uuid4().hex) is ErrorCode.NOT_FOUND
    assert code_of(mountd, "clone_cancel", vfid="nope") is ErrorCode.INVALID_ARGUMENT
    assert code_of(mountd, "clone", vfid=new["vfid"]) is ErrorCode.INVALID_ARGUMENT


def test_control_clone_cancel_stop_and_restart(fresh_mountd: MountdProcess) -> None:
    mountd = fresh_mountd
    mountd.start()
    src = mountd.new_folder()
    fill(src, 10_000)
    mountd.call("rescan", scope=src.scope)
    new = target(mountd)
    mountd.call("clone", **new, **source_fields(src))
    wait_until(
        lambda: mountd.call("clone_status", vfid=new["vfid"])["done_files"] > 0, 60, "progress"
    )
    job = mountd.call("clone_cancel", vfid=new["vfid"])
    assert job["state"] == "cancelled", job
    assert 0 < job["done_files"] < job["total_files"]
    counted = scan_trees([Path(new["path"])])
    usage = mountd.call("usage", host="local", scope=new["scope"])
    assert (usage["used_bytes"], usage["used_files"]) == (counted.bytes, counted.files)
    assert mountd.call("clone_cancel", vfid=new["vfid"]) == job  # stopped already
    # mountd stopping mid-copy stops the copy; the restarted mountd knows no such job, and its
    # start-up rescan counts what the copy left
    other = target(mountd)
    mountd.call("clone", **other, **source_fields(src))
    wait_until(
        lambda: mountd.call("clone_status", vfid=other["vfid"])["done_files"] > 0, 60, "progress"
    )
    mountd.restart()
    assert code_of(mountd, "clone_status", vfid=other["vfid"]) is ErrorCode.NOT_FOUND
    counted = scan_trees([Path(other["path"])])
    usage = mountd.call("usage", host="local", scope=other["scope"])
    assert (usage["used_bytes"], usage["used_files"]) == (counted.bytes, counted.files)
    freed = mountd.call("purge", **other)
    assert (freed["freed_bytes"], freed["freed_files"]) == (counted.bytes, counted.files)
