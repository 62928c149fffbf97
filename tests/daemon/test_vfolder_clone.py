"""Clone over the real API of a daemon without mountd: refused, and nothing is left behind.

The copy itself, its progress and its failures are tested with a real mountd in
``tests/files/test_files_clone.py`` and ``tests/fuse/test_control_clone.py``.
"""

from __future__ import annotations

from typing import Any

from daemonapi import backing_dir, error, ok, unique


def test_vfolder_clone_without_mountd_leaves_nothing(vfd_daemon: Any) -> None:
    alice = vfd_daemon.as_user(vfd_daemon.make_user(uid=2101, gid=2102)["email"])
    source = ok(alice.post("/v1/vfolders", json={"name": unique()}), 201)
    before = ok(alice.get("/v1/storage-status"))["created"]
    scope_dir = backing_dir(vfd_daemon.config, source).parents[2]
    roots = sorted(p for p in scope_dir.glob("*/*/*"))
    new = unique("clone")
    body = {"target_name": new}
    error(alice.post(f"/v1/vfolders/{source['name']}/clone", json=body), 503, "mountd_unavailable")
    error(alice.get(f"/v1/vfolders/{new}"), 404, "vfolder_not_found")
    assert ok(alice.get("/v1/storage-status"))["created"] == before
    assert sorted(p for p in scope_dir.glob("*/*/*")) == roots
    # the name is free
    ok(alice.post("/v1/vfolders", json={"name": new}), 201)


def test_vfolder_clone_cancel_needs_a_cloning_folder(vfd_daemon: Any) -> None:
    alice = vfd_daemon.as_user(vfd_daemon.make_user(uid=2103, gid=2104)["email"])
    folder = ok(alice.post("/v1/vfolders", json={"name": unique()}), 201)
    error(alice.post(f"/v1/vfolders/{folder['name']}/clone-cancel"), 409, "invalid_status")
    error(alice.post(f"/v1/vfolders/{unique()}/clone-cancel"), 404, "vfolder_not_found")
    error(
        alice.post(f"/v1/vfolders/{unique()}/clone", json={"target_name": "x"}),
        404,
        "vfolder_not_found",
    )
