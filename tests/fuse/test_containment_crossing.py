"""Nothing crosses a folder's boundary except through the rules: links, renames, view roots.

* Hard links and renames between the mount and anything outside it are EXDEV (the kernel:
  different file systems), so no outside inode can be given a name inside a folder.
* Between folders of different quota scopes, hard links and renames are EXDEV too (one
  inode cannot be charged to two scopes; ``mv`` falls back to copy and delete).
* From ro/ into rw/ nothing moves or links (EROFS, or EXDEV across folders), so read-only
  access to one folder never becomes write access through another.
* The mount root, ``rw/`` and ``ro/`` are fixed: no entry can be made, renamed or removed
  there, and folder roots cannot be renamed, removed or moved into other folders.
* Purging a folder removes its tree without following links out of it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from fsprobe import make_dir, make_file, raises_errno, snapshot

pytestmark = pytest.mark.fuse

REFUSED = (errno.EACCES, errno.EPERM, errno.EROFS)
"""Any of these is a correct refusal to change the fixed top of the mount."""


def test_containment_hard_link_from_or_to_outside_is_exdev(folder, tmp_path: Path) -> None:
    """An outside file cannot be linked into a folder, nor a folder's file out of it."""
    outside = make_file(tmp_path / "outside", data=b"host file")
    make_file(folder.rw / "f", data=b"folder file")
    with raises_errno(errno.EXDEV):
        os.link(outside, folder.rw / "grabbed")
    with raises_errno(errno.EXDEV):
        os.link(folder.rw / "f", tmp_path / "leaked")
    with raises_errno(errno.EXDEV):
        os.rename(outside, folder.rw / "moved")
    assert os.listdir(folder.backing) == ["f"]
    assert os.stat(outside).st_nlink == 1


def test_containment_cross_scope_link_and_rename_are_exdev(mountd, folder) -> None:
    """Files and directories do not move or link between folders of different scopes."""
    other = mountd.new_folder()
    assert other.scope != folder.scope
    make_file(folder.rw / "f", data=b"mine")
    make_dir(folder.rw / "d")
    before_a, before_b = snapshot(folder.backing), snapshot(other.backing)
    with raises_errno(errno.EXDEV):
        os.link(folder.rw / "f", other.rw / "f")
    with raises_errno(errno.EXDEV):
        os.rename(folder.rw / "f", other.rw / "f")
    with raises_errno(errno.EXDEV):
        os.rename(folder.rw / "d", other.rw / "d")
    assert snapshot(folder.backing) == before_a
    assert snapshot(other.backing) == before_b


def test_containment_ro_of_one_folder_never_becomes_rw_of_another(mountd, folder) -> None:
    """Linking or moving from ro/<A> into rw/<B> (same scope) is refused, so a user who may
    only read A cannot gain write access to its files through B."""
    other = mountd.new_folder(scope=folder.scope)
    make_file(folder.rw / "f", data=b"read-only for you")
    make_dir(folder.rw / "d")
    before = snapshot(folder.backing)
    with raises_errno(errno.EROFS, errno.EXDEV):
        os.link(folder.ro / "f", other.rw / "f")
    with raises_errno(errno.EROFS, errno.EXDEV):
        os.rename(folder.ro / "f", other.rw / "f")
    with raises_errno(errno.EROFS, errno.EXDEV):
        os.rename(folder.ro / "d", other.rw / "d")
    assert snapshot(folder.backing) == before
    assert os.listdir(other.backing) == []


