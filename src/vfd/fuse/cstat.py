"""``struct stat`` and ``struct fuse_entry_param`` in C layout, for replies sent straight to
libfuse (``fuse_reply_attr``, ``fuse_reply_entry``) by the low-level fast paths.

Only the x86-64 layout is known here; :func:`layout_ok` checks it against what the C
library's own ``fstat`` writes, and the fast paths stay off where it does not match.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

from vfd.fuse.attrs import BLKSIZE, START_NS, SYNTHETIC_MODE

# dev, ino, nlink, mode, uid, gid, (pad), rdev, size, blksize, blocks, a, a_ns, m, m_ns,
# c, c_ns, (reserved)
STAT = struct.Struct("<QQQIII4xQqqqqqqqqq24x")
ENTRY_HEAD = struct.Struct("<QQ")  # fuse_entry_param: ino, generation; then the stat
ENTRY_TAIL = struct.Struct("<dd")  # attr_timeout, entry_timeout
ENTRY_SIZE = ENTRY_HEAD.size + STAT.size + ENTRY_TAIL.size
_NS = 1_000_000_000


def pack_stat(buf: ctypes.Array[ctypes.c_char], off: int, ino: int, st: os.stat_result) -> None:
    a, an = divmod(st.st_atime_ns, _NS)
    m, mn = divmod(st.st_mtime_ns, _NS)
    c, cn = divmod(st.st_ctime_ns, _NS)
    STAT.pack_into(
        buf, off, 0, ino, st.st_nlink, st.st_mode, st.st_uid, st.st_gid, st.st_rdev,
        st.st_size, BLKSIZE, st.st_blocks, a, an, m, mn, c, cn,
    )  # fmt: skip


def pack_synthetic(buf: ctypes.Array[ctypes.c_char], off: int, ino: int, nlink: int) -> None:
    s, ns = divmod(START_NS, _NS)
    STAT.pack_into(
        buf, off, 0, ino, nlink, SYNTHETIC_MODE, 0, 0, 0, 4096, 4096, 0, s, ns, s, ns, s, ns
    )


def layout_ok() -> bool:
    """Whether STAT matches this platform's ``struct stat`` (checked with libc's fstat)."""
    if platform.machine() != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    fstat = getattr(libc, "fstat", None)
    if fstat is None:
        return False
    buf = ctypes.create_string_buffer(STAT.size + 64)
    fd = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if fstat(fd, buf) != 0:
            return False
        st = os.fstat(fd)
    finally:
        os.close(fd)
    f = STAT.unpack_from(buf, 0)
    return f[:9] == (
        st.st_dev, st.st_ino, st.st_nlink, st.st_mode, st.st_uid, st.st_gid, st.st_rdev,
        st.st_size, st.st_blksize,
    ) and (f[12], f[13]) == divmod(st.st_mtime_ns, _NS)  # fmt: skip
