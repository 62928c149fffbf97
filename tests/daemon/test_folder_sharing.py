"""Sharing user folders: invite, accept, reject, leave, per-user permission, dot-folders."""

from __future__ import annotations

from typing import Any

import pytest
from daemonapi import error, ok, unique


class Person:
    def __init__(self, vfd_daemon: Any) -> None:
        self.user = vfd_daemon.make_user()
        self.email: str = self.user["email"]
        self.http = vfd_daemon.as_user(self.email)


@pytest.fixture
def owner(vfd_daemon: Any) -> Person:
    return Person(vfd_daemon)


@pytest.fixture
def guest(vfd_daemon: Any) -> Person:
    return Person(vfd_daemon)


def _folder(person: Person, name: str | None = None) -> str:
    name = name or unique()
    ok(person.http.post("/v1/vfolders", json={"name": name}), 201)
    return name


def _invite(owner: Person, name: str, guest: Person, permission: str = "ro") -> dict[str, Any]:
    body = {"emails": [guest.email], "permission": permission}
    invitations = ok(owner.http.post(f"/v1/vfolders/{name}/invite", json=body))["invitations"]
    assert len(invitations) == 1
    inv: dict[str, Any] = invitations[0]
    return inv


def test_sharing_invite_and_accept(owner: Person, guest: Person) -> None:
    name = _folder(owner)
    inv = _invite(owner, name, guest, "ro")
    assert (inv["vfolder"], inv["inviter"], inv["invitee"]) == (name, owner.email, guest.email)
    assert (inv["permission"], inv["state"]) == ("ro", "pending")
    error(guest.http.get(f"/v1/vfolders/{name}"), 404, "vfolder_not_found")
    assert [i["id"] for i in ok(guest.http.get("/v1/invitations"))["received"]] == [inv["id"]]
    assert [i["id"] for i in ok(owner.http.get("/v1/invitations"))["sent"]] == [inv["id"]]
    accepted = ok(guest.http.post(f"/v1/invitations/{inv['id']}/accept"))
    assert accepted["state"] == "accepted"
    seen = ok(guest.http.get(f"/v1/vfolders/{name}"))
    assert (seen["permission"], seen["is_owner"], seen["owner"]) == ("ro", False, owner.email)
    assert ok(guest.http.get("/v1/storage-status"))["invited_folders"] == 1
    assert ok(guest.http.get("/v1/invitations"))["received"] == []
    error(guest.http.post(f"/v1/invitations/{inv['id']}/accept"), 409, "invalid_status")


def test_sharing_reject(owner: Person, guest: Person) -> None:
    name = _folder(owner)
    inv = _invite(owner, name, guest)
    error(owner.http.post(f"/v1/invitations/{inv['id']}/reject"), 404, "invitation_not_found")
    assert ok(guest.http.post(f"/v1/invitations/{inv['id']}/reject"))["state"] == "rejected"
    error(guest.http.post(f"/v1/invitations/{inv['id']}/accept"), 409, "invalid_status")
    error(guest.http.get(f"/v1/vfolders/{name}"), 404, "vfolder_not_found")
    _invite(owner, name, guest)  # may be invited again


def test_sharing_invitation_ids_are_checked(guest: Person) -> None:
    # not an id: a prefix of one or a folder name, of which the guest has none
    error(guest.http.post("/v1/invitations/not-a-uuid/accept"), 404, "invitation_not_found")
    missing = "0" * 32
    error(guest.http.post(f"/v1/invitations/{missing}/accept"), 404, "invitation_not_found")


def test_sharing_invite_refusals(vfd_daemon: Any, owner: Person, guest: Person) -> None:
    name = _folder(owner)
    path = f"/v1/vfolders/{name}/invite"
    error(owner.http.post(path, json={"emails": ["ghost@example.com"]}), 404, "user_not_found")
    error(owner.http.post(path, json={"emails": [owner.email]}), 400, "invalid_argument")
    error(owner.http.post(path, json={"emails": []}), 400, "invalid_argument")
    error(owner.http.post(path, json={"emails": guest.email}), 400, "invalid_argument")
    error(
        owner.http.post(path, json={"emails": [guest.email], "permission": "x"}),
        400,
        "invalid_argument",
    )
    _invite(owner, name, guest)
    error(owner.http.post(path, json={"emails": [guest.email]}), 409, "invitation_exists")
    inv = ok(guest.http.get("/v1/invitations"))["received"][0]
    ok(guest.http.post(f"/v1/invitations/{inv['id']}/accept"))
    error(owner.http.post(path, json={"emails": [guest.email]}), 409, "already_member")
    # only the owner shares
    third = Person(vfd_daemon)
    error(guest.http.post(path, json={"emails": [third.email]}), 403, "permission_denied")


def test_sharing_dot_folders_are_not_shareable(owner: Person, guest: Person) -> None:
    name = _folder(owner, "." + unique())
    body = {"emails": [guest.email]}
    error(owner.http.post(f"/v1/vfolders/{name}/invite", json=body), 400, "not_shareable")
    # nor can a shared folder become a dot-folder
    shared = _folder(owner)
    _invite(owner, shared, guest)
    error(
        owner.http.patch(f"/v1/vfolders/{shared}", json={"name": "." + unique()}),
        400,
        "not_shareable",
    )


def test_sharing_accept_refuses_a_name_clash(owner: Person, guest: Person) -> None:
    name = _folder(owner)
    _folder(guest, name)
    inv = _invite(owner, name, guest)
    error(guest.http.post(f"/v1/invitations/{inv['id']}/accept"), 409, "vfolder_exists")
    assert ok(guest.http.get("/v1/invitations"))["received"][0]["state"] == "pending"


