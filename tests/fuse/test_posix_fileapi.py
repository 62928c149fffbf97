"""The rest of the Linux file API on the rw view: renameat2(RENAME_WHITEOUT) and ioctls.

A whiteout is made as ext4 makes it (a 0/0 character device at the old name, owned by the
caller), counts as a file for the quota, follows the "group = owner" rule in a shared
folder, and is refused with EDQUOT at the file limit before anything is renamed. No ioctl is
passed to the backing file system: the kernel answers the ones it handles itself
(FIGETBSZ, FIONREAD), the others fail as docs/storage.md lists.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
from pathlib import Path

import pytest
from fsprobe import USER, fork_call, raises_errno, recount, renameat2, wait_for

pytestmark = pytest.mark.fuse

RENAME_WHITEOUT = 4
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
GROUP = 4242


def settled(mountd, folder) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    want = recount(folder.backing)

    def now() -> tuple[int, int]:
        u = mountd.usage(folder)
        return u["used_bytes"], u["used_files"]

    wait_for(lambda: now() == want, timeout=10, what=lambda: f"usage {now()} == recount {want}")
    return want


def _whiteout() -> tuple[int, int, int, int, list[str]]:
    """As the caller, in the current directory: make ``d/x``, rename it to ``d/y`` leaving
    a whiteout; (type bits, rdev, uid, gid of the whiteout, names in d)."""
    os.mkdir("d")
    with open("d/x", "w") as f:
        f.write("data")
    renameat2("d/x", "d/y", RENAME_WHITEOUT)
    st = os.lstat("d/x")
    return stat.S_IFMT(st.st_mode), st.st_rdev, st.st_uid, st.st_gid, sorted(os.listdir("d"))


def test_rename_whiteout_matches_backing(mountd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The whiteout is what ext4 makes, owned by the caller, and counts as one file."""
    folder = mountd.new_folder(uid=USER[0], gid=USER[1])
    native_root = tmp_path / "native"
    native_root.mkdir()
    os.chown(native_root, *USER)
    native = fork_call(_whiteout, uid=USER[0], gid=USER[1], cwd=native_root).result()
    view = fork_call(_whiteout, uid=USER[0], gid=USER[1], cwd=folder.rw).result()
    assert view == native == (stat.S_IFCHR, 0, USER[0], USER[1], ["x", "y"])
    assert (folder.backing / "d" / "y").read_text() == "data"
    assert settled(mountd, folder) == (4, 3)  # d, y and the whiteout


def test_rename_whiteout_at_file_limit(mountd) -> None:  # type: ignore[no-untyped-def]
    """At the file limit the whiteout cannot be made: EDQUOT, and nothing is renamed; a
    whiteout over an existing target needs the file the target frees, still refused first."""
    folder = mountd.new_folder(max_files=2)
    (folder.rw / "x").write_text("x")
    (folder.rw / "z").write_text("z")
    with raises_errno(errno.EDQUOT):
        renameat2(folder.rw / "x", folder.rw / "y", RENAME_WHITEOUT)
    with raises_errno(errno.EDQUOT):
        renameat2(folder.rw / "x", folder.rw / "z", RENAME_WHITEOUT)
    assert sorted(os.listdir(folder.backing)) == ["x", "z"]
    assert settled(mountd, folder) == (2, 2)
    os.unlink(folder.rw / "z")
    renameat2(folder.rw / "x", folder.rw / "y", RENAME_WHITEOUT | RENAME_NOREPLACE)
    assert stat.S_ISCHR(os.lstat(folder.backing / "x").st_mode)
    assert settled(mountd, folder) == (1, 2)
    os.unlink(folder.rw / "x")  # a whiteout is removed like any file
    assert settled(mountd, folder) == (1, 1)


