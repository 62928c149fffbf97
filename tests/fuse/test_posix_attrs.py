"""POSIX conformance of chmod(2), chown(2) and user xattrs on the rw/ view.

The pjdfstest ``chmod`` and ``chown`` categories: who may change modes and owners, which
bits the kernel clears (setgid for non-members, setuid/setgid on chown), ctime updates,
symlink handling; and the design's "user xattrs pass through".
"""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import pytest
from fsprobe import OTHER, USER, make_dir, make_file, raises_errno, run_as, settle, wait_for

pytestmark = pytest.mark.fuse

ROOT = (0, 0)


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_chmod_sets_mode_and_ctime(folder, kind: str) -> None:
    """chmod sets all twelve mode bits exactly and updates ctime, not mtime."""
    path = folder.rw / "x"
    if kind == "file":
        make_file(path)
    else:
        make_dir(path)
    for mode in (0o000, 0o777, 0o4711, 0o2750, 0o1777, 0o7777, 0o640):
        before = settle(path)
        os.chmod(path, mode)
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == mode
        assert st.st_ctime_ns > before.st_ctime_ns
        assert st.st_mtime_ns == before.st_mtime_ns
        assert stat.S_IMODE(os.stat(folder.backing / "x").st_mode) == mode


def test_chmod_follows_symlink(folder) -> None:
    """chmod on a symlink changes its target; the link keeps mode 0777."""
    make_file(folder.rw / "t", mode=0o644)
    (folder.rw / "l").symlink_to("t")
    os.chmod(folder.rw / "l", 0o600)
    assert stat.S_IMODE(os.stat(folder.rw / "t").st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(folder.rw / "l").st_mode) == 0o777


def _chmod(name: str, mode: int) -> int:
    os.chmod(name, mode)
    return stat.S_IMODE(os.stat(name).st_mode)


def test_chmod_only_by_owner_or_root(folder) -> None:
    """The owner may chmod its file; anyone else gets EPERM, even with write permission."""
    pub = make_dir(folder.rw / "pub", mode=0o777)
    make_file(pub / "f", USER, 0o666)
    assert run_as(USER, _chmod, "f", 0o600, cwd=pub) == 0o600
    with raises_errno(errno.EPERM):
        run_as(OTHER, _chmod, "f", 0o666, cwd=pub)
    assert stat.S_IMODE(os.stat(folder.backing / "pub" / "f").st_mode) == 0o600
    assert run_as(ROOT, _chmod, "f", 0o640, cwd=pub) == 0o640


def test_chmod_setgid_dropped_for_non_member_group(folder) -> None:
    """An unprivileged owner setting S_ISGID on a file of a group it is not in gets the
    other bits but not S_ISGID (POSIX chmod); in its own group the bit sticks."""
    home = make_dir(folder.rw / "home", USER)
    make_file(home / "foreign", (USER[0], 3000), 0o644)
    make_file(home / "own", USER, 0o644)
    assert run_as(USER, _chmod, "foreign", 0o2755, cwd=home) == 0o755
    assert run_as(USER, _chmod, "own", 0o2755, cwd=home) == 0o2755
    assert stat.S_IMODE(os.stat(folder.backing / "home" / "foreign").st_mode) == 0o755


def _chown(name: str, uid: int, gid: int) -> tuple[int, int, int]:
    os.chown(name, uid, gid)
    st = os.lstat(name)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_chown_by_root_changes_owner_and_ctime(folder) -> None:
    """root gives a file to anyone; -1 keeps a field; ctime changes; the backing inode too."""
    f = make_file(folder.rw / "f")
    before = settle(f)
    os.chown(f, 1234, 5678)
    st = os.stat(f)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_ctime_ns > before.st_ctime_ns
    os.chown(f, -1, 42)
    assert (os.stat(f).st_uid, os.stat(f).st_gid) == (1234, 42)
    os.chown(f, 7, -1)
    back = os.stat(folder.backing / "f")
    assert (back.st_uid, back.st_gid) == (7, 42)


def _after_a_tick(path: Path) -> os.stat_result:
    """``path``'s lstat, once the clock has passed its ctime (a change then shows)."""
    st = os.lstat(path)
    wait_for(lambda: time.time_ns() > st.st_ctime_ns + 30_000_000, what="the clock to tick")
    return st


@pytest.mark.parametrize("kind", ["file", "dir", "symlink"])
def test_chown_to_minus_one_updates_ctime_as_the_backing_fs(
    folder, tmp_path: Path, kind: str
) -> None:
    """chown(-1, -1) changes nothing but ctime, through rw/ exactly as on the backing file
    system (pjdfstest chown/00); through ro/ it is EROFS and ctime stays."""
    native = tmp_path / "native"
    assert os.stat(tmp_path).st_dev == os.stat(folder.backing).st_dev  # the same file system
    follow = kind != "symlink"
    for path in (folder.rw / "x", native):
        if kind == "file":
            make_file(path)
        elif kind == "dir":
            make_dir(path)
        else:
            path.symlink_to("nowhere")
        before = _after_a_tick(path)
        os.chown(path, -1, -1, follow_symlinks=follow)
        after = os.lstat(path)
        assert after.st_ctime_ns > before.st_ctime_ns, path
        assert (after.st_uid, after.st_gid, after.st_mode, after.st_mtime_ns) == (
            before.st_uid,
            before.st_gid,
            before.st_mode,
            before.st_mtime_ns,
        )
    assert os.lstat(folder.backing / "x").st_ctime_ns == os.lstat(folder.rw / "x").st_ctime_ns
    before = _after_a_tick(folder.backing / "x")
    with raises_errno(errno.EROFS):
        os.chown(folder.ro / "x", -1, -1, follow_symlinks=follow)
    assert os.lstat(folder.backing / "x").st_ctime_ns == before.st_ctime_ns


