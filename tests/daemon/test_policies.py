"""Resource policies: admin management, folder count, allowed hosts, quota scope sizes,
and the host and storage-status views that report them."""

from __future__ import annotations

import os
from typing import Any

import pytest
from daemonapi import error, ok, unique

VFD_DAEMON_SETTINGS = {
    "hosts": {"local": "{state_dir}/hosts/local", "extra": "{state_dir}/hosts/extra"},
    "default_policy": {"max_vfolder_count": 5, "max_quota_scope_size": 1_000_000},
}


def _policy(vfd_daemon: Any, **fields: Any) -> str:
    name = unique("pol")
    made = ok(vfd_daemon.http.post("/v1/admin/policies", json={"name": name, **fields}), 201)
    assert made == {
        "name": name,
        "max_vfolder_count": fields.get("max_vfolder_count", 0),
        "max_quota_scope_size": fields.get("max_quota_scope_size", 0),
        "allowed_hosts": fields.get("allowed_hosts", []),
        "max_sessions": 0,
        "max_session_cpu": 0.0,
        "max_session_memory": 0,
        "idle_timeout": 0.0,
        "max_lifetime": 0.0,
        "allowed_images": [],
        "allowed_groups": [],
        "max_storage_sessions": 2,
        "max_slots": {},
    }
    return name


def _user(vfd_daemon: Any, policy: str | None = None) -> Any:
    email = vfd_daemon.make_user()["email"]
    if policy is not None:
        user = ok(
            vfd_daemon.http.post(f"/v1/admin/policies/{policy}/assign", json={"email": email})
        )
        assert user["resource_policy"] == policy
    return vfd_daemon.as_user(email)


def test_policies_admin_crud(vfd_daemon: Any) -> None:
    http = vfd_daemon.http
    name = _policy(vfd_daemon, max_vfolder_count=3, allowed_hosts=["extra"])
    error(http.post("/v1/admin/policies", json={"name": name}), 409, "policy_exists")
    assert name in [p["name"] for p in ok(http.get("/v1/admin/policies"))["policies"]]
    patched = ok(http.patch(f"/v1/admin/policies/{name}", json={"max_vfolder_count": 7}))
    assert (patched["max_vfolder_count"], patched["allowed_hosts"]) == (7, ["extra"])
    error(http.patch("/v1/admin/policies/none-such", json={}), 404, "policy_not_found")
    error(
        http.post("/v1/admin/policies/none-such/assign", json={"email": "root@local"}),
        404,
        "policy_not_found",
    )
    error(
        http.post(f"/v1/admin/policies/{name}/assign", json={"email": "x@nowhere"}),
        404,
        "user_not_found",
    )
    error(
        http.post(
            "/v1/admin/users", json={"email": f"{unique()}@x.y", "resource_policy": "none-such"}
        ),
        404,
        "policy_not_found",
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "bad name"}, 400, "invalid_argument"),
        ({"name": ""}, 400, "invalid_argument"),
        ({"name": "p", "max_vfolder_count": -1}, 400, "invalid_argument"),
        ({"name": "p", "max_quota_scope_size": "10"}, 400, "invalid_argument"),
        ({"name": "p", "allowed_hosts": "local"}, 400, "invalid_argument"),
        ({"name": "p", "allowed_hosts": ["mars"]}, 404, "host_not_found"),
        ({"name": "p", "max_gpus": 1}, 400, "invalid_argument"),
        ({"name": "p", "max_session_cpu": -1}, 400, "invalid_argument"),
        ({"name": "p", "idle_timeout": "1h"}, 400, "invalid_argument"),
        ({"name": "p", "allowed_groups": ["nosuch"]}, 404, "group_not_found"),
        ({"name": "p", "allowed_images": [""]}, 400, "invalid_argument"),
    ],
)
def test_policies_refuse_bad_input(
    vfd_daemon: Any, body: dict[str, Any], status: int, code: str
) -> None:
    error(vfd_daemon.http.post("/v1/admin/policies", json=body), status, code)


def test_policies_folder_count_includes_trash_but_not_purged(vfd_daemon: Any) -> None:
    user = _user(vfd_daemon, _policy(vfd_daemon, max_vfolder_count=2))
    first, second = unique(), unique()
    ok(user.post("/v1/vfolders", json={"name": first}), 201)
    ok(user.post("/v1/vfolders", json={"name": second}), 201)
    details = error(user.post("/v1/vfolders", json={"name": unique()}), 403, "folder_limit_reached")
    assert details == {"count": 2, "limit": 2}
    assert ok(user.get("/v1/storage-status"))["created"] == 2
    ok(user.delete(f"/v1/vfolders/{first}"))
    error(user.post("/v1/vfolders", json={"name": unique()}), 403, "folder_limit_reached")
    ok(user.post(f"/v1/vfolders/{first}/purge", json={"confirm": first}))
    ok(user.post("/v1/vfolders", json={"name": unique()}), 201)
    assert ok(user.get("/v1/storage-status")) == {
        "created": 2,
        "limit": 2,
        "project_folders": 0,
        "invited_folders": 0,
    }


