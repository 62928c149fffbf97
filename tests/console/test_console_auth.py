"""Sign-in to the web console against a real daemon over real HTTP (its TCP listener):
one-time links (single use, also when raced; expiry), sign-in with an API token (JSON and a
form), the session cookie's flags, CSRF (missing, wrong, another session's, another origin)
refused on every mutating method with nothing changed, a missing, unknown, expired or
signed-out cookie refused, deactivated users, act-as, and the console's files.

Expiry is tested by moving a record's ``expires_at`` into the past in the daemon's store
(waiting out minutes would prove nothing more).
"""

from __future__ import annotations

import http.client
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa

from vfd.console.auth import digest

COOKIE = "vfd_session"
VfdDaemon = Any  # tests/conftest.py's VfdDaemon


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def store(vfd_daemon: VfdDaemon) -> Iterator[sa.Engine]:
    engine = sa.create_engine(vfd_daemon.config.database_url)
    yield engine
    engine.dispose()


def tcp(daemon: VfdDaemon, **kwargs: Any) -> httpx.Client:
    assert daemon.tcp_url is not None
    return httpx.Client(base_url=daemon.tcp_url, timeout=30, **kwargs)


def link_for(daemon: VfdDaemon, email: str) -> dict[str, Any]:
    """A one-time link of ``email``, asked for on the unix socket as ``vfd console`` does."""
    answer = daemon.as_user(email).post("/v1/console/links")
    assert answer.status_code == 201, answer.text
    link: dict[str, Any] = answer.json()
    return link


class Browser:
    """A cookie jar on the TCP listener, signed in through a one-time link."""

    def __init__(self, daemon: VfdDaemon, email: str) -> None:
        self.daemon = daemon
        self.email = email
        self.http = tcp(daemon)
        link = link_for(daemon, email)
        answer = self.http.get(link["path"])
        assert answer.status_code == 303, answer.text
        self.cookie = self.http.cookies[COOKIE]
        info = self.http.get("/v1/console/session")
        assert info.status_code == 200, info.text
        self.csrf: str = info.json()["csrf_token"]

    def headers(self, **extra: str) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf, **extra}

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def user(vfd_daemon: VfdDaemon) -> dict[str, Any]:
    return vfd_daemon.make_user()


@pytest.fixture
def browser(vfd_daemon: VfdDaemon, user: dict[str, Any]) -> Iterator[Browser]:
    b = Browser(vfd_daemon, user["email"])
    yield b
    b.close()


