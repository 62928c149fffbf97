"""Folder create, show, list and change over the real API: names, hosts, ownership, isolation."""

from __future__ import annotations

import stat
from typing import Any

import pytest
from daemonapi import backing_dir, error, ok, unique


@pytest.fixture
def alice(vfd_daemon: Any) -> Any:
    user = vfd_daemon.make_user(uid=2001, gid=2002)
    return vfd_daemon.as_user(user["email"])


def test_vfolders_create_makes_row_and_owned_directory(vfd_daemon: Any, alice: Any) -> None:
    name = unique()
    folder = ok(alice.post("/v1/vfolders", json={"name": name}), 201)
    me = ok(alice.get("/v1/whoami"))
    assert folder["name"] == name
    assert (folder["host"], folder["ownership"], folder["owner"]) == ("local", "user", me["email"])
    assert (folder["permission"], folder["default_permission"]) == ("wd", "rw")
    assert (folder["usage_mode"], folder["status"], folder["cloneable"]) == (
        "general",
        "ready",
        False,
    )
    assert folder["is_owner"] and not folder["automount"]
    assert folder["scope"] == f"user:{me['id']}"
    assert "views" not in folder  # no mountd here
    st = backing_dir(vfd_daemon.config, folder).stat()
    assert (st.st_uid, st.st_gid) == (2001, 2002)
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert ok(alice.get(f"/v1/vfolders/{name}")) == folder


def test_vfolders_create_with_every_option(alice: Any) -> None:
    body = {
        "name": unique(),
        "host": "local",
        "usage_mode": "model",
        "permission": "ro",
        "cloneable": True,
    }
    folder = ok(alice.post("/v1/vfolders", json=body), 201)
    assert (folder["usage_mode"], folder["default_permission"], folder["cloneable"]) == (
        "model",
        "ro",
        True,
    )
    assert folder["permission"] == "wd"  # the owner's own permission


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", "invalid_name"),
        ("x" * 65, "name_too_long"),
        (".", "invalid_name"),
        ("..", "invalid_name"),
        ("../x", "invalid_name"),
        ("a/b", "invalid_name"),
        ("nul\x00byte", "invalid_name"),
        ("tab\there", "invalid_name"),
        (" padded", "invalid_name"),
        (".jupyter", "reserved_name"),
        (".bashrc", "reserved_name"),
        ("lost+found", "reserved_name"),
    ],
    ids=[
        "empty",
        "long",
        "dot",
        "dotdot",
        "traversal",
        "slash",
        "nul",
        "control",
        "space",
        "jupyter",
        "rc",
        "lost-found",
    ],
)
def test_vfolders_create_refuses_bad_names(alice: Any, name: str, code: str) -> None:
    error(alice.post("/v1/vfolders", json={"name": name}), 400, code)


def test_vfolders_longest_name_is_accepted(alice: Any) -> None:
    name = unique("L") + "x" * 54
    assert len(name) == 64
    ok(alice.post("/v1/vfolders", json={"name": name}), 201)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": 1}, "name"),
        ({"name": "x", "usage_mode": "weird"}, "usage_mode"),
        ({"name": "x", "permission": "rwx"}, "permission"),
        ({"name": "x", "cloneable": "yes"}, "cloneable"),
        ({"name": "x", "owner": "me"}, "owner"),
    ],
)
def test_vfolders_create_refuses_malformed_bodies(
    alice: Any, body: dict[str, Any], field: str
) -> None:
    assert error(alice.post("/v1/vfolders", json=body), 400, "invalid_argument")["field"] == field


def test_vfolders_create_refuses_unknown_host(alice: Any) -> None:
    error(
        alice.post("/v1/vfolders", json={"name": unique(), "host": "nfs9"}), 404, "host_not_found"
    )


def test_vfolders_duplicate_name_is_refused_trash_included(alice: Any) -> None:
    name = unique()
    ok(alice.post("/v1/vfolders", json={"name": name}), 201)
    error(alice.post("/v1/vfolders", json={"name": name}), 409, "vfolder_exists")
    ok(alice.delete(f"/v1/vfolders/{name}"))
    details = error(alice.post("/v1/vfolders", json={"name": name}), 409, "vfolder_exists")
    assert details["name"] == name


def test_vfolders_same_name_for_different_users(vfd_daemon: Any, alice: Any) -> None:
    name = unique()
    bob = vfd_daemon.as_user(vfd_daemon.make_user()["email"])
    ok(alice.post("/v1/vfolders", json={"name": name}), 201)
    ok(bob.post("/v1/vfolders", json={"name": name}), 201)
    assert ok(alice.get(f"/v1/vfolders/{name}"))["id"] != ok(bob.get(f"/v1/vfolders/{name}"))["id"]


