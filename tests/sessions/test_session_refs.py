"""Naming a session (docs/sessions.md, "Naming a session"): the name of an ended session is
free again, and asking for it says which ended session had it, by its id."""

from __future__ import annotations

import json

from sessionnode import IMAGE, SessionNode


def test_session_refs_an_ended_sessions_name_points_to_its_id(
    node: SessionNode, image: str
) -> None:
    e = node.user()["email"]
    done = node.run("run", "--rm", "--name", "gone", IMAGE, "true", as_=e)
    assert done.returncode == 0, done.stderr
    listed = json.loads(node.run("session", "list", "--all", "--json", as_=e).stdout)["sessions"]
    [short] = [s["short_id"] for s in listed if s["name"] == "gone"]
    info = node.run("session", "info", "gone", as_=e)
    assert info.returncode == 1
    assert info.stderr.rstrip().endswith("[session_not_found]"), info.stderr
    assert "no live session 'gone'" in info.stderr and short in info.stderr, info.stderr
    assert node.run("session", "info", short, as_=e).returncode == 0
    missing = node.run("session", "info", "never-was", as_=e)
    assert missing.stderr.startswith("error: you have no session 'never-was'"), missing.stderr
