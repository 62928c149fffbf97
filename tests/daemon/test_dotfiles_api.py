"""``/v1/dotfiles`` over the real unix socket: the round trip, every refusal, and who may read
and write the dotfiles of a user, a project and the cluster."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from daemonapi import error, ok, unique

MAX_SIZE = 64
MAX_COUNT = 4
VFD_DAEMON_SETTINGS = {
    "sessions": {"enabled": "off", "dotfile_max_size": MAX_SIZE, "dotfile_max_count": MAX_COUNT}
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def body(path: str, data: bytes = b"x", **fields: Any) -> dict[str, Any]:
    return {"path": path, "data": b64(data), **fields}


@pytest.fixture
def user(vfd_daemon: Any) -> httpx.Client:
    client: httpx.Client = vfd_daemon.as_user(vfd_daemon.make_user()["email"])
    return client


@pytest.fixture
def root(vfd_daemon: Any) -> httpx.Client:
    client: httpx.Client = vfd_daemon.http
    return client


@pytest.fixture
def project(vfd_daemon: Any, root: httpx.Client) -> Iterator[tuple[str, httpx.Client]]:
    """A project and a client of one of its (non-admin) members."""
    name = unique("proj")
    ok(root.post("/v1/admin/projects", json={"name": name}), 201)
    email = vfd_daemon.make_user()["email"]
    ok(root.post(f"/v1/admin/projects/{name}/members", json={"email": email}))
    yield name, vfd_daemon.as_user(email)


def test_dotfiles_api_user_round_trip(user: httpx.Client) -> None:
    made = ok(user.post("/v1/dotfiles", json=body("~/.bashrc", b"alias l=ls\n", mode="0755")), 201)
    assert made["path"] == ".bashrc"
    assert (made["mode"], made["size"], made["scope"], made["project"]) == ("755", 11, "user", None)
    assert made["updated_at"]
    listed = ok(user.get("/v1/dotfiles"))["dotfiles"]
    assert [d["path"] for d in listed] == [".bashrc"]
    assert "data" not in listed[0]
    got = ok(user.get("/v1/dotfiles/%2Ebashrc"))
    assert base64.b64decode(got["data"]) == b"alias l=ls\n"
    absolute = ok(user.get("/v1/dotfiles/%2Fhome/work/.bashrc", params={"scope": "user"}))
    assert absolute["mode"] == "755"
    error(user.post("/v1/dotfiles", json=body(".bashrc")), 409, "dotfile_exists")
    changed = ok(user.put("/v1/dotfiles/.bashrc", json={"data": b64(b"new"), "mode": "600"}))
    assert (changed["mode"], changed["size"]) == ("600", 3)
    assert ok(user.put("/v1/dotfiles/.bashrc", json={"mode": "644"}))["size"] == 3
    assert base64.b64decode(ok(user.get("/v1/dotfiles/.bashrc"))["data"]) == b"new"
    default = ok(user.post("/v1/dotfiles", json=body(".config/tool/conf")), 201)
    assert default["mode"] == "644"
    resp = user.delete("/v1/dotfiles/.bashrc")
    assert (resp.status_code, resp.content) == (204, b"")
    error(user.get("/v1/dotfiles/.bashrc"), 404, "dotfile_not_found")
    error(user.delete("/v1/dotfiles/.bashrc"), 404, "dotfile_not_found")
    error(user.put("/v1/dotfiles/.bashrc", json={"data": b64(b"x")}), 404, "dotfile_not_found")
    assert [d["path"] for d in ok(user.get("/v1/dotfiles"))["dotfiles"]] == [".config/tool/conf"]


def test_dotfiles_api_user_scope_is_private(vfd_daemon: Any, user: httpx.Client) -> None:
    ok(user.post("/v1/dotfiles", json=body(".vimrc")), 201)
    other = vfd_daemon.as_user(vfd_daemon.make_user()["email"])
    assert ok(other.get("/v1/dotfiles"))["dotfiles"] == []
    error(other.get("/v1/dotfiles/.vimrc"), 404, "dotfile_not_found")
    error(other.delete("/v1/dotfiles/.vimrc"), 404, "dotfile_not_found")
    ok(other.post("/v1/dotfiles", json=body(".vimrc")), 201)  # a path per user


@pytest.mark.parametrize(
    "path",
    ["/etc/profile", "/home/work", "a//b", "a/../b", "..", "./a", "a/", "x" * 257, "a\x1bb", ""],
)
def test_dotfiles_api_refuses_bad_paths(user: httpx.Client, path: str) -> None:
    details = error(user.post("/v1/dotfiles", json=body(path)), 400, "invalid_path")
    assert details["path"] == path


def test_dotfiles_api_refuses_bad_paths_in_urls(user: httpx.Client) -> None:
    for url in ("/v1/dotfiles/a%2F%2E%2E%2Fb", "/v1/dotfiles/%2Fetc%2Fpasswd", "/v1/dotfiles/a//b"):
        error(user.get(url), 400, "invalid_path")
        error(user.delete(url), 400, "invalid_path")
    error(user.get("/v1/dotfiles/a%00b"), 400, "invalid_argument")
    error(user.post("/v1/dotfiles", json=body("a\x00b")), 400, "invalid_path")


@pytest.mark.parametrize(
    "path", [".ssh/authorized_keys", ".ssh/id_container", ".vfd/state", "/home/work/.vfd"]
)
def test_dotfiles_api_refuses_reserved_paths(user: httpx.Client, path: str) -> None:
    error(user.post("/v1/dotfiles", json=body(path)), 400, "reserved_name")


def test_dotfiles_api_refuses_paths_under_an_automount_folder(user: httpx.Client) -> None:
    ok(user.post("/v1/vfolders", json={"name": ".local"}), 201)
    details = error(user.post("/v1/dotfiles", json=body(".local/bin/tool")), 400, "reserved_name")
    assert details["folder"] == ".local"
    error(user.post("/v1/dotfiles", json=body(".local")), 400, "reserved_name")
    ok(user.post("/v1/dotfiles", json=body(".localrc")), 201)
    ok(user.post("/v1/dotfiles", json=body(".ssh/config")), 201)


@pytest.mark.parametrize("mode", ["4755", "2755", "1777", "999", "75", "rwxr-xr-x", "0o755"])
def test_dotfiles_api_refuses_bad_modes(user: httpx.Client, mode: str) -> None:
    details = error(user.post("/v1/dotfiles", json=body("m", mode=mode)), 400, "invalid_argument")
    assert details["field"] == "mode"
    ok(user.post("/v1/dotfiles", json=body("m")), 201)
    error(user.put("/v1/dotfiles/m", json={"mode": mode}), 400, "invalid_argument")


def test_dotfiles_api_refuses_bad_bodies(user: httpx.Client) -> None:
    bad = {"path": "a", "data": "not base64!"}
    assert error(user.post("/v1/dotfiles", json=bad), 400, "invalid_argument")["field"] == "data"
    error(user.post("/v1/dotfiles", json={"path": "a"}), 400, "invalid_argument")
    error(user.post("/v1/dotfiles", json=body("a", extra=1)), 400, "invalid_argument")
    error(user.post("/v1/dotfiles", json=body("a", scope="galaxy")), 400, "invalid_argument")
    error(user.post("/v1/dotfiles", json=body("a", mode=644)), 400, "invalid_argument")
    ok(user.post("/v1/dotfiles", json=body("a")), 201)
    error(user.put("/v1/dotfiles/a", json={}), 400, "invalid_argument")
    moved = {"path": "b", "data": b64(b"x")}
    assert error(user.put("/v1/dotfiles/a", json=moved), 400, "invalid_argument")["field"] == "path"
    ok(user.put("/v1/dotfiles/a", json={"path": "/home/work/a", "data": b64(b"y")}))


def test_dotfiles_api_size_and_count_limits(user: httpx.Client) -> None:
    ok(user.post("/v1/dotfiles", json=body("full", b"x" * MAX_SIZE)), 201)
    for data in (b"x" * (MAX_SIZE + 1), b"x" * (10 * MAX_SIZE)):
        details = error(user.post("/v1/dotfiles", json=body("big", data)), 400, "invalid_argument")
        assert (details["field"], details["max"]) == ("data", MAX_SIZE)
    big = {"data": b64(b"x" * (MAX_SIZE + 1))}
    error(user.put("/v1/dotfiles/full", json=big), 400, "invalid_argument")
    for i in range(1, MAX_COUNT):
        ok(user.post("/v1/dotfiles", json=body(f"f{i}")), 201)
    details = error(user.post("/v1/dotfiles", json=body("one-more")), 403, "dotfile_limit_reached")
    assert (details["limit"], details["max"]) == ("count", MAX_COUNT)
    user.delete("/v1/dotfiles/f1")
    ok(user.post("/v1/dotfiles", json=body("one-more")), 201)


def test_dotfiles_api_a_file_cannot_be_a_directory(user: httpx.Client) -> None:
    ok(user.post("/v1/dotfiles", json=body("a")), 201)
    error(user.post("/v1/dotfiles", json=body("a/b")), 409, "not_a_directory")
    ok(user.post("/v1/dotfiles", json=body("c/d")), 201)
    details = error(user.post("/v1/dotfiles", json=body("c")), 409, "is_a_directory")
    assert details["conflict"] == "c/d"


def test_dotfiles_api_project_scope(
    vfd_daemon: Any, root: httpx.Client, project: tuple[str, httpx.Client]
) -> None:
    name, member = project
    where = {"scope": "project", "project": name}
    error(member.post("/v1/dotfiles", json=body(".condarc", **where)), 403, "admin_required")
    made = ok(root.post("/v1/dotfiles", json=body(".condarc", b"channels: []\n", **where)), 201)
    assert (made["scope"], made["project"]) == ("project", name)
    listed = ok(member.get("/v1/dotfiles", params={"project": name}))["dotfiles"]
    assert [(d["path"], d["project"]) for d in listed] == [(".condarc", name)]
    got = ok(member.get("/v1/dotfiles/.condarc", params=where))
    assert base64.b64decode(got["data"]) == b"channels: []\n"
    error(member.put("/v1/dotfiles/.condarc", json={"mode": "600", **where}), 403, "admin_required")
    error(member.delete("/v1/dotfiles/.condarc", params=where), 403, "admin_required")
    assert ok(member.get("/v1/dotfiles"))["dotfiles"] == []  # their own scope is apart
    outsider = vfd_daemon.as_user(vfd_daemon.make_user()["email"])
    error(outsider.get("/v1/dotfiles", params=where), 403, "permission_denied")
    error(outsider.get("/v1/dotfiles/.condarc", params=where), 403, "permission_denied")
    error(root.get("/v1/dotfiles", params={"project": "no-such-x"}), 404, "project_not_found")
    error(root.get("/v1/dotfiles", params={"scope": "project"}), 400, "invalid_argument")
    bad = {"scope": "user", "project": name}
    error(root.get("/v1/dotfiles", params=bad), 400, "invalid_argument")
    ok(root.put("/v1/dotfiles/.condarc", json={"mode": "600", **where}))
    assert root.delete("/v1/dotfiles/.condarc", params=where).status_code == 204
    assert ok(member.get("/v1/dotfiles", params=where))["dotfiles"] == []


def test_dotfiles_api_cluster_scope(root: httpx.Client, user: httpx.Client) -> None:
    path = unique(".cluster")
    where = {"scope": "cluster"}
    error(user.post("/v1/dotfiles", json=body(path, **where)), 403, "admin_required")
    ok(root.post("/v1/dotfiles", json=body(path, b"all", mode="755", **where)), 201)
    listed = ok(user.get("/v1/dotfiles", params=where))["dotfiles"]
    assert path in [d["path"] for d in listed]
    assert base64.b64decode(ok(user.get(f"/v1/dotfiles/{path}", params=where))["data"]) == b"all"
    error(user.put(f"/v1/dotfiles/{path}", json={"mode": "600", **where}), 403, "admin_required")
    error(user.delete(f"/v1/dotfiles/{path}", params=where), 403, "admin_required")
    bad = {"scope": "cluster", "project": "x"}
    error(root.get("/v1/dotfiles", params=bad), 400, "invalid_argument")
    assert root.delete(f"/v1/dotfiles/{path}", params=where).status_code == 204
    error(user.get(f"/v1/dotfiles/{path}", params=where), 404, "dotfile_not_found")
