"""Folder status machine: the transition table, and trash / restore / purge over the API."""

from __future__ import annotations

from typing import Any

import pytest
from daemonapi import backing_dir, error, ok, unique

from vfd.errors import ErrorCode, VfdError
from vfd.folders.lifecycle import TRANSITIONS, check_transition
from vfd.store.models import VFolderStatus as S

ALLOWED = [
    (S.READY, S.DELETE_PENDING),
    (S.CLONING, S.READY),
    (S.CLONING, S.CLONE_ERROR),
    (S.CLONE_ERROR, S.DELETE_ONGOING),
    (S.DELETE_PENDING, S.READY),
    (S.DELETE_PENDING, S.DELETE_ONGOING),
    (S.DELETE_ONGOING, S.DELETE_COMPLETE),
    (S.DELETE_ONGOING, S.DELETE_ERROR),
    (S.DELETE_ERROR, S.DELETE_ONGOING),
]


def test_lifecycle_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(S)


@pytest.mark.parametrize(("old", "new"), [(o, n) for o in S for n in S])
def test_lifecycle_check_transition_follows_the_table(old: S, new: S) -> None:
    if (old, new) in ALLOWED:
        check_transition(old, new)
        return
    with pytest.raises(VfdError) as info:
        check_transition(old, new, name="x")
    assert info.value.code is ErrorCode.INVALID_STATUS
    assert info.value.details == {"status": old.value, "wanted": new.value}


@pytest.fixture
def owner(vfd_daemon: Any) -> Any:
    return vfd_daemon.as_user(vfd_daemon.make_user()["email"])


def _make(client: Any) -> dict[str, Any]:
    folder: dict[str, Any] = ok(client.post("/v1/vfolders", json={"name": unique()}), 201)
    return folder


def test_lifecycle_trash_and_restore(vfd_daemon: Any, owner: Any) -> None:
    folder = _make(owner)
    name = folder["name"]
    trashed = ok(owner.delete(f"/v1/vfolders/{name}"))
    assert trashed["status"] == "delete-pending"
    assert trashed["status_changed_at"] >= folder["status_changed_at"]
    assert ok(owner.get(f"/v1/vfolders/{name}"))["status"] == "delete-pending"
    assert backing_dir(vfd_daemon.config, folder).is_dir()  # the trash keeps the data
    error(owner.delete(f"/v1/vfolders/{name}"), 409, "invalid_status")
    assert ok(owner.post(f"/v1/vfolders/{name}/restore"))["status"] == "ready"
    error(owner.post(f"/v1/vfolders/{name}/restore"), 409, "invalid_status")


def test_lifecycle_purge_needs_trash_and_exact_confirmation(vfd_daemon: Any, owner: Any) -> None:
    folder = _make(owner)
    name = folder["name"]
    path = f"/v1/vfolders/{name}/purge"
    error(owner.post(path, json={"confirm": name}), 409, "invalid_status")
    ok(owner.delete(f"/v1/vfolders/{name}"))
    for wrong in ("", name.upper(), name + " ", " " + name, name[:-1]):
        details = error(owner.post(path, json={"confirm": wrong}), 400, "confirmation_mismatch")
        assert details["confirm"] == wrong
    error(owner.post(path, json={}), 400, "invalid_argument")
    assert backing_dir(vfd_daemon.config, folder).is_dir()
    assert ok(owner.get(f"/v1/vfolders/{name}"))["status"] == "delete-pending"


def test_lifecycle_purge_removes_data_and_frees_the_name(vfd_daemon: Any, owner: Any) -> None:
    folder = _make(owner)
    name = folder["name"]
    data = backing_dir(vfd_daemon.config, folder)
    (data / "file.txt").write_text("payload")
    (data / "sub").mkdir()
    (data / "sub" / "deep").write_text("x")
    ok(owner.delete(f"/v1/vfolders/{name}"))
    purged = ok(owner.post(f"/v1/vfolders/{name}/purge", json={"confirm": name}))["purged"]
    assert (purged["id"], purged["status"]) == (folder["id"], "delete-complete")
    assert not data.exists()
    error(owner.get(f"/v1/vfolders/{name}"), 404, "vfolder_not_found")
    trash = ok(owner.get("/v1/vfolders", params={"trash": True}))["vfolders"]
    assert name not in [f["name"] for f in trash]
    again = ok(owner.post("/v1/vfolders", json={"name": name}), 201)
    assert again["id"] != folder["id"]
    assert backing_dir(vfd_daemon.config, again).is_dir()


def test_lifecycle_needs_wd_permission(vfd_daemon: Any, owner: Any) -> None:
    folder = _make(owner)
    name = folder["name"]
    guest_user = vfd_daemon.make_user()
    guest = vfd_daemon.as_user(guest_user["email"])
    inv = ok(
        owner.post(
            f"/v1/vfolders/{name}/invite",
            json={"emails": [guest_user["email"]], "permission": "rw"},
        )
    )
    ok(guest.post(f"/v1/invitations/{inv['invitations'][0]['id']}/accept"))
    error(guest.delete(f"/v1/vfolders/{name}"), 403, "permission_denied")
    error(guest.patch(f"/v1/vfolders/{name}", json={"name": unique()}), 403, "permission_denied")
    ok(owner.delete(f"/v1/vfolders/{name}"))
    error(guest.post(f"/v1/vfolders/{name}/restore"), 403, "permission_denied")
    error(
        guest.post(f"/v1/vfolders/{name}/purge", json={"confirm": name}), 403, "permission_denied"
    )
    # the trashed folder stays visible to the invited user, as trash
    assert ok(guest.get(f"/v1/vfolders/{name}"))["status"] == "delete-pending"
