"""fallocate(2) on the rw view: every mode against ext4's own answer, and its quota rule.

Each mode is run on a file in the view and on the same file in a directory of the backing
file system (ext4 here); sizes, contents and errnos must agree wherever the view offers the
mode, and mountd's counters must equal a recount. The modes are mountd's low-level
``fallocate`` handler's (``vfd.fuse.falloc``): with the fast path off those tests skip with
the reason, and the last tests check what the mount does then (glibc's emulation of
``posix_fallocate``, EOPNOTSUPP for every other mode). COLLAPSE_RANGE and INSERT_RANGE are
refused by the kernel's FUSE client before mountd is asked; their accounting is checked by
calling the handler in-process.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest
from fsprobe import raises_errno, recount, wait_for

from conftest import Ctx, InProcess
from vfd.folders.quota import Limits, Usage
from vfd.fuse import falloc
from vfd.fuse.inodes import Folder as FolderState

pytestmark = pytest.mark.fuse

KiB = 1024
MiB = 1 << 20
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, mode, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def outcome(path: Path, mode: int, offset: int, length: int) -> tuple[str, int, bytes]:
    """Make a 64 KiB file of a pattern at ``path``, apply the call: (errno name, size, data)."""
    pattern = bytes(range(256)) * 256
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    try:
        os.pwrite(fd, pattern, 0)
        try:
            fallocate(fd, mode, offset, length)
            code = "OK"
        except OSError as exc:
            code = errno.errorcode[exc.errno or 0]
        size = os.fstat(fd).st_size
        return code, size, os.pread(fd, size + 1, 0)
    finally:
        os.close(fd)


def settled(mountd, folder) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Wait until mountd's counters equal a recount of the folder; return it."""
    want = recount(folder.backing)

    def now() -> tuple[int, int]:
        u = mountd.usage(folder)
        return u["used_bytes"], u["used_files"]

    wait_for(lambda: now() == want, timeout=10, what=lambda: f"usage {now()} == recount {want}")
    return want


SAME_AS_EXT4 = [
    ("allocate_inside", falloc.ALLOCATE, 4 * KiB, 8 * KiB),
    ("allocate_past_end", falloc.ALLOCATE, 60 * KiB, 100 * KiB),
    ("keep_size_inside", falloc.KEEP_SIZE, 0, 64 * KiB),
    ("punch_hole", falloc.PUNCH_HOLE, 4 * KiB, 9 * KiB),
    ("punch_hole_past_end", falloc.PUNCH_HOLE, 60 * KiB, 1 * MiB),
    ("zero_range_inside", falloc.ZERO_RANGE, 1000, 5000),
    ("zero_range_past_end", falloc.ZERO_RANGE, 32 * KiB, 100 * KiB),
    ("zero_range_keep_size_inside", falloc.ZERO_RANGE_KEEP_SIZE, 100, 20 * KiB),
    ("punch_without_keep_size", falloc.FALLOC_FL_PUNCH_HOLE, 0, 4 * KiB),
    ("punch_and_zero", falloc.PUNCH_HOLE | falloc.FALLOC_FL_ZERO_RANGE, 0, 4 * KiB),
    ("zero_length", falloc.ZERO_RANGE, 0, 0),
]


@pytest.mark.parametrize(("what", "mode", "offset", "length"), SAME_AS_EXT4)
def test_fallocate_mode_matches_backing(
    mountd, tmp_path: Path, what: str, mode: int, offset: int, length: int
) -> None:  # type: ignore[no-untyped-def]
    """The view answers as ext4 does, leaves the same size and data, and counts it."""
    mountd.require_fast_path()  # fallocate is a low-level handler
    folder = mountd.new_folder()
    native = outcome(tmp_path / "f", mode, offset, length)
    assert outcome(folder.rw / "f", mode, offset, length) == native
    assert settled(mountd, folder) == (native[1], 1)


