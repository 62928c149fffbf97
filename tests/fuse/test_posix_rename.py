"""POSIX conformance of rename(2) and Linux renameat2(2) flags on the rw/ view.

The pjdfstest ``rename`` category: replacing files and empty directories, the type
mismatch errors, moving a directory into itself, hard-link no-ops, link counts and times of
both parents, NOREPLACE/EXCHANGE, and permission checks as unprivileged uids.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest
from fsprobe import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    USER,
    make_dir,
    make_file,
    raises_errno,
    renameat2,
    run_as,
    settle,
)

pytestmark = pytest.mark.fuse


def test_rename_file_keeps_inode_and_updates_times(folder) -> None:
    """A renamed file keeps its inode and data; its ctime and both parents' mtime/ctime
    change."""
    src_dir = make_dir(folder.rw / "a")
    dst_dir = make_dir(folder.rw / "b")
    f = make_file(src_dir / "f", data=b"moved")
    ino = os.stat(f).st_ino
    before_f, before_a, before_b = settle(f), settle(src_dir), settle(dst_dir)
    os.rename(f, dst_dir / "g")
    st_g, st_a, st_b = os.stat(dst_dir / "g"), os.stat(src_dir), os.stat(dst_dir)
    assert st_g.st_ino == ino
    assert (dst_dir / "g").read_bytes() == b"moved"
    assert not os.path.lexists(f)
    assert st_g.st_ctime_ns > before_f.st_ctime_ns
    assert st_a.st_mtime_ns > before_a.st_mtime_ns and st_a.st_ctime_ns > before_a.st_ctime_ns
    assert st_b.st_mtime_ns > before_b.st_mtime_ns and st_b.st_ctime_ns > before_b.st_ctime_ns
    assert os.listdir(folder.backing / "a") == []
    assert (folder.backing / "b" / "g").read_bytes() == b"moved"


def test_rename_over_file_replaces_it(folder) -> None:
    """Renaming onto an existing file replaces it atomically; the old inode loses its name
    (a descriptor still open on it sees nlink 0)."""
    make_file(folder.rw / "src", data=b"new")
    old = make_file(folder.rw / "dst", data=b"old contents")
    fd = os.open(old, os.O_RDONLY)
    try:
        os.rename(folder.rw / "src", folder.rw / "dst")
        assert os.fstat(fd).st_nlink == 0
        assert os.pread(fd, 100, 0) == b"old contents"
    finally:
        os.close(fd)
    assert (folder.rw / "dst").read_bytes() == b"new"
    assert sorted(os.listdir(folder.backing)) == ["dst"]


def test_rename_symlink_moves_the_link_not_its_target(folder) -> None:
    """Renaming a symlink renames the link; the target is untouched."""
    make_file(folder.rw / "t", data=b"t")
    (folder.rw / "l").symlink_to("t")
    os.rename(folder.rw / "l", folder.rw / "l2")
    assert os.readlink(folder.rw / "l2") == "t"
    assert sorted(os.listdir(folder.backing)) == ["l2", "t"]


def test_rename_dir_over_empty_dir_and_not_over_full_one(folder) -> None:
    """A directory may replace an empty directory; a non-empty one: ENOTEMPTY (or EEXIST)."""
    src = make_dir(folder.rw / "src")
    make_file(src / "inside", data=b"i")
    make_dir(folder.rw / "empty")
    full = make_dir(folder.rw / "full")
    make_file(full / "x")
    with raises_errno(errno.ENOTEMPTY, errno.EEXIST):
        os.rename(src, full)
    os.rename(src, folder.rw / "empty")
    assert (folder.rw / "empty" / "inside").read_bytes() == b"i"
    assert sorted(os.listdir(folder.backing)) == ["empty", "full"]
    assert os.stat(folder.rw).st_nlink == 4


def test_rename_type_mismatches(folder) -> None:
    """A file cannot replace a directory (EISDIR); a directory cannot replace a file
    (ENOTDIR); nothing changes on failure."""
    make_file(folder.rw / "f")
    make_dir(folder.rw / "d")
    with raises_errno(errno.EISDIR):
        os.rename(folder.rw / "f", folder.rw / "d")
    with raises_errno(errno.ENOTDIR):
        os.rename(folder.rw / "d", folder.rw / "f")
    assert os.path.isfile(folder.backing / "f") and os.path.isdir(folder.backing / "d")


def test_rename_dir_into_its_own_subtree_einval(folder) -> None:
    """A directory cannot become its own descendant."""
    top = make_dir(folder.rw / "top")
    make_dir(top / "mid")
    with raises_errno(errno.EINVAL):
        os.rename(top, top / "mid" / "top")
    with raises_errno(errno.EINVAL):
        os.rename(top, top / "x")
    assert os.path.isdir(folder.backing / "top" / "mid")


def test_rename_onto_itself_or_its_hard_link_is_a_noop(folder) -> None:
    """rename(a, a) and rename(a, b) where b is a hard link of a succeed and change nothing."""
    f = make_file(folder.rw / "a", data=b"same")
    os.link(f, folder.rw / "b")
    os.rename(f, f)
    os.rename(folder.rw / "a", folder.rw / "b")
    assert sorted(os.listdir(folder.rw)) == ["a", "b"]
    assert os.stat(folder.rw / "a").st_nlink == 2
    assert sorted(os.listdir(folder.backing)) == ["a", "b"]


def test_rename_dir_across_parents_moves_its_dotdot(folder) -> None:
    """Moving a directory to another parent moves one link from the old parent to the new
    one and re-points the directory's ``..``."""
    p1, p2 = make_dir(folder.rw / "p1"), make_dir(folder.rw / "p2")
    make_dir(p1 / "d")
    assert (os.stat(p1).st_nlink, os.stat(p2).st_nlink) == (3, 2)
    os.rename(p1 / "d", p2 / "d")
    assert (os.stat(p1).st_nlink, os.stat(p2).st_nlink) == (2, 3)
    assert os.stat(p2 / "d" / "..").st_ino == os.stat(p2).st_ino
    back = folder.backing
    assert os.stat(back / "p2" / "d" / "..").st_ino == os.stat(back / "p2").st_ino


