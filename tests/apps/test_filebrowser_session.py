"""The web file manager as a session's app on a real node (``vfd up``, FUSE; no docker):
started by the daemon, confined to the session's folders as its user, reachable only with its
token; uploads are the user's files and count in the quota, a write past it fails and leaves
nothing, an ro folder refuses writes, links lead nowhere else; ``destroy`` ends it."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from appnode import AppNode, app_node_fixture, app_servers, port_free, proc_status, wait_gone
from fbserver import chromium, shot, wait_for

PORTS = "31400-31499"
MODULE = "vfd.apps.filebrowser"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppNode]:
    yield from app_node_fixture(tmp_path_factory, f'[apps]\nports = "{PORTS}"\n')


@pytest.fixture
def user(node: AppNode) -> dict[str, Any]:
    return node.user()


class Served:
    """A storage session serving folders with the file manager, and a client signed in."""

    def __init__(self, node: AppNode, user: dict[str, Any], *mounts: str) -> None:
        self.node, self.user = node, user
        made = node.post(
            "/v1/sessions/storage", user["email"], {"mounts": list(mounts), "app": "filebrowser"}
        )
        assert made.status_code == 201, made.text
        self.session = made.json()
        [self.app] = self.session["apps"]
        link = node.get(f"/v1/sessions/{self.session['id']}/filebrowser", user["email"])
        assert link.status_code == 200, link.text
        self.url = link.json()["url"]
        parts = urllib.parse.urlsplit(self.url)
        self.token = urllib.parse.parse_qs(parts.query)["vfd_token"][0]
        self.base = f"http://127.0.0.1:{parts.port}"
        self.client = httpx.Client(base_url=self.base, timeout=30, headers={"X-Vfd-Files": "1"})
        signed = self.client.get("/", params={"vfd_token": self.token})
        assert signed.status_code == 303, signed.text

    def upload(self, dest: str, name: str, blob: bytes) -> httpx.Response:
        begun = self.client.post("/api/uploads", json={"dest": dest, "names": [name]})
        if begun.status_code != 201:
            return begun
        key = begun.json()["key"]
        sent = self.client.put(f"/api/uploads/{key}/file", params={"path": name}, content=blob)
        if sent.status_code != 200:
            return sent
        return self.client.post(f"/api/uploads/{key}/commit")

    def destroy(self) -> dict[str, Any]:
        self.client.close()
        gone = self.node.delete(f"/v1/sessions/{self.session['id']}", self.user["email"])
        assert gone.status_code == 200, gone.text
        ended: dict[str, Any] = gone.json()
        return ended


def code(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["code"])


def test_filebrowser_session_confined_as_the_user(node: AppNode, user: dict[str, Any]) -> None:
    data, refs = node.folder(user), node.folder(user)
    served = Served(node, user, data["name"], f"{refs['name']}:ro")
    app = served.app
    assert (app["name"], app["kind"], app["status"]) == ("filebrowser", "process", "running")
    assert app["endpoint"].endswith(f":{app['port']}/")
    assert "vfd_token" not in app["endpoint"]  # the token is shown to its user alone
    status = proc_status(app["pid"])
    uid = str(user["uid"])
    assert status["Uid"].split() == [uid] * 4 and status["Gid"].split()[0] == uid
    assert status["NoNewPrivs"] == "1" and status["CapEff"] == "0000000000000000"
    assert os.readlink(f"/proc/{app['pid']}/root") != "/"

    other = node.user()
    stranger = node.get(f"/v1/sessions/{served.session['id']}/filebrowser", other["email"])
    assert stranger.status_code == 404, stranger.text
    with httpx.Client(base_url=served.base) as anon:
        assert anon.get("/api/list").status_code == 401
        wrong = anon.get("/", params={"vfd_token": "x" * 43})
        assert wrong.status_code == 403

    page = served.client.get("/")  # the page's files were read before the chroot
    assert page.status_code == 200 and "/static/app.js" in page.text
    script = served.client.get("/static/app.js")
    assert script.status_code == 200 and "X-Vfd-Files" in script.text
    top = served.client.get("/api/list").json()
    assert [(e["name"], e["readonly"]) for e in top["entries"]] == sorted(
        [(data["name"], False), (refs["name"], True)]
    )
    fds = len(os.listdir(f"/proc/{app['pid']}/fd"))
    before = node.usage(data)["used_bytes"]
    blob = os.urandom(3 << 20)
    done = served.upload(data["name"], "up.bin", blob)
    assert done.status_code == 200, done.text
    st = (node.backing(data) / "up.bin").stat()
    assert (st.st_uid, st.st_gid, st.st_size) == (user["uid"], user["uid"], len(blob))
    assert node.usage(data)["used_bytes"] >= before + len(blob)
    listing = served.client.get("/api/list", params={"path": data["name"]}).json()
    assert [e["name"] for e in listing["entries"]] == ["up.bin"]
    assert listing["quota"]["used"] >= len(blob)
    got = served.client.get("/api/download", params={"path": f"{data['name']}/up.bin"})
    assert got.content == blob
    assert served.client.post("/api/mkdir", json={"path": f"{data['name']}/d"}).status_code == 200
    made = (node.backing(data) / "d").stat()
    assert (made.st_uid, made.st_gid) == (user["uid"], user["uid"])
    name = data["name"]
    moved = served.client.post("/api/move", json={"paths": [f"{name}/up.bin"], "dest": f"{name}/d"})
    assert moved.status_code == 200, moved.text
    renamed = served.client.post("/api/rename", json={"path": f"{name}/d", "name": "e"})
    assert renamed.status_code == 200, renamed.text
    archive = served.client.get("/api/download", params={"path": f"{name}/e"})
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        member = tar.extractfile("e/up.bin")
        assert member is not None and member.read() == blob
    deleted = served.client.post("/api/delete", json={"paths": [f"{name}/e"]})
    assert deleted.status_code == 200, deleted.text
    assert os.listdir(node.backing(data)) == []
    wait_for(lambda: node.usage(data)["used_bytes"] <= before, what="the deleted bytes freed")

    refused = served.upload(refs["name"], "x.txt", b"x")
    assert refused.status_code == 403 and code(refused) == "read_only"
    assert os.listdir(node.backing(refs)) == []
    # every descriptor a request opened is closed again (the client's one connection stays)
    wait_for(
        lambda: len(os.listdir(f"/proc/{app['pid']}/fd")) == fds,
        what="the server's descriptors back to where they were",
    )

    ended = served.destroy()
    assert ended["status"] == "terminated", ended
    assert ended["apps"][0]["status"] == "stopped"
    wait_gone(app["pid"])
    assert port_free(app["port"])
    assert app_servers(node, MODULE) == []
    node.settled_hooks(ended["name"], "stopped")
    hooks = [(h["hook"], h["app"]) for h in node.hooks() if h["session"] == ended["name"]]
    assert hooks == [
        ("before_launch", "filebrowser"),
        ("launched", "filebrowser"),
        ("stopped", "filebrowser"),  # once
    ], hooks


def test_filebrowser_session_quota_and_links(
    node: AppNode, user: dict[str, Any], tmp_path: Path
) -> None:
    other = node.user()
    theirs = node.folder(other)
    (tmp_path / "secret.txt").write_text("not yours")
    node.cli.ok(
        "vfolder", "upload", theirs["name"], str(tmp_path / "secret.txt"), as_=other["email"]
    )
    data = node.folder(user)
    node.cli.ok("admin", "quota", "set", "--user", user["email"], "--bytes", "1M")
    backing = node.backing(data)
    links = {
        "abs": "/etc",
        "theirs": str(node.config.mount_point / "rw" / theirs["id"]),
        "backing": str(node.backing(theirs)),
        "up": "../../../../../../etc",
    }
    for link, target in links.items():
        os.symlink(target, backing / link)
    served = Served(node, user, data["name"])
    name = data["name"]

    over = served.upload(name, "big.bin", os.urandom(3 << 20))
    assert over.status_code == 507 and code(over) == "quota_exceeded", over.text
    assert sorted(os.listdir(backing)) == sorted(links)  # nothing of it, hidden or not
    wait_for(lambda: node.usage(data)["used_bytes"] < 1 << 20, what="the cut upload's bytes freed")
    assert served.upload(name, "small.bin", b"s" * 1000).status_code == 200

    for link in links:
        listed = served.client.get("/api/list", params={"path": f"{name}/{link}"})
        assert listed.status_code in (404, 409), (link, listed.text)
        got = served.client.get("/api/download", params={"path": f"{name}/{link}/secret.txt"})
        assert got.status_code in (404, 409), (link, got.text)
        assert b"not yours" not in got.content
    for path in ["../etc", f"{name}/../..", "/etc"]:
        answer = served.client.get("/api/list", params={"path": path})
        assert answer.status_code in (400, 404), (path, answer.text)
    served.destroy()


def test_filebrowser_session_cli_web(node: AppNode, user: dict[str, Any]) -> None:
    """``vfd vfolder web NAME`` prints the link; the link signs a client in; a folder the
    user cannot reach is refused before anything starts."""
    data = node.folder(user)
    out = node.cli.ok("vfolder", "web", data["name"], as_=user["email"])
    lines = out.splitlines()
    assert lines[0].startswith("Session ") and "serves the web file manager" in lines[0]
    url = lines[1]
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "http" and parts.query.startswith("vfd_token=")
    with httpx.Client(base_url=f"http://127.0.0.1:{parts.port}") as client:
        signed = client.get(f"/?{parts.query}")
        assert signed.status_code == 303
        listed = client.get("/api/list").json()
        assert [e["name"] for e in listed["entries"]] == [data["name"]]
    made = node.cli.json("vfolder", "web", data["name"], as_=user["email"])
    assert made["url"].startswith("http://") and made["session"]["kind"] == "storage"
    for session in node.get("/v1/sessions", user["email"]).json()["sessions"]:
        node.delete(f"/v1/sessions/{session['id']}", user["email"])
    other = node.user()
    theirs = node.folder(other)
    node.cli.fails("vfolder", "web", theirs["name"], code="vfolder_not_found", as_=user["email"])
    assert node.get("/v1/sessions", user["email"]).json()["sessions"] == []
    assert app_servers(node, MODULE) == []


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


def test_filebrowser_session_in_chromium(
    node: AppNode, user: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    """The confined server's page in a real browser: a directory tree uploaded with the
    folder picker lands as the user's files; the ro folder's controls are disabled."""
    from playwright.sync_api import expect

    data, refs = node.folder(user), node.folder(user)
    served = Served(node, user, data["name"], f"{refs['name']}:ro")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a\n")
    (tree / "sub" / "b.bin").write_bytes(os.urandom(1 << 20))
    context = browser.new_context(viewport={"width": 1100, "height": 600})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(served.url.replace(urllib.parse.urlsplit(served.url).hostname, "127.0.0.1"))
        page.locator(f'#rows tr[data-name="{data["name"]}"] td.name a').click()
        page.set_input_files("#pick-dir", str(tree))
        expect(page.locator('#rows tr[data-name="tree"]')).to_be_visible()
        expect(page.locator("#quota-text")).to_contain_text("used")
        shot(page, "session-folder")
        page.locator("#crumbs a", has_text="Folders").click()
        page.locator(f'#rows tr[data-name="{refs["name"]}"] td.name a').click()
        expect(page.locator("#ro-badge")).to_be_visible()
        expect(page.locator("#btn-mkdir")).to_be_disabled()
        shot(page, "session-readonly")
        assert errors == []
    finally:
        context.close()
    for rel in ["tree/a.txt", "tree/sub/b.bin", "tree/sub"]:
        st = (node.backing(data) / rel).stat()
        assert (st.st_uid, st.st_gid) == (user["uid"], user["uid"]), rel
    assert (node.backing(data) / "tree" / "sub" / "b.bin").read_bytes() == (
        tree / "sub" / "b.bin"
    ).read_bytes()
    served.destroy()
