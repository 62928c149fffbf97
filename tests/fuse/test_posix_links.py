"""POSIX conformance of link(2), unlink(2) and symlink(2) on the rw/ view.

The pjdfstest ``link``, ``unlink`` and ``symlink`` categories: link counts and ctime,
errors, permission checks as unprivileged uids, and symlinks stored verbatim (the mount
returns a link's bytes and never interprets them; see test_containment_* for what that
means for escapes).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from fsprobe import OTHER, USER, make_dir, make_file, raises_errno, run_as, settle

pytestmark = pytest.mark.fuse

ROOT = (0, 0)


def test_link_adds_a_name_to_the_same_inode(folder) -> None:
    """link makes a second name for the inode: nlink 2, same st_ino, shared data, ctime of
    the file and mtime/ctime of the target directory updated."""
    f = make_file(folder.rw / "f", data=b"one")
    d = make_dir(folder.rw / "d")
    before_f = settle(f)
    before_d = settle(d)
    os.link(f, d / "g")
    st_f, st_g, st_d = os.stat(f), os.stat(d / "g"), os.stat(d)
    assert st_f.st_ino == st_g.st_ino and st_f.st_nlink == st_g.st_nlink == 2
    assert st_f.st_ctime_ns > before_f.st_ctime_ns
    assert st_d.st_mtime_ns > before_d.st_mtime_ns and st_d.st_ctime_ns > before_d.st_ctime_ns
    with open(d / "g", "ab") as out:
        out.write(b"+two")
    assert f.read_bytes() == b"one+two"
    back_f, back_g = os.stat(folder.backing / "f"), os.stat(folder.backing / "d" / "g")
    assert back_f.st_ino == back_g.st_ino and back_f.st_nlink == 2


def test_link_many_names_then_unlink_counts_down(folder) -> None:
    """nlink follows every link and unlink exactly, down to the last name."""
    f = make_file(folder.rw / "f0", data=b"x")
    for i in range(1, 6):
        os.link(f, folder.rw / f"f{i}")
        assert os.stat(f).st_nlink == i + 1
    for i in range(5, 0, -1):
        os.unlink(folder.rw / f"f{i}")
        assert os.stat(f).st_nlink == i
    assert os.stat(folder.backing / "f0").st_nlink == 1


def test_link_errors(folder) -> None:
    """EEXIST onto an existing name (even a dangling link), ENOENT from a missing source,
    EPERM for a directory, ENOTDIR through a file, ENAMETOOLONG for 256 bytes."""
    f = make_file(folder.rw / "f")
    make_file(folder.rw / "g")
    make_dir(folder.rw / "d")
    (folder.rw / "dangling").symlink_to("nowhere")
    for dst in ("g", "d", "dangling"):
        with raises_errno(errno.EEXIST):
            os.link(f, folder.rw / dst)
    with raises_errno(errno.ENOENT):
        os.link(folder.rw / "missing", folder.rw / "new")
    with raises_errno(errno.EPERM):
        os.link(folder.rw / "d", folder.rw / "d2")
    with raises_errno(errno.ENOTDIR):
        os.link(f, folder.rw / "g" / "x")
    with raises_errno(errno.ENAMETOOLONG):
        os.link(f, folder.rw / ("n" * 256))
    os.link(f, folder.rw / ("n" * 255))
    assert os.stat(f).st_nlink == 2


def test_link_to_symlink_links_the_symlink_itself(folder) -> None:
    """link(2) on Linux does not follow a symlink source: the new name is a symlink too."""
    make_file(folder.rw / "t")
    (folder.rw / "l").symlink_to("t")
    os.link(folder.rw / "l", folder.rw / "l2", follow_symlinks=False)
    assert os.readlink(folder.rw / "l2") == "t"
    assert os.lstat(folder.rw / "l").st_nlink == 2
    assert os.stat(folder.rw / "t").st_nlink == 1


def test_link_needs_write_on_target_dir_and_protects_foreign_files(folder) -> None:
    """An unprivileged user cannot link into a directory it cannot write (EACCES), nor
    (fs.protected_hardlinks) link a file it neither owns nor may read and write (EPERM)."""
    home = make_dir(folder.rw / "home", USER)
    make_dir(folder.rw / "closed")
    make_file(home / "mine", USER)
    make_file(home / "secret", ROOT, 0o600)
    with raises_errno(errno.EACCES):
        run_as(USER, os.link, "home/mine", "closed/x", cwd=folder.rw)
    protected = Path("/proc/sys/fs/protected_hardlinks").read_text().strip() == "1"
    if protected:
        with raises_errno(errno.EPERM):
            run_as(USER, os.link, "home/secret", "home/grab", cwd=folder.rw)
    run_as(USER, os.link, "home/mine", "home/mine2", cwd=folder.rw)
    assert sorted(os.listdir(folder.backing / "home")) == ["mine", "mine2", "secret"]


def test_unlink_removes_name_and_updates_times(folder) -> None:
    """unlink drops one name: ctime of the remaining inode and mtime/ctime of the parent
    change, the data stays reachable through the other name."""
    d = make_dir(folder.rw / "d")
    f = make_file(d / "f", data=b"data")
    os.link(f, folder.rw / "other")
    before_f = settle(folder.rw / "other")
    before_d = settle(d)
    os.unlink(f)
    st_o, st_d = os.stat(folder.rw / "other"), os.stat(d)
    assert st_o.st_nlink == 1 and st_o.st_ctime_ns > before_f.st_ctime_ns
    assert st_d.st_mtime_ns > before_d.st_mtime_ns and st_d.st_ctime_ns > before_d.st_ctime_ns
    assert not os.path.lexists(f)
    assert (folder.rw / "other").read_bytes() == b"data"
    assert os.listdir(folder.backing / "d") == []


def test_unlink_errors(folder) -> None:
    """EISDIR for a directory (Linux), ENOENT for a missing name, ENOTDIR through a file."""
    make_dir(folder.rw / "d")
    make_file(folder.rw / "f")
    with raises_errno(errno.EISDIR):
        os.unlink(folder.rw / "d")
    with raises_errno(errno.ENOENT):
        os.unlink(folder.rw / "missing")
    with raises_errno(errno.ENOTDIR):
        os.unlink(folder.rw / "f" / "x")
    assert os.path.isdir(folder.backing / "d")


def test_unlink_symlink_leaves_target(folder) -> None:
    """Unlinking a symlink removes the link, never what it points to."""
    make_file(folder.rw / "t", data=b"target")
    make_dir(folder.rw / "dir")
    (folder.rw / "l").symlink_to("t")
    (folder.rw / "ld").symlink_to("dir")
    os.unlink(folder.rw / "l")
    os.unlink(folder.rw / "ld")
    assert (folder.backing / "t").read_bytes() == b"target"
    assert os.path.isdir(folder.backing / "dir")
    assert sorted(os.listdir(folder.rw)) == ["dir", "t"]


def test_unlink_open_file_keeps_data_for_the_open_descriptor(folder) -> None:
    """An unlinked file stays readable and writable through descriptors opened before."""
    f = make_file(folder.rw / "f", data=b"still here")
    fd = os.open(f, os.O_RDWR)
    try:
        os.unlink(f)
        assert not os.path.lexists(f)
        assert os.pread(fd, 100, 0) == b"still here"
        os.pwrite(fd, b"S", 0)
        assert os.pread(fd, 100, 0) == b"Still here"
        assert os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)
    assert os.listdir(folder.backing) == []


def test_unlink_needs_write_on_parent(folder) -> None:
    """An unprivileged user cannot unlink even its own file from a directory it cannot write."""
    closed = make_dir(folder.rw / "closed", OTHER)
    make_file(closed / "mine", USER, 0o666)
    with raises_errno(errno.EACCES):
        run_as(USER, os.unlink, "closed/mine", cwd=folder.rw)
    assert os.listdir(folder.backing / "closed") == ["mine"]


@pytest.mark.parametrize(
    "target",
    [
        "t",
        "../../../../etc/passwd",
        "/etc/passwd",
        "nowhere/at/all",
        "spaces and \n newline",
        "x" * 4095,
        "é/ü",
    ],
)
def test_symlink_stores_target_verbatim(folder, target: str) -> None:
    """symlink stores the target bytes as given — relative, absolute, dangling, up to
    PATH_MAX-1 bytes — and lstat reports a link whose size is the target's length."""
    os.symlink(target, folder.rw / "l")
    st = os.lstat(folder.rw / "l")
    assert stat.S_ISLNK(st.st_mode)
    assert st.st_size == len(target.encode())
    assert os.readlink(folder.rw / "l") == target
    assert os.readlink(folder.backing / "l") == target


