"""Sharing through the CLI: invitations, leaving, project folders and member permissions.

Who may see what is the daemon's rule; these tests check that the CLI carries each step and
each refusal (with its code and a non-zero exit) on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from vfdcli import Cli, unique


@pytest.fixture
def pair(vfd_daemon: Any) -> tuple[str, str]:
    """Two fresh users: an owner and someone else."""
    return vfd_daemon.make_user()["email"], vfd_daemon.make_user()["email"]


def _invite(cli: Cli, owner: str, other: str, name: str, permission: str) -> str:
    result = cli.json("vfolder", "invite", name, other, "--permission", permission, as_=owner)
    [invitation] = result["invitations"]
    assert invitation["invitee"] == other and invitation["permission"] == permission
    invitation_id: str = invitation["id"]
    return invitation_id


def test_sharing_invite_accept_and_leave(cli: Cli, pair: tuple[str, str]) -> None:
    owner, other = pair
    name = unique("shared")
    cli.ok("vfolder", "create", name, as_=owner)
    out = cli.ok("vfolder", "invite", name, other, "--permission", "ro", as_=owner)
    assert f"Invited {other} to {name} with ro" in out

    received = cli.json("vfolder", "invitations", as_=other)["received"]
    [invitation] = [i for i in received if i["vfolder"] == name]
    assert invitation["inviter"] == owner and invitation["state"] == "pending"
    sent = cli.json("vfolder", "invitations", as_=owner)["sent"]
    assert [i["id"] for i in sent] == [invitation["id"]]
    table = cli.ok("vfolder", "invitations", as_=other)
    assert invitation["id"][:8] in table and owner in table and "no invitations sent" in table
    assert invitation["id"] not in table  # the short id, as in the folder table

    out = cli.ok("vfolder", "accept", invitation["id"], as_=other)
    assert f"Accepted the invitation to {name} from {owner}" in out
    folder = cli.json("vfolder", "info", name, as_=other)
    assert folder["permission"] == "ro" and folder["is_owner"] is False
    assert cli.json("vfolder", "storage-status", as_=other)["invited_folders"] == 1
    cli.fails("vfolder", "delete", name, as_=other, code="permission_denied")

    assert cli.json("vfolder", "leave", name, as_=other) == {"left": name}
    cli.fails("vfolder", "info", name, as_=other, code="vfolder_not_found")
    assert cli.json("vfolder", "info", name, as_=owner)["status"] == "ready"


def test_sharing_reject_leaves_no_access(cli: Cli, pair: tuple[str, str]) -> None:
    owner, other = pair
    name = unique("nope")
    cli.ok("vfolder", "create", name, as_=owner)
    invitation = _invite(cli, owner, other, name, "rw")
    cli.fails(
        "vfolder", "invite", name, other, "--permission", "rw", as_=owner, code="invitation_exists"
    )
    out = cli.ok("vfolder", "reject", invitation, as_=other)
    assert f"Rejected the invitation to {name}" in out
    assert cli.json("vfolder", "invitations", as_=other)["received"] == []
    cli.fails("vfolder", "info", name, as_=other, code="vfolder_not_found")
    cli.fails("vfolder", "accept", invitation, as_=other, code="invalid_status")


def test_sharing_reject_json_and_unknown_invitation(cli: Cli, pair: tuple[str, str]) -> None:
    owner, other = pair
    name = unique("rj")
    cli.ok("vfolder", "create", name, as_=owner)
    invitation = _invite(cli, owner, other, name, "wd")
    assert cli.json("vfolder", "reject", invitation, as_=other)["id"] == invitation
    cli.fails("vfolder", "accept", "0" * 32, as_=other, code="invitation_not_found")
    cli.fails("vfolder", "reject", "0" * 32, as_=other, code="invitation_not_found")


def test_sharing_accept_json_is_the_invitation(cli: Cli, pair: tuple[str, str]) -> None:
    owner, other = pair
    name = unique("acc")
    cli.ok("vfolder", "create", name, as_=owner)
    invitation = _invite(cli, owner, other, name, "rw")
    accepted = cli.json("vfolder", "accept", invitation, as_=other)
    assert accepted["id"] == invitation and accepted["vfolder"] == name
    assert cli.json("vfolder", "info", name, as_=other)["permission"] == "rw"


def test_sharing_accept_and_reject_by_the_short_id_the_table_shows(
    cli: Cli, pair: tuple[str, str]
) -> None:
    owner, other = pair
    first, second = unique("short"), unique("short")
    for name in (first, second):
        cli.ok("vfolder", "create", name, as_=owner)
    accepted, rejected = (_invite(cli, owner, other, n, "ro") for n in (first, second))
    table = cli.ok("vfolder", "invitations", as_=other)
    assert accepted[:8] in table and rejected[:8] in table

    out = cli.ok("vfolder", "accept", accepted[:8], as_=other)
    assert f"Accepted the invitation to {first} from {owner}" in out
    assert cli.json("vfolder", "reject", rejected[:8].upper(), as_=other)["id"] == rejected
    assert cli.json("vfolder", "info", first, as_=other)["permission"] == "ro"
    cli.fails("vfolder", "info", second, as_=other, code="vfolder_not_found")
    error = cli.fails("vfolder", "accept", accepted[:8], as_=other, code="invalid_status")
    assert "already accepted" in error["message"]


def test_sharing_accept_by_the_folder_name(cli: Cli, pair: tuple[str, str]) -> None:
    owner, other = pair
    name = unique("byname")
    cli.ok("vfolder", "create", name, as_=owner)
    invitation = _invite(cli, owner, other, name, "rw")
    assert cli.json("vfolder", "accept", name, as_=other)["id"] == invitation
    assert cli.json("vfolder", "info", name, as_=other)["permission"] == "rw"
    error = cli.fails(
        "vfolder", "accept", unique("nothing"), as_=other, code="invitation_not_found"
    )
    assert "vfd vfolder invitations" in error["message"]


def test_sharing_ambiguous_invitation_is_a_clear_error(cli: Cli, vfd_daemon: Any) -> None:
    invitee = vfd_daemon.make_user()["email"]
    # the same folder name from two owners
    name = unique("twice")
    ids = []
    for _ in range(2):
        owner = vfd_daemon.make_user()["email"]
        cli.ok("vfolder", "create", name, as_=owner)
        ids.append(_invite(cli, owner, invitee, name, "ro"))
    error = cli.fails("vfolder", "accept", name, as_=invitee, code="ambiguous_id")
    assert sorted(error["details"]["matches"]) == sorted(ids)
    assert all(i[:8] in error["message"] for i in ids)

    # an id prefix two invitations share (16 hex digits: 17 invitations hold a repeat)
    owner = vfd_daemon.make_user()["email"]
    by_first: dict[str, str] = {i[0]: i for i in ids}
    while True:
        folder = unique("prefix")
        cli.ok("vfolder", "create", folder, as_=owner)
        made = _invite(cli, owner, invitee, folder, "ro")
        if made[0] in by_first:
            break
        by_first[made[0]] = made
    error = cli.fails("vfolder", "reject", made[0], as_=invitee, code="ambiguous_id")
    assert {made, by_first[made[0]]} <= set(error["details"]["matches"])
    assert "give more of the id" in error["message"]
    assert cli.json("vfolder", "reject", made, as_=invitee)["state"] == "rejected"


def test_sharing_invite_refusals(cli: Cli, pair: tuple[str, str]) -> None:
    owner, _ = pair
    name = unique("ref")
    cli.ok("vfolder", "create", name, as_=owner)
    missing = f"{unique('ghost')}@example.com"
    cli.fails(
        "vfolder", "invite", name, missing, "--permission", "ro", as_=owner, code="user_not_found"
    )
    cli.ok("vfolder", "create", ".local", as_=owner)
    _, other = pair
    cli.fails(
        "vfolder", "invite", ".local", other, "--permission", "ro", as_=owner, code="not_shareable"
    )
    assert "permission" in cli.usage_error("vfolder", "invite", name, other, as_=owner)
    cli.usage_error("vfolder", "invite", name, other, "--permission", "xx", as_=owner)


def test_sharing_project_folder_members_and_outsiders(cli: Cli, vfd_daemon: Any) -> None:
    member, outsider = vfd_daemon.make_user()["email"], vfd_daemon.make_user()["email"]
    project, name = unique("proj"), unique("pfolder")
    cli.ok("admin", "project", "create", project, "--description", "test project")
    cli.ok("admin", "project", "add-member", project, member)

    out = cli.ok("vfolder", "create", name, "--project", project, "--permission", "rw")
    assert f"Created folder {name} on local for project {project}" in out
    listed = cli.json("vfolder", "list", as_=member)["vfolders"]
    [folder] = [f for f in listed if f["name"] == name]
    assert folder["ownership"] == "project" and folder["owner"] == project
    assert folder["permission"] == "rw"
    row = next(line for line in cli.ok("vfolder", "list", as_=member).splitlines() if name in line)
    assert "project" in row.split()

    for args in (("info", name), ("delete", name), ("rename", name, unique("x"))):
        cli.fails("vfolder", *args, as_=outsider, code="vfolder_not_found")
    cli.fails("vfolder", "delete", name, as_=member, code="permission_denied")
    assert name not in cli.ok("vfolder", "list", as_=outsider)

    out = cli.ok("vfolder", "set-member-permission", name, member, "ro")
    assert f"{member} now has ro on {name}" in out
    assert cli.json("vfolder", "info", name, as_=member)["permission"] == "ro"
    result = cli.json("vfolder", "set-member-permission", name, member, "wd")
    assert result["permission"] == "wd"
    cli.fails(
        "vfolder", "set-member-permission", name, member, "ro", as_=member, code="admin_required"
    )
    out = cli.ok("vfolder", "unset-member-permission", name, member)
    assert "default permission" in out
    assert cli.json("vfolder", "info", name, as_=member)["permission"] == "rw"
    cli.json("vfolder", "set-member-permission", name, member, "ro")
    cli.json("vfolder", "unset-member-permission", name, member)
    assert cli.json("vfolder", "info", name, as_=member)["permission"] == "rw"
    cli.usage_error("vfolder", "set-member-permission", name, member, "admin")

    cli.ok("admin", "project", "remove-member", project, member)
    cli.fails("vfolder", "info", name, as_=member, code="vfolder_not_found")


def test_sharing_project_folder_needs_admin_and_a_project(cli: Cli, pair: tuple[str, str]) -> None:
    user, _ = pair
    project = unique("p")
    cli.ok("admin", "project", "create", project)
    cli.ok("admin", "project", "add-member", project, user)
    cli.fails(
        "vfolder", "create", unique("pf"), "--project", project, as_=user, code="admin_required"
    )
    cli.fails(
        "vfolder", "create", unique("pf"), "--project", unique("none"), code="project_not_found"
    )


def test_sharing_members_lists_members_and_pending_invitations(
    cli: Cli, vfd_daemon: Any, pair: tuple[str, str]
) -> None:
    owner, other = pair
    pending = vfd_daemon.make_user()["email"]
    name = unique("mem")
    cli.ok("vfolder", "create", name, as_=owner)
    out = cli.ok("vfolder", "members", name, as_=owner)
    assert "shared with no one" in out and "no pending invitations" in out
    accepted = _invite(cli, owner, other, name, "ro")
    waiting = _invite(cli, owner, pending, name, "rw")
    cli.ok("vfolder", "accept", accepted, as_=other)

    result = cli.json("vfolder", "members", name, as_=owner)
    assert [(m["email"], m["permission"]) for m in result["members"]] == [(other, "ro")]
    assert [(i["id"], i["email"]) for i in result["invitations"]] == [(waiting, pending)]
    out = cli.ok("vfolder", "members", name, as_=owner)
    member_row = next(line for line in out.splitlines() if other in line)
    assert "ro" in member_row.split()
    invitation_row = next(line for line in out.splitlines() if pending in line)
    assert waiting[:8] in invitation_row and "rw" in invitation_row.split()

    cli.fails("vfolder", "members", name, as_=other, code="permission_denied")
    cli.fails("vfolder", "members", name, as_=pending, code="vfolder_not_found")
    out = cli.ok("vfolder", "unset-member-permission", name, other, as_=owner)
    assert f"{name} is no longer shared with {other}" in out
    assert cli.json("vfolder", "members", name, as_=owner)["members"] == []
    cli.fails("vfolder", "info", name, as_=other, code="vfolder_not_found")