def test_lchown_changes_the_link_not_the_target(folder) -> None:
    """chown with follow_symlinks=False changes the symlink's owner only."""
    make_file(folder.rw / "t")
    (folder.rw / "l").symlink_to("t")
    os.chown(folder.rw / "l", 1234, 1234, follow_symlinks=False)
    assert os.lstat(folder.rw / "l").st_uid == 1234
    assert os.stat(folder.rw / "t").st_uid == 0
    assert os.lstat(folder.backing / "l").st_uid == 1234
    os.chown(folder.rw / "l", 99, 99)
    assert os.stat(folder.rw / "t").st_uid == 99


def test_chown_by_user_only_to_own_groups(folder) -> None:
    """An unprivileged owner may change the group to one it belongs to and nothing else:
    giving the file away or choosing a foreign group is EPERM; a non-owner gets EPERM."""
    home = make_dir(folder.rw / "home", USER, 0o777)
    make_file(home / "f", USER)
    groups = (USER[1], 4000)
    assert run_as(USER, _chown, "f", -1, 4000, cwd=home, groups=groups)[:2] == (USER[0], 4000)
    assert run_as(USER, _chown, "f", USER[0], USER[1], cwd=home)[:2] == USER
    with raises_errno(errno.EPERM):
        run_as(USER, _chown, "f", OTHER[0], -1, cwd=home)
    with raises_errno(errno.EPERM):
        run_as(USER, _chown, "f", -1, 5000, cwd=home)
    with raises_errno(errno.EPERM):
        run_as(OTHER, _chown, "f", -1, OTHER[1], cwd=home)
    back = os.stat(folder.backing / "home" / "f")
    assert (back.st_uid, back.st_gid) == USER


@pytest.mark.parametrize("ids", [ROOT, USER])
def test_chown_clears_setuid_and_setgid(folder, ids: tuple[int, int]) -> None:
    """Changing a regular file's owner or group clears S_ISUID, and S_ISGID when the file is
    group-executable — for root too — so nobody keeps a setuid binary by chown."""
    home = make_dir(folder.rw / "home", USER, 0o777)
    make_file(home / "f", USER, 0o6755)
    got = run_as(ids, _chown, "f", -1, USER[1], cwd=home, groups=(USER[1],))
    assert got == (USER[0], USER[1], 0o755)
    st = os.stat(folder.backing / "home" / "f")
    assert stat.S_IMODE(st.st_mode) == 0o755


def test_chown_of_directory_keeps_setgid(folder) -> None:
    """Directories keep S_ISGID across chown (it means inheritance there, not privilege)."""
    d = make_dir(folder.rw / "d", mode=0o2775)
    os.chown(d, 0, 2000)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o2775


def test_xattr_user_namespace_round_trip(folder) -> None:
    """user.* xattrs are stored on the backing file, listed, replaced and removed; a missing
    one reads ENODATA; XATTR_CREATE on an existing one is EEXIST."""
    f = make_file(folder.rw / "f")
    os.setxattr(f, "user.color", b"blue")
    os.setxattr(f, "user.empty", b"")
    os.setxattr(f, "user.big", b"z" * 4000)
    assert os.getxattr(f, "user.color") == b"blue"
    assert os.getxattr(f, "user.empty") == b""
    assert os.getxattr(folder.backing / "f", "user.big") == b"z" * 4000
    assert {"user.color", "user.empty", "user.big"} <= set(os.listxattr(f))
    with raises_errno(errno.EEXIST):
        os.setxattr(f, "user.color", b"red", os.XATTR_CREATE)
    with raises_errno(errno.ENODATA):
        os.setxattr(f, "user.absent", b"x", os.XATTR_REPLACE)
    os.setxattr(f, "user.color", b"red", os.XATTR_REPLACE)
    assert os.getxattr(folder.backing / "f", "user.color") == b"red"
    os.removexattr(f, "user.color")
    with raises_errno(errno.ENODATA):
        os.getxattr(f, "user.color")
    with raises_errno(errno.ENODATA):
        os.removexattr(f, "user.color")


def test_xattr_on_directory_and_symlink_rules(folder) -> None:
    """Directories take user xattrs; symlinks do not (EPERM, as on local file systems)."""
    d = make_dir(folder.rw / "d")
    os.setxattr(d, "user.k", b"v")
    assert os.getxattr(d, "user.k") == b"v"
    (folder.rw / "l").symlink_to("d")
    with raises_errno(errno.EPERM):
        os.setxattr(folder.rw / "l", "user.k", b"v", follow_symlinks=False)


def _setx(name: str) -> str:
    os.setxattr(name, "user.by", b"user")
    return os.getxattr(name, "user.by").decode()


def test_xattr_needs_write_permission(folder) -> None:
    """Setting a user xattr needs write access to the file; reading needs read access."""
    pub = make_dir(folder.rw / "pub", mode=0o777)
    make_file(pub / "mine", USER, 0o644)
    make_file(pub / "ro", ROOT, 0o644)
    make_file(pub / "closed", ROOT, 0o600)
    os.setxattr(pub / "closed", "user.k", b"v")
    assert run_as(USER, _setx, "mine", cwd=pub) == "user"
    with raises_errno(errno.EACCES, errno.EPERM):
        run_as(USER, _setx, "ro", cwd=pub)
    with raises_errno(errno.EACCES):
        run_as(USER, os.getxattr, "closed", "user.k", cwd=pub)
    assert "user.by" not in os.listxattr(folder.backing / "pub" / "ro")
