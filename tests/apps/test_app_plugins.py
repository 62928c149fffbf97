"""An app added by a third-party plugin through ``vfd_register_apps``, on a real node (``vfd
up``, FUSE; no docker): a distribution on the node's path registers app ``listing``, whose
server is a tiny HTTP server confined with ``vfd.apps.confine`` as vfd's own are. A storage
session runs it as its user over its folder, reached over HTTP with its token only, listed by
``vfd plugins`` and ``vfd session apps``, ended with its session. The same node blocks the
built-in ``filebrowser`` plugin: that app is then neither offered nor listed."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import appnode
from appnode import (
    AppNode,
    app_servers,
    port_free,
    proc_status,
    start_app_node,
    stop_app_node,
    wait_gone,
)
from fakedist import make_dist

SERVER = "vfdt_listing_server"

PLUGIN = """
    import secrets

    from vfd.plugins import AppLaunch, AppSpec, hookimpl

    def plan(ctx):
        token = secrets.token_urlsafe(24)
        return AppLaunch(
            options={"token": token, "user": ctx.username},
            secret=token,
            endpoint="http://{host}:{port}/",
        )

    @hookimpl
    def vfd_register_apps():
        return [
            AppSpec(
                name="listing",
                description="lists the session's folders over HTTP",
                module="vfdt_listing_server",
                plan=plan,
                link=True,
            )
        ]
"""

LISTING_SERVER = """
    import json
    import os
    import secrets
    import socket
    import sys
    import urllib.parse
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from vfd.apps import confine

    OPTIONS = {}

    class Listing(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            given = urllib.parse.parse_qs(url.query).get("vfd_token", [""])[0]
            if not secrets.compare_digest(given, OPTIONS["token"]):
                return self.answer(403, {"error": "wrong token"})
            path = "/" + urllib.parse.unquote(url.path).strip("/")
            try:
                entries = sorted(os.listdir(path))
            except OSError as exc:
                return self.answer(404, {"error": exc.strerror})
            self.answer(200, {"path": path, "entries": entries, "uid": os.getuid(),
                              "user": OPTIONS["user"]})

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    def main():
        try:
            spec = confine.read_spec()
            OPTIONS.update(spec.options)
            server = HTTPServer(("127.0.0.1", 0), Listing, bind_and_activate=False)
            server.socket.close()
            server.socket = socket.socket(fileno=spec.listen_fd)
            confine.confine(spec)
        except Exception as exc:
            confine.report(error=f"{type(exc).__name__}: {exc}")
            sys.exit(1)
        confine.report(ready={"port": server.socket.getsockname()[1]})
        server.serve_forever()

    if __name__ == "__main__":
        main()
"""

CONFIG = '[apps]\nports = "31700-31799"\n\n[plugins]\nblock = ["filebrowser"]\n'


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppNode]:
    site = tmp_path_factory.mktemp("plugin-app-site")
    make_dist(site, "vfd-test-apprec", {"apprec": "vfdt_apprec"}, {"vfdt_apprec": appnode.RECORDER})
    make_dist(
        site,
        "vfd-test-listing",
        {"listing": "vfdt_listing"},
        {"vfdt_listing": PLUGIN, SERVER: LISTING_SERVER},
        version="0.2",
    )
    out = tmp_path_factory.mktemp("plugin-app-rec") / "hooks.jsonl"
    made = start_app_node(site, out, CONFIG)
    try:
        yield made
    finally:
        stop_app_node(made)


def test_hook_vfd_register_apps(node: AppNode, tmp_path: Path) -> None:
    listed = node.cli.json("plugins")
    plugins = {p["name"]: p for p in listed["plugins"]}
    assert plugins["listing"]["hooks"] == ["vfd_register_apps"]
    assert (plugins["listing"]["distribution"], plugins["listing"]["builtin"]) == (
        "vfd-test-listing",
        False,
    )
    assert plugins["sftp"]["hooks"] == ["vfd_register_apps"] and plugins["sftp"]["builtin"]
    assert {
        "name": "listing",
        "plugin": "listing",
        "description": ("lists the session's folders over HTTP"),
    } in listed["apps"]
    table = node.cli.ok("plugins")
    assert "APP" in table and "listing" in table

    user = node.user()
    folder = node.folder(user)
    hello = tmp_path / "hello.txt"
    hello.write_text("hello\n")
    node.cli.ok("vfolder", "upload", folder["name"], str(hello), as_=user["email"])
    made = node.post(
        "/v1/sessions/storage",
        user["email"],
        {"mounts": [folder["name"]], "app": "listing", "name": "listed"},
    )
    assert made.status_code == 201, made.text
    session = made.json()
    [app] = session["apps"]
    assert (app["name"], app["status"], app["kind"]) == ("listing", "running", "process")
    [pid] = app_servers(node, SERVER)
    assert pid == app["pid"]
    assert proc_status(pid)["Uid"].split()[0] == str(user["uid"])

    apps = node.cli.json("session", "apps", session["id"], as_=user["email"])
    by_name = {a["name"]: a for a in apps["apps"]}
    assert "filebrowser" not in by_name  # its plugin is blocked
    assert by_name["sftp"]["status"] == "available"
    url = by_name["listing"]["url"]
    assert url.startswith(app["endpoint"]) and "?vfd_token=" in url
    token = url.split("?vfd_token=", 1)[1]
    base = f"http://127.0.0.1:{app['port']}"
    with httpx.Client(base_url=base, timeout=30) as http:
        root = http.get("/", params={"vfd_token": token})
        assert root.status_code == 200, root.text
        assert root.json() == {
            "path": "/",
            "entries": [folder["name"]],
            "uid": user["uid"],
            "user": user["username"],
        }
        inside = http.get(f"/{folder['name']}", params={"vfd_token": token})
        assert inside.json()["entries"] == ["hello.txt"]
        up = http.get(f"/{folder['name']}/../..", params={"vfd_token": token})
        assert up.json()["entries"] == [folder["name"]]  # the root is the folder set
        assert http.get("/", params={"vfd_token": "wrong"}).status_code == 403
        assert http.get("/").status_code == 403

    launched = node.settled_hooks("listed", "launched")
    assert [(h["app"], h["status"]) for h in launched] == [("listing", "running")]
    gone = node.delete(f"/v1/sessions/{session['id']}", user["email"])
    assert gone.status_code in (200, 202, 204), gone.text
    wait_gone(pid)
    assert port_free(app["port"])
    ended = node.wait_session(session["id"], user["email"], {"terminated", "cancelled"})
    assert [a["status"] for a in ended["apps"]] == ["stopped"]
    stopped = node.settled_hooks("listed", "stopped")
    assert [(h["app"], h["status"]) for h in stopped] == [("listing", "stopped")]


def test_app_plugins_blocked_builtin_app_is_not_offered(node: AppNode) -> None:
    listed = node.cli.json("plugins")
    assert "filebrowser" in listed["blocked"]
    assert "filebrowser" not in {a["name"] for a in listed["apps"]}
    user = node.user()
    folder = node.folder(user)
    refused = node.post(
        "/v1/sessions/storage", user["email"], {"mounts": [folder["name"]], "app": "filebrowser"}
    )
    assert refused.status_code == 404, refused.text
    error: dict[str, Any] = refused.json()["error"]
    assert error["code"] == "app_not_found"
    assert "known: listing, sftp" in error["message"]
    node.cli.fails("vfolder", "web", folder["name"], code="app_not_found", as_=user["email"])
    assert node.get("/v1/sessions?all=true", user["email"]).json()["sessions"] == []