def test_containment_mount_top_levels_are_fixed(mountd, folder) -> None:
    """No file, directory, link or node can be made at the mount root, in rw/ or in ro/."""
    mp = mountd.mount_point
    make_file(folder.rw / "f")
    for parent in (mp, mp / "rw", mp / "ro"):
        with raises_errno(*REFUSED):
            os.close(os.open(parent / "new", os.O_CREAT | os.O_WRONLY, 0o644))
        with raises_errno(*REFUSED):
            os.mkdir(parent / ("0" * 32))
        with raises_errno(*REFUSED):
            os.symlink("/etc", parent / "etc")
        with raises_errno(*REFUSED):
            os.mkfifo(parent / "p")
        with raises_errno(*REFUSED, errno.EXDEV):
            os.link(folder.rw / "f", parent / "f")
        with raises_errno(*REFUSED, errno.EXDEV):
            os.rename(folder.rw / "f", parent / "f")
    assert sorted(os.listdir(mp)) == ["ro", "rw"]
    assert os.listdir(folder.backing) == ["f"]


def test_containment_folder_roots_cannot_be_moved_or_removed(mountd, folder) -> None:
    """A folder root cannot be removed, renamed, moved into another folder, replaced by a
    rename, or have its mode or owner changed through rw/ — the folder's owner and the daemon
    decide those, not a process in a session."""
    other = mountd.new_folder(scope=folder.scope)
    mp = mountd.mount_point
    make_dir(folder.rw / "sub")
    before = os.stat(folder.backing)
    for view in ("rw", "ro"):
        root = mp / view / folder.vfid
        with raises_errno(*REFUSED, errno.EBUSY, errno.ENOTEMPTY):
            os.rmdir(root)
        with raises_errno(*REFUSED, errno.EBUSY, errno.EISDIR):
            os.unlink(root)
        with raises_errno(*REFUSED, errno.EBUSY, errno.EXDEV):
            os.rename(root, mp / view / ("f" * 32))
        with raises_errno(*REFUSED, errno.EBUSY, errno.EXDEV, errno.EINVAL):
            os.rename(root, other.rw / "inner")
        with raises_errno(*REFUSED, errno.EBUSY, errno.EXDEV, errno.ENOTEMPTY, errno.EEXIST):
            os.rename(other.rw, root)
    with raises_errno(*REFUSED, errno.EBUSY, errno.EXDEV, errno.EINVAL):
        os.rename(folder.rw / "sub", mp / "rw" / ("e" * 32))
    with raises_errno(*REFUSED):
        os.chmod(mp / "rw", 0o777)
    after = os.stat(folder.backing)
    assert (after.st_ino, after.st_mode, after.st_uid) == (
        before.st_ino,
        before.st_mode,
        before.st_uid,
    )
    assert os.path.isdir(other.backing) and os.listdir(other.backing) == []
    assert stat.S_ISDIR(os.stat(folder.rw / "sub").st_mode)


def test_containment_unknown_vfid_is_enoent(mountd) -> None:
    """Names under rw/ and ro/ that are not attached folders do not exist."""
    mp = mountd.mount_point
    for view in ("rw", "ro"):
        for name in ("0" * 32, "...", "local", "user-" + "0" * 32):
            with raises_errno(errno.ENOENT):
                os.stat(mp / view / name)


def test_containment_purge_does_not_follow_links_out(mountd, tmp_path: Path) -> None:
    """Purging a folder holding links to an outside directory and file removes the links,
    never what they point to."""
    outside = make_dir(tmp_path / "outside", mode=0o755)
    make_file(outside / "keep", data=b"keep me")
    victim = mountd.new_folder()
    os.symlink(str(outside), victim.rw / "dir_link")
    os.symlink(str(outside / "keep"), victim.rw / "file_link")
    make_dir(victim.rw / "sub")
    os.symlink("../../../../../../..", victim.rw / "sub" / "up")
    before = snapshot(outside)
    mountd.call("detach", vfid=victim.vfid)
    result = mountd.call(
        "purge",
        vfid=victim.vfid,
        host=mountd.config.default_host,
        scope=victim.scope,
        path=str(victim.backing),
    )
    assert result["freed_files"] == 4
    assert not victim.backing.exists()
    assert snapshot(outside) == before
    with raises_errno(errno.ENOENT):
        os.stat(victim.rw)
