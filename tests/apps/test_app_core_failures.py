"""An app that cannot start leaves nothing behind: no port free for it (``no_free_port``),
or a server that does not say it serves in time (``app_failed``) — its storage session ends
``error`` with the reason, no server process stays, its port is free again and the daemon
holds no more descriptors than before."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from appnode import AppNode, app_node_fixture, app_servers, port_free

PORT = 31700


@pytest.fixture(scope="module")
def one_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppNode]:
    yield from app_node_fixture(tmp_path_factory, f'[apps]\nports = "{PORT}-{PORT}"\n')


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppNode]:
    yield from app_node_fixture(
        tmp_path_factory, '[apps]\nports = "31710-31719"\nstart_timeout = 0.1\n'
    )


def daemon_fds(node: AppNode) -> int:
    return len(os.listdir(f"/proc/{node.child_pid(b'vfd.daemon')}/fd"))


def storage(node: AppNode, user: dict[str, Any], **extra: Any) -> Any:
    folder = node.folder(user)
    return node.post("/v1/sessions/storage", user["email"], {"mounts": [folder["name"]], **extra})


def only_session(node: AppNode, user: dict[str, Any]) -> dict[str, Any]:
    [row] = node.get("/v1/sessions?all=true", user["email"]).json()["sessions"]
    out: dict[str, Any] = row
    return out


def test_app_core_no_free_port(one_port: AppNode) -> None:
    node = one_port
    holder = node.user()
    held = storage(node, holder)
    assert held.status_code == 201, held.text
    assert held.json()["apps"][0]["port"] == PORT
    user = node.user()
    before = daemon_fds(node)
    refused = storage(node, user, port=PORT)  # asked for, taken: the pool has no other
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "no_free_port"
    ended = only_session(node, user)
    assert ended["status"] == "error"
    assert ended["status_reason"].startswith("could not start: every port of [apps] ports")
    assert ended["apps"] == []
    assert daemon_fds(node) <= before
    node.delete(f"/v1/sessions/{held.json()['id']}", holder["email"])
    assert port_free(PORT)
    again = storage(node, user)
    assert again.status_code == 201, again.text
    node.delete(f"/v1/sessions/{again.json()['id']}", user["email"])


def test_app_core_server_too_slow(impatient: AppNode) -> None:
    node = impatient
    user = node.user()
    warm = storage(node, user)  # the first may fail the same way: warm the node up
    assert warm.status_code == 500
    before = daemon_fds(node)
    failed = storage(node, user)
    assert failed.status_code == 500, failed.text
    error = failed.json()["error"]
    assert error["code"] == "app_failed"
    assert error["message"] == "app server vfd.apps.sftpd did not say it serves within 0.1 s"
    rows = node.get("/v1/sessions?all=true", user["email"]).json()["sessions"]
    assert {r["status"] for r in rows} == {"error"}
    [app] = rows[0]["apps"]
    assert (app["status"], app["pid"], app["endpoint"]) == ("failed", None, None)
    assert app["status_reason"] == error["message"]
    assert app_servers(node, "vfd.apps.sftpd") == []
    assert port_free(app["port"])
    assert daemon_fds(node) <= before
    seen = [h["hook"] for h in node.hooks() if h["session"] == rows[0]["name"]]
    assert seen == ["before_launch"]  # it never served: no launched, no stopped
