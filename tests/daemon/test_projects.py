"""Projects: admin management, project folders, membership and per-member overrides."""

from __future__ import annotations

import stat
from typing import Any

import pytest
from daemonapi import backing_dir, error, ok, unique


@pytest.fixture
def admin(vfd_daemon: Any) -> Any:
    user = vfd_daemon.make_user(role="admin", uid=3001, gid=3001)
    return vfd_daemon.as_user(user["email"])


@pytest.fixture
def project(admin: Any) -> str:
    name = unique("proj")
    made = ok(admin.post("/v1/admin/projects", json={"name": name, "gid": 5005}), 201)
    assert (made["name"], made["gid"], made["members"]) == (name, 5005, [])
    return name


def _member(vfd_daemon: Any, admin: Any, project: str) -> tuple[str, Any]:
    email = vfd_daemon.make_user()["email"]
    ok(admin.post(f"/v1/admin/projects/{project}/members", json={"email": email}))
    return email, vfd_daemon.as_user(email)


def test_projects_admin_manages_projects_and_members(
    vfd_daemon: Any, admin: Any, project: str
) -> None:
    email = vfd_daemon.make_user()["email"]
    added = ok(admin.post(f"/v1/admin/projects/{project}/members", json={"email": email}))
    assert added["members"] == [email]
    error(
        admin.post(f"/v1/admin/projects/{project}/members", json={"email": email}),
        409,
        "already_member",
    )
    listed = {p["name"]: p for p in ok(admin.get("/v1/admin/projects"))["projects"]}
    assert listed[project]["members"] == [email]
    removed = ok(admin.delete(f"/v1/admin/projects/{project}/members/{email}"))
    assert removed["members"] == []
    error(admin.delete(f"/v1/admin/projects/{project}/members/{email}"), 409, "not_a_member")
    error(admin.post("/v1/admin/projects", json={"name": project}), 409, "project_exists")
    error(
        admin.post("/v1/admin/projects/nope-x/members", json={"email": email}),
        404,
        "project_not_found",
    )
    error(
        admin.post(f"/v1/admin/projects/{project}/members", json={"email": "no@x.y"}),
        404,
        "user_not_found",
    )
    for bad in ("", "a/b", ".hidden", "x" * 65, "sp ace"):
        error(admin.post("/v1/admin/projects", json={"name": bad}), 400, "invalid_argument")


def test_projects_default_gid_comes_from_the_configured_range(vfd_daemon: Any, admin: Any) -> None:
    made = ok(admin.post("/v1/admin/projects", json={"name": unique("proj")}), 201)
    low, high = vfd_daemon.config.project_gid_range
    assert low <= made["gid"] <= high
    assert made["gid"] != vfd_daemon.config.default_gid


def test_projects_project_folder_is_setgid_and_group_owned(
    vfd_daemon: Any, admin: Any, project: str
) -> None:
    folder = ok(admin.post("/v1/vfolders", json={"name": unique(), "project": project}), 201)
    assert (folder["ownership"], folder["owner"], folder["permission"]) == (
        "project",
        project,
        "wd",
    )
    assert folder["scope"].startswith("project:")
    st = backing_dir(vfd_daemon.config, folder).stat()
    assert (st.st_uid, st.st_gid) == (3001, 5005)
    assert stat.S_IMODE(st.st_mode) == 0o2775


def test_projects_only_admins_create_project_folders(
    vfd_daemon: Any, admin: Any, project: str
) -> None:
    _, member = _member(vfd_daemon, admin, project)
    body = {"name": unique(), "project": project}
    error(member.post("/v1/vfolders", json=body), 403, "admin_required")
    error(
        admin.post("/v1/vfolders", json={"name": unique(), "project": "no-such"}),
        404,
        "project_not_found",
    )


