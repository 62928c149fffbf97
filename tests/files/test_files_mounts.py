"""``vfd mount`` / ``vfd umount``: bind mounts of views on the node, and their rules."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from filenode import Node


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


def _options(path: Path) -> set[str]:
    """The per-mount options of the mount on ``path`` (the last one: the one on top)."""
    found: set[str] = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(path):
                found = set(fields[5].split(","))
    return found


def test_files_mount_rw_and_ro_views(node: Node, tmp_path: Path) -> None:
    alice = node.user()
    folder = node.folder(alice)
    name, a = folder["name"], alice["email"]
    rw_target, ro_target = tmp_path / "rw", tmp_path / "ro"
    for t in (rw_target, ro_target):
        t.mkdir()
        os.chown(t, alice["uid"], alice["gid"])
    out = node.cli.json("mount", name, str(rw_target), as_=a)
    assert out["view"] == "rw" and out["target"] == str(rw_target)
    try:
        (rw_target / "via-mount.txt").write_text("hello")
        assert (node.backing(folder) / "via-mount.txt").read_text() == "hello"
        assert node.cli.json("mount", name, str(ro_target), "--ro", as_=a)["view"] == "ro"
        try:
            assert (ro_target / "via-mount.txt").read_text() == "hello"
            with pytest.raises(OSError) as info:
                (ro_target / "nope").write_text("x")
            assert info.value.errno == errno.EROFS
            # the bind mount itself is read-only: the kernel says so before asking mountd
            assert "ro" in _options(ro_target) and {"nosuid", "nodev"} <= _options(ro_target)
            assert not os.access(ro_target / "via-mount.txt", os.W_OK)
            assert "rw" in _options(rw_target) and {"nosuid", "nodev"} <= _options(rw_target)
            assert os.access(rw_target / "via-mount.txt", os.W_OK)
        finally:
            node.cli.ok("umount", str(ro_target), as_=a)
    finally:
        node.cli.ok("umount", str(rw_target), as_=a)
    assert not _mounted(rw_target) and not _mounted(ro_target)
    node.cli.fails("umount", str(rw_target), code="path_not_found", as_=a)


def test_files_mount_ro_permission_gets_ro_view(node: Node, tmp_path: Path) -> None:
    alice, bob = node.user(), node.user()
    name = node.folder(alice)["name"]
    inv = node.cli.json(
        "vfolder", "invite", name, bob["email"], "--permission", "ro", as_=alice["email"]
    )
    node.cli.ok("vfolder", "accept", inv["invitations"][0]["id"], as_=bob["email"])
    target = tmp_path / "t"
    target.mkdir()
    os.chown(target, bob["uid"], bob["gid"])
    assert node.cli.json("mount", name, str(target), as_=bob["email"])["view"] == "ro"
    try:
        assert "ro" in _options(target)
        with pytest.raises(OSError) as info:
            (target / "x").write_text("x")
        assert info.value.errno == errno.EROFS
    finally:
        node.cli.ok("umount", str(target), as_=bob["email"])


def test_files_mount_target_rules(node: Node, tmp_path: Path) -> None:
    alice = node.user()
    name, a = node.folder(alice)["name"], alice["email"]
    not_hers = tmp_path / "root-owned"
    not_hers.mkdir()
    node.cli.fails("mount", name, str(not_hers), code="permission_denied", as_=a)
    node.cli.fails("mount", name, str(tmp_path / "missing"), code="path_not_found", as_=a)
    inside = node.config.mount_point / "rw"
    node.cli.fails("mount", name, str(inside), code="invalid_path")
    full = tmp_path / "full"
    full.mkdir()
    (full / "file").write_text("x")
    os.chown(full, alice["uid"], alice["gid"])
    node.cli.fails("mount", name, str(full), code="directory_not_empty", as_=a)
    link = tmp_path / "link"
    link.symlink_to(full)
    node.cli.fails("mount", name, str(link), code="invalid_path", as_=a)
    # only vfd folder mounts can be removed with vfd umount
    node.cli.fails("umount", "/proc", code="permission_denied")
    assert _mounted(Path("/proc"))


def test_files_status_says_whether_the_fast_path_is_on(node: Node) -> None:
    """``vfd status`` shows mountd's fast path: on with the libfuse it mapped, or off and
    why (as in CI's second run, with ``VFD_FUSE_FAST_PATH=off``)."""
    fast = node.cli.json("status")["mountd"]["fast_path"]
    off = os.environ.get("VFD_FUSE_FAST_PATH") == "off"
    assert fast["setting"] == ("off" if off else "auto")
    out = node.cli.ok("status")
    assert "fast path" in out
    if fast["on"]:
        assert not off and fast["libfuse"] and fast["libfuse_version"]
        assert f"on (libfuse {fast['libfuse_version']}" in out
    else:
        assert fast["reason"] and "off: " in out
