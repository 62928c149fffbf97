"""Service apps of a real session: an image declaring busybox ``httpd`` serving ``/home/work``
(``ai.vfd.service-ports``), started with ``vfd session app``, reached through the daemon's
proxy with its token and refused without it; listed, stopped, and stopped with its session,
leaving no listener, connection or namespace descriptor in the daemon.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "sessions"))
sys.path.insert(0, str(Path(__file__).parents[1] / "files"))
from filenode import wait_until
from runtimekit import daemon_pid
from servicekit import build_service_image
from sessionnode import IMAGE, SessionNode, node_fixture

NODE_CONFIG = """
[apps]
listen = "127.0.0.1"
public_host = "127.0.0.1"
ports = "41000-41999"
start_timeout = 8

[apps.service_ports]
"vfd-test/busybox:*" = "web:http:8080"
"""


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest) -> Iterator[SessionNode]:
    yield from node_fixture(request)


@pytest.fixture(scope="module")
def image(node: SessionNode) -> str:
    return build_service_image()


def _cli_json(node: SessionNode, *args: str, as_: str) -> dict[str, Any]:
    done = node.run(*args, "--json", as_=as_)
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def _session(node: SessionNode, user: dict[str, Any], image: str, *mounts: str) -> str:
    args = [a for m in mounts for a in ("-m", m)]
    done = node.run("run", "-d", "--json", *args, image, "sleep", "600", as_=user["email"])
    assert done.returncode == 0, done.stderr
    ref: str = json.loads(done.stdout)["id"]
    node.wait_status(ref, {"running"}, as_=user["email"])
    return ref


def _split(url: str) -> tuple[str, str]:
    """(the URL's origin, its token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parse_qs(parts.query)["vfd_token"][0]


def _daemon_sockets(pid: int) -> list[str]:
    """What the daemon holds that a service app could leave behind: network namespaces and
    sockets other than unix ones (those are its API's, mountd's and docker's pooled
    connections, which come and go on their own)."""
    unix = {
        line.split()[6]
        for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]
        if len(line.split()) > 6
    }
    namespaces = os.stat("/proc/self/ns/net").st_dev  # nsfs: every namespace's device
    held = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if os.stat(f"/proc/{pid}/fd/{fd}").st_dev == namespaces:
                target = f"namespace:{target}"  # docker's file of one reads "/" once removed
        except FileNotFoundError:
            continue
        if (target.startswith("socket:") and target[8:-1] not in unix) or _namespace(target):
            held.append(target)
    return held


def _namespace(target: str) -> bool:
    return target.startswith("namespace:")


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_service_app_reached_with_token_refused_without(
    node: SessionNode, image: str, tmp_path: Path
) -> None:
    alice = node.user()
    folder = node.folder(alice)
    hello = tmp_path / "hello.txt"
    hello.write_text("hello through the proxy\n")
    node.cli.ok("vfolder", "upload", folder["name"], str(hello), as_=alice["email"])
    ref = _session(node, alice, image, folder["name"])

    listed = _cli_json(node, "session", "apps", ref, as_=alice["email"])
    by_name = {a["name"]: a for a in listed["apps"]}
    assert by_name["files"]["status"] == "available"
    assert by_name["files"]["container_port"] == 8080 and by_name["files"]["startable"]
    assert not by_name["raw"]["startable"]  # tcp: listed, not served
    assert "sftp" in by_name

    assert node.session(ref, as_=alice["email"])["last_activity_at"] is None
    started = node.run("session", "app", ref, "files", as_=alice["email"])
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    origin, token = _split(url)
    assert origin.startswith("http://127.0.0.1:41")

    page = httpx.get(f"{origin}/{folder['name']}/hello.txt", params={"vfd_token": token})
    assert page.status_code == 200, page.text
    assert page.text == "hello through the proxy\n"
    assert "vfd_app_" in page.headers["set-cookie"]
    # its use counts as the session's activity (the idle reaper's clock)
    wait_until(
        "the session's activity stamped",
        lambda: node.session(ref, as_=alice["email"])["last_activity_at"],
        30,
    )
    with httpx.Client(base_url=origin) as browser:  # then the cookie alone
        browser.get("/", params={"vfd_token": token})
        again = browser.get(f"/{folder['name']}/hello.txt")
        assert again.status_code == 200 and again.text == "hello through the proxy\n"

    assert httpx.get(f"{origin}/{folder['name']}/hello.txt").status_code == 401
    wrong = httpx.get(f"{origin}/{folder['name']}/hello.txt", params={"vfd_token": "x" + token})
    assert wrong.status_code == 403
    assert "hello" not in wrong.text

    # the app is recorded: in the listing (with its URL) and in the session's info
    listed = _cli_json(node, "session", "apps", ref, as_=alice["email"])
    files = next(a for a in listed["apps"] if a["name"] == "files")
    assert files["status"] == "running" and files["url"] == url
    info = node.session(ref, as_=alice["email"])
    [app] = [a for a in info["apps"] if a["name"] == "files"]
    assert app["kind"] == "service" and app["status"] == "running"
    assert app["endpoint"] == f"{origin}/"
    assert token not in json.dumps(info)  # the token is only in what the user asked for

    # starting it again prints the same URL
    assert node.run("session", "app", ref, "files", as_=alice["email"]).stdout.strip() == url

    # another user cannot see or start it
    bob = node.user()
    other = node.run("session", "app", ref, "files", as_=bob["email"])
    assert other.returncode != 0 and "session_not_found" in other.stderr
    node.cli.ok("session", "destroy", ref, as_=alice["email"])


