"""The web file manager attached to a running compute session (``vfd session app ID
filebrowser``): it serves the session's mounts, what it uploads is seen inside the container,
a read-only mount refuses writes, and it stops with the session."""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "sessions"))
from appnode import app_servers, proc_status, wait_gone
from fbserver import wait_for
from sessionnode import IMAGE, SessionNode, node_fixture

NODE_CONFIG = """
[apps]
listen = "127.0.0.1"
public_host = "127.0.0.1"
ports = "31700-31799"
"""
MODULE = "vfd.apps.filebrowser"


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest) -> Iterator[SessionNode]:
    yield from node_fixture(request)


def test_filebrowser_in_a_compute_session(node: SessionNode) -> None:
    user = node.user()
    email = user["email"]
    rw = node.folder(user)["name"]
    ro = node.folder(user)["name"]
    started = node.run(
        "run", "-d", "-m", rw, "-m", f"{ro}:in/data:ro", IMAGE, "sleep", "300", as_=email
    )
    assert started.returncode == 0, started.stderr
    ref = started.stdout.split()[0]
    node.wait_status(ref, {"running"}, as_=email)
    app = node.run("session", "app", ref, "filebrowser", as_=email)
    assert app.returncode == 0, app.stderr
    [running] = [a for a in node.session(ref, as_=email)["apps"] if a["name"] == "filebrowser"]
    assert proc_status(running["pid"])["Uid"].split()[0] == str(user["uid"])
    with node.http(email) as api:
        link = api.get(f"/v1/sessions/{ref}/filebrowser")
    assert link.status_code == 200, link.text
    query = urllib.parse.urlsplit(link.json()["url"]).query
    base = f"http://127.0.0.1:{running['port']}"
    with httpx.Client(base_url=base, timeout=30, headers={"X-Vfd-Files": "1"}) as client:
        assert client.get(f"/?{query}").status_code == 303
        top = client.get("/api/list").json()
        assert [(e["name"], e["readonly"]) for e in top["entries"]] == sorted(
            [(rw, False), ("data", True)]
        )
        key = client.post("/api/uploads", json={"dest": rw, "names": ["hello.txt"]}).json()["key"]
        sent = client.put(
            f"/api/uploads/{key}/file", params={"path": "hello.txt"}, content=b"from the web\n"
        )
        assert sent.status_code == 200, sent.text
        assert client.post(f"/api/uploads/{key}/commit").status_code == 200
        refused = client.post("/api/mkdir", json={"path": "data/x"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "read_only"
    seen = node.run("session", "exec", ref, "--", "cat", f"/home/work/{rw}/hello.txt", as_=email)
    assert (seen.returncode, seen.stdout) == (0, "from the web\n"), seen.stderr
    gone = node.run("session", "destroy", ref, as_=email)
    assert gone.returncode == 0, gone.stderr
    node.wait_status(ref, {"terminated"}, as_=email)

    def stopped() -> tuple[str, str] | None:
        [app] = [a for a in node.session(ref, as_=email)["apps"] if a["name"] == "filebrowser"]
        return (app["status"], app["status_reason"]) if app["status"] != "running" else None

    assert wait_for(stopped, what="the app recorded ended") == ("stopped", "its session ended")
    wait_gone(running["pid"])
    assert app_servers(node, MODULE) == []
