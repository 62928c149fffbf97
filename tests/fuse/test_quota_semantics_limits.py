"""Quota limits are enforced at once with EDQUOT, and nothing past a limit is ever stored.

Every way of growing a folder is tried against a scope's byte and file limits: write (also
sparse, far past the end), truncate up, posix_fallocate and fallocate(KEEP_SIZE), O_TRUNC,
copy_file_range; create, mkdir, symlink, mknod, mkfifo; and across two folders of the scope.
After each refusal the backing tree is checked directly: its recount never passes the limit
and equals mountd's counters. Usage may reach a limit exactly; shrinking always works.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path

import pytest
from fsprobe import make_file, raises_errno, recount, wait_for

pytestmark = pytest.mark.fuse

MiB = 1 << 20
CHUNK = 64 * 1024
_libc = ctypes.CDLL(None, use_errno=True)
_FALLOC_FL_KEEP_SIZE = 1


def usage(mountd, folder) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return mountd.call("usage", host=mountd.config.default_host, scope=folder.scope)


def settled(mountd, folder, *roots: Path) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Wait until mountd's counters equal a recount of ``roots`` (releases are asynchronous
    to close(2)); return that recount."""
    want = recount(*roots)

    def same() -> bool:
        u = usage(mountd, folder)
        return (u["used_bytes"], u["used_files"]) == want

    wait_for(
        same,
        timeout=10,
        what=lambda: f"usage to equal the recount {want}; mountd says {usage(mountd, folder)}",
    )
    return want


def fill(fd: int, limit: int) -> int:
    """Append CHUNK-sized writes until one fails; return the bytes written. The failing write
    must fail with EDQUOT (or be short: a write may stop exactly at the limit)."""
    total = 0
    while total <= limit + CHUNK:
        try:
            n = os.write(fd, b"q" * CHUNK)
        except OSError as exc:
            assert exc.errno == errno.EDQUOT, f"expected EDQUOT, got {exc}"
            return total
        total += n
        if n < CHUNK:
            with raises_errno(errno.EDQUOT):
                os.write(fd, b"q")
            return total
    raise AssertionError(f"wrote {total} bytes with a limit of {limit}")