def test_service_app_refusals(node: SessionNode, image: str) -> None:
    alice = node.user()
    ref = _session(node, alice, image)
    raw = node.run("session", "app", ref, "raw", as_=alice["email"])
    assert raw.returncode == 1 and "[invalid_argument]" in raw.stderr, raw.stderr
    missing = node.run("session", "app", ref, "nope", as_=alice["email"])
    assert missing.returncode == 1 and "[app_not_found]" in missing.stderr
    assert "files, idle, raw, broken" in missing.stderr
    # its command exits: refused at once, with the exit code
    broken = node.run("session", "app", ref, "broken", as_=alice["email"])
    assert broken.returncode == 1 and "[app_failed]" in broken.stderr, broken.stderr
    assert "'sh -c exit 3' exited with code 3" in broken.stderr
    # declared but nothing starts it: refused after [apps] start_timeout, nothing kept
    idle = node.run("session", "app", ref, "idle", as_=alice["email"])
    assert idle.returncode == 1 and "[app_failed]" in idle.stderr, idle.stderr
    assert "does not answer on port 9100" in idle.stderr
    info = node.session(ref, as_=alice["email"])
    [failed] = [a for a in info["apps"] if a["name"] == "idle"]
    assert failed["status"] == "failed"
    node.cli.ok("session", "destroy", ref, as_=alice["email"])


def test_service_app_declared_by_config_run_by_the_session(node: SessionNode, image: str) -> None:
    """An image without the label gets its services from [apps.service_ports]; the session's
    own command runs the server (no start command is declared)."""
    alice = node.user()
    done = node.run(
        "run",
        "-d",
        "--json",
        IMAGE,
        "sh",
        "-c",
        "echo from-config > /home/work/index.html; exec httpd -f -p 8080 -h /home/work",
        as_=alice["email"],
    )
    assert done.returncode == 0, done.stderr
    ref = json.loads(done.stdout)["id"]
    node.wait_status(ref, {"running"}, as_=alice["email"])
    listed = _cli_json(node, "session", "apps", ref, as_=alice["email"])
    [web] = [a for a in listed["apps"] if a["kind"] == "service"]
    assert (web["name"], web["container_port"], web["starts_with"]) == ("web", 8080, None)
    url = node.run("session", "app", ref, "web", as_=alice["email"]).stdout.strip()
    page = httpx.get(url)
    assert page.status_code == 200 and page.text == "from-config\n"
    assert httpx.get(url.split("?")[0]).status_code == 401
    node.cli.ok("session", "destroy", ref, as_=alice["email"])


