"""Bad input of every kind answers a 4xx, never a 500: lone surrogates and NUL in bodies, path
and query parameters, integers past what the store holds, names that would pass for others,
quota scopes of nobody, garbage identity headers. The daemon logs no traceback for any."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from daemonapi import error, ok, unique

from vfd.daemon.routes.deps import INT32_MAX, INT64_MAX

BIG = 2**70


def post_raw(http: httpx.Client, url: str, raw: str, method: str = "POST") -> httpx.Response:
    """Send ``raw`` as the JSON body, byte for byte (``\\ud800`` escapes stay escapes)."""
    return http.request(
        method, url, content=raw.encode(), headers={"Content-Type": "application/json"}
    )


def no_tracebacks(log: str) -> None:
    bad = [line for line in log.splitlines() if "Traceback" in line or line.startswith("<3>")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("url", "raw", "field"),
    [
        ("/v1/vfolders", '{"name": "a\\ud800"}', "name"),
        ("/v1/vfolders", '{"name": "ok", "host": "\\udcff"}', "host"),
        ("/v1/admin/users", '{"email": "a\\ud800@example.com"}', "email"),
        ("/v1/admin/users", '{"email": "\\udfff"}', "email"),
        ("/v1/admin/tokens", '{"email": "\\ud800", "name": "t"}', "email"),
        ("/v1/admin/projects", '{"name": "p\\ud800"}', "name"),
        ("/v1/admin/policies", '{"name": "p", "allowed_hosts": ["\\ud800"]}', "allowed_hosts"),
        ("/v1/umount", '{"target": "/\\ud800"}', "target"),
        ("/v1/admin/quota/rescan", '{"user": "\\ud800"}', "user"),
    ],
)
def test_api_lone_surrogates_are_refused(vfd_daemon: Any, url: str, raw: str, field: str) -> None:
    resp = post_raw(vfd_daemon.http, url, raw)
    details = error(
        resp,
        400,
        "invalid_name" if url == "/v1/vfolders" and field == "name" else "invalid_argument",
    )
    assert details["field"] == field
    no_tracebacks(vfd_daemon.log())


def test_api_nul_in_bodies_paths_and_queries_is_refused(vfd_daemon: Any) -> None:
    http = vfd_daemon.http
    error(post_raw(http, "/v1/umount", '{"target": "/tmp/\\u0000x"}'), 400, "invalid_argument")
    error(
        post_raw(http, "/v1/admin/tokens", '{"email": "a\\u0000@x.org", "name": "t"}'),
        400,
        "invalid_argument",
    )
    error(
        post_raw(http, "/v1/vfolders", '{"name": "x", "project": "\\u0000"}'),
        400,
        "invalid_argument",
    )
    # PostgreSQL refuses NUL in text: before, these lookups failed there with a 500
    details = error(http.get("/v1/vfolders/a%00b"), 400, "invalid_argument")
    assert details == {"field": "name", "location": "path"}
    details = error(http.get("/v1/admin/quota", params={"user": "\x00"}), 400, "invalid_argument")
    assert details == {"field": "user", "location": "query"}
    error(http.post("/v1/invitations/%00/accept"), 400, "invalid_argument")
    error(http.post("/v1/admin/users/a%00@x.org/deactivate"), 400, "invalid_argument")
    no_tracebacks(vfd_daemon.log())


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("PUT", "/v1/admin/quota", {"user": "root@local", "max_bytes": BIG}, "max_bytes"),
        ("PUT", "/v1/admin/quota", {"user": "root@local", "max_files": INT64_MAX + 1}, "max_files"),
        (
            "POST",
            "/v1/admin/policies",
            {"name": "p", "max_quota_scope_size": BIG},
            "max_quota_scope_size",
        ),
        (
            "POST",
            "/v1/admin/policies",
            {"name": "p", "max_vfolder_count": INT32_MAX + 1},
            "max_vfolder_count",
        ),
        ("PATCH", "/v1/admin/policies/p", {"max_quota_scope_size": BIG}, "max_quota_scope_size"),
        ("POST", "/v1/admin/uploads/prune", {"older_than": BIG}, "older_than"),
        ("POST", "/v1/admin/users", {"email": "big@example.com", "uid": BIG}, "uid"),
        ("POST", "/v1/admin/projects", {"name": "big", "gid": 2**32}, "gid"),
    ],
)
def test_api_integers_past_the_store_are_refused(
    vfd_daemon: Any, method: str, url: str, body: dict[str, Any], field: str
) -> None:
    details = error(vfd_daemon.http.request(method, url, json=body), 400, "invalid_argument")
    assert details["field"] == field
    no_tracebacks(vfd_daemon.log())


def test_api_integers_at_the_bounds_are_kept(vfd_daemon: Any) -> None:
    http = vfd_daemon.http
    name = unique("pol")
    body = {"name": name, "max_vfolder_count": INT32_MAX, "max_quota_scope_size": INT64_MAX}
    got = ok(http.post("/v1/admin/policies", json=body), 201)
    assert got["max_vfolder_count"] == INT32_MAX and got["max_quota_scope_size"] == INT64_MAX
    # floats, NaN and numbers written with exponents are no integers
    for raw in ("1e3", "NaN", "Infinity", "1.0", "1e400"):
        resp = post_raw(
            http, f"/v1/admin/policies/{name}", f'{{"max_vfolder_count": {raw}}}', method="PATCH"
        )
        assert resp.status_code == 400, (raw, resp.text)


@pytest.mark.parametrize(
    "name",
    [
        "ev\u202eil",  # RIGHT-TO-LEFT OVERRIDE: shows as "evli"
        "a\u200bb",  # ZERO WIDTH SPACE
        "a\u2066b",  # LEFT-TO-RIGHT ISOLATE
        "a\ufeffb",  # ZERO WIDTH NO-BREAK SPACE
        "a\x85b",  # NEXT LINE (C1 control)
        "a\x9bb",  # CONTROL SEQUENCE INTRODUCER (C1)
        "a\u2028b",  # LINE SEPARATOR
        "a\u2029b",  # PARAGRAPH SEPARATOR
        "a\ue000b",  # private use
        "a\U000e0001b",  # LANGUAGE TAG (format)
        "a\u0378b",  # unassigned
    ],
)
def test_api_names_that_do_not_show_as_themselves_are_refused(vfd_daemon: Any, name: str) -> None:
    http = vfd_daemon.http
    error(http.post("/v1/vfolders", json={"name": name}), 400, "invalid_name")
    folder = ok(http.post("/v1/vfolders", json={"name": unique()}), 201)
    error(http.patch(f"/v1/vfolders/{folder['name']}", json={"name": name}), 400, "invalid_name")
    clone = {"target_name": name}
    assert http.post(f"/v1/vfolders/{folder['name']}/clone", json=clone).status_code == 400
    user = {"email": f"u{uuid.uuid4().hex[:8]}{name}@example.com"}
    error(http.post("/v1/admin/users", json=user), 400, "invalid_argument")
    user = {"email": f"u{uuid.uuid4().hex[:8]}@example.com", "username": name}
    error(http.post("/v1/admin/users", json=user), 400, "invalid_argument")
    error(http.post("/v1/admin/projects", json={"name": name}), 400, "invalid_argument")
    error(
        http.post("/v1/admin/tokens", json={"email": "root@local", "name": name}),
        400,
        "invalid_argument",
    )


def test_api_quota_of_a_scope_nobody_owns_is_not_found(vfd_daemon: Any) -> None:
    http = vfd_daemon.http
    nobody = uuid.uuid4().hex
    for kind, code in (("user", "user_not_found"), ("project", "project_not_found")):
        scope = f"{kind}:{nobody}"
        body = {"scope": scope, "max_bytes": 10}
        assert error(http.put("/v1/admin/quota", json=body), 404, code)["scope"] == scope
        error(http.get("/v1/admin/quota", params={"scope": scope}), 404, code)
        error(http.post("/v1/admin/quota/rescan", json={"scope": scope}), 404, code)
    scopes = ok(http.get("/v1/admin/quotas"))["scopes"]
    assert not [s for s in scopes if nobody in s["scope"]]  # no orphan row was made


def test_api_garbage_identity_headers(vfd_daemon: Any) -> None:
    http = vfd_daemon.http
    for act_as in ("\x01garbage", "zz", "x" * 10000, "caf\xe9@example.com", "a b"):
        resp = http.get("/v1/whoami", headers={"X-Vfd-Act-As": act_as.encode("latin-1")})
        assert 400 <= resp.status_code < 500, (act_as, resp.text)
    assert vfd_daemon.tcp_url
    with httpx.Client(base_url=vfd_daemon.tcp_url, timeout=30) as tcp:
        for auth in (
            "Bearer",
            "Bearer \x01",
            "Basic Zm9vOmJhcg==",
            "Bearer " + "x" * 10000,
            "bearer vfd_\xff",
            "",
        ):
            resp = tcp.get("/v1/whoami", headers={"Authorization": auth.encode("latin-1")})
            error(resp, 401, "unauthenticated")
    no_tracebacks(vfd_daemon.log())


def test_api_odd_path_and_query_parameters(vfd_daemon: Any) -> None:
    http = vfd_daemon.http
    for name in ("x" * 10000, "%ff%fe", "%ED%A0%80", "..%2F..%2Fetc", "%2e%2e", "a%2Fb"):
        resp = http.get(f"/v1/vfolders/{name}")
        assert 400 <= resp.status_code < 500, (name, resp.text)
        resp = http.get(f"/v1/vfolders/{name}/files", params={"path": "%ff/../x"})
        assert 400 <= resp.status_code < 500, (name, resp.text)
    for query in ("trash=maybe", "trash=1e3", "automount=%00", "trash=true&trash=false&x=%ff"):
        resp = http.get(f"/v1/vfolders?{query}")
        assert resp.status_code in (200, 400), (query, resp.text)
    for scope in ("garbage", "user:%ED%A0%80", "user:" + "0" * 5000, "project:"):
        error(http.get("/v1/admin/quota", params={"scope": scope}), 400, "invalid_argument")
    no_tracebacks(vfd_daemon.log())


def test_api_huge_and_nested_bodies(vfd_daemon: Any) -> None:
    http = vfd_daemon.http
    nested = "[" * 100000 + "]" * 100000
    error(post_raw(http, "/v1/vfolders", nested), 400, "invalid_argument")
    deep = json.dumps({"name": unique(), "host": None}).replace("null", "[" * 5000 + "]" * 5000)
    error(post_raw(http, "/v1/vfolders", deep), 400, "invalid_argument")
    many = {"emails": [f"x{i}@example.com" for i in range(20000)]}
    resp = http.post("/v1/vfolders/nope/invite", json=many)
    assert 400 <= resp.status_code < 500, resp.text
    long_name = "n" * 100000
    error(http.post("/v1/vfolders", json={"name": long_name}), 400, "name_too_long")
    no_tracebacks(vfd_daemon.log())
