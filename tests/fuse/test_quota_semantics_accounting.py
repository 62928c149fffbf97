"""What a quota scope counts, and where a user sees it (statvfs/df, virtual xattrs).

Bytes are apparent sizes of regular files, files are inodes below the folder roots, a hard
link counts once (``vfd.folders.quota``). The tests check the counters after each kind of
change against an independent recount of the backing trees (``fsprobe.recount``), including
the cases that are easy to get wrong: the last close of an unlinked open file, a rename that
replaces a file, the same file seen through rw/ and ro/, and renames between scopes.
"""

from __future__ import annotations

import errno
import os
import subprocess

import pytest
import xattr
from fsprobe import make_dir, make_file, raises_errno, recount, wait_for

pytestmark = pytest.mark.fuse

MiB = 1 << 20
QUOTA_KEYS = ("max_bytes", "max_files", "used_bytes", "used_files")


def usage(mountd, folder) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return mountd.call("usage", host=mountd.config.default_host, scope=folder.scope)


def used(mountd, folder) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    u = usage(mountd, folder)
    return u["used_bytes"], u["used_files"]


def expect(mountd, folder, want: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    """Wait (release is asynchronous to close) until the scope's usage is ``want``."""
    wait_for(
        lambda: used(mountd, folder) == want,
        timeout=10,
        what=lambda: f"usage {want}; mountd says {used(mountd, folder)}",
    )


def test_quota_usage_counts_bytes_and_inodes(mountd) -> None:
    """Files add their size and one inode; directories, symlinks and FIFOs one inode and no
    bytes; overwriting in place adds nothing; truncating down gives bytes back."""
    folder = mountd.new_folder()
    assert used(mountd, folder) == (0, 0)
    make_file(folder.rw / "f", data=b"x" * 1000)
    expect(mountd, folder, (1000, 1))
    make_dir(folder.rw / "d")
    os.symlink("some/long/target/that/has/no/bytes", folder.rw / "l")
    os.mkfifo(folder.rw / "d" / "p")
    expect(mountd, folder, (1000, 4))
    with open(folder.rw / "f", "r+b") as f:
        f.write(b"y" * 1000)
    expect(mountd, folder, (1000, 4))
    os.truncate(folder.rw / "f", 10)
    expect(mountd, folder, (10, 4))
    assert recount(folder.backing) == (10, 4)


def test_quota_hard_links_count_once(mountd) -> None:
    """Extra names of an inode add nothing; only removing the last name frees it."""
    folder = mountd.new_folder()
    make_dir(folder.rw / "d")
    make_file(folder.rw / "f", data=b"h" * 5000)
    expect(mountd, folder, (5000, 2))
    os.link(folder.rw / "f", folder.rw / "g")
    os.link(folder.rw / "f", folder.rw / "d" / "h")
    expect(mountd, folder, (5000, 2))
    os.unlink(folder.rw / "f")
    os.unlink(folder.rw / "g")
    expect(mountd, folder, (5000, 2))
    os.unlink(folder.rw / "d" / "h")
    expect(mountd, folder, (0, 1))
    assert recount(folder.backing) == (0, 1)


def test_quota_unlinked_open_file_is_freed_at_last_close(mountd) -> None:
    """An unlinked file still open keeps its space (the data is on disk) and stays under
    the limit — writing to it cannot bypass quota; its last close frees it."""
    folder = mountd.new_folder(max_bytes=MiB)
    fd = os.open(folder.rw / "f", os.O_CREAT | os.O_RDWR, 0o644)
    fd2 = os.open(folder.rw / "f", os.O_RDONLY)
    try:
        os.write(fd, b"o" * 4000)
        os.unlink(folder.rw / "f")
        expect(mountd, folder, (4000, 1))
        os.write(fd, b"o" * 6000)
        expect(mountd, folder, (10000, 1))
        with raises_errno(errno.EDQUOT):
            os.pwrite(fd, b"x", 2 * MiB)
        os.close(fd)
        fd = -1
        expect(mountd, folder, (10000, 1))
    finally:
        if fd >= 0:
            os.close(fd)
        os.close(fd2)
    expect(mountd, folder, (0, 0))
    assert recount(folder.backing) == (0, 0)


def test_quota_rename_over_file_frees_the_replaced_one(mountd) -> None:
    """A rename that replaces a file frees the replaced inode (at once if it is closed, at
    its last close if it is open)."""
    folder = mountd.new_folder()
    make_file(folder.rw / "small", data=b"s" * 100)
    make_file(folder.rw / "big", data=b"b" * 3000)
    make_file(folder.rw / "open", data=b"o" * 700)
    expect(mountd, folder, (3800, 3))
    os.rename(folder.rw / "small", folder.rw / "big")
    expect(mountd, folder, (800, 2))
    fd = os.open(folder.rw / "open", os.O_RDONLY)
    try:
        os.rename(folder.rw / "big", folder.rw / "open")
        expect(mountd, folder, (800, 2))
    finally:
        os.close(fd)
    expect(mountd, folder, (100, 1))
    assert recount(folder.backing) == (100, 1)


def test_quota_rename_across_scopes_is_exdev_and_keeps_usage(mountd) -> None:
    """Moving between scopes is EXDEV (the caller copies and deletes, each side accounted);
    between two folders of one scope a move, if allowed, changes neither count."""
    a = mountd.new_folder()
    b = mountd.new_folder()
    a2 = mountd.new_folder(scope=a.scope)
    make_file(a.rw / "f", data=b"m" * 2000)
    make_dir(a.rw / "d")
    with raises_errno(errno.EXDEV):
        os.rename(a.rw / "f", b.rw / "f")
    with raises_errno(errno.EXDEV):
        os.rename(a.rw / "d", b.rw / "d")
    expect(mountd, a, (2000, 2))
    expect(mountd, b, (0, 0))
    try:
        os.rename(a.rw / "f", a2.rw / "f")
    except OSError as exc:
        assert exc.errno == errno.EXDEV, exc
    expect(mountd, a, (2000, 2))
    assert recount(a.backing, a2.backing) == (2000, 2)
    subprocess.run(["mv", str(a.rw / "d"), str(b.rw / "d")], check=True)
    expect(mountd, a, recount(a.backing, a2.backing))
    expect(mountd, b, (0, 1))


def test_quota_same_file_through_both_views_counts_once(mountd) -> None:
    """Reading and stat-ing through ro/ adds nothing; rw/ and ro/ are one file to quota."""
    folder = mountd.new_folder()
    make_file(folder.rw / "f", data=b"v" * 1234)
    assert (folder.ro / "f").read_bytes() == b"v" * 1234
    os.stat(folder.ro / "f")
    expect(mountd, folder, (1234, 1))


def test_quota_statvfs_reports_limit_and_use(mountd) -> None:
    """statvfs on a folder — root, subdirectory, file, either view — gives the scope's
    limit as the size and its use as used; f_files/f_ffree are the file limit and what is
    left. ``df`` shows the same."""
    mountd.require_fast_path()  # statfs and fallocate are low-level handlers
    folder = mountd.new_folder(max_bytes=64 * MiB, max_files=1000)
    make_dir(folder.rw / "sub")
    make_file(folder.rw / "sub" / "f", data=b"d" * (5 * MiB + 1))
    expect(mountd, folder, (5 * MiB + 1, 2))
    for path in (folder.rw, folder.rw / "sub", folder.rw / "sub" / "f", folder.ro):
        st = os.statvfs(path)
        bs = st.f_frsize
        assert st.f_blocks == -(-64 * MiB // bs), (path, st)
        used_blocks = -(-(5 * MiB + 1) // bs)
        assert st.f_bavail == st.f_blocks - used_blocks, (path, st)
        assert st.f_bfree >= st.f_bavail
        assert (st.f_files, st.f_ffree) == (1000, 998), (path, st)
    out = subprocess.run(
        ["df", "-B1", "--output=size,used,avail", str(folder.rw)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    size, used_, avail = (int(x) for x in out[-3:])
    assert size == st.f_blocks * st.f_frsize
    assert avail == st.f_bavail * st.f_frsize
    assert used_ >= 5 * MiB


def test_quota_statvfs_of_unlimited_scope_is_the_host(mountd) -> None:
    """Without limits a folder reports the backing file system's own size."""
    folder = mountd.new_folder()
    host = os.statvfs(folder.backing)
    st = os.statvfs(folder.rw)
    assert st.f_blocks * st.f_frsize == host.f_blocks * host.f_frsize


def read_quota_xattrs(path) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {k: int(xattr.getxattr(str(path), f"user.vfd.quota.{k}")) for k in QUOTA_KEYS}


def test_quota_xattrs_report_limits_and_usage(mountd) -> None:
    """Folder roots answer user.vfd.quota.{max_bytes,max_files,used_bytes,used_files} in
    both views (readable with the xattr package, as getfattr does), and follow changes."""
    folder = mountd.new_folder(max_bytes=8 * MiB, max_files=50)
    want = {"max_bytes": 8 * MiB, "max_files": 50, "used_bytes": 0, "used_files": 0}
    assert read_quota_xattrs(folder.rw) == want
    assert read_quota_xattrs(folder.ro) == want
    make_file(folder.rw / "f", data=b"q" * 3333)
    expect(mountd, folder, (3333, 1))
    want.update(used_bytes=3333, used_files=1)
    assert read_quota_xattrs(folder.rw) == want
    mountd.call(
        "set_limits",
        host=mountd.config.default_host,
        scope=folder.scope,
        max_bytes=MiB,
        max_files=0,
    )
    want.update(max_bytes=MiB, max_files=0)
    assert read_quota_xattrs(folder.ro) == want
    names = set(xattr.listxattr(str(folder.rw)))
    assert {f"user.vfd.quota.{k}" for k in QUOTA_KEYS} <= names


def test_quota_xattrs_cannot_be_changed_and_live_only_on_roots(mountd) -> None:
    """Nobody raises a limit by writing the xattr (refused, value unchanged); files and
    subdirectories do not have the virtual xattrs; ordinary user xattrs on the root work."""
    folder = mountd.new_folder(max_bytes=MiB)
    for op in (
        lambda: xattr.setxattr(str(folder.rw), "user.vfd.quota.max_bytes", b"0"),
        lambda: xattr.setxattr(str(folder.rw), "user.vfd.quota.used_bytes", b"0"),
        lambda: xattr.removexattr(str(folder.rw), "user.vfd.quota.max_bytes"),
    ):
        with raises_errno(errno.EPERM, errno.EACCES, errno.EROFS, errno.ENOTSUP):
            op()
    assert read_quota_xattrs(folder.rw)["max_bytes"] == MiB
    assert usage(mountd, folder)["max_bytes"] == MiB
    make_dir(folder.rw / "sub")
    for path in (folder.rw / "sub",):
        with raises_errno(errno.ENODATA):
            xattr.getxattr(str(path), "user.vfd.quota.max_bytes")
    xattr.setxattr(str(folder.rw), "user.note", b"hello")
    assert xattr.getxattr(str(folder.rw), "user.note") == b"hello"
    assert "user.note" in os.listxattr(folder.backing)
