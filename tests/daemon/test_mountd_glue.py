"""What the daemon tells mountd, and how it copes when mountd is away or refuses.

mountd here is ``fakemountd.FakeMountd``, a stand-in speaking the real control protocol.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from daemonapi import backing_dir, error, ok, unique
from fakemountd import MOUNT_POINT, FakeMountd

from vfd.errors import ErrorCode


@pytest.fixture
def mountd(vfd_daemon: Any) -> Iterator[FakeMountd]:
    with FakeMountd(vfd_daemon.config.mountd_socket) as fake:
        yield fake


@pytest.fixture
def user(vfd_daemon: Any) -> Any:
    return vfd_daemon.as_user(vfd_daemon.make_user()["email"])


def test_mountd_status_reports_health(vfd_daemon: Any, mountd: FakeMountd) -> None:
    health = ok(vfd_daemon.http.get("/v1/status"))["mountd"]
    assert (health["version"], health["mount_point"]) == ("fake", MOUNT_POINT)


def test_mountd_create_attaches_and_sets_new_scope_limits(
    vfd_daemon: Any, mountd: FakeMountd, user: Any
) -> None:
    folder = ok(user.post("/v1/vfolders", json={"name": unique()}), 201)
    hexid = folder["id"]
    assert folder["views"] == {"rw": f"{MOUNT_POINT}/rw/{hexid}", "ro": f"{MOUNT_POINT}/ro/{hexid}"}
    attach = mountd.ops("attach")[-1]
    assert attach == {
        "op": "attach",
        "vfid": hexid,
        "host": "local",
        "scope": folder["scope"],
        "path": str(backing_dir(vfd_daemon.config, folder)),
    }
    limits = mountd.ops("set_limits")
    assert [(c["host"], c["scope"]) for c in limits] == [("local", folder["scope"])]
    ok(user.post("/v1/vfolders", json={"name": unique()}), 201)
    assert len(mountd.ops("set_limits")) == 1  # the scope exists already
    listed = ok(user.get("/v1/vfolders"))["vfolders"]
    assert all(f["views"]["rw"].startswith(f"{MOUNT_POINT}/rw/") for f in listed)


def test_mountd_views_of_a_ro_user_are_only_the_ro_view(
    vfd_daemon: Any, mountd: FakeMountd, user: Any
) -> None:
    folder = ok(user.post("/v1/vfolders", json={"name": unique()}), 201)
    name, hexid = folder["name"], folder["id"]
    reader = vfd_daemon.make_user()["email"]
    ok(user.post(f"/v1/vfolders/{name}/invite", json={"emails": [reader], "permission": "ro"}))
    guest = vfd_daemon.as_user(reader)
    ok(guest.post(f"/v1/invitations/{name}/accept"))
    seen = ok(guest.get(f"/v1/vfolders/{name}"))
    assert seen["permission"] == "ro"
    assert seen["views"] == {"ro": f"{MOUNT_POINT}/ro/{hexid}"}
    [listed] = [f for f in ok(guest.get("/v1/vfolders"))["vfolders"] if f["id"] == hexid]
    assert listed["views"] == seen["views"]
    assert set(ok(user.get(f"/v1/vfolders/{name}"))["views"]) == {"rw", "ro"}  # the owner's


def test_mountd_trash_detaches_restore_attaches_purge_purges(
    vfd_daemon: Any, mountd: FakeMountd, user: Any
) -> None:
    folder = ok(user.post("/v1/vfolders", json={"name": unique()}), 201)
    name, hexid = folder["name"], folder["id"]
    ok(user.delete(f"/v1/vfolders/{name}"))
    assert mountd.ops("detach")[-1] == {"op": "detach", "vfid": hexid}
    ok(user.post(f"/v1/vfolders/{name}/restore"))
    assert mountd.ops("attach")[-1]["vfid"] == hexid
    assert len(mountd.ops("attach")) == 2
    ok(user.delete(f"/v1/vfolders/{name}"))
    ok(user.post(f"/v1/vfolders/{name}/purge", json={"confirm": name}))
    purge = mountd.ops("purge")[-1]
    assert (purge["vfid"], purge["path"]) == (hexid, str(backing_dir(vfd_daemon.config, folder)))
    assert not backing_dir(vfd_daemon.config, folder).exists()


def test_mountd_purge_detaches_a_folder_mountd_still_serves(
    vfd_daemon: Any, mountd: FakeMountd, user: Any
) -> None:
    folder = ok(user.post("/v1/vfolders", json={"name": unique()}), 201)
    name = folder["name"]
    ok(user.delete(f"/v1/vfolders/{name}"))
    assert folder["id"] not in mountd.attached
    mountd.attached.add(folder["id"])  # as if mountd had reloaded it while trashed
    ok(user.post(f"/v1/vfolders/{name}/purge", json={"confirm": name}))
    assert [c["op"] for c in mountd.ops("detach", "purge")][-2:] == ["detach", "purge"]
    assert not backing_dir(vfd_daemon.config, folder).exists()


def test_mountd_refused_purge_leaves_delete_error_then_retry(
    vfd_daemon: Any, mountd: FakeMountd, user: Any
) -> None:
    folder = ok(user.post("/v1/vfolders", json={"name": unique()}), 201)
    name = folder["name"]
    ok(user.delete(f"/v1/vfolders/{name}"))
    mountd.fail["purge"] = ErrorCode.FOLDER_IN_USE
    error(user.post(f"/v1/vfolders/{name}/purge", json={"confirm": name}), 409, "folder_in_use")
    assert ok(user.get(f"/v1/vfolders/{name}"))["status"] == "delete-error"
    assert backing_dir(vfd_daemon.config, folder).is_dir()
    trash = [f["name"] for f in ok(user.get("/v1/vfolders?trash=true"))["vfolders"]]
    assert name in trash
    error(user.post(f"/v1/vfolders/{name}/restore"), 409, "invalid_status")
    del mountd.fail["purge"]
    purged = ok(user.post(f"/v1/vfolders/{name}/purge", json={"confirm": name}))["purged"]
    assert purged["status"] == "delete-complete"
    assert not backing_dir(vfd_daemon.config, folder).exists()


def test_mountd_policy_change_sends_new_limits(vfd_daemon: Any, mountd: FakeMountd) -> None:
    email = vfd_daemon.make_user()["email"]
    folder = ok(vfd_daemon.as_user(email).post("/v1/vfolders", json={"name": unique()}), 201)
    policy = unique("pol")
    ok(
        vfd_daemon.http.post(
            "/v1/admin/policies", json={"name": policy, "max_quota_scope_size": 4096}
        ),
        201,
    )
    ok(vfd_daemon.http.post(f"/v1/admin/policies/{policy}/assign", json={"email": email}))
    last = mountd.ops("set_limits")[-1]
    assert (last["scope"], last["max_bytes"]) == (folder["scope"], 4096)


def test_mountd_away_is_a_warning_and_purge_removes_directly(vfd_daemon: Any, user: Any) -> None:
    sock_path = vfd_daemon.config.mountd_socket
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))  # a socket file nobody answers on
    try:
        folder = ok(user.post("/v1/vfolders", json={"name": unique()}), 201)
        assert "views" not in folder
        assert ok(vfd_daemon.http.get("/v1/status"))["mountd"] is None
        name = folder["name"]
        ok(user.delete(f"/v1/vfolders/{name}"))
        ok(user.post(f"/v1/vfolders/{name}/purge", json={"confirm": name}))
        assert not backing_dir(vfd_daemon.config, folder).exists()
        assert "mountd attach" in vfd_daemon.log()
        assert "removing" in vfd_daemon.log()
    finally:
        stale.close()
        sock_path.unlink()


def test_mountd_lost_during_purge_keeps_data_and_purge_retries(
    vfd_daemon: Any, mountd: FakeMountd
) -> None:
    """mountd dropping the purge call (crashing, restarting) may still serve the folder: the
    data stays, the folder is ``delete-error``, and a retry once mountd answers completes."""
    email = vfd_daemon.make_user()["email"]
    user, purger = vfd_daemon.as_user(email), vfd_daemon.as_user(email)
    folder = ok(user.post("/v1/vfolders", json={"name": unique()}), 201)
    name, backing = folder["name"], backing_dir(vfd_daemon.config, folder)
    (backing / "kept").write_bytes(b"data")
    ok(user.delete(f"/v1/vfolders/{name}"))
    mountd.hang.add("purge")
    answers: list[Any] = []
    purging = threading.Thread(
        target=lambda: answers.append(
            purger.post(f"/v1/vfolders/{name}/purge", json={"confirm": name})
        )
    )
    purging.start()
    try:
        mountd.wait_hung()
        assert ok(user.get(f"/v1/vfolders/{name}"))["status"] == "delete-ongoing"
    finally:
        mountd.release()  # closes the hung connection unanswered
        purging.join(60)
    details = error(answers[0], 503, "mountd_unavailable")
    assert details["not_running"] is False
    assert (backing / "kept").read_bytes() == b"data"
    assert ok(user.get(f"/v1/vfolders/{name}"))["status"] == "delete-error"
    purged = ok(user.post(f"/v1/vfolders/{name}/purge", json={"confirm": name}))["purged"]
    assert purged["status"] == "delete-complete"
    assert not backing.exists()
