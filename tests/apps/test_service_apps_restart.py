"""A service app when its daemon stops: its listener closes with the daemon, and the next
daemon records it ended (a proxy lives in the daemon that started it); the session's
container runs on."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "sessions"))
sys.path.insert(0, str(Path(__file__).parents[1] / "files"))
from servicekit import build_service_image
from sessionnode import SessionNode, require_docker_and_fuse, start_node, stop_node

NODE_CONFIG = """
[apps]
listen = "127.0.0.1"
public_host = "127.0.0.1"
ports = "43000-43999"
"""


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def _app(node: SessionNode, ref: str, email: str) -> dict[str, Any]:
    apps = node.session(ref, as_=email)["apps"]
    found: dict[str, Any] = next(a for a in apps if a["name"] == "files")
    return found


def test_service_app_ends_with_its_daemon() -> None:
    require_docker_and_fuse()
    image = build_service_image()
    node = start_node(NODE_CONFIG)
    try:
        alice = node.user()
        done = node.run("run", "-d", "--json", image, "sleep", "600", as_=alice["email"])
        assert done.returncode == 0, done.stderr
        ref = json.loads(done.stdout)["id"]
        node.wait_status(ref, {"running"}, as_=alice["email"])
        url = node.run("session", "app", ref, "files", as_=alice["email"]).stdout.strip()
        assert httpx.get(url).status_code in (200, 404)
        port = int(url.split("/")[2].rsplit(":", 1)[1])

        node.stop()  # SIGINT to vfd up: the daemon, then mountd
        assert _refused(port)
        log = node.log.read_text()
        assert "Traceback" not in log, log[-4000:]
        assert "was destroyed but it is pending" not in log, log[-4000:]

        restarted = SessionNode.launch(node.state_dir)
        restarted.node_name = node.node_name
        node = restarted
        node.wait_ready()
        app = _app(node, ref, alice["email"])
        assert app["status"] == "stopped", app
        assert "daemon" in (app["status_reason"] or "")
        assert node.session(ref, as_=alice["email"])["status"] == "running"
        # it starts again under the new daemon
        again = node.run("session", "app", ref, "files", as_=alice["email"])
        assert again.returncode == 0, again.stderr
        assert httpx.get(again.stdout.strip()).status_code in (200, 404)
        node.cli.ok("session", "destroy", ref, as_=alice["email"])
    finally:
        stop_node(node)
