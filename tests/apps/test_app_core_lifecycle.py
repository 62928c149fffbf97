"""How apps end besides destroy: a server that dies is recorded ``failed`` and ends its
storage session; a daemon that stops takes its app servers with it, and its next start
records them and their sessions ended."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import appnode
from appnode import (
    AppNode,
    app_node_fixture,
    app_servers,
    port_free,
    start_app_node,
    stop_app_node,
    wait_gone,
)
from fakedist import make_dist

CONFIG = '[apps]\nports = "31500-31599"\n'


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppNode]:
    yield from app_node_fixture(tmp_path_factory, CONFIG)


def storage(node: AppNode, user: dict[str, Any], name: str) -> dict[str, Any]:
    folder = node.folder(user)
    made = node.post(
        "/v1/sessions/storage", user["email"], {"mounts": [folder["name"]], "name": name}
    )
    assert made.status_code == 201, made.text
    out: dict[str, Any] = made.json()
    return out


def test_app_core_dead_server_fails_and_ends_its_session(node: AppNode) -> None:
    user = node.user()
    made = storage(node, user, "dies")
    [app] = made["apps"]
    os.kill(app["pid"], signal.SIGKILL)
    ended = node.wait_session(made["id"], user["email"], {"terminated"})
    [failed] = ended["apps"]
    assert (failed["status"], failed["status_reason"]) == (
        "failed",
        "its server was killed by signal 9",
    )
    assert ended["status_reason"] == "its app sftp ended: its server was killed by signal 9"
    wait_gone(app["pid"])
    assert port_free(app["port"])
    seen = [h for h in node.hooks() if h["session"] == "dies" and h["hook"] == "stopped"]
    assert [(h["status"], h["reason"]) for h in seen] == [
        ("failed", "its server was killed by signal 9")
    ]


def test_app_core_daemon_stop_ends_apps(tmp_path_factory: pytest.TempPathFactory) -> None:
    site = tmp_path_factory.mktemp("restart-site")
    make_dist(site, "vfd-test-apprec", {"apprec": "vfdt_apprec"}, {"vfdt_apprec": appnode.RECORDER})
    out = tmp_path_factory.mktemp("restart-rec") / "hooks.jsonl"
    first = start_app_node(site, out, CONFIG)
    state_dir = first.state_dir
    try:
        user = first.user()
        made = storage(first, user, "outlived")
        [app] = made["apps"]
        first.stop()  # vfd up stops the daemon (SIGINT), which stops its apps
        wait_gone(app["pid"])
        assert port_free(app["port"])
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PYTHONPATH", str(site))
            second = AppNode.launch(state_dir)
        second.hooks_file = out
    except BaseException:
        stop_app_node(first)
        raise
    try:
        second.wait_ready()
        ended = second.wait_session(made["id"], user["email"], {"terminated"})
        assert ended["status_reason"] == "its apps ended: the daemon stopped while it ran"
        [stopped] = ended["apps"]
        assert (stopped["status"], stopped["status_reason"]) == (
            "stopped",
            "the daemon stopped while it ran",
        )
        assert app_servers(second, "vfd.apps.sftpd") == []
        again = storage(second, user, "after-restart")  # and new ones start
        second.delete(f"/v1/sessions/{again['id']}", user["email"])
    finally:
        stop_app_node(second)