def test_rename_whiteout_with_exchange_invalid(mountd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """RENAME_WHITEOUT with RENAME_EXCHANGE is EINVAL, as on ext4; nothing changes."""
    folder = mountd.new_folder()
    for root in (tmp_path, folder.rw):
        (root / "a").write_text("a")
        (root / "b").write_text("b")
        with raises_errno(errno.EINVAL):
            renameat2(root / "a", root / "b", RENAME_WHITEOUT | RENAME_EXCHANGE)
    assert settled(mountd, folder) == (2, 2)


def test_rename_whiteout_in_shared_folder_follows_group(mountd) -> None:  # type: ignore[no-untyped-def]
    """In a group-shared folder the whiteout gets the folder's group and g = u."""
    folder = mountd.new_folder(uid=USER[0], gid=USER[1])
    mountd.call("share", vfid=folder.vfid, gid=GROUP)
    kind, _, uid, gid, _ = fork_call(
        _whiteout, uid=USER[0], gid=USER[1], groups=(GROUP,), cwd=folder.rw, umask=0o077
    ).result()
    st = os.lstat(folder.backing / "d" / "x")
    assert (kind, uid, gid) == (stat.S_IFCHR, USER[0], GROUP)
    assert stat.S_IMODE(st.st_mode) & 0o070 == (stat.S_IMODE(st.st_mode) & 0o700) >> 3


def test_rename_whiteout_in_ro_view_refused(mountd) -> None:  # type: ignore[no-untyped-def]
    folder = mountd.new_folder()
    (folder.rw / "x").write_text("x")
    with raises_errno(errno.EROFS):
        renameat2(folder.ro / "x", folder.ro / "y", RENAME_WHITEOUT)
    assert os.listdir(folder.backing) == ["x"]


FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IOC_GETVERSION = 0x80087601
FS_IOC_FSGETXATTR = 0x801C581F
FS_IOC_FIEMAP = 0xC020660B
FS_IOC_FSSETXATTR = 0x401C5820
FICLONE = 0x40049409
FICLONERANGE = 0x4020940D
FIDEDUPERANGE = 0xC0189436
FIGETBSZ = 2
FIONREAD = 0x541B


def _ioctl(fd: int, req: int, arg: bytearray | int) -> int | None:
    """The errno of the ioctl, None when it succeeded."""
    try:
        fcntl.ioctl(fd, req, arg)
    except OSError as exc:
        return exc.errno
    return None


@pytest.mark.parametrize(
    ("req", "want"),
    [
        (FS_IOC_GETFLAGS, errno.ENOTTY),
        (FS_IOC_SETFLAGS, errno.ENOTTY),
        (FS_IOC_GETVERSION, errno.ENOTTY),
        (FS_IOC_FSGETXATTR, errno.ENOTTY),
        (FS_IOC_FSSETXATTR, errno.ENOTTY),
        (FS_IOC_FIEMAP, errno.EOPNOTSUPP),
        (FIGETBSZ, None),
        (FIONREAD, None),
    ],
    ids=[
        "getflags",
        "setflags",
        "getversion",
        "fsgetxattr",
        "fssetxattr",
        "fiemap",
        "figetbsz",
        "fionread",
    ],
)
def test_ioctl_answer(mountd, req: int, want: int | None) -> None:  # type: ignore[no-untyped-def]
    """What each ioctl answers on a file of the rw view (docs/storage.md "ioctls")."""
    folder = mountd.new_folder()
    (folder.rw / "f").write_bytes(b"f" * 4096)
    fd = os.open(folder.rw / "f", os.O_RDWR)
    try:
        buf = bytearray(64)  # zeroed: a FIEMAP request for no extents, flags 0 for SETFLAGS
        assert _ioctl(fd, req, buf) == want
    finally:
        os.close(fd)
    assert (folder.backing / "f").read_bytes() == b"f" * 4096


def test_ioctl_ficlone_refused(mountd) -> None:  # type: ignore[no-untyped-def]
    """FICLONE (reflink) answers EOPNOTSUPP; cp --reflink=auto then copies."""
    folder = mountd.new_folder()
    (folder.rw / "src").write_bytes(b"s" * 4096)
    src = os.open(folder.rw / "src", os.O_RDONLY)
    dst = os.open(folder.rw / "dst", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        assert _ioctl(dst, FICLONE, src) == errno.EOPNOTSUPP
    finally:
        os.close(src)
        os.close(dst)
    assert os.stat(folder.backing / "dst").st_size == 0


def test_ioctl_range_clone_and_dedupe_refused(mountd) -> None:  # type: ignore[no-untyped-def]
    """FICLONERANGE and FIDEDUPERANGE are refused too; nothing is shared or changed."""
    folder = mountd.new_folder()
    (folder.rw / "src").write_bytes(b"s" * 8192)
    (folder.rw / "dst").write_bytes(b"s" * 8192)
    src = os.open(folder.rw / "src", os.O_RDONLY)
    dst = os.open(folder.rw / "dst", os.O_RDWR)
    try:
        clone_range = struct.pack("<qQQQ", src, 0, 4096, 0)
        assert _ioctl(dst, FICLONERANGE, bytearray(clone_range)) == errno.EOPNOTSUPP
        dedupe = bytearray(
            struct.pack("<QQHHI", 0, 4096, 1, 0, 0) + struct.pack("<qQQiI", dst, 0, 0, 0, 0)
        )
        code = _ioctl(src, FIDEDUPERANGE, dedupe)
        status = struct.unpack_from("<i", dedupe, 24 + 24)[0]
        assert code == errno.EOPNOTSUPP or (code is None and status < 0), (code, status)
    finally:
        os.close(src)
        os.close(dst)
    assert (folder.backing / "dst").read_bytes() == b"s" * 8192


def test_lseek_data_hole_generic(mountd) -> None:  # type: ignore[no-untyped-def]
    """pyfuse3 has no lseek, so SEEK_DATA/SEEK_HOLE get the kernel's generic answer: the
    whole file is data, the only hole is at its end (holes on disk are not reported)."""
    folder = mountd.new_folder()
    fd = os.open(folder.rw / "sparse", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.pwrite(fd, b"d", 1 << 20)
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        assert os.lseek(fd, 0, os.SEEK_HOLE) == (1 << 20) + 1
    finally:
        os.close(fd)