def test_quota_write_stops_exactly_at_max_bytes(mountd) -> None:
    """Appends reach the limit exactly, the next write is EDQUOT, and the backing file holds
    exactly what write(2) reported."""
    folder = mountd.new_folder(max_bytes=MiB)
    fd = os.open(folder.rw / "big", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        total = fill(fd, MiB)
    finally:
        os.close(fd)
    assert total == MiB
    assert os.stat(folder.backing / "big").st_size == MiB
    assert settled(mountd, folder, folder.backing) == (MiB, 1)


def test_quota_write_crossing_limit_stores_nothing_past_it(mountd) -> None:
    """A write that would cross the limit stores nothing past it; overwriting inside the
    file (no growth) still works when full, and shrinking makes room again."""
    folder = mountd.new_folder(max_bytes=MiB)
    fd = os.open(folder.rw / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"a" * (MiB - 100))
        try:
            n = os.write(fd, b"b" * 200)
        except OSError as exc:
            assert exc.errno == errno.EDQUOT, exc
        else:
            assert n <= 100, f"a write stored {n} bytes where 100 were free"
        assert os.stat(folder.backing / "f").st_size <= MiB
        os.pwrite(fd, b"c" * 4096, 0)
        os.ftruncate(fd, MiB // 2)
        os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, b"d" * (MiB // 2))
        with raises_errno(errno.EDQUOT):
            os.write(fd, b"e")
    finally:
        os.close(fd)
    assert os.stat(folder.backing / "f").st_size == MiB
    assert (folder.backing / "f").read_bytes()[:4096] == b"c" * 4096
    settled(mountd, folder, folder.backing)


def test_quota_sparse_write_far_past_end_counts_apparent_size(mountd) -> None:
    """Bytes are apparent sizes: one byte written at offset 10 GiB is refused under a 1 MiB
    limit, though it would take one block on disk."""
    folder = mountd.new_folder(max_bytes=MiB)
    fd = os.open(folder.rw / "sparse", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        with raises_errno(errno.EDQUOT):
            os.pwrite(fd, b"x", 10 << 30)
        os.pwrite(fd, b"x", MiB - 1)
    finally:
        os.close(fd)
    assert os.stat(folder.backing / "sparse").st_size == MiB
    assert settled(mountd, folder, folder.backing) == (MiB, 1)


def test_quota_limit_is_shared_by_the_folders_of_a_scope(mountd) -> None:
    """Two folders of one scope draw on one limit."""
    a = mountd.new_folder(max_bytes=MiB)
    b = mountd.new_folder(scope=a.scope)
    make_file(a.rw / "f", data=b"a" * (600 * 1024))
    fd = os.open(b.rw / "g", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        assert 6 * CHUNK <= fill(fd, MiB) <= 424 * 1024  # six whole chunks, maybe a part
    finally:
        os.close(fd)
    assert settled(mountd, a, a.backing, b.backing)[0] <= MiB


def test_quota_truncate_up_past_limit(mountd) -> None:
    """truncate/ftruncate growing past the limit are EDQUOT and change nothing; up to the
    limit exactly they work; O_TRUNC frees."""
    folder = mountd.new_folder(max_bytes=MiB)
    f = make_file(folder.rw / "f", data=b"z" * 1000)
    with raises_errno(errno.EDQUOT):
        os.truncate(f, MiB + 1)
    fd = os.open(f, os.O_WRONLY)
    try:
        with raises_errno(errno.EDQUOT):
            os.ftruncate(fd, 4 * MiB)
    finally:
        os.close(fd)
    assert os.stat(folder.backing / "f").st_size == 1000
    os.truncate(f, MiB)
    assert settled(mountd, folder, folder.backing) == (MiB, 1)
    with raises_errno(errno.EDQUOT):
        os.truncate(f, MiB + 1)
    os.close(os.open(f, os.O_WRONLY | os.O_TRUNC))
    assert settled(mountd, folder, folder.backing) == (0, 1)


def test_quota_posix_fallocate_past_limit(mountd) -> None:
    """posix_fallocate that would grow the file past the limit fails at once with EDQUOT,
    leaving the file as it was; within the limit it grows the file and its usage."""
    mountd.require_fast_path()  # statfs and fallocate are low-level handlers
    folder = mountd.new_folder(max_bytes=MiB)
    fd = os.open(folder.rw / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        with raises_errno(errno.EDQUOT):
            os.posix_fallocate(fd, 0, 2 * MiB)
        # "At once": the refused call changed nothing (glibc's emulation, used when the
        # mount lacks fallocate, would have written zeros up to the limit first).
        assert os.stat(folder.backing / "f").st_size == 0
        os.posix_fallocate(fd, 0, MiB // 2)
        assert os.fstat(fd).st_size == MiB // 2
    finally:
        os.close(fd)
    assert settled(mountd, folder, folder.backing) == (MiB // 2, 1)


def test_quota_fallocate_keep_size_cannot_reserve_disk_past_limit(mountd) -> None:
    """fallocate(FALLOC_FL_KEEP_SIZE) allocates blocks without changing the apparent size;
    it must not become a way to hold disk space past the limit (EDQUOT or EOPNOTSUPP)."""
    folder = mountd.new_folder(max_bytes=MiB)
    fd = os.open(folder.rw / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        rc = _libc.fallocate(fd, _FALLOC_FL_KEEP_SIZE, ctypes.c_long(0), ctypes.c_long(64 * MiB))
        code = ctypes.get_errno() if rc else 0
    finally:
        os.close(fd)
    assert code in (errno.EDQUOT, errno.EOPNOTSUPP), f"fallocate answered {code}"
    assert os.stat(folder.backing / "f").st_blocks * 512 <= MiB


def _copy_all(src: Path, dst: Path, want: int) -> tuple[int, int]:
    """copy_file_range ``src`` into a new ``dst`` until EOF or an error: (copied, errno)."""
    copied = 0
    with open(src, "rb") as s:
        fd = os.open(dst, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            while copied < want:
                n = os.copy_file_range(s.fileno(), fd, want - copied)
                if n == 0:
                    break
                copied += n
        except OSError as exc:
            return copied, exc.errno or 0
        finally:
            os.close(fd)
    return copied, 0


def test_quota_copy_file_range_past_limit(mountd, tmp_path: Path) -> None:
    """copy_file_range into a folder (from the same mount, or from outside where the kernel
    allows it) is held to the limit like write(2)."""
    folder = mountd.new_folder(max_bytes=MiB)
    make_file(folder.rw / "inside", data=b"i" * (600 * 1024))
    copied, code = _copy_all(folder.rw / "inside", folder.rw / "copy", 600 * 1024)
    assert code == errno.EDQUOT, (copied, code)
    assert copied <= 424 * 1024
    outside = make_file(tmp_path / "src", data=b"s" * (3 * MiB))
    copied, code = _copy_all(outside, folder.rw / "copy2", 3 * MiB)
    assert code in (errno.EDQUOT, errno.EXDEV), (copied, code)
    assert recount(folder.backing)[0] <= MiB
    settled(mountd, folder, folder.backing)


@pytest.mark.parametrize("kind", ["file", "mkdir", "symlink", "mknod", "mkfifo", "creat_excl"])
def test_quota_create_past_max_files(mountd, kind: str) -> None:
    """With max_files entries made, every kind of new inode is EDQUOT; a hard link (no new
    inode) and a rename still work; an unlink makes room for one more."""
    folder = mountd.new_folder(max_files=3)
    make_file(folder.rw / "a")
    os.mkdir(folder.rw / "b")
    os.symlink("a", folder.rw / "c")
    rw = folder.rw
    makers = {
        "file": lambda: os.close(os.open(rw / "x", os.O_CREAT | os.O_WRONLY, 0o644)),
        "creat_excl": lambda: os.close(os.open(rw / "b" / "x", os.O_CREAT | os.O_EXCL, 0o644)),
        "mkdir": lambda: os.mkdir(rw / "b" / "x"),
        "symlink": lambda: os.symlink("a", rw / "x"),
        "mknod": lambda: os.mknod(rw / "x", stat.S_IFREG | 0o644),
        "mkfifo": lambda: os.mkfifo(rw / "x"),
    }
    with raises_errno(errno.EDQUOT):
        makers[kind]()
    assert sorted(os.listdir(folder.backing)) == ["a", "b", "c"]
    assert os.listdir(folder.backing / "b") == []
    os.link(rw / "a", rw / "b" / "a2")
    os.rename(rw / "c", rw / "b" / "c")
    assert settled(mountd, folder, folder.backing) == (0, 3)
    os.unlink(rw / "b" / "c")
    settled(mountd, folder, folder.backing)
    makers[kind]()
    assert settled(mountd, folder, folder.backing) == (0, 3)


def test_quota_lowered_limit_still_allows_shrinking(mountd) -> None:
    """A limit lowered below current usage refuses growth but never deletion or truncation."""
    folder = mountd.new_folder(max_bytes=4 * MiB, max_files=10)
    for i in range(4):
        make_file(folder.rw / f"f{i}", data=b"x" * (MiB // 2))
    host = mountd.config.default_host
    mountd.call("set_limits", host=host, scope=folder.scope, max_bytes=MiB, max_files=2)
    with raises_errno(errno.EDQUOT):
        make_file(folder.rw / "new")
    with raises_errno(errno.EDQUOT), open(folder.rw / "f0", "ab") as f:
        f.write(b"more")
    os.truncate(folder.rw / "f0", 10)
    os.unlink(folder.rw / "f1")
    assert settled(mountd, folder, folder.backing) == (MiB + 10, 3)


def test_quota_zero_means_unlimited(mountd) -> None:
    """A scope with limits 0 takes any size and any number of files."""
    folder = mountd.new_folder(max_bytes=0, max_files=0)
    fd = os.open(folder.rw / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.pwrite(fd, b"x", (1 << 40) - 1)
    finally:
        os.close(fd)
    for i in range(200):
        os.mkdir(folder.rw / f"d{i}")
    assert settled(mountd, folder, folder.backing) == (1 << 40, 201)
