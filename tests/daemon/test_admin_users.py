"""Admin user management and API tokens."""

from __future__ import annotations

from typing import Any

import pytest
from daemonapi import error, ok, unique


def _email() -> str:
    return f"{unique('u')}@example.com"


def test_admin_users_create_with_defaults(vfd_daemon: Any) -> None:
    email = _email()
    user = ok(vfd_daemon.http.post("/v1/admin/users", json={"email": email}), 201)
    assert set(user) == {
        "id",
        "email",
        "username",
        "uid",
        "gid",
        "role",
        "status",
        "host_account",
        "resource_policy",
        "created_at",
    }
    assert (user["email"], user["username"]) == (email, email.split("@")[0])
    assert (user["uid"], user["gid"]) == (
        vfd_daemon.config.default_uid,
        vfd_daemon.config.default_gid,
    )
    assert (user["role"], user["status"], user["host_account"], user["resource_policy"]) == (
        "user",
        "active",
        False,
        None,
    )
    listed = {u["email"]: u for u in ok(vfd_daemon.http.get("/v1/admin/users"))["users"]}
    assert listed[email] == user
    error(vfd_daemon.http.post("/v1/admin/users", json={"email": email}), 409, "user_exists")


def test_admin_users_create_with_every_field(vfd_daemon: Any) -> None:
    body = {"email": _email(), "username": "Ada", "uid": 4321, "gid": 4322, "role": "admin"}
    user = ok(vfd_daemon.http.post("/v1/admin/users", json=body), 201)
    assert {k: user[k] for k in ("username", "uid", "gid", "role")} == {
        "username": "Ada",
        "uid": 4321,
        "gid": 4322,
        "role": "admin",
    }


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "no-at-sign"},
        {"email": "two@@example.com"},
        {"email": "sp ace@example.com"},
        {"email": "x" * 250 + "@example.com"},
        {"email": "a@example.com", "uid": -1},
        {"email": "a@example.com", "uid": "1000"},
        {"email": "a@example.com", "uid": 2**32},
        {"email": "a@example.com", "role": "root"},
        {"email": "a@example.com", "username": ""},
        {"email": "a@example.com", "password": "x"},
    ],
    ids=[
        "missing",
        "no-at",
        "two-at",
        "space",
        "long",
        "neg-uid",
        "str-uid",
        "big-uid",
        "role",
        "empty-username",
        "unknown-field",
    ],
)
def test_admin_users_create_refuses_bad_input(vfd_daemon: Any, body: dict[str, Any]) -> None:
    error(vfd_daemon.http.post("/v1/admin/users", json=body), 400, "invalid_argument")


def test_admin_users_patch_and_deactivate(vfd_daemon: Any) -> None:
    email = vfd_daemon.make_user()["email"]
    path = f"/v1/admin/users/{email}"
    patched = ok(
        vfd_daemon.http.patch(path, json={"username": "new", "uid": 7, "gid": 8, "role": "admin"})
    )
    assert {k: patched[k] for k in ("username", "uid", "gid", "role")} == {
        "username": "new",
        "uid": 7,
        "gid": 8,
        "role": "admin",
    }
    assert ok(vfd_daemon.http.post(f"{path}/deactivate"))["status"] == "inactive"
    assert ok(vfd_daemon.http.patch(path, json={"status": "active"}))["status"] == "active"
    error(vfd_daemon.http.patch(path, json={"status": "gone"}), 400, "invalid_argument")
    error(vfd_daemon.http.patch(path, json={"email": "x@y"}), 400, "invalid_argument")
    error(vfd_daemon.http.patch(path, json={"uid": None}), 400, "invalid_argument")
    error(vfd_daemon.http.patch("/v1/admin/users/nobody@x.y", json={}), 404, "user_not_found")
    error(vfd_daemon.http.post("/v1/admin/users/nobody@x.y/deactivate"), 404, "user_not_found")


def test_admin_users_policy_can_be_cleared(vfd_daemon: Any) -> None:
    policy = unique("pol")
    ok(vfd_daemon.http.post("/v1/admin/policies", json={"name": policy}), 201)
    email = vfd_daemon.make_user(resource_policy=policy)["email"]
    path = f"/v1/admin/users/{email}"
    assert (
        ok(vfd_daemon.http.patch(path, json={"resource_policy": None}))["resource_policy"] is None
    )


def test_admin_users_cannot_deactivate_themselves(vfd_daemon: Any) -> None:
    error(vfd_daemon.http.post("/v1/admin/users/root@local/deactivate"), 400, "invalid_argument")
    assert ok(vfd_daemon.http.get("/v1/whoami"))["status"] == "active"


def test_admin_users_tokens(vfd_daemon: Any) -> None:
    email = vfd_daemon.make_user()["email"]
    first = ok(vfd_daemon.http.post("/v1/admin/tokens", json={"email": email, "name": "ci"}), 201)
    second = ok(vfd_daemon.http.post("/v1/admin/tokens", json={"email": email, "name": "ci"}), 201)
    assert first["token"] != second["token"] and first["id"] != second["id"]
    error(
        vfd_daemon.http.post("/v1/admin/tokens", json={"email": "no@x.y", "name": "t"}),
        404,
        "user_not_found",
    )
    error(
        vfd_daemon.http.post("/v1/admin/tokens", json={"email": email, "name": ""}),
        400,
        "invalid_argument",
    )
    error(vfd_daemon.http.post("/v1/admin/tokens", json={"email": email}), 400, "invalid_argument")


def test_admin_users_routes_refuse_non_admins(vfd_daemon: Any) -> None:
    email = vfd_daemon.make_user()["email"]
    user = vfd_daemon.as_user(email)
    for method, path, body in [
        ("POST", "/v1/admin/users", {"email": _email()}),
        ("GET", "/v1/admin/users", None),
        ("PATCH", f"/v1/admin/users/{email}", {"role": "admin"}),
        ("POST", f"/v1/admin/users/{email}/deactivate", None),
        ("POST", "/v1/admin/tokens", {"email": email, "name": "t"}),
    ]:
        error(user.request(method, path, json=body), 403, "admin_required")
    assert ok(user.get("/v1/whoami"))["role"] == "user"


def test_admin_users_openapi_is_published(vfd_daemon: Any) -> None:
    doc = ok(vfd_daemon.http.get("/openapi.json"))
    assert "/v1/vfolders/{name}/purge" in doc["paths"]
    assert "/v1/admin/tokens" in doc["paths"]