def test_service_app_stops_with_its_session_and_releases_all(node: SessionNode, image: str) -> None:
    alice = node.user()
    ref = _session(node, alice, image)
    pid = daemon_pid(node)
    _cli_json(node, "session", "apps", ref, as_=alice["email"])  # docker's connections made
    before = _daemon_sockets(pid)
    url = node.run("session", "app", ref, "files", as_=alice["email"]).stdout.strip()
    origin, token = _split(url)
    port = int(origin.rsplit(":", 1)[1])
    clients = [httpx.Client(base_url=origin, params={"vfd_token": token}) for _ in range(3)]
    for client in clients:
        assert client.get("/").status_code in (200, 403, 404)  # httpd answers; no index page
    assert any(_namespace(t) for t in _daemon_sockets(pid))

    node.cli.ok("session", "destroy", ref, as_=alice["email"])
    node.wait_status(ref, {"terminated"}, as_=alice["email"])
    wait_until("the app's port closed", lambda: _refused(port), 30)

    def stopped() -> dict[str, Any] | None:
        apps = node.session(ref, as_=alice["email"])["apps"]
        app: dict[str, Any] = next(a for a in apps if a["name"] == "files")
        return app if app["status"] == "stopped" else None

    app = wait_until("the app recorded stopped", stopped, 30)
    assert app["status_reason"]
    for client in clients:
        with pytest.raises(httpx.TransportError):
            client.get("/")  # its kept-alive connection was closed with it
        client.close()

    def released() -> bool:
        held = _daemon_sockets(pid)
        return not any(_namespace(t) for t in held) and len(held) <= len(before)

    wait_until(f"the daemon's sockets back to {before}", released, 30)


def test_service_app_stop_command(node: SessionNode, image: str) -> None:
    alice = node.user()
    ref = _session(node, alice, image)
    url = node.run("session", "app", ref, "files", as_=alice["email"]).stdout.strip()
    origin, token = _split(url)
    port = int(origin.rsplit(":", 1)[1])
    stopped = node.run("session", "app", ref, "files", "--stop", as_=alice["email"])
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == "App files is stopped"
    assert _refused(port)
    # the server it started in the session is gone too
    probe = node.run(
        "session",
        "exec",
        ref,
        "--",
        "sh",
        "-c",
        "wget -q -T 2 -O- http://127.0.0.1:8080/ >/dev/null 2>&1 && echo up || echo down",
        as_=alice["email"],
    )
    deadline = time.monotonic() + 10
    while "down" not in probe.stdout and time.monotonic() < deadline:
        time.sleep(0.2)
        probe = node.run(
            "session",
            "exec",
            ref,
            "--",
            "sh",
            "-c",
            "wget -q -T 2 -O- http://127.0.0.1:8080/ >/dev/null 2>&1 && echo up || echo down",
            as_=alice["email"],
        )
    assert probe.stdout.strip() == "down"
    # and it starts again, with a new token
    again = node.run("session", "app", ref, "files", as_=alice["email"]).stdout.strip()
    assert _split(again)[1] != token
    node.cli.ok("session", "destroy", ref, as_=alice["email"])


def test_own_apps_started_like_services(node: SessionNode, image: str) -> None:
    """``vfd session app ID filebrowser`` (or ``sftp``) starts one of vfd's own apps over the
    session's folders; the file manager's link carries its token, as a service's does."""
    alice = node.user()
    folder = node.folder(alice)
    ref = _session(node, alice, image, folder["name"])
    link = node.run("session", "app", ref, "filebrowser", as_=alice["email"])
    assert link.returncode == 0, link.stderr
    origin, token = _split(link.stdout.strip())
    with httpx.Client(follow_redirects=True) as browser:  # its cookie kept
        assert browser.get(f"{origin}/", params={"vfd_token": token}).status_code == 200
    assert httpx.get(f"{origin}/").status_code in (401, 403)
    sftp = node.run("session", "app", ref, "sftp", as_=alice["email"])
    assert sftp.returncode == 0 and sftp.stdout.startswith("sftp://"), sftp.stderr
    listed = _cli_json(node, "session", "apps", ref, as_=alice["email"])
    by_name = {a["name"]: a for a in listed["apps"]}
    assert by_name["filebrowser"]["url"] == link.stdout.strip()
    assert by_name["sftp"]["status"] == "running" and by_name["sftp"]["url"] is None
    node.cli.ok("session", "destroy", ref, as_=alice["email"])
    node.wait_status(ref, {"terminated"}, as_=alice["email"])
    listed = _cli_json(node, "session", "apps", ref, as_=alice["email"])
    assert {a["status"] for a in listed["apps"]} == {"unavailable"}
