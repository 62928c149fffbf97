"""Folders shared rw in sessions: two users of different uids, each in their own container,
change and remove what the other wrote (docs/storage.md "Folders shared rw").

The containers run ``vfd-test/busybox`` as their user (uid = gid, as ``node.user()`` makes
them) with the default umask 022, so a file one user writes is ``0644`` on its own; the
folder's group and mountd's "group = owner" rule are what let the other change it.
"""

from __future__ import annotations

from typing import Any

import pytest
from sessionapi import post, run_sh
from sessionnode import IMAGE, SessionNode


def run(node: SessionNode, who: dict[str, Any], mounts: list[str], script: str) -> str:
    """Run ``sh -c script`` in a session of ``who`` to its end; its stdout (exit 0 asserted)."""
    ended, out, err = run_sh(node, who["email"], mounts, script)
    assert ended["exit_code"] == 0, (script, out, err)
    return out


def groups_in(out: str) -> set[int]:
    """The gids ``id -G`` printed on the first line of ``out``."""
    return {int(g) for g in out.splitlines()[0].split()}


def test_session_shared_rw_invited_users_change_each_others_files(node: SessionNode) -> None:
    a, b = node.user(), node.user()
    assert a["uid"] != b["uid"]
    folder = node.folder(a, "shared")
    node.share(a, "shared", b)
    w = "/home/work/shared"
    out = run(node, a, ["shared"], f"id -G; mkdir {w}/d && echo a > {w}/d/f && stat -c %a {w}/d/f")
    gid = groups_in(out) - {a["gid"]}
    assert gid == {folder_gid(node, folder)}
    assert out.splitlines()[1] == "664"
    out = run(
        node,
        b,
        ["shared"],
        f"id -G; echo b >> {w}/d/f && echo b > {w}/d/g && mkdir {w}/d/bd && "
        f"stat -c '%a %g' {w}/d/g {w}/d/bd",
    )
    assert groups_in(out) - {b["gid"]} == gid
    [g] = gid
    assert out.splitlines()[1:] == [f"664 {g}", f"2775 {g}"]
    run(node, a, ["shared"], f"echo a >> {w}/d/g && rm {w}/d/g && rmdir {w}/d/bd")
    assert (node.backing(folder) / "d" / "f").read_text() == "a\nb\n"
    assert not (node.backing(folder) / "d" / "g").exists()


def test_session_shared_rw_project_members_change_each_others_files(node: SessionNode) -> None:
    a, b = node.user(), node.user()
    made = node.project(a, b)
    project = made["name"]
    name = f"{project}-data"
    folder = node.cli.json("vfolder", "create", name, "--project", project)
    w = f"/home/work/{name}"
    out = run(node, a, [name], f"id -G; echo a > {w}/f; mkdir {w}/d; stat -c '%a %g' {w}/f")
    assert made["gid"] in groups_in(out)
    assert out.splitlines()[1] == f"664 {made['gid']}"
    run(node, b, [name], f"echo b >> {w}/f && touch {w}/d/x && rm {w}/f")
    assert not (node.backing(folder) / "f").exists()
    assert (node.backing(folder) / "d" / "x").exists()


def test_session_shared_rw_readers_and_former_members_write_nothing(node: SessionNode) -> None:
    a, b, reader = node.user(), node.user(), node.user()
    folder = node.folder(a, "shared")
    node.share(a, "shared", b)
    node.share(a, "shared", reader, "ro")
    w = "/home/work/shared"
    run(node, a, ["shared"], f"umask 077; echo secret > {w}/f")
    # a reader holds the folder's group (so it reads 0600-made files) but its mount is ro/
    out = run(
        node,
        reader,
        ["shared:ro"],
        f"cat {w}/f; (echo x >> {w}/f) 2>&1; touch {w}/n 2>&1; exit 0",
    )
    lines = out.splitlines()
    assert lines[0] == "secret"
    assert all("Read-only file system" in line for line in lines[1:]) and len(lines) == 3
    # b leaves: their next session mounts nothing of the folder and holds no group of it
    gid = folder_gid(node, folder)
    assert gid in groups_in(run(node, b, ["shared"], "id -G"))
    node.cli.ok("vfolder", "leave", "shared", as_=b["email"])
    refused = post(node, b["email"], image=IMAGE, command=["true"], mounts=["shared"])
    assert refused.status_code == 404, refused.text
    assert gid not in groups_in(run(node, b, [], "id -G"))
    assert (node.backing(folder) / "f").read_text() == "secret\n"


def folder_gid(node: SessionNode, folder: dict[str, Any]) -> int:
    st = node.backing(folder).stat()
    if not st.st_mode & 0o2000:
        pytest.fail(f"folder {folder['name']} is not group-shared: {oct(st.st_mode)}")
    return st.st_gid
