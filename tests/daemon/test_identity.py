"""Who the caller is: SO_PEERCRED with real uids, act-as, deactivated users, bearer tokens.

Non-root callers are real processes running as other uids (``subprocess`` with ``user=``),
with accounts made by ``useradd`` where a passwd entry is needed.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from daemonapi import call_as, error, free_uid, group, host_account, ok, unique

from vfd.daemon.identity import ADMIN_GROUP
from vfd.store.db import make_engine


def test_identity_root_is_an_admin_host_account(vfd_daemon: Any) -> None:
    me = ok(vfd_daemon.http.get("/v1/whoami"))
    assert (me["email"], me["uid"], me["role"], me["host_account"]) == (
        "root@local",
        0,
        "admin",
        True,
    )
    status = ok(vfd_daemon.http.get("/v1/status"))
    assert status["identity"] == me
    assert status["database"] in ("sqlite", "postgresql")
    assert status["hosts"] == ["local"]
    assert status["mountd"] is None


def test_identity_host_account_is_provisioned_on_first_call(vfd_daemon: Any) -> None:
    with host_account() as pw:
        first = call_as(pw.pw_uid, pw.pw_gid, vfd_daemon.socket_path, "GET", "/v1/whoami")
        assert first.status == 200, first.body
        assert first.body["email"] == f"{pw.pw_name}@local"
        assert (first.body["uid"], first.body["gid"]) == (pw.pw_uid, pw.pw_gid)
        assert (first.body["role"], first.body["host_account"]) == ("user", True)
        again = call_as(pw.pw_uid, pw.pw_gid, vfd_daemon.socket_path, "GET", "/v1/whoami")
        assert again.body["id"] == first.body["id"]
        # an ordinary host user is no admin
        denied = call_as(pw.pw_uid, pw.pw_gid, vfd_daemon.socket_path, "GET", "/v1/admin/users")
        assert (denied.status, denied.error_code()) == (403, "admin_required")


def test_identity_uid_without_passwd_entry_is_unauthenticated(vfd_daemon: Any) -> None:
    uid = free_uid()
    answer = call_as(uid, uid, vfd_daemon.socket_path, "GET", "/v1/whoami")
    assert (answer.status, answer.error_code()) == (401, "unauthenticated")


def test_identity_uid_without_passwd_entry_maps_to_its_vfd_user(vfd_daemon: Any) -> None:
    uid = free_uid()
    user = vfd_daemon.make_user(uid=uid, gid=uid)
    answer = call_as(uid, uid, vfd_daemon.socket_path, "GET", "/v1/whoami")
    assert answer.status == 200, answer.body
    assert answer.body["email"] == user["email"]


def test_identity_vfd_admin_group_members_are_admins(vfd_daemon: Any) -> None:
    with group(ADMIN_GROUP), host_account(ADMIN_GROUP) as pw:
        answer = call_as(pw.pw_uid, pw.pw_gid, vfd_daemon.socket_path, "GET", "/v1/whoami")
        assert answer.body["role"] == "admin"
        users = call_as(pw.pw_uid, pw.pw_gid, vfd_daemon.socket_path, "GET", "/v1/admin/users")
        assert users.status == 200


def test_identity_act_as_performs_the_request_as_that_user(vfd_daemon: Any) -> None:
    user = vfd_daemon.make_user()
    me = ok(vfd_daemon.as_user(user["email"]).get("/v1/whoami"))
    assert me["id"] == user["id"]
    # acting as a non-admin loses admin rights
    error(vfd_daemon.as_user(user["email"]).get("/v1/admin/users"), 403, "admin_required")


def test_identity_act_as_unknown_user_is_not_found(vfd_daemon: Any) -> None:
    resp = vfd_daemon.as_user("nobody-here@example.com").get("/v1/whoami")
    error(resp, 404, "user_not_found")


def test_identity_non_admin_act_as_is_refused(vfd_daemon: Any) -> None:
    target = vfd_daemon.make_user()
    with host_account() as pw:
        answer = call_as(
            pw.pw_uid,
            pw.pw_gid,
            vfd_daemon.socket_path,
            "GET",
            "/v1/whoami",
            headers={"X-Vfd-Act-As": target["email"]},
        )
        assert (answer.status, answer.error_code()) == (403, "admin_required")


def test_identity_deactivated_user_is_refused_everywhere(vfd_daemon: Any) -> None:
    user = vfd_daemon.make_user()
    client = vfd_daemon.as_user(user["email"])
    ok(client.post("/v1/vfolders", json={"name": unique()}), 201)
    ok(vfd_daemon.http.post(f"/v1/admin/users/{user['email']}/deactivate"))
    for method, path in [("GET", "/v1/whoami"), ("GET", "/v1/vfolders"), ("POST", "/v1/vfolders")]:
        error(client.request(method, path, json={"name": unique()}), 403, "user_inactive")
    ok(vfd_daemon.http.patch(f"/v1/admin/users/{user['email']}", json={"status": "active"}))
    ok(client.get("/v1/whoami"))


def test_identity_deactivated_host_account_is_refused(vfd_daemon: Any) -> None:
    with host_account() as pw:
        sock = vfd_daemon.socket_path
        assert call_as(pw.pw_uid, pw.pw_gid, sock, "GET", "/v1/whoami").status == 200
        ok(vfd_daemon.http.post(f"/v1/admin/users/{pw.pw_name}@local/deactivate"))
        answer = call_as(pw.pw_uid, pw.pw_gid, sock, "GET", "/v1/whoami")
        assert (answer.status, answer.error_code()) == (403, "user_inactive")


@pytest.fixture
def tcp(vfd_daemon: Any) -> Any:
    with httpx.Client(base_url=vfd_daemon.tcp_url, timeout=60) as client:
        yield client


def _token(vfd_daemon: Any, email: str) -> str:
    made = ok(vfd_daemon.http.post("/v1/admin/tokens", json={"email": email, "name": "t"}), 201)
    assert set(made) == {"id", "name", "token"}
    token: str = made["token"]
    return token


def test_identity_tcp_needs_a_bearer_token(vfd_daemon: Any, tcp: httpx.Client) -> None:
    error(tcp.get("/v1/whoami"), 401, "unauthenticated")
    error(tcp.get("/v1/whoami", headers={"Authorization": "Bearer nope"}), 401, "unauthenticated")
    error(tcp.get("/v1/whoami", headers={"Authorization": "Basic abc"}), 401, "unauthenticated")


def test_identity_tcp_bearer_token_identifies_its_user(vfd_daemon: Any, tcp: httpx.Client) -> None:
    user = vfd_daemon.make_user()
    auth = {"Authorization": f"Bearer {_token(vfd_daemon, user['email'])}"}
    assert ok(tcp.get("/v1/whoami", headers=auth))["email"] == user["email"]
    name = unique()
    ok(tcp.post("/v1/vfolders", json={"name": name}, headers=auth), 201)
    assert ok(vfd_daemon.as_user(user["email"]).get(f"/v1/vfolders/{name}"))["is_owner"]
    error(tcp.get("/v1/admin/users", headers=auth), 403, "admin_required")
    other = vfd_daemon.make_user()
    acting = {**auth, "X-Vfd-Act-As": other["email"]}
    error(tcp.get("/v1/whoami", headers=acting), 403, "admin_required")
    ok(vfd_daemon.http.post(f"/v1/admin/users/{user['email']}/deactivate"))
    error(tcp.get("/v1/whoami", headers=auth), 403, "user_inactive")


def test_identity_tcp_admin_token_may_act_as(vfd_daemon: Any, tcp: httpx.Client) -> None:
    admin = vfd_daemon.make_user(role="admin")
    user = vfd_daemon.make_user()
    auth = {"Authorization": f"Bearer {_token(vfd_daemon, admin['email'])}"}
    acting = {**auth, "X-Vfd-Act-As": user["email"]}
    assert ok(tcp.get("/v1/whoami", headers=acting))["email"] == user["email"]


def test_identity_token_only_stores_its_digest(vfd_daemon: Any) -> None:
    user = vfd_daemon.make_user()
    token = _token(vfd_daemon, user["email"])
    engine = make_engine(vfd_daemon.config.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT token_sha256 FROM apitoken")).all()
    finally:
        engine.dispose()
    digests = {r[0] for r in rows}
    assert hashlib.sha256(token.encode()).hexdigest() in digests
    assert token not in digests
