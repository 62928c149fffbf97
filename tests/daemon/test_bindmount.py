"""``vfd.daemon.bindmount`` on real directories and real mounts (the tests run as root)."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from vfd import mountinfo
from vfd.daemon import bindmount


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path`` with ``src/`` (holding ``file``) and an empty ``t/``; every mount made
    under it is removed afterwards."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "file").write_text("data")
    (tmp_path / "t").mkdir()
    try:
        yield tmp_path
    finally:
        for entry in reversed(mountinfo.read()):
            if entry.mount_point.startswith(f"{tmp_path}/"):
                subprocess.run(["umount", "-l", entry.mount_point], check=False)


def _mounts(path: Path) -> list[mountinfo.MountEntry]:
    return mountinfo.mounts_at(path)


def _raises(errnum: int, path: str) -> None:
    with pytest.raises(OSError) as info:
        bindmount.open_dir(path)
    assert info.value.errno == errnum, info.value


def test_bindmount_open_dir_follows_no_link(tree: Path) -> None:
    (tree / "link").symlink_to(tree / "t")
    (tree / "up").symlink_to(tree)
    _raises(errno.ELOOP, str(tree / "link"))
    _raises(errno.ELOOP, str(tree / "up" / "t"))  # a link in the middle
    _raises(errno.ENOTDIR, str(tree / "src" / "file"))
    _raises(errno.ENOENT, str(tree / "missing"))
    _raises(errno.EINVAL, str(tree / "missing" / ".." / "t"))
    _raises(errno.EINVAL, "relative/path")
    fd = bindmount.open_dir(f"{tree}//./t/")
    try:
        here, there = os.fstat(fd), os.stat(tree / "t")
        assert (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
    finally:
        os.close(fd)


def test_bindmount_open_dir_refuses_a_users_fuse_mount(tree: Path) -> None:
    """A FUSE mount a user made (``user_id`` not 0) is refused before it is asked anything:
    this one's server never answers, so a stat of it would wait until the fd is closed."""
    dev = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    options = f"fd={dev},rootmode=40000,user_id=4242,group_id=4242,allow_other".encode()
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        assert libc.mount(b"dead", os.fsencode(tree / "t"), b"fuse.dead", 0x6, options) == 0
        for path in (tree / "t", tree / "t" / "below"):
            with pytest.raises(bindmount.ForeignFuse) as info:
                bindmount.open_dir(str(path))
            assert info.value.entry.mount_point == str(tree / "t")
            assert "user_id=4242" in info.value.entry.super_options
    finally:
        os.close(dev)  # aborts the connection


def test_bindmount_binds_the_opened_directory_not_its_name(tree: Path) -> None:
    """The directory is swapped for a link after it was opened: the mount still lands on it."""
    victim = tree / "victim"
    victim.mkdir()
    fd = bindmount.open_dir(str(tree / "t"))
    try:
        (tree / "t").rename(tree / "moved")
        (tree / "t").symlink_to(victim)
        assert bindmount.list_dir(fd) == []
        assert not bindmount.is_mount_root(fd)
        bindmount.bind(str(tree / "src"), fd, readonly=False)
    finally:
        os.close(fd)
    assert not _mounts(victim) and os.listdir(victim) == []
    assert [e.root for e in _mounts(tree / "moved")] == [str(tree / "src")]
    assert (tree / "moved" / "file").read_text() == "data"


def test_bindmount_readonly_binds_are_ro_nosuid_nodev(tree: Path) -> None:
    fd = bindmount.open_dir(str(tree / "t"))
    try:
        bindmount.bind(str(tree / "src"), fd, readonly=True)
    finally:
        os.close(fd)
    (entry,) = _mounts(tree / "t")
    assert {"ro", "nosuid", "nodev"} <= set(entry.options)
    with pytest.raises(OSError) as info:
        (tree / "t" / "new").write_text("x")
    assert info.value.errno == errno.EROFS
    (tree / "rw").mkdir()
    fd = bindmount.open_dir(str(tree / "rw"))
    try:
        bindmount.bind(str(tree / "src"), fd, readonly=False)
    finally:
        os.close(fd)
    (entry,) = _mounts(tree / "rw")
    assert {"rw", "nosuid", "nodev"} <= set(entry.options)


def test_bindmount_mount_root_and_mount_id(tree: Path) -> None:
    fd = bindmount.open_dir(str(tree / "t"))
    try:
        bindmount.bind(str(tree / "src"), fd, readonly=False)
        # the descriptor still holds the directory under the mount
        assert not bindmount.is_mount_root(fd)
        assert bindmount.list_dir(fd) == []
    finally:
        os.close(fd)
    fd = bindmount.open_dir(str(tree / "t"))  # a walk enters the mount
    try:
        assert bindmount.is_mount_root(fd)
        assert bindmount.list_dir(fd) == ["file"]
        (entry,) = _mounts(tree / "t")
        assert bindmount.mount_id(fd) == entry.mount_id
        assert bindmount.mount_of(fd) == entry
    finally:
        os.close(fd)
    root = bindmount.open_dir("/")
    try:
        assert bindmount.is_mount_root(root)
    finally:
        os.close(root)


def test_bindmount_unmount_takes_the_topmost_mount_on_the_place(tree: Path) -> None:
    """umount2 of ``/proc/self/fd/N`` resolves the magic link to the descriptor's own mount,
    then to the topmost mount stacked on that place, as every umount path does: a mount
    stacked after the descriptor was opened is the one removed. This is why the daemon
    serialises its mount changes (only root can stack mounts)."""
    fd = bindmount.open_dir(str(tree / "t"))
    try:
        bindmount.bind(str(tree / "src"), fd, readonly=False)
    finally:
        os.close(fd)
    lower = bindmount.open_dir(str(tree / "t"))
    try:
        (bottom,) = _mounts(tree / "t")
        assert bindmount.mount_id(lower) == bottom.mount_id
        (tree / "other").mkdir()
        subprocess.run(["mount", "--bind", tree / "other", tree / "t"], check=True)
        assert [e.root for e in _mounts(tree / "t")] == [str(tree / "src"), str(tree / "other")]
        bindmount.unmount(lower)
        assert _mounts(tree / "t") == [bottom]
        # the descriptor pins its mount: only a lazy detach can remove it while it is open
        bindmount.unmount(lower)
        assert _mounts(tree / "t") == []
        assert bindmount.list_dir(lower) == ["file"]  # still usable until closed
    finally:
        os.close(lower)
    with pytest.raises(OSError) as info:
        fd = bindmount.open_dir(str(tree / "t"))
        try:
            bindmount.unmount(fd)
        finally:
            os.close(fd)
    assert info.value.errno == errno.EINVAL  # nothing mounted there any more
