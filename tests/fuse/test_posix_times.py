"""POSIX conformance of truncate(2)/ftruncate(2) and utimensat(2) on the rw/ view.

The pjdfstest ``truncate`` and ``utimensat`` categories: sizes, zero fill, time updates,
errors, nanosecond timestamps, UTIME_NOW/UTIME_OMIT, symlinks, and the owner/writer rules
for setting times as unprivileged uids.
"""

from __future__ import annotations

import ctypes
import errno
import os

import pytest
from fsprobe import OLD_NS, OTHER, USER, make_dir, make_file, raises_errno, run_as, settle

pytestmark = pytest.mark.fuse

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_libc = ctypes.CDLL(None, use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path: str, atime: tuple[int, int], mtime: tuple[int, int], flags: int = 0) -> None:
    """utimensat(2) with raw (sec, nsec) pairs, so UTIME_NOW/UTIME_OMIT can be passed."""
    times = (_Timespec * 2)(_Timespec(*atime), _Timespec(*mtime))
    if _libc.utimensat(_AT_FDCWD, os.fsencode(path), times, flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)


def test_truncate_shrinks_and_extends_with_zeros(folder) -> None:
    """truncate cuts data off and extends with zeros, by path and by descriptor."""
    f = make_file(folder.rw / "f", data=b"0123456789")
    os.truncate(f, 4)
    assert f.read_bytes() == b"0123"
    os.truncate(f, 8)
    assert f.read_bytes() == b"0123\0\0\0\0"
    fd = os.open(f, os.O_RDWR)
    try:
        os.ftruncate(fd, 2)
        assert os.fstat(fd).st_size == 2
        os.ftruncate(fd, 1 << 20)
        assert os.pread(fd, 4, (1 << 20) - 4) == b"\0\0\0\0"
    finally:
        os.close(fd)
    assert os.stat(folder.backing / "f").st_size == 1 << 20
    os.truncate(f, 0)
    assert (folder.backing / "f").read_bytes() == b""


@pytest.mark.parametrize("size", [0, 3, 10, 100])
def test_truncate_updates_mtime_and_ctime(folder, size: int) -> None:
    """Every successful truncate that changes the size updates mtime and ctime."""
    f = make_file(folder.rw / "f", data=b"x" * 10)
    before = settle(f)
    os.truncate(f, size)
    st = os.stat(f)
    if size != 10:
        assert st.st_mtime_ns > before.st_mtime_ns and st.st_ctime_ns > before.st_ctime_ns
    assert st.st_size == size


def test_truncate_errors(folder) -> None:
    """EISDIR for a directory, ENOENT for a missing file, EINVAL for a negative length or
    an ftruncate on a descriptor not open for writing, ENOTDIR through a file."""
    d = make_dir(folder.rw / "d")
    f = make_file(folder.rw / "f", data=b"abc")
    with raises_errno(errno.EISDIR):
        os.truncate(d, 0)
    with raises_errno(errno.ENOENT):
        os.truncate(folder.rw / "missing", 0)
    with raises_errno(errno.EINVAL):
        os.truncate(f, -1)
    with raises_errno(errno.ENOTDIR):
        os.truncate(folder.rw / "f" / "x", 0)
    fd = os.open(f, os.O_RDONLY)
    try:
        with raises_errno(errno.EINVAL, errno.EBADF):
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    assert f.read_bytes() == b"abc"


def test_truncate_needs_write_permission(folder) -> None:
    """An unprivileged user cannot truncate a file it may not write, even its own."""
    home = make_dir(folder.rw / "home", USER)
    make_file(home / "ro", USER, 0o444, b"keep")
    make_file(home / "rw", USER, 0o644, b"drop")
    with raises_errno(errno.EACCES):
        run_as(USER, os.truncate, "ro", 0, cwd=home)
    with raises_errno(errno.EACCES):
        run_as(OTHER, os.truncate, "rw", 0, cwd=home)
    run_as(USER, os.truncate, "rw", 1, cwd=home)
    assert (folder.backing / "home" / "ro").read_bytes() == b"keep"
    assert (folder.backing / "home" / "rw").read_bytes() == b"d"


