"""The ``vfd_app_*`` hooks around a service app of a compute session, seen by a recording
plugin installed on the node: the veto before anything is made, launched with its port and
endpoint, stopped when asked and when its session ends."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "sessions"))
from appnode import AppNode, app_node_fixture
from servicekit import build_service_image
from sessionnode import remove_containers, require_docker_and_fuse

APPS_CONFIG = """
[apps]
listen = "127.0.0.1"
public_host = "127.0.0.1"
ports = "42000-42999"
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppNode]:
    require_docker_and_fuse()
    build_service_image()
    for made in app_node_fixture(tmp_path_factory, APPS_CONFIG):
        try:
            yield made
        finally:
            remove_containers(made.config.sessions.node)


@pytest.fixture
def user(node: AppNode) -> dict[str, Any]:
    return node.user()


def _session(node: AppNode, user: dict[str, Any], name: str) -> str:
    made = node.post(
        "/v1/sessions",
        user["email"],
        {"image": build_service_image(), "command": ["sleep", "600"], "name": name},
    )
    assert made.status_code == 201, made.text
    ref: str = made.json()["id"]
    node.wait_session(ref, user["email"], {"running"})
    return ref


def _hooks(node: AppNode, session: str) -> list[tuple[str, str, str | None]]:
    return [(h["hook"], h["status"], h["reason"]) for h in node.hooks() if h["session"] == session]


def test_service_app_vetoed_before_anything_is_made(node: AppNode, user: dict[str, Any]) -> None:
    ref = _session(node, user, "no-web")
    refused = node.post(f"/v1/sessions/{ref}/apps/files", user["email"], {})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "app_rejected"
    assert error["details"]["plugin"] == "apprec"
    assert _hooks(node, "no-web") == [("before_launch", "starting", None)]
    assert node.session(ref, user["email"])["apps"] == []  # nothing recorded
    node.delete(f"/v1/sessions/{ref}", user["email"])


def test_service_app_hooks_through_its_life(node: AppNode, user: dict[str, Any]) -> None:
    ref = _session(node, user, "web-life")
    started = node.post(f"/v1/sessions/{ref}/apps/files", user["email"], {})
    assert started.status_code == 201, started.text
    app = started.json()
    assert app["kind"] == "service" and app["status"] == "running" and app["pid"] is None
    launched = [h for h in node.hooks() if h["session"] == "web-life"][-1]
    assert (launched["hook"], launched["port"], launched["endpoint"]) == (
        "launched",
        app["port"],
        app["endpoint"],
    )
    assert httpx.get(app["url"]).status_code in (200, 404)  # httpd answers through the proxy

    stopped = node.delete(f"/v1/sessions/{ref}/apps/files", user["email"])
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] == "stopped"
    assert stopped.json()["status_reason"] == "stopped by root@local"  # the tests act as root
    missing = node.delete(f"/v1/sessions/{ref}/apps/files", user["email"])
    assert missing.json()["error"]["code"] == "app_not_found"

    again = node.post(f"/v1/sessions/{ref}/apps/files", user["email"], {}).json()
    assert again["id"] != app["id"]
    node.delete(f"/v1/sessions/{ref}", user["email"])
    deadline = time.monotonic() + 30
    while len(_hooks(node, "web-life")) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _hooks(node, "web-life") == [
        ("before_launch", "starting", None),
        ("launched", "running", None),
        ("stopped", "stopped", "stopped by root@local"),
        ("before_launch", "starting", None),
        ("launched", "running", None),
        ("stopped", "stopped", "its session ended"),
    ]
    listed = node.get(f"/v1/sessions/{ref}/apps", user["email"]).json()
    assert json.dumps(listed).count(app["url"].split("=")[-1]) == 0  # ended: no token left
