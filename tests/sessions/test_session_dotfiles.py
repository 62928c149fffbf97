"""Dotfiles in real containers: written into ``/home/work`` with their modes and the session's
uid, the narrower scope winning, and left out where a mount takes their place
(docs/dotfiles.md)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sessionapi import run_sh
from sessionnode import SessionNode


def put(http: httpx.Client, path: str, data: bytes, mode: str, **scope: str) -> None:
    body = {"path": path, "data": base64.b64encode(data).decode(), "mode": mode, **scope}
    answer = http.post("/v1/dotfiles", json=body)
    assert answer.status_code == 201, answer.text


def run(
    node: SessionNode, email: str, script: str, mounts: list[str] | None = None
) -> tuple[dict[str, Any], str]:
    """Run ``sh -c script`` to its end as ``email`` (exit 0 asserted); the final session and
    its output (stdout, then stderr)."""
    ended, out, err = run_sh(node, email, mounts or [], script)
    assert ended["exit_code"] == 0, (ended, out, err)
    return ended, out + err


@pytest.fixture
def cluster_dotfiles(node: SessionNode) -> Iterator[list[str]]:
    """Cluster dotfile paths a test adds; deleted afterwards (every session of the node
    gets them)."""
    paths: list[str] = []
    yield paths
    with node.http() as http:
        for path in paths:
            http.delete(f"/v1/dotfiles/{path}", params={"scope": "cluster"})


def test_session_dotfiles_written_with_modes_and_owner(
    node: SessionNode, cluster_dotfiles: list[str]
) -> None:
    user = node.user()
    email, uid, gid = user["email"], user["uid"], user["gid"]
    project = f"proj-{secrets.token_hex(3)}"
    shared = f".cluster-{secrets.token_hex(3)}"
    with node.http() as admin:
        assert admin.post("/v1/admin/projects", json={"name": project}).status_code == 201
        added = admin.post(f"/v1/admin/projects/{project}/members", json={"email": email})
        assert added.status_code == 200, added.text
        cluster_dotfiles.append(".bashrc")
        put(admin, ".bashrc", b"cluster\n", "600", scope="cluster")
        cluster_dotfiles.append(shared)
        put(admin, shared, b"for everyone\n", "444", scope="cluster")
        put(admin, ".config/tool/conf", b"project\n", "640", scope="project", project=project)
    with node.http(email) as mine:
        put(mine, ".bashrc", b"mine\n", "644")
        put(mine, "bin/hello", b"#!/bin/sh\necho hello from a dotfile\n", "0755")
    files = [".bashrc", shared, "bin", "bin/hello", ".config", ".config/tool", ".config/tool/conf"]
    listing = " ".join(f"/home/work/{f}" for f in files)
    script = (
        f"stat -c '%n %a %u:%g' {listing} && cat /home/work/.bashrc /home/work/{shared} "
        "/home/work/.config/tool/conf && /home/work/bin/hello"
    )
    _, out = run(node, email, script)
    lines = out.splitlines()
    owner = f"{uid}:{gid}"
    assert lines[: len(files)] == [
        f"/home/work/.bashrc 644 {owner}",  # the user's own replaces the cluster's
        f"/home/work/{shared} 444 {owner}",
        f"/home/work/bin 755 {owner}",
        f"/home/work/bin/hello 755 {owner}",
        f"/home/work/.config 755 {owner}",
        f"/home/work/.config/tool 755 {owner}",
        f"/home/work/.config/tool/conf 640 {owner}",
    ]
    assert lines[len(files) :] == ["mine", "for everyone", "project", "hello from a dotfile"]

    other = node.user()  # not in the project, no dotfiles of their own
    script = "cat /home/work/.bashrc && test ! -e /home/work/.config && echo none"
    _, out = run(node, other["email"], script)
    assert out.splitlines() == ["cluster", "none"]


def test_session_dotfiles_give_way_to_mounts(node: SessionNode) -> None:
    user = node.user()
    email = user["email"]
    node.folder(user, "data")
    node.folder(user, "f")
    with node.http(email) as mine:
        put(mine, "data/note", b"hidden by the mount\n", "644")  # under a mount target
        put(mine, "work2", b"a file where a folder goes\n", "644")  # at a mount target
        put(mine, "kept", b"kept\n", "600")
    script = (
        "test -d /home/work/work2 && test ! -e /home/work/data/note && "
        "stat -c '%a' /home/work/kept && cat /home/work/kept"
    )
    ended, out = run(node, email, script, mounts=["data", "f:work2"])
    assert {m["target"] for m in ended["mounts"]} >= {"/home/work/data", "/home/work/work2"}
    assert out.splitlines() == ["600", "kept"]


def test_session_dotfiles_edits_reach_only_new_sessions(node: SessionNode) -> None:
    user = node.user()
    email = user["email"]
    with node.http(email) as mine:
        put(mine, ".profile", b"v1\n", "644")
        _, out = run(node, email, "cat /home/work/.profile")
        assert out == "v1\n"
        body = {"data": base64.b64encode(b"v2\n").decode(), "mode": "600"}
        assert mine.put("/v1/dotfiles/.profile", json=body).status_code == 200
        _, out = run(node, email, "stat -c %a /home/work/.profile && cat /home/work/.profile")
        assert out.splitlines() == ["600", "v2"]
        assert mine.delete("/v1/dotfiles/.profile").status_code == 204
        _, out = run(node, email, "test ! -e /home/work/.profile && echo gone")
        assert out == "gone\n"


def test_session_dotfiles_nested_mount_target_parents_are_the_users(node: SessionNode) -> None:
    """``-m data:in/data``: ``/home/work/in`` is the session user's (docker made it root's, so
    the user could not write next to the mount)."""
    user = node.user()
    email, uid = user["email"], user["uid"]
    node.folder(user, "data")
    script = "stat -c '%u %a' /home/work/in && touch /home/work/in/new && echo written"
    _, out = run(node, email, script, mounts=["data:in/data"])
    assert out.splitlines() == [f"{uid} 755", "written"]