def test_utimensat_sets_exact_nanosecond_times(folder) -> None:
    """Explicit times are kept to the nanosecond (also before 1970 and far in the future);
    setting times updates ctime."""
    f = make_file(folder.rw / "f")
    cases = [
        (1_234_567_890_123_456_789, 987_654_321_987_654_321),
        (-1_000_000_000_500, 4_102_444_800_000_000_001),
        (0, 1),
    ]
    for atime, mtime in cases:
        before = settle(f)
        os.utime(f, ns=(atime, mtime))
        st = os.stat(f)
        assert (st.st_atime_ns, st.st_mtime_ns) == (atime, mtime)
        assert st.st_ctime_ns > before.st_ctime_ns
        back = os.stat(folder.backing / "f")
        assert (back.st_atime_ns, back.st_mtime_ns) == (atime, mtime)


def test_utimensat_now_and_omit(folder) -> None:
    """UTIME_NOW sets the current time, UTIME_OMIT leaves that time alone."""
    f = make_file(folder.rw / "f")
    os.utime(f, ns=(OLD_NS, OLD_NS + 5))
    settle_st = os.stat(f)
    utimensat(str(f), (0, UTIME_OMIT), (0, UTIME_NOW))
    st = os.stat(f)
    assert st.st_atime_ns == settle_st.st_atime_ns
    assert st.st_mtime_ns > OLD_NS + 5
    utimensat(str(f), (0, UTIME_NOW), (0, UTIME_OMIT))
    st2 = os.stat(f)
    assert st2.st_atime_ns > OLD_NS and st2.st_mtime_ns == st.st_mtime_ns
    utimensat(str(f), (7, 0), (0, UTIME_OMIT))
    assert os.stat(f).st_atime_ns == 7_000_000_000


def test_utimensat_on_symlink_itself(folder) -> None:
    """With AT_SYMLINK_NOFOLLOW the link's own times change and the target's do not."""
    t = make_file(folder.rw / "t")
    os.utime(t, ns=(OLD_NS, OLD_NS))
    (folder.rw / "l").symlink_to("t")
    os.utime(folder.rw / "l", ns=(5_000_000_000, 6_000_000_000), follow_symlinks=False)
    assert os.lstat(folder.rw / "l").st_mtime_ns == 6_000_000_000
    assert os.lstat(folder.backing / "l").st_mtime_ns == 6_000_000_000
    assert os.stat(t).st_mtime_ns == OLD_NS
    os.utime(folder.rw / "l", ns=(8_000_000_000, 9_000_000_000))
    assert os.stat(t).st_mtime_ns == 9_000_000_000


def _touch_now(name: str) -> None:
    os.utime(name)


def _touch_explicit(name: str) -> None:
    os.utime(name, ns=(1, 2))


def test_utimensat_permission_rules(folder) -> None:
    """The owner may set any times. A non-owner with write access may set them to now
    only (explicit times: EPERM). Without write access: now is EACCES, explicit EPERM."""
    pub = make_dir(folder.rw / "pub", mode=0o777)
    make_file(pub / "mine", USER, 0o600)
    make_file(pub / "writable", OTHER, 0o666)
    make_file(pub / "closed", OTHER, 0o644)
    run_as(USER, _touch_explicit, "mine", cwd=pub)
    assert os.stat(pub / "mine").st_mtime_ns == 2
    run_as(USER, _touch_now, "writable", cwd=pub)
    with raises_errno(errno.EPERM):
        run_as(USER, _touch_explicit, "writable", cwd=pub)
    with raises_errno(errno.EACCES):
        run_as(USER, _touch_now, "closed", cwd=pub)
    with raises_errno(errno.EPERM):
        run_as(USER, _touch_explicit, "closed", cwd=pub)
    os.utime(pub / "closed", ns=(3, 4))
    assert os.stat(folder.backing / "pub" / "closed").st_mtime_ns == 4


def test_write_updates_mtime_and_ctime_but_read_does_not_change_them(folder) -> None:
    """Writing data updates mtime and ctime; reading it changes neither."""
    f = make_file(folder.rw / "f", data=b"abc")
    before = settle(f)
    assert f.read_bytes() == b"abc"
    mid = os.stat(f)
    assert (mid.st_mtime_ns, mid.st_ctime_ns) == (before.st_mtime_ns, before.st_ctime_ns)
    with open(f, "r+b") as out:
        out.write(b"X")
    after = os.stat(f)
    assert after.st_mtime_ns > before.st_mtime_ns and after.st_ctime_ns > before.st_ctime_ns
