"""Storage sessions are not placed on resource groups: a live one, made on a node of a group,
neither counts in the group's ``live_sessions`` nor keeps the group from being deleted (a
compute session would; see tests/cli/test_admin_resources.py)."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from appnode import AppNode, app_node_fixture, wait_gone

GROUP = f"stor-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppNode]:
    yield from app_node_fixture(
        tmp_path_factory, '[apps]\nports = "31900-31999"\n', sessions=f'group = "{GROUP}"'
    )


def group_of(node: AppNode, name: str) -> dict[str, Any]:
    listed = node.cli.json("admin", "resource-group", "list")["groups"]
    [found] = [g for g in listed if g["name"] == name]
    return found


def test_app_core_storage_sessions_keep_no_group_in_use(node: AppNode) -> None:
    user = node.user()
    folder = node.folder(user)
    nodes = node.cli.json("admin", "node", "list")["nodes"]
    [me] = [n["id"] for n in nodes if n["group"] == GROUP]  # the node joined its group
    session = node.cli.json("vfolder", "sftp", folder["name"], as_=user["email"])
    assert (session["kind"], session["status"]) == ("storage", "running")
    assert group_of(node, GROUP)["live_sessions"] == 0
    node.cli.ok("admin", "node", "set-group", me, "default")
    # nothing in it now but a live storage session: it may go
    gone = node.cli.json("admin", "resource-group", "delete", GROUP)
    assert (gone["name"], gone["nodes"], gone["live_sessions"]) == (GROUP, [], 0)
    # the session is not touched
    info = node.cli.json("session", "info", session["id"], as_=user["email"])
    assert info["status"] == "running"
    ended = node.cli.json("session", "destroy", session["id"], as_=user["email"])
    assert ended["status"] == "terminated", ended
    wait_gone(session["apps"][0]["pid"])