def test_sharing_rename_must_be_free_for_invited_users(owner: Person, guest: Person) -> None:
    name = _folder(owner)
    inv = _invite(owner, name, guest)
    ok(guest.http.post(f"/v1/invitations/{inv['id']}/accept"))
    taken = _folder(guest)
    error(owner.http.patch(f"/v1/vfolders/{name}", json={"name": taken}), 409, "vfolder_exists")


def test_sharing_leave(owner: Person, guest: Person) -> None:
    name = _folder(owner)
    error(owner.http.post(f"/v1/vfolders/{name}/leave"), 400, "invalid_argument")
    inv = _invite(owner, name, guest, "rw")
    ok(guest.http.post(f"/v1/invitations/{inv['id']}/accept"))
    assert ok(guest.http.post(f"/v1/vfolders/{name}/leave")) == {"left": name}
    error(guest.http.get(f"/v1/vfolders/{name}"), 404, "vfolder_not_found")
    assert ok(owner.http.get(f"/v1/vfolders/{name}"))["status"] == "ready"


def test_sharing_owner_changes_and_revokes_a_guest(owner: Person, guest: Person) -> None:
    name = _folder(owner)
    path = f"/v1/vfolders/{name}/members/{guest.email}"
    error(owner.http.put(path, json={"permission": "rw"}), 409, "not_a_member")
    inv = _invite(owner, name, guest, "ro")
    ok(guest.http.post(f"/v1/invitations/{inv['id']}/accept"))
    error(guest.http.put(path, json={"permission": "wd"}), 403, "permission_denied")
    assert ok(owner.http.put(path, json={"permission": "rw"}))["permission"] == "rw"
    assert ok(guest.http.get(f"/v1/vfolders/{name}"))["permission"] == "rw"
    assert ok(owner.http.delete(path)) == {
        "vfolder": name,
        "email": guest.email,
        "permission": None,
    }
    error(guest.http.get(f"/v1/vfolders/{name}"), 404, "vfolder_not_found")
    error(owner.http.delete(path), 409, "not_a_member")


def test_sharing_purge_cancels_pending_invitations(owner: Person, guest: Person) -> None:
    name = _folder(owner)
    inv = _invite(owner, name, guest)
    ok(owner.http.delete(f"/v1/vfolders/{name}"))
    ok(owner.http.post(f"/v1/vfolders/{name}/purge", json={"confirm": name}))
    assert ok(guest.http.get("/v1/invitations"))["received"] == []
    error(guest.http.post(f"/v1/invitations/{inv['id']}/accept"), 409, "invalid_status")


def test_sharing_members_lists_members_and_pending_invitations(
    vfd_daemon: Any, owner: Person, guest: Person
) -> None:
    name = _folder(owner)
    path = f"/v1/vfolders/{name}/members"
    assert ok(owner.http.get(path)) == {
        "vfolder": name,
        "ownership": "user",
        "members": [],
        "invitations": [],
    }
    inv = _invite(owner, name, guest, "ro")
    third = Person(vfd_daemon)
    pending = _invite(owner, name, third, "rw")
    ok(guest.http.post(f"/v1/invitations/{inv['id']}/accept"))
    listed = ok(owner.http.get(path))
    [member] = listed["members"]
    assert (member["email"], member["permission"]) == (guest.email, "ro")
    assert member["since"].endswith("Z") or "+" in member["since"]
    assert listed["invitations"] == [
        {
            "id": pending["id"],
            "email": third.email,
            "permission": "rw",
            "created_at": pending["created_at"],
        }
    ]
    # a member sees the folder, not who else shares it; others do not see it at all
    error(guest.http.get(path), 403, "permission_denied")
    error(third.http.get(path), 404, "vfolder_not_found")
    error(owner.http.get(f"/v1/vfolders/{unique()}/members"), 404, "vfolder_not_found")
    # a changed permission shows; a revoked member leaves the list, and the folder
    ok(owner.http.put(f"{path}/{guest.email}", json={"permission": "wd"}))
    assert [m["permission"] for m in ok(owner.http.get(path))["members"]] == ["wd"]
    ok(owner.http.delete(f"{path}/{guest.email}"))
    assert ok(owner.http.get(path))["members"] == []
    error(guest.http.get(f"/v1/vfolders/{name}"), 404, "vfolder_not_found")
    # a rejected invitation is no longer pending
    ok(third.http.post(f"/v1/invitations/{pending['id']}/reject"))
    assert ok(owner.http.get(path))["invitations"] == []


def test_sharing_members_of_a_project_folder_are_its_overrides(vfd_daemon: Any) -> None:
    admin = vfd_daemon.as_user(vfd_daemon.make_user(role="admin", uid=3001, gid=3001)["email"])
    project = unique("proj")
    ok(admin.post("/v1/admin/projects", json={"name": project, "gid": 5006}), 201)
    member = Person(vfd_daemon)
    ok(admin.post(f"/v1/admin/projects/{project}/members", json={"email": member.email}))
    name = unique()
    body = {"name": name, "project": project, "permission": "ro"}
    ok(admin.post("/v1/vfolders", json=body), 201)
    path = f"/v1/vfolders/{name}/members"
    listed = ok(admin.get(path))
    assert (listed["ownership"], listed["default_permission"]) == ("project", "ro")
    assert (listed["members"], listed["invitations"]) == ([], [])
    ok(admin.put(f"{path}/{member.email}", json={"permission": "rw"}))
    [override] = ok(admin.get(path))["members"]
    assert (override["email"], override["permission"]) == (member.email, "rw")
    error(member.http.get(path), 403, "admin_required")
