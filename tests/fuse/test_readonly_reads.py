"""What still works through a folder's ro/ view: every read, and fresh data on next open.

The design promises close-to-open consistency between the views: the ro/ view is a distinct
FUSE inode over the same backing file, and a reader sees what was written through rw/ on its
next open (as NFS). Names added or removed through rw/ show in ro/ within the entry timeout;
that is polled with a deadline, never slept on.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat

import pytest
from fsprobe import USER, make_dir, make_file, raises_errno, run_as, wait_for

pytestmark = pytest.mark.fuse


def test_readonly_reads_everything(folder) -> None:
    """Data, listings, stat, readlink, xattrs, mmap and FIFOs' metadata all read through ro/."""
    rw, ro = folder.rw, folder.ro
    make_file(rw / "f", mode=0o640, data=b"hello ro")
    os.setxattr(rw / "f", "user.k", b"v")
    make_dir(rw / "d")
    make_file(rw / "d" / "inner", data=b"inner")
    (rw / "l").symlink_to("d/inner")
    os.mkfifo(rw / "p")
    assert (ro / "f").read_bytes() == b"hello ro"
    assert sorted(os.listdir(ro)) == ["d", "f", "l", "p"]
    assert os.listdir(ro / "d") == ["inner"]
    assert os.readlink(ro / "l") == "d/inner"
    assert (ro / "l").read_bytes() == b"inner"
    assert os.getxattr(ro / "f", "user.k") == b"v"
    assert "user.k" in os.listxattr(ro / "f")
    assert stat.S_ISFIFO(os.lstat(ro / "p").st_mode)
    st_ro, st_rw = os.stat(ro / "f"), os.stat(rw / "f")
    assert (st_ro.st_mode, st_ro.st_uid, st_ro.st_size, st_ro.st_mtime_ns) == (
        st_rw.st_mode,
        st_rw.st_uid,
        st_rw.st_size,
        st_rw.st_mtime_ns,
    )
    with open(ro / "f", "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        assert m[:5] == b"hello"
    fd = os.open(ro / "f", os.O_RDONLY)
    try:
        assert os.pread(fd, 2, 6) == b"ro"
    finally:
        os.close(fd)


def _read(name: str) -> bytes:
    with open(name, "rb") as f:
        return f.read()


def test_readonly_keeps_permission_checks(folder) -> None:
    """ro/ does not widen access: a user still cannot read a file closed to it."""
    make_file(folder.rw / "secret", mode=0o600, data=b"root only")
    make_file(folder.rw / "open", mode=0o644, data=b"for all")
    with raises_errno(errno.EACCES):
        run_as(USER, _read, "secret", cwd=folder.ro)
    assert run_as(USER, _read, "open", cwd=folder.ro) == b"for all"


def test_readonly_sees_rewritten_data_on_next_open(folder) -> None:
    """A same-size rewrite through rw/ shows in ro/ on the next open, though the old bytes
    were cached by an earlier read."""
    make_file(folder.rw / "f", data=b"A" * 8192)
    assert (folder.ro / "f").read_bytes() == b"A" * 8192
    with open(folder.rw / "f", "r+b") as out:
        out.write(b"B" * 8192)
    assert (folder.ro / "f").read_bytes() == b"B" * 8192


def test_readonly_sees_growth_and_shrink_on_next_open(folder) -> None:
    """Appends and truncates through rw/ show in ro/ on the next open: size and data."""
    make_file(folder.rw / "f", data=b"start")
    assert (folder.ro / "f").read_bytes() == b"start"
    with open(folder.rw / "f", "ab") as out:
        out.write(b"-grown" * 1000)
    assert (folder.ro / "f").read_bytes() == b"start" + b"-grown" * 1000
    os.truncate(folder.rw / "f", 3)
    assert (folder.ro / "f").read_bytes() == b"sta"
    with open(folder.ro / "f", "rb") as f:
        assert os.fstat(f.fileno()).st_size == 3


def test_readonly_open_descriptor_does_not_hide_rewrite_from_new_opens(folder) -> None:
    """An ro/ descriptor held open across a rewrite through rw/ (whose view of the data is
    not promised) does not keep a new open from seeing the new data."""
    make_file(folder.rw / "f", data=b"1" * 100)
    with open(folder.ro / "f", "rb") as early:
        assert early.read() == b"1" * 100
        with open(folder.rw / "f", "r+b") as out:
            out.write(b"2" * 100)
        assert (folder.ro / "f").read_bytes() == b"2" * 100


def test_readonly_sees_new_and_removed_names(folder) -> None:
    """Names created, renamed or removed through rw/ appear and vanish in ro/ within the
    entry timeout, including names ro/ had looked up and found missing."""
    with raises_errno(errno.ENOENT):
        os.stat(folder.ro / "later")
    make_file(folder.rw / "later", data=b"now")
    wait_for(lambda: (folder.ro / "later").exists(), timeout=10, what="ro/later to appear")
    assert (folder.ro / "later").read_bytes() == b"now"
    os.rename(folder.rw / "later", folder.rw / "renamed")
    wait_for(
        lambda: not (folder.ro / "later").exists() and (folder.ro / "renamed").exists(),
        timeout=10,
        what="the rename to show in ro/",
    )
    os.unlink(folder.rw / "renamed")
    wait_for(lambda: os.listdir(folder.ro) == [], timeout=10, what="ro/ to be empty")


def test_readonly_sees_metadata_changes(folder) -> None:
    """chmod, chown and xattr changes through rw/ reach ro/ within the attribute timeout."""
    f = make_file(folder.rw / "f")
    os.stat(folder.ro / "f")
    os.chmod(f, 0o600)
    os.chown(f, 4321, 4321)
    os.setxattr(f, "user.later", b"yes")

    def changed() -> bool:
        st = os.stat(folder.ro / "f")
        return stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 4321

    wait_for(changed, timeout=10, what="ro/ attributes to follow rw/")
    assert os.getxattr(folder.ro / "f", "user.later") == b"yes"


def test_readonly_and_readwrite_views_are_separate_trees(folder) -> None:
    """ro/<vfid> and rw/<vfid> list the same names; ``..`` of each is its own view."""
    make_file(folder.rw / "x")
    assert os.listdir(folder.ro) == os.listdir(folder.rw) == ["x"]
    ro_parent = os.stat(os.path.join(folder.ro, ".."))
    rw_parent = os.stat(os.path.join(folder.rw, ".."))
    assert ro_parent.st_ino != rw_parent.st_ino or ro_parent.st_dev != rw_parent.st_dev
    assert folder.vfid in os.listdir(os.path.join(folder.ro, ".."))


def test_readonly_sees_data_written_through_a_shared_mapping(folder) -> None:
    """Stores into a shared writable mapping of the rw/ file reach ro/ once synced: the
    page-cache writeback path goes through the same backing file."""
    make_file(folder.rw / "m", data=b"." * 8192)
    assert (folder.ro / "m").read_bytes() == b"." * 8192
    with open(folder.rw / "m", "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        m[100:105] = b"HELLO"
        m.flush()
    data = (folder.ro / "m").read_bytes()
    assert data[100:105] == b"HELLO" and len(data) == 8192
    assert (folder.backing / "m").read_bytes() == data


def test_readonly_lists_large_directory_like_rw(folder) -> None:
    """A directory of 1,500 entries lists the same names, types and sizes in both views."""
    d = make_dir(folder.rw / "many")
    for i in range(1500):
        make_file(d / f"e{i:04d}", data=b"z" * (i % 7))
    os.mkdir(d / "sub")

    def entries(path: os.PathLike[str]) -> dict[str, tuple[bool, int]]:
        out: dict[str, tuple[bool, int]] = {}
        with os.scandir(path) as it:
            for e in it:
                is_dir = e.is_dir(follow_symlinks=False)
                out[e.name] = (is_dir, 0 if is_dir else e.stat(follow_symlinks=False).st_size)
        return out

    ro_entries = entries(folder.ro / "many")
    assert ro_entries == entries(folder.rw / "many")
    assert len(ro_entries) == 1501
    assert ro_entries["e0006"] == (False, 6)