def error(answer: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = answer.json()["error"]
    return body


def folder_names(daemon: VfdDaemon, email: str) -> set[str]:
    answer = daemon.as_user(email).get("/v1/vfolders")
    assert answer.status_code == 200, answer.text
    return {f["name"] for f in answer.json()["vfolders"]}


# ------------------------------------------------------------------------------- links


def test_console_auth_link_signs_in_once_with_a_strict_cookie(
    vfd_daemon: VfdDaemon, user: dict[str, Any]
) -> None:
    link = link_for(vfd_daemon, user["email"])
    assert link["user"] == user["email"] and link["expires_in"] == 300
    assert link["url"] == f"{vfd_daemon.tcp_url}{link['path']}"
    assert urlsplit(link["url"]).path == "/console/signin"
    with tcp(vfd_daemon) as http:
        answer = http.get(link["path"])
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/"  # the code leaves the address bar
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["referrer-policy"] == "no-referrer"
        cookies = answer.headers.get_list("set-cookie")
        assert len(cookies) == 1  # no script-readable cookie: the CSRF token is asked for
        flags = [f.strip().lower() for f in cookies[0].split(";")]
        assert flags[0].startswith(f"{COOKIE}=")
        assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
        max_age = next(int(f.split("=")[1]) for f in flags if f.startswith("max-age="))
        assert 12 * 3600 - 60 < max_age <= 12 * 3600
        info = http.get("/v1/console/session")
        assert info.status_code == 200, info.text
        session = info.json()
        assert session["user"]["email"] == user["email"] and session["role"] == "user"
        assert session["method"] == "link" and len(session["csrf_token"]) == 64
        assert http.get("/v1/whoami").json()["email"] == user["email"]
        # the same link again, in this browser or another: refused, saying why
        with tcp(vfd_daemon) as elsewhere:
            for client in (http, elsewhere):
                again = client.get(link["path"])
                assert again.status_code == 401
                assert again.headers["content-type"].startswith("text/html")
                assert "used already" in again.text and "unauthenticated (used)" in again.text
                assert "set-cookie" not in again.headers


def test_console_auth_link_raced_signs_in_once(vfd_daemon: VfdDaemon, user: dict[str, Any]) -> None:
    link = link_for(vfd_daemon, user["email"])
    statuses: list[int] = []
    start = threading.Barrier(8)

    def open_link() -> None:
        with tcp(vfd_daemon) as http:
            start.wait()
            statuses.append(http.get(link["path"]).status_code)

    threads = [threading.Thread(target=open_link) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [303] + [401] * 7


def test_console_auth_link_expires(
    vfd_daemon: VfdDaemon, user: dict[str, Any], store: sa.Engine
) -> None:
    link = link_for(vfd_daemon, user["email"])
    past = datetime.now(UTC) - timedelta(seconds=1)
    with store.begin() as conn:
        moved = conn.execute(
            sa.text("UPDATE consolelink SET expires_at = :at WHERE code_sha256 = :key"),
            {"at": past, "key": digest(link["code"])},
        )
        assert moved.rowcount == 1  # only the code's hash is stored
    with tcp(vfd_daemon) as http:
        answer = http.get(link["path"])
        assert answer.status_code == 401
        assert "has expired" in answer.text and "unauthenticated (expired)" in answer.text
        assert COOKIE not in http.cookies
        assert http.get("/v1/console/session").status_code == 401


def test_console_auth_link_unknown_or_missing_code(vfd_daemon: VfdDaemon) -> None:
    with tcp(vfd_daemon) as http:
        unknown = http.get("/console/signin", params={"code": secrets.token_urlsafe(32)})
        assert unknown.status_code == 401 and "not valid" in unknown.text
        missing = http.get("/console/signin")
        assert missing.status_code == 400 and "invalid_argument" in missing.text
        huge = http.get("/console/signin", params={"code": "x" * 5000})
        assert huge.status_code == 401
        assert COOKIE not in http.cookies


def test_console_auth_links_only_from_the_node(browser: Browser) -> None:
    """A console session cannot mint links (a stolen session could otherwise renew itself)."""
    answer = browser.http.post("/v1/console/links", headers=browser.headers())
    assert answer.status_code == 403 and error(answer)["code"] == "permission_denied"


def test_console_auth_admin_link_for_a_user_gives_no_admin_rights(
    vfd_daemon: VfdDaemon, user: dict[str, Any]
) -> None:
    """``vfd --as EMAIL console``: the session is that user's, with that user's rights only."""
    other = vfd_daemon.make_user()
    b = Browser(vfd_daemon, user["email"])  # minted by root acting as the user
    try:
        acting = b.http.get("/v1/whoami", headers={"X-Vfd-Act-As": other["email"]})
        assert acting.status_code == 403 and error(acting)["code"] == "admin_required"
        admin = b.http.get("/v1/admin/users")
        assert admin.status_code == 403 and error(admin)["code"] == "admin_required"
    finally:
        b.close()


# ------------------------------------------------------------------------------- tokens


def make_token(daemon: VfdDaemon, email: str) -> str:
    answer = daemon.http.post(
        "/v1/admin/tokens", json={"email": email, "name": f"t{secrets.token_hex(3)}"}
    )
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


def test_console_auth_token_signin_json_and_form(
    vfd_daemon: VfdDaemon, user: dict[str, Any]
) -> None:
    token = make_token(vfd_daemon, user["email"])
    with tcp(vfd_daemon) as http:
        answer = http.post("/v1/console/signin", json={"token": token})
        assert answer.status_code == 200, answer.text
        assert answer.json()["user"]["email"] == user["email"]
        assert answer.json()["method"] == "token"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert http.get("/v1/whoami").json()["email"] == user["email"]
        assert answer.json()["csrf_token"] == http.get("/v1/console/session").json()["csrf_token"]
    with tcp(vfd_daemon) as http:
        form = http.post(
            "/v1/console/signin",
            content=f"token={token}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 303 and form.headers["location"] == "/console/"
        assert http.get("/v1/whoami").json()["email"] == user["email"]


def test_console_auth_token_signin_refusals(vfd_daemon: VfdDaemon, user: dict[str, Any]) -> None:
    token = make_token(vfd_daemon, user["email"])
    base = vfd_daemon.tcp_url
    with tcp(vfd_daemon) as http:
        cases = [
            ({"json": {"token": token + "x"}}, 401, "unauthenticated"),
            ({"json": {"token": ""}}, 400, "invalid_argument"),
            ({"json": {"token": token, "extra": 1}}, 400, "invalid_argument"),
            ({"json": [token]}, 400, "invalid_argument"),
            ({"content": b"not json"}, 400, "invalid_argument"),
            ({"content": b"x" * 9000}, 400, "invalid_argument"),
            # login CSRF: another origin (another port of the host too) cannot sign a browser in
            (
                {"json": {"token": token}, "headers": {"Origin": "http://evil.example"}},
                403,
                "csrf_failed",
            ),
            (
                {"json": {"token": token}, "headers": {"Origin": "http://127.0.0.1:1"}},
                403,
                "csrf_failed",
            ),
            (
                {"json": {"token": token}, "headers": {"Sec-Fetch-Site": "cross-site"}},
                403,
                "csrf_failed",
            ),
        ]
        for kwargs, status, code in cases:
            answer = http.post("/v1/console/signin", **kwargs)  # type: ignore[arg-type]
            assert (answer.status_code, error(answer)["code"]) == (status, code), kwargs
            assert COOKIE not in http.cookies
        same = http.post(
            "/v1/console/signin", json={"token": token}, headers={"Origin": base or ""}
        )
        assert same.status_code == 200, same.text


def test_console_auth_token_session_ends_with_its_token(
    vfd_daemon: VfdDaemon, user: dict[str, Any], store: sa.Engine
) -> None:
    token = make_token(vfd_daemon, user["email"])
    with tcp(vfd_daemon) as http:
        assert http.post("/v1/console/signin", json={"token": token}).status_code == 200
        assert http.get("/v1/whoami").status_code == 200
        with store.begin() as conn:
            conn.execute(
                sa.text("UPDATE apitoken SET expires_at = :at WHERE token_sha256 = :key"),
                {"at": datetime.now(UTC) - timedelta(seconds=1), "key": digest(token)},
            )
        answer = http.get("/v1/whoami")
        assert answer.status_code == 401 and error(answer)["details"]["reason"] == "expired"


# ------------------------------------------------------------------------------- CSRF


def test_console_auth_csrf_refused_on_every_mutating_method(
    vfd_daemon: VfdDaemon, browser: Browser
) -> None:
    name = f"c-{secrets.token_hex(3)}"
    other = Browser(vfd_daemon, browser.email)  # another session of the same user
    try:
        attempts = [
            ({}, "missing"),
            ({"X-CSRF-Token": ""}, "missing"),
            ({"X-CSRF-Token": "0" * 64}, "mismatch"),
            ({"X-CSRF-Token": other.csrf}, "mismatch"),  # bound to its own session
            (browser.headers(Origin="http://evil.example"), "origin"),
            (browser.headers(Origin=f"http://127.0.0.1:{secrets.randbelow(1000) + 1}"), "origin"),
            (browser.headers(Origin="null"), "origin"),
            (browser.headers(**{"Sec-Fetch-Site": "same-site"}), "origin"),
        ]
        for headers, reason in attempts:
            answer = browser.http.post("/v1/vfolders", json={"name": name}, headers=headers)
            assert answer.status_code == 403, (headers, answer.text)
            assert error(answer)["code"] == "csrf_failed"
            assert error(answer)["details"]["reason"] == reason, headers
        assert name not in folder_names(vfd_daemon, browser.email)  # nothing was made
        made = browser.http.post(
            "/v1/vfolders",
            json={"name": name},
            headers=browser.headers(
                Origin=vfd_daemon.tcp_url or "", **{"Sec-Fetch-Site": "same-origin"}
            ),
        )
        assert made.status_code == 201, made.text
        for method, path, body in (
            ("PATCH", f"/v1/vfolders/{name}", {"name": name + "-r"}),
            ("POST", f"/v1/vfolders/{name}/mkdir", {"path": "d"}),
            ("PUT", f"/v1/vfolders/{name}/upload?path=f&size=1", None),
            ("DELETE", f"/v1/vfolders/{name}", None),
        ):
            answer = browser.http.request(method, path, json=body)
            assert answer.status_code == 403, (method, path, answer.text)
            assert error(answer)["code"] == "csrf_failed"
        assert name in folder_names(vfd_daemon, browser.email)
        # reading needs no token, but not from a page of another origin
        assert browser.http.get("/v1/vfolders").status_code == 200
        foreign = browser.http.get("/v1/vfolders", headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403 and error(foreign)["code"] == "csrf_failed"
    finally:
        other.close()


def test_console_auth_bearer_wins_over_the_cookie(vfd_daemon: VfdDaemon, browser: Browser) -> None:
    """An API client sending its token needs no CSRF token (a browser never sends it alone)."""
    other = vfd_daemon.make_user()
    token = make_token(vfd_daemon, other["email"])
    answer = browser.http.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert answer.json()["email"] == other["email"]
    name = f"b-{secrets.token_hex(3)}"
    made = browser.http.post(
        "/v1/vfolders", json={"name": name}, headers={"Authorization": f"Bearer {token}"}
    )
    assert made.status_code == 201, made.text
    assert name in folder_names(vfd_daemon, other["email"])
    assert name not in folder_names(vfd_daemon, browser.email)


def test_console_auth_session_sees_only_its_users_folders(
    vfd_daemon: VfdDaemon, browser: Browser
) -> None:
    other = vfd_daemon.make_user()
    name = f"o-{secrets.token_hex(3)}"
    assert (
        vfd_daemon.as_user(other["email"]).post("/v1/vfolders", json={"name": name}).status_code
        == 201
    )
    assert browser.http.get(f"/v1/vfolders/{name}").status_code == 404
    answer = browser.http.delete(f"/v1/vfolders/{name}", headers=browser.headers())
    assert answer.status_code == 404
    assert name in folder_names(vfd_daemon, other["email"])


# --------------------------------------------------------------------- missing cookies


def test_console_auth_missing_unknown_expired_cookie_refused(
    vfd_daemon: VfdDaemon, browser: Browser, store: sa.Engine
) -> None:
    with tcp(vfd_daemon) as http:
        for path in ("/v1/vfolders", "/v1/console/session", "/v1/whoami"):
            answer = http.get(path)
            assert answer.status_code == 401 and error(answer)["code"] == "unauthenticated"
        answer = http.post("/v1/vfolders", json={"name": "x"}, headers={"X-CSRF-Token": "x"})
        assert answer.status_code == 401
    with tcp(vfd_daemon, cookies={COOKIE: secrets.token_urlsafe(32)}) as http:
        answer = http.get("/v1/vfolders")
        assert answer.status_code == 401 and error(answer)["details"]["reason"] == "unknown"
    with store.begin() as conn:
        conn.execute(
            sa.text("UPDATE consolesession SET expires_at = :at WHERE token_sha256 = :key"),
            {"at": datetime.now(UTC) - timedelta(seconds=1), "key": digest(browser.cookie)},
        )
    answer = browser.http.get("/v1/vfolders")
    assert answer.status_code == 401 and error(answer)["details"]["reason"] == "expired"


def test_console_auth_cookie_counts_only_on_tcp(vfd_daemon: VfdDaemon, browser: Browser) -> None:
    """On the unix socket the peer is the caller; a console cookie there changes nothing."""
    with vfd_daemon.client(cookies={COOKIE: browser.cookie}) as unix:
        assert unix.get("/v1/whoami").json()["email"] == "root@local"
        answer = unix.get("/v1/console/session")
        assert answer.status_code == 401 and error(answer)["code"] == "unauthenticated"


def test_console_auth_signout_ends_the_session(vfd_daemon: VfdDaemon, browser: Browser) -> None:
    refused = browser.http.post("/v1/console/signout")
    assert refused.status_code == 403 and error(refused)["code"] == "csrf_failed"
    assert browser.http.get("/v1/whoami").status_code == 200
    answer = browser.http.post("/v1/console/signout", headers=browser.headers())
    assert answer.status_code == 200 and answer.json() == {"signed_out": True}
    cleared = answer.headers["set-cookie"].lower()
    assert cleared.startswith(f"{COOKIE}=") and "max-age=0" in cleared
    assert COOKIE not in browser.http.cookies
    with tcp(vfd_daemon, cookies={COOKIE: browser.cookie}) as replay:  # the old cookie kept
        answer = replay.get("/v1/whoami")
        assert answer.status_code == 401 and error(answer)["details"]["reason"] == "ended"


def test_console_auth_deactivated_user_refused(vfd_daemon: VfdDaemon) -> None:
    user = vfd_daemon.make_user()
    b = Browser(vfd_daemon, user["email"])
    link = link_for(vfd_daemon, user["email"])
    try:
        off = vfd_daemon.http.post(f"/v1/admin/users/{user['email']}/deactivate")
        assert off.status_code == 200, off.text
        answer = b.http.get("/v1/whoami")
        assert answer.status_code == 403 and error(answer)["code"] == "user_inactive"
        with tcp(vfd_daemon) as http:
            page = http.get(link["path"])
            assert page.status_code == 403 and "user_inactive" in page.text
            assert COOKIE not in http.cookies
    finally:
        b.close()


# ------------------------------------------------------------------------------- files


def raw_get(daemon: VfdDaemon, target: str) -> tuple[int, dict[str, str], bytes]:
    """A GET of ``target`` exactly as written (no client normalising ``..``)."""
    assert daemon.config.tcp_listen is not None
    host, _, port = daemon.config.tcp_listen.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", target)
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def test_console_auth_files_served_with_their_headers(vfd_daemon: VfdDaemon) -> None:
    with tcp(vfd_daemon) as http:
        root = http.get("/console")
        assert root.status_code == 308 and root.headers["location"] == "/console/"
        page = http.get("/console/")
        assert page.status_code == 200, page.text
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-cache"
        assert "<html" in page.text.lower()
        head = http.head("/console/")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(page.content))
        # a view of the page, not a file: the page itself
        assert http.get("/console/folders/trash").text == page.text
        missing = http.get("/console/nothing-here.js")
        assert missing.status_code == 404 and error(missing)["code"] == "not_found"
    for target in (
        "/console/../../../../etc/passwd",
        "/console/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/console/..%2f..%2f..%2fetc%2fpasswd",
        "/console/.hidden",
        "/console/%00.js",
    ):
        status, _, body = raw_get(vfd_daemon, target)
        assert b"root:" not in body, target
        assert status in (400, 404), (target, status)
    # the unix socket serves the same files (harmless: nothing there needs a session)
    assert vfd_daemon.http.get("/console/").status_code == 200


def test_console_auth_cookie_opens_no_shell(vfd_daemon: VfdDaemon, browser: Browser) -> None:
    """WebSockets are not bound by the same-origin rules: the shell takes no console cookie."""
    import websockets.exceptions
    import websockets.sync.client

    url = (vfd_daemon.tcp_url or "").replace("http://", "ws://") + "/v1/sessions/any/shell"
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        websockets.sync.client.connect(
            url,
            additional_headers={
                "Cookie": f"{COOKIE}={browser.cookie}",
                "Origin": vfd_daemon.tcp_url or "",
            },
            open_timeout=30,
        )
    assert refused.value.response.status_code == 401


def test_console_auth_several_session_cookies_refused(
    vfd_daemon: VfdDaemon, browser: Browser
) -> None:
    """A page of another port of the host may add a second ``vfd_session`` (another path or
    domain) to plant its user's session: a request carrying two is refused, not guessed."""
    planted = Browser(vfd_daemon, vfd_daemon.make_user()["email"])
    try:
        for cookie in (
            f"{COOKIE}={planted.cookie}; {COOKIE}={browser.cookie}",
            f"{COOKIE}={browser.cookie}; other=1; {COOKIE}={planted.cookie}",
        ):
            with tcp(vfd_daemon) as http:
                answer = http.get("/v1/whoami", headers={"Cookie": cookie})
                assert answer.status_code == 401, answer.text
                assert error(answer)["details"]["reason"] == "several"
        with tcp(vfd_daemon) as http:
            alone = http.get(
                "/v1/whoami", headers={"Cookie": f"other=1; {COOKIE}={browser.cookie}"}
            )
            assert alone.json()["email"] == browser.email
    finally:
        planted.close()


def test_console_auth_signing_in_again_ends_the_replaced_session(
    vfd_daemon: VfdDaemon, browser: Browser
) -> None:
    old = browser.cookie
    link = link_for(vfd_daemon, browser.email)
    assert browser.http.get(link["path"]).status_code == 303
    assert browser.http.cookies[COOKIE] != old
    assert browser.http.get("/v1/whoami").json()["email"] == browser.email
    with tcp(vfd_daemon, cookies={COOKIE: old}) as replay:
        answer = replay.get("/v1/whoami")
        assert answer.status_code == 401 and error(answer)["details"]["reason"] == "ended"