def test_projects_members_share_folders_non_members_do_not_see_them(
    vfd_daemon: Any, admin: Any, project: str
) -> None:
    name = unique()
    ok(admin.post("/v1/vfolders", json={"name": name, "project": project, "permission": "ro"}), 201)
    _, member = _member(vfd_daemon, admin, project)
    seen = ok(member.get(f"/v1/vfolders/{name}"))
    assert (seen["permission"], seen["is_owner"], seen["owner"]) == ("ro", False, project)
    assert ok(member.get("/v1/storage-status"))["project_folders"] == 1
    outsider = vfd_daemon.as_user(vfd_daemon.make_user()["email"])
    error(outsider.get(f"/v1/vfolders/{name}"), 404, "vfolder_not_found")
    error(outsider.delete(f"/v1/vfolders/{name}"), 404, "vfolder_not_found")
    error(outsider.patch(f"/v1/vfolders/{name}", json={"name": unique()}), 404, "vfolder_not_found")
    # members without wd cannot trash or rename; nor change settings (admins only)
    error(member.delete(f"/v1/vfolders/{name}"), 403, "permission_denied")
    error(member.patch(f"/v1/vfolders/{name}", json={"cloneable": True}), 403, "permission_denied")
    error(member.post(f"/v1/vfolders/{name}/leave"), 409, "not_a_member")
    body = {"emails": [outsider.headers["x-vfd-act-as"]]}
    error(admin.post(f"/v1/vfolders/{name}/invite", json=body), 400, "not_shareable")


def test_projects_member_overrides(vfd_daemon: Any, admin: Any, project: str) -> None:
    name = unique()
    ok(admin.post("/v1/vfolders", json={"name": name, "project": project, "permission": "ro"}), 201)
    email, member = _member(vfd_daemon, admin, project)
    path = f"/v1/vfolders/{name}/members/{email}"
    error(member.put(path, json={"permission": "wd"}), 403, "admin_required")
    assert ok(admin.put(path, json={"permission": "rw"})) == {
        "vfolder": name,
        "email": email,
        "permission": "rw",
    }
    assert ok(member.get(f"/v1/vfolders/{name}"))["permission"] == "rw"
    ok(admin.put(path, json={"permission": "wd"}))
    renamed = unique()
    ok(member.patch(f"/v1/vfolders/{name}", json={"name": renamed}))
    path = f"/v1/vfolders/{renamed}/members/{email}"
    assert ok(admin.delete(path))["permission"] == "ro"
    assert ok(member.get(f"/v1/vfolders/{renamed}"))["permission"] == "ro"
    error(admin.delete(path), 409, "not_a_member")
    stranger = vfd_daemon.make_user()["email"]
    error(
        admin.put(f"/v1/vfolders/{renamed}/members/{stranger}", json={"permission": "rw"}),
        409,
        "not_a_member",
    )
    error(admin.put(path, json={"permission": "owner"}), 400, "invalid_argument")
    # leaving the project drops the override and the access
    ok(admin.put(path, json={"permission": "rw"}))
    ok(admin.delete(f"/v1/admin/projects/{project}/members/{email}"))
    error(member.get(f"/v1/vfolders/{renamed}"), 404, "vfolder_not_found")


def test_projects_folder_names_unique_for_every_member(
    vfd_daemon: Any, admin: Any, project: str
) -> None:
    _, member = _member(vfd_daemon, admin, project)
    mine = unique()
    ok(member.post("/v1/vfolders", json={"name": mine}), 201)
    error(
        admin.post("/v1/vfolders", json={"name": mine, "project": project}), 409, "vfolder_exists"
    )
    shared = unique()
    ok(admin.post("/v1/vfolders", json={"name": shared, "project": project}), 201)
    error(member.post("/v1/vfolders", json={"name": shared}), 409, "vfolder_exists")
    # a new member whose own folder clashes with a project folder is refused
    newcomer = vfd_daemon.make_user()["email"]
    ok(vfd_daemon.as_user(newcomer).post("/v1/vfolders", json={"name": shared}), 201)
    error(
        admin.post(f"/v1/admin/projects/{project}/members", json={"email": newcomer}),
        409,
        "vfolder_exists",
    )


def test_projects_admin_trashes_and_purges_project_folder(
    vfd_daemon: Any, admin: Any, project: str
) -> None:
    folder = ok(admin.post("/v1/vfolders", json={"name": unique(), "project": project}), 201)
    name = folder["name"]
    ok(admin.delete(f"/v1/vfolders/{name}"))
    ok(admin.post(f"/v1/vfolders/{name}/purge", json={"confirm": name}))
    assert not backing_dir(vfd_daemon.config, folder).exists()


def test_projects_admin_routes_refuse_non_admins(vfd_daemon: Any, project: str) -> None:
    user = vfd_daemon.as_user(vfd_daemon.make_user()["email"])
    error(user.post("/v1/admin/projects", json={"name": unique("p")}), 403, "admin_required")
    error(user.get("/v1/admin/projects"), 403, "admin_required")
    error(
        user.post(f"/v1/admin/projects/{project}/members", json={"email": "root@local"}),
        403,
        "admin_required",
    )
    error(user.delete(f"/v1/admin/projects/{project}/members/root@local"), 403, "admin_required")
