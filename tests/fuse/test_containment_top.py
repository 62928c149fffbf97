"""The mount's top levels are root-only: a local user can neither list the folders of the
node nor enter one by its id; bind mounts of a view (sessions, ``vfd mount``) still work."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from fsprobe import run_as

pytestmark = pytest.mark.fuse

USER = (4100, 4100)


def _listdir(path: str) -> list[str]:
    return os.listdir(path)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_containment_top_levels_are_closed_to_users(mountd, folder) -> None:
    os.chown(folder.rw, *USER)  # even the folder's own user goes through a bind mount
    (folder.rw / "mine.txt").write_text("data")
    for path in (mountd.mount_point, mountd.mount_point / "rw", mountd.mount_point / "ro"):
        with pytest.raises(PermissionError):
            run_as(USER, _listdir, str(path))
    with pytest.raises(PermissionError):
        run_as(USER, _read, str(folder.rw / "mine.txt"))
    with pytest.raises(PermissionError):
        run_as(USER, _read, str(folder.ro / "mine.txt"))


def test_containment_bind_mount_of_a_view_is_usable(mountd, folder, tmp_path: Path) -> None:
    (folder.rw / "f.txt").write_text("through a bind mount")
    target = tmp_path / "target"
    target.mkdir()
    subprocess.run(["mount", "--bind", str(folder.ro), str(target)], check=True)
    try:
        # the pytest tmp dirs are root-only: the child enters the target before dropping to USER
        assert run_as(USER, _read, "f.txt", cwd=target) == b"through a bind mount"
        with pytest.raises(OSError) as info:
            (target / "new").write_text("x")
        assert info.value.errno == errno.EROFS
    finally:
        subprocess.run(["umount", str(target)], check=True)
