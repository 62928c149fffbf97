"""Two low-level handlers pyfuse3 lacks, installed into the running libfuse session.

pyfuse3's ``statfs`` handler is not told which inode the kernel asks about (libfuse is), so
it cannot report a folder's quota; and pyfuse3 has no ``fallocate`` at all, so glibc's
``posix_fallocate`` falls back to writing a byte per block — which passes the quota check one
block at a time instead of failing at once with EDQUOT.

After ``pyfuse3.init`` the session holds its own copy of pyfuse3's table of libfuse
callbacks (located and checked by ``vfd.fuse.libfuse``). :func:`install` replaces two empty
or known entries with ctypes callbacks that answer synchronously on the trio thread (both are
cheap: a ``statvfs``, an ``fallocate`` that allocates extents without writing them). When the
session cannot be found, nothing is changed: ``statfs`` then reports the host file system and
``fallocate`` is emulated by glibc.
"""

from __future__ import annotations

import ctypes
import errno
import logging
from typing import Any, Protocol

from vfd.fuse.libfuse import SLOT_FALLOCATE, SLOT_STATFS, Internals
from vfd.storage.quota import FsStats

log = logging.getLogger("vfd.fuse")


class LowLevelOps(Protocol):
    def statfs_of(self, ino: int) -> FsStats: ...

    def fallocate_sync(self, ino: int, mode: int, offset: int, length: int) -> int: ...


class _Statvfs(ctypes.Structure):
    _fields_ = [
        ("f_bsize", ctypes.c_ulong),
        ("f_frsize", ctypes.c_ulong),
        ("f_blocks", ctypes.c_ulong),
        ("f_bfree", ctypes.c_ulong),
        ("f_bavail", ctypes.c_ulong),
        ("f_files", ctypes.c_ulong),
        ("f_ffree", ctypes.c_ulong),
        ("f_favail", ctypes.c_ulong),
        ("f_fsid", ctypes.c_ulong),
        ("f_flag", ctypes.c_ulong),
        ("f_namemax", ctypes.c_ulong),
        ("spare", ctypes.c_int * 8),
    ]


_STATFS = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64)
_FALLOCATE = ctypes.CFUNCTYPE(
    None,
    ctypes.c_void_p,
    ctypes.c_uint64,
    ctypes.c_int,
    ctypes.c_int64,
    ctypes.c_int64,
    ctypes.c_void_p,
)
_keep: list[Any] = []  # the installed callbacks must outlive the session


def install(ops: LowLevelOps, internals: Internals | None) -> bool:
    """Install per-inode statfs and fallocate into the session; False when not possible."""
    if internals is None or internals.slots[SLOT_FALLOCATE]:
        return False
    lib = internals.lib
    reply_err = lib.fuse_reply_err
    reply_statfs = lib.fuse_reply_statfs
    reply_statfs.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Statvfs)]

    def on_statfs(req: int, ino: int) -> None:
        try:
            s = ops.statfs_of(ino)
            out = _Statvfs()
            out.f_bsize = out.f_frsize = s.bsize
            out.f_blocks, out.f_bfree, out.f_bavail = s.blocks, s.bfree, s.bavail
            out.f_files, out.f_ffree, out.f_favail = s.files, s.ffree, s.ffree
            out.f_namemax = 255
            reply_statfs(req, ctypes.byref(out))
        except BaseException:
            log.exception("statfs of inode %d failed", ino)
            reply_err(req, errno.EIO)

    def on_fallocate(req: int, ino: int, mode: int, offset: int, length: int, fi: int) -> None:
        try:
            err = ops.fallocate_sync(ino, mode, offset, length)
        except BaseException:
            log.exception("fallocate of inode %d failed", ino)
            err = errno.EIO
        reply_err(req, err)

    statfs_cb, fallocate_cb = _STATFS(on_statfs), _FALLOCATE(on_fallocate)
    _keep.extend([statfs_cb, fallocate_cb])
    internals.slots[SLOT_STATFS] = ctypes.cast(statfs_cb, ctypes.c_void_p).value
    internals.slots[SLOT_FALLOCATE] = ctypes.cast(fallocate_cb, ctypes.c_void_p).value
    return True