def test_fallocate_zero_range_past_limit(mountd) -> None:  # type: ignore[no-untyped-def]
    """ZERO_RANGE that would grow the file past the limit fails with EDQUOT and changes
    nothing; up to the limit exactly it succeeds."""
    mountd.require_fast_path()
    folder = mountd.new_folder(max_bytes=MiB)
    fd = os.open(folder.rw / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.pwrite(fd, b"z" * (64 * KiB), 0)
        with raises_errno(errno.EDQUOT):
            fallocate(fd, falloc.ZERO_RANGE, 32 * KiB, MiB)
        assert os.pread(fd, 64 * KiB, 0) == b"z" * (64 * KiB)
        assert os.stat(folder.backing / "f").st_size == 64 * KiB
        fallocate(fd, falloc.ZERO_RANGE, 32 * KiB, MiB - 32 * KiB)
        assert os.fstat(fd).st_size == MiB
        assert os.pread(fd, 64 * KiB, 0) == b"z" * (32 * KiB) + bytes(32 * KiB)
        with raises_errno(errno.EDQUOT):
            fallocate(fd, falloc.ALLOCATE, 0, MiB + 1)
    finally:
        os.close(fd)
    assert settled(mountd, folder) == (MiB, 1)


def test_fallocate_keep_size_past_end_refused(mountd) -> None:  # type: ignore[no-untyped-def]
    """KEEP_SIZE (alone or with ZERO_RANGE) past the end would hold disk no size shows:
    EOPNOTSUPP and no block allocated; within the size it is allowed."""
    mountd.require_fast_path()
    folder = mountd.new_folder(max_bytes=MiB)
    fd = os.open(folder.rw / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, 256 * KiB)
        for mode in (falloc.KEEP_SIZE, falloc.ZERO_RANGE_KEEP_SIZE):
            with raises_errno(errno.EOPNOTSUPP):
                fallocate(fd, mode, 0, 64 * MiB)
            assert os.stat(folder.backing / "f").st_blocks == 0
        fallocate(fd, falloc.KEEP_SIZE, 0, 256 * KiB)
        st = os.stat(folder.backing / "f")
        assert (st.st_size, st.st_blocks * 512) == (256 * KiB, 256 * KiB)
    finally:
        os.close(fd)
    assert settled(mountd, folder) == (256 * KiB, 1)


@pytest.mark.parametrize(
    "mode",
    [falloc.COLLAPSE_RANGE, falloc.INSERT_RANGE, 0x40, 0x40 | falloc.KEEP_SIZE, 0x80],
    ids=["collapse_range", "insert_range", "unshare_range", "unshare_keep_size", "write_zeroes"],
)
def test_fallocate_mode_not_reaching_mountd_refused(mountd, mode: int) -> None:  # type: ignore[no-untyped-def]
    """Modes the kernel's FUSE client does not forward (COLLAPSE_RANGE, INSERT_RANGE) or
    that the view does not offer answer EOPNOTSUPP and leave the file as it was."""
    folder = mountd.new_folder()
    fd = os.open(folder.rw / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.pwrite(fd, b"c" * (64 * KiB), 0)
        with raises_errno(errno.EOPNOTSUPP):
            fallocate(fd, mode, 8 * KiB, 8 * KiB)
        assert os.pread(fd, 128 * KiB, 0) == b"c" * (64 * KiB)
    finally:
        os.close(fd)
    assert settled(mountd, folder) == (64 * KiB, 1)


def test_fallocate_without_fast_path_emulated(mountd) -> None:  # type: ignore[no-untyped-def]
    """With the fast path off the mount has no fallocate: posix_fallocate is glibc's
    emulation (writes, held to the limit like any write), every other mode EOPNOTSUPP."""
    if mountd.call("health")["fast_path"]["on"]:
        why = "mountd's fast path is on: its fallocate handler answers instead"
        print(f"skipping: {why}")
        pytest.skip(why)
    folder = mountd.new_folder(max_bytes=MiB)
    fd = os.open(folder.rw / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.posix_fallocate(fd, 0, 256 * KiB)
        assert os.fstat(fd).st_size == 256 * KiB
        for mode in (falloc.KEEP_SIZE, falloc.PUNCH_HOLE, falloc.ZERO_RANGE):
            with raises_errno(errno.EOPNOTSUPP):
                fallocate(fd, mode, 0, 4 * KiB)
        with raises_errno(errno.EDQUOT):
            os.posix_fallocate(fd, 0, 2 * MiB)
    finally:
        os.close(fd)
    used = settled(mountd, folder)
    assert 256 * KiB <= used[0] <= MiB


# -- COLLAPSE_RANGE and INSERT_RANGE: the handler in-process ------------------------------


async def _file(inproc: InProcess, max_bytes: int, size: int) -> tuple[int, Path, FolderState]:
    """A ``size``-byte file of a pattern in a new folder, counted; its inode number."""
    folder = inproc.new_folder(max_bytes=max_bytes)
    path = Path(folder.path) / "f"
    path.write_bytes(bytes(range(256)) * (size // 256))
    folder.usage.set_used(Usage(size, 1))
    root = await inproc.root(folder)
    entry = await inproc.ops.lookup(root, b"f", Ctx())
    return int(entry.st_ino), path, folder


@pytest.mark.trio
async def test_fallocate_insert_range_reserved_first(inproc: InProcess) -> None:
    """INSERT_RANGE grows the file by its length, reserved before the call: past the limit
    it answers EDQUOT with the file untouched; within it the counters follow the size; the
    backing file system's own refusal (an insert at the end) gives the reservation back."""
    ino, path, folder = await _file(inproc, max_bytes=96 * KiB, size=64 * KiB)
    data = path.read_bytes()
    ops = inproc.ops
    assert ops.fallocate_sync(ino, falloc.INSERT_RANGE, 8 * KiB, 64 * KiB) == errno.EDQUOT
    assert path.read_bytes() == data
    assert folder.usage.used == Usage(64 * KiB, 1)
    assert ops.fallocate_sync(ino, falloc.INSERT_RANGE, 8 * KiB, 32 * KiB) == 0
    assert path.read_bytes() == data[: 8 * KiB] + bytes(32 * KiB) + data[8 * KiB :]
    assert folder.usage.used == Usage(96 * KiB, 1)
    inproc.registry.set_limits(folder.host, folder.scope, Limits(0, 0))
    assert ops.fallocate_sync(ino, falloc.INSERT_RANGE, 96 * KiB, 4 * KiB) == errno.EINVAL
    assert folder.usage.used == Usage(96 * KiB, 1)


@pytest.mark.trio
async def test_fallocate_collapse_range_released(inproc: InProcess) -> None:
    """COLLAPSE_RANGE shrinks the file by its length, released after the call; a refused
    collapse (misaligned, or reaching the end) changes nothing."""
    ino, path, folder = await _file(inproc, max_bytes=MiB, size=64 * KiB)
    data = path.read_bytes()
    ops = inproc.ops
    assert ops.fallocate_sync(ino, falloc.COLLAPSE_RANGE, 100, 4 * KiB) == errno.EINVAL
    assert ops.fallocate_sync(ino, falloc.COLLAPSE_RANGE, 32 * KiB, 32 * KiB) == errno.EINVAL
    assert path.read_bytes() == data
    assert folder.usage.used == Usage(64 * KiB, 1)
    assert ops.fallocate_sync(ino, falloc.COLLAPSE_RANGE, 8 * KiB, 16 * KiB) == 0
    assert path.read_bytes() == data[: 8 * KiB] + data[24 * KiB :]
    assert folder.usage.used == Usage(48 * KiB, 1)