def test_policies_shared_and_project_folders_do_not_count(vfd_daemon: Any) -> None:
    policy = _policy(vfd_daemon, max_vfolder_count=1)
    email = vfd_daemon.make_user(resource_policy=policy)["email"]
    user = vfd_daemon.as_user(email)
    project = unique("proj")
    ok(vfd_daemon.http.post("/v1/admin/projects", json={"name": project}), 201)
    ok(vfd_daemon.http.post(f"/v1/admin/projects/{project}/members", json={"email": email}))
    ok(vfd_daemon.http.post("/v1/vfolders", json={"name": unique(), "project": project}), 201)
    shared = unique()
    ok(vfd_daemon.http.post("/v1/vfolders", json={"name": shared}), 201)
    inv = ok(vfd_daemon.http.post(f"/v1/vfolders/{shared}/invite", json={"emails": [email]}))
    ok(user.post(f"/v1/invitations/{inv['invitations'][0]['id']}/accept"))
    ok(user.post("/v1/vfolders", json={"name": unique()}), 201)
    status = ok(user.get("/v1/storage-status"))
    assert status == {"created": 1, "limit": 1, "project_folders": 1, "invited_folders": 1}


def test_policies_allowed_hosts(vfd_daemon: Any) -> None:
    user = _user(vfd_daemon, _policy(vfd_daemon, allowed_hosts=["extra"]))
    details = error(user.post("/v1/vfolders", json={"name": unique()}), 403, "host_not_allowed")
    assert details["host"] == "local"
    made = ok(user.post("/v1/vfolders", json={"name": unique(), "host": "extra"}), 201)
    assert made["host"] == "extra"
    hosts = {h["name"]: h for h in ok(user.get("/v1/hosts"))["hosts"]}
    assert (hosts["local"]["allowed"], hosts["extra"]["allowed"]) == (False, True)


def test_policies_default_policy_applies_without_assignment(vfd_daemon: Any) -> None:
    user = _user(vfd_daemon)
    assert ok(user.get("/v1/storage-status"))["limit"] == 5
    made = ok(user.post("/v1/vfolders", json={"name": unique()}), 201)
    hosts = {h["name"]: h for h in ok(user.get("/v1/hosts"))["hosts"]}
    assert hosts["local"]["quota"] == {
        "scope": made["scope"],
        "max_bytes": 1_000_000,
        "max_files": 0,
        "used_bytes": 0,
        "used_files": 0,
    }
    assert all(h["allowed"] for h in hosts.values())


def test_policies_quota_size_sets_and_follows_scope_limits(vfd_daemon: Any) -> None:
    policy = _policy(vfd_daemon, max_quota_scope_size=12345)
    user = _user(vfd_daemon, policy)

    def max_bytes(host: str) -> int:
        hosts = {h["name"]: h for h in ok(user.get("/v1/hosts"))["hosts"]}
        value: int = hosts[host]["quota"]["max_bytes"]
        return value

    ok(user.post("/v1/vfolders", json={"name": unique()}), 201)
    assert max_bytes("local") == 12345
    ok(vfd_daemon.http.patch(f"/v1/admin/policies/{policy}", json={"max_quota_scope_size": 999}))
    assert max_bytes("local") == 999
    other = _policy(vfd_daemon, max_quota_scope_size=777)
    me = ok(user.get("/v1/whoami"))["email"]
    ok(vfd_daemon.http.post(f"/v1/admin/policies/{other}/assign", json={"email": me}))
    assert max_bytes("local") == 777


def test_policies_hosts_report_capacity(vfd_daemon: Any) -> None:
    hosts = ok(vfd_daemon.http.get("/v1/hosts"))["hosts"]
    assert [h["name"] for h in hosts] == ["extra", "local"]
    for host in hosts:
        cap = host["capacity"]
        st = os.statvfs(vfd_daemon.config.hosts[host["name"]])
        assert cap["total_bytes"] == st.f_blocks * st.f_frsize
        assert 0 <= cap["free_bytes"] <= cap["total_bytes"]
        assert 0 <= cap["used_bytes"] <= cap["total_bytes"]
    admin_view = ok(vfd_daemon.http.get("/v1/admin/hosts"))["hosts"]
    assert {h["name"]: h["path"] for h in admin_view} == {
        name: str(path) for name, path in vfd_daemon.config.hosts.items()
    }
    error(_user(vfd_daemon).get("/v1/admin/hosts"), 403, "admin_required")


def test_policies_admin_routes_refuse_non_admins(vfd_daemon: Any) -> None:
    user = _user(vfd_daemon)
    name = _policy(vfd_daemon)
    error(user.post("/v1/admin/policies", json={"name": unique("p")}), 403, "admin_required")
    error(user.get("/v1/admin/policies"), 403, "admin_required")
    error(user.patch(f"/v1/admin/policies/{name}", json={}), 403, "admin_required")
    error(
        user.post(f"/v1/admin/policies/{name}/assign", json={"email": "root@local"}),
        403,
        "admin_required",
    )
