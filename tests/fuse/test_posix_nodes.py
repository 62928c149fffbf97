"""POSIX conformance of mkfifo(3) and mknod(2) on the rw/ view.

The pjdfstest ``mkfifo`` and ``mknod`` categories: types, modes, owners, device numbers,
errors, the privilege needed for device nodes, and a FIFO in a folder actually carrying data
between two processes (the kernel serves FIFO I/O; the mount only stores the node).
"""

from __future__ import annotations

import errno
import os
import stat
import threading

import pytest
from fsprobe import USER, make_dir, make_file, raises_errno, run_as, settle

pytestmark = pytest.mark.fuse

ROOT = (0, 0)


def _mkfifo(name: str, mode: int) -> tuple[int, int, int]:
    os.mkfifo(name, mode)
    st = os.lstat(name)
    return st.st_mode, st.st_uid, st.st_gid


@pytest.mark.parametrize(
    ("ids", "mode", "umask", "want"),
    [(ROOT, 0o666, 0o022, 0o644), (USER, 0o777, 0o077, 0o700), (USER, 0o640, 0o000, 0o640)],
)
def test_mkfifo_sets_type_mode_and_owner(
    folder, ids: tuple[int, int], mode: int, umask: int, want: int
) -> None:
    """mkfifo makes a FIFO with ``mode & ~umask`` owned by the caller, on disk too."""
    home = make_dir(folder.rw / "home", USER)
    got = run_as(ids, _mkfifo, "p", mode, cwd=home, umask=umask)
    assert got == (stat.S_IFIFO | want, *ids)
    st = os.lstat(folder.backing / "home" / "p")
    assert stat.S_ISFIFO(st.st_mode) and st.st_uid == ids[0]


def test_mkfifo_updates_parent_times(folder) -> None:
    """A new FIFO updates its parent's mtime and ctime."""
    d = make_dir(folder.rw / "d")
    before = settle(d)
    os.mkfifo(d / "p")
    st = os.stat(d)
    assert st.st_mtime_ns > before.st_mtime_ns and st.st_ctime_ns > before.st_ctime_ns


def test_mkfifo_errors(folder) -> None:
    """EEXIST on existing names (dangling links included), ENOENT under a missing parent,
    ENOTDIR through a file, ENAMETOOLONG for 256 bytes, EACCES in a closed directory."""
    make_file(folder.rw / "f")
    make_dir(folder.rw / "d")
    (folder.rw / "l").symlink_to("nowhere")
    for name in ("f", "d", "l"):
        with raises_errno(errno.EEXIST):
            os.mkfifo(folder.rw / name)
    with raises_errno(errno.ENOENT):
        os.mkfifo(folder.rw / "missing" / "p")
    with raises_errno(errno.ENOTDIR):
        os.mkfifo(folder.rw / "f" / "p")
    with raises_errno(errno.ENAMETOOLONG):
        os.mkfifo(folder.rw / ("p" * 256))
    os.mkfifo(folder.rw / ("p" * 255))
    with raises_errno(errno.EACCES):
        run_as(USER, os.mkfifo, "d/p", cwd=folder.rw)
    assert not (folder.rw / "nowhere").exists()
    assert os.listdir(folder.backing / "d") == []


def test_mkfifo_carries_data_between_processes(folder) -> None:
    """A FIFO created in a folder works as a pipe: a forked writer's bytes reach a reader."""
    fifo = folder.rw / "pipe"
    os.mkfifo(fifo, 0o600)
    got: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as r:
            got.append(r.read())

    t = threading.Thread(target=reader)
    t.start()

    def write() -> int:
        with open("pipe", "wb") as w:
            return w.write(b"through the fifo" * 1000)

    assert run_as(ROOT, write, cwd=folder.rw) == 16000
    t.join(timeout=30)
    assert not t.is_alive()
    assert got == [b"through the fifo" * 1000]
    assert os.lstat(folder.backing / "pipe").st_size == 0


@pytest.mark.parametrize(
    ("kind", "mode"),
    [("regular", stat.S_IFREG | 0o640), ("fifo", stat.S_IFIFO | 0o600), ("socket", 0o140755)],
)
def test_mknod_unprivileged_node_types(folder, kind: str, mode: int) -> None:
    """mknod makes regular files, FIFOs and socket nodes for anyone allowed to write the
    directory, with the requested type and mode."""
    home = make_dir(folder.rw / "home", USER)

    def mknod() -> int:
        os.mknod("n", mode)
        return os.lstat("n").st_mode

    assert run_as(USER, mknod, cwd=home, umask=0) == mode
    st = os.lstat(folder.backing / "home" / "n")
    assert st.st_mode == mode and st.st_uid == USER[0]
    if kind == "regular":
        assert os.stat(home / "n").st_size == 0


@pytest.mark.parametrize("kind", [stat.S_IFCHR, stat.S_IFBLK])
def test_mknod_device_as_root_keeps_device_number(folder, kind: int) -> None:
    """root makes device nodes; type and st_rdev survive through the mount and on disk."""
    dev = os.makedev(1, 3) if kind == stat.S_IFCHR else os.makedev(7, 200)
    os.mknod(folder.rw / "dev", kind | 0o600, dev)
    st = os.lstat(folder.rw / "dev")
    assert stat.S_IFMT(st.st_mode) == kind and st.st_rdev == dev
    back = os.lstat(folder.backing / "dev")
    assert stat.S_IFMT(back.st_mode) == kind and back.st_rdev == dev


def test_mknod_device_needs_privilege(folder) -> None:
    """An unprivileged user gets EPERM for character and block device nodes."""
    home = make_dir(folder.rw / "home", USER)
    for kind in (stat.S_IFCHR, stat.S_IFBLK):
        with raises_errno(errno.EPERM):
            run_as(USER, os.mknod, "dev", kind | 0o666, os.makedev(1, 3), cwd=home)
    assert os.listdir(folder.backing / "home") == []


def test_mknod_errors(folder) -> None:
    """EEXIST on an existing name, ENOENT under a missing parent, ENAMETOOLONG for 256
    bytes, EINVAL for a directory type (mkdir exists for that)."""
    make_file(folder.rw / "f")
    with raises_errno(errno.EEXIST):
        os.mknod(folder.rw / "f", stat.S_IFIFO | 0o600)
    with raises_errno(errno.ENOENT):
        os.mknod(folder.rw / "missing" / "n", stat.S_IFIFO | 0o600)
    with raises_errno(errno.ENAMETOOLONG):
        os.mknod(folder.rw / ("n" * 256), stat.S_IFIFO | 0o600)
    with raises_errno(errno.EINVAL, errno.EPERM):
        os.mknod(folder.rw / "dir", stat.S_IFDIR | 0o755)
    assert os.listdir(folder.backing) == ["f"]


def test_mknod_then_unlink_and_rename_special_nodes(folder) -> None:
    """Special nodes are ordinary directory entries: renamed and unlinked like files."""
    os.mkfifo(folder.rw / "p")
    os.mknod(folder.rw / "s", stat.S_IFSOCK | 0o600)
    os.rename(folder.rw / "p", folder.rw / "p2")
    os.link(folder.rw / "s", folder.rw / "s2")
    assert os.lstat(folder.rw / "s").st_nlink == 2
    os.unlink(folder.rw / "s")
    assert sorted(os.listdir(folder.backing)) == ["p2", "s2"]
    assert stat.S_ISFIFO(os.lstat(folder.backing / "p2").st_mode)
