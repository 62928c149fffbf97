"""A session that cannot be prepared ends ``error`` with the reason in plain words, and leaves
no container behind (a node whose ``scratch_dir`` cannot hold session homes)."""

from __future__ import annotations

import subprocess

from sessionapi import run_to_end
from sessionnode import SessionNode

NODE_CONFIG = '[sessions]\nscratch_dir = "/dev/null/sessions"\n'


def test_runtime_failure_ends_error_with_the_reason(node: SessionNode) -> None:
    user = node.user()
    ended = run_to_end(node, user["email"], ["true"])
    assert ended["status"] == "error", ended
    assert ended["status_reason"].startswith("could not start: cannot make its home directory")
    assert "Not a directory" in ended["status_reason"]
    assert "[sessions] scratch_dir" in ended["status_reason"]
    assert ended["container_id"] is None
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=vfd.session={ended['id']}"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    assert left == []
    statuses = [e["status"] for e in node.session(ended["id"], user["email"])["events"]]
    assert statuses == ["pending", "scheduled", "preparing", "error"]
