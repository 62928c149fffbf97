"""An SFTP session ends itself after ``[apps] sftp_idle_timeout`` without an SFTP request:
requests keep it alive, then it ends ``terminated`` with the reason, its server reaped and
its port free; the app hooks see it stop."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from appnode import AppNode, app_node_fixture, port_free, wait_gone
from sftpclient import require_sftp, sftp

IDLE = 3.0
CONFIG = (
    '[apps]\nports = "31400-31499"\nlisten = "127.0.0.1"\npublic_host = "127.0.0.1"\n'
    f"sftp_idle_timeout = {IDLE}\n"
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppNode]:
    require_sftp()
    yield from app_node_fixture(tmp_path_factory, CONFIG)


def test_sftp_idle_session_ends_itself(node: AppNode, tmp_path: Path) -> None:
    user = node.user()
    data = node.folder(user)
    key = tmp_path / "key"
    out = json.loads(
        node.cli.ok("vfolder", "sftp", data["name"], "-o", str(key), "--json", as_=user["email"])
    )
    session: dict[str, Any] = out["session"]
    [app] = session["apps"]
    began = time.monotonic()
    # requests for longer than the idle time keep it running
    while time.monotonic() - began < IDLE * 1.5:
        done = sftp(key, app["port"], user["username"], "ls\n")
        assert done.returncode == 0, done.stderr
        time.sleep(IDLE / 3)
    assert node.session(session["id"], user["email"])["status"] == "running"
    ended = node.wait_session(session["id"], user["email"], {"terminated"}, timeout=IDLE * 5)
    assert ended["status_reason"] == f"its app sftp ended: idle for {IDLE:g} s (no SFTP request)"
    [stopped] = ended["apps"]
    assert (stopped["status"], stopped["status_reason"]) == (
        "stopped",
        f"idle for {IDLE:g} s (no SFTP request)",
    )
    wait_gone(app["pid"])
    assert port_free(app["port"])
    seen = [h for h in node.hooks() if h["session"] == session["name"] and h["hook"] == "stopped"]
    assert [(h["status"], h["reason"]) for h in seen] == [("stopped", stopped["status_reason"])]