def test_vfolders_other_users_folders_do_not_exist(vfd_daemon: Any, alice: Any) -> None:
    name = unique()
    ok(alice.post("/v1/vfolders", json={"name": name}), 201)
    bob = vfd_daemon.as_user(vfd_daemon.make_user()["email"])
    for method, path, body in [
        ("GET", f"/v1/vfolders/{name}", None),
        ("PATCH", f"/v1/vfolders/{name}", {"name": unique()}),
        ("DELETE", f"/v1/vfolders/{name}", None),
        ("POST", f"/v1/vfolders/{name}/restore", None),
        ("POST", f"/v1/vfolders/{name}/purge", {"confirm": name}),
        ("POST", f"/v1/vfolders/{name}/invite", {"emails": ["root@local"]}),
        ("POST", f"/v1/vfolders/{name}/leave", None),
    ]:
        error(bob.request(method, path, json=body), 404, "vfolder_not_found")
    assert name not in [f["name"] for f in ok(bob.get("/v1/vfolders"))["vfolders"]]
    assert ok(alice.get(f"/v1/vfolders/{name}"))["status"] == "ready"


def test_vfolders_list_filters_trash_and_automount(alice: Any) -> None:
    plain, dot, trashed = unique(), "." + unique(), unique()
    for name in (plain, dot, trashed):
        ok(alice.post("/v1/vfolders", json={"name": name}), 201)
    ok(alice.delete(f"/v1/vfolders/{trashed}"))
    live = {f["name"]: f for f in ok(alice.get("/v1/vfolders"))["vfolders"]}
    assert {plain, dot} <= set(live) and trashed not in live
    assert live[dot]["automount"] and not live[plain]["automount"]
    trash = [f["name"] for f in ok(alice.get("/v1/vfolders?trash=true"))["vfolders"]]
    assert trashed in trash and plain not in trash
    auto = [f["name"] for f in ok(alice.get("/v1/vfolders?automount=true"))["vfolders"]]
    assert dot in auto and plain not in auto
    error(alice.get("/v1/vfolders?trash=perhaps"), 400, "invalid_argument")


def test_vfolders_rename_keeps_identity_and_frees_old_name(alice: Any) -> None:
    old, new = unique(), unique()
    made = ok(alice.post("/v1/vfolders", json={"name": old}), 201)
    renamed = ok(alice.patch(f"/v1/vfolders/{old}", json={"name": new}))
    assert (renamed["id"], renamed["name"]) == (made["id"], new)
    error(alice.get(f"/v1/vfolders/{old}"), 404, "vfolder_not_found")
    ok(alice.post("/v1/vfolders", json={"name": old}), 201)
    error(alice.patch(f"/v1/vfolders/{old}", json={"name": new}), 409, "vfolder_exists")
    error(alice.patch(f"/v1/vfolders/{new}", json={"name": "a/b"}), 400, "invalid_name")


def test_vfolders_patch_settings(alice: Any) -> None:
    name = unique()
    ok(alice.post("/v1/vfolders", json={"name": name}), 201)
    got = ok(alice.patch(f"/v1/vfolders/{name}", json={"permission": "ro", "cloneable": True}))
    assert (got["default_permission"], got["cloneable"]) == ("ro", True)
    assert ok(alice.patch(f"/v1/vfolders/{name}", json={}))["default_permission"] == "ro"
    error(alice.patch(f"/v1/vfolders/{name}", json={"permission": "all"}), 400, "invalid_argument")
    error(alice.patch(f"/v1/vfolders/{name}", json={"status": "ready"}), 400, "invalid_argument")


def test_vfolders_patch_of_trashed_folder_is_invalid_status(alice: Any) -> None:
    name = unique()
    ok(alice.post("/v1/vfolders", json={"name": name}), 201)
    ok(alice.delete(f"/v1/vfolders/{name}"))
    error(alice.patch(f"/v1/vfolders/{name}", json={"name": unique()}), 409, "invalid_status")


def test_vfolders_dot_folder_is_automount_and_user_only(vfd_daemon: Any, alice: Any) -> None:
    name = "." + unique()
    assert ok(alice.post("/v1/vfolders", json={"name": name}), 201)["automount"]
    project = unique("p")
    ok(vfd_daemon.http.post("/v1/admin/projects", json={"name": project}), 201)
    body = {"name": "." + unique(), "project": project}
    assert (
        error(vfd_daemon.http.post("/v1/vfolders", json=body), 400, "invalid_argument")["field"]
        == "name"
    )