def test_rename_errors(folder) -> None:
    """ENOENT for a missing source or target parent, ENOTDIR through a file, ENAMETOOLONG
    for a 256-byte target name."""
    make_file(folder.rw / "f")
    with raises_errno(errno.ENOENT):
        os.rename(folder.rw / "missing", folder.rw / "x")
    with raises_errno(errno.ENOENT):
        os.rename(folder.rw / "f", folder.rw / "nodir" / "x")
    with raises_errno(errno.ENOTDIR):
        os.rename(folder.rw / "f", folder.rw / "f" / "x")
    with raises_errno(errno.ENAMETOOLONG):
        os.rename(folder.rw / "f", folder.rw / ("n" * 256))
    os.rename(folder.rw / "f", folder.rw / ("n" * 255))
    assert os.listdir(folder.backing) == ["n" * 255]


def test_rename_noreplace_refuses_existing_target(folder) -> None:
    """renameat2(RENAME_NOREPLACE) fails with EEXIST on an existing target, moves otherwise."""
    make_file(folder.rw / "a", data=b"a")
    make_file(folder.rw / "b", data=b"b")
    with raises_errno(errno.EEXIST):
        renameat2(folder.rw / "a", folder.rw / "b", RENAME_NOREPLACE)
    assert (folder.rw / "b").read_bytes() == b"b"
    renameat2(folder.rw / "a", folder.rw / "c", RENAME_NOREPLACE)
    assert sorted(os.listdir(folder.backing)) == ["b", "c"]


def test_rename_exchange_swaps_two_entries(folder) -> None:
    """renameat2(RENAME_EXCHANGE) swaps a file and a directory atomically; ENOENT when the
    second name does not exist."""
    make_file(folder.rw / "f", data=b"file")
    d = make_dir(folder.rw / "d")
    make_file(d / "inside")
    renameat2(folder.rw / "f", folder.rw / "d", RENAME_EXCHANGE)
    assert stat.S_ISDIR(os.stat(folder.rw / "f").st_mode)
    assert os.listdir(folder.rw / "f") == ["inside"]
    assert (folder.rw / "d").read_bytes() == b"file"
    assert (folder.backing / "d").read_bytes() == b"file"
    with raises_errno(errno.ENOENT):
        renameat2(folder.rw / "d", folder.rw / "missing", RENAME_EXCHANGE)


def test_rename_needs_write_on_both_parents(folder) -> None:
    """An unprivileged user needs write access to the source and the target directory."""
    home = make_dir(folder.rw / "home", USER)
    closed = make_dir(folder.rw / "closed")
    make_file(home / "mine", USER)
    make_file(closed / "theirs", mode=0o666)
    with raises_errno(errno.EACCES):
        run_as(USER, os.rename, "home/mine", "closed/mine", cwd=folder.rw)
    with raises_errno(errno.EACCES):
        run_as(USER, os.rename, "closed/theirs", "home/theirs", cwd=folder.rw)
    assert os.listdir(folder.backing / "home") == ["mine"]
    assert os.listdir(folder.backing / "closed") == ["theirs"]
    run_as(USER, os.rename, "home/mine", "home/renamed", cwd=folder.rw)
    assert os.listdir(folder.backing / "home") == ["renamed"]


def test_rename_foreign_dir_to_other_parent_needs_write_on_it(folder) -> None:
    """Moving a directory to another parent rewrites its ``..``: an unprivileged user needs
    write permission on the directory itself, even when both parents are writable."""
    pub = make_dir(folder.rw / "pub", mode=0o777)
    make_dir(pub / "a", USER)
    make_dir(pub / "b", USER)
    make_dir(pub / "a" / "rootdir", mode=0o755)
    with raises_errno(errno.EACCES):
        run_as(USER, os.rename, "a/rootdir", "b/rootdir", cwd=pub)
    run_as(USER, os.rename, "a/rootdir", "a/renamed_in_place", cwd=pub)
    assert os.listdir(folder.backing / "pub" / "a") == ["renamed_in_place"]