@pytest.mark.parametrize("ids", [ROOT, USER])
def test_symlink_owner_and_parent_times(folder, ids: tuple[int, int]) -> None:
    """A new symlink belongs to its creator; the parent's mtime/ctime change."""
    home = make_dir(folder.rw / "home", USER)
    before = settle(home)
    run_as(ids, os.symlink, "target", "l", cwd=home)
    st = os.lstat(home / "l")
    assert (st.st_uid, st.st_gid) == ids
    assert os.lstat(folder.backing / "home" / "l").st_uid == ids[0]
    after = os.stat(home)
    assert after.st_mtime_ns > before.st_mtime_ns and after.st_ctime_ns > before.st_ctime_ns


def test_symlink_errors(folder) -> None:
    """EEXIST on an existing name, ENAMETOOLONG for a 256-byte name or a target of PATH_MAX
    bytes, ENOENT under a missing parent, EACCES in a directory the user cannot write."""
    make_file(folder.rw / "f")
    make_dir(folder.rw / "d")
    (folder.rw / "l").symlink_to("x")
    for name in ("f", "d", "l"):
        with raises_errno(errno.EEXIST):
            os.symlink("y", folder.rw / name)
    with raises_errno(errno.ENAMETOOLONG):
        os.symlink("y", folder.rw / ("s" * 256))
    with raises_errno(errno.ENAMETOOLONG):
        os.symlink("y" * 4096, folder.rw / "s")
    with raises_errno(errno.ENOENT):
        os.symlink("y", folder.rw / "missing" / "s")
    with raises_errno(errno.EACCES):
        run_as(USER, os.symlink, "y", "d/s", cwd=folder.rw)
    assert os.readlink(folder.rw / "l") == "x"
    assert sorted(os.listdir(folder.backing)) == ["d", "f", "l"]


def test_symlink_is_followed_by_the_kernel_within_the_folder(folder) -> None:
    """Relative links inside a folder work as usual for stat, open, chdir-like lookups."""
    d = make_dir(folder.rw / "d")
    make_file(d / "f", data=b"payload")
    (folder.rw / "to_f").symlink_to("d/f")
    (folder.rw / "to_d").symlink_to("d")
    (d / "up").symlink_to("..")
    assert (folder.rw / "to_f").read_bytes() == b"payload"
    assert os.stat(folder.rw / "to_f").st_ino == os.stat(d / "f").st_ino
    assert set(os.listdir(folder.rw / "to_d")) == {"f", "up"}
    assert os.stat(d / "up" / "d" / "f").st_ino == os.stat(d / "f").st_ino
