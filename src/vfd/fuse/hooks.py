"""Low-level handlers pyfuse3 lacks, installed into the running libfuse session.

* ``statfs`` — pyfuse3's handler is not told which inode the kernel asks about (libfuse is),
  so it cannot report a folder's quota for ``df``.
* ``fallocate`` — pyfuse3 has none, so glibc's ``posix_fallocate`` falls back to writing a
  byte per block, which passes the quota check one block at a time instead of failing at
  once with EDQUOT, and every other mode fails. The modes offered and their quota rule are
  ``vfd.fuse.falloc``'s.
* ``readdir`` (without "plus") — pyfuse3 only offers readdirplus and turns off the kernel's
  choice between the two, so listing names (``ls``, ``os.listdir``) looked up and stat'ed
  every entry. With plain readdir and ``READDIRPLUS_AUTO`` the kernel asks for attributes
  only for the first batch and when entries are being stat'ed (``ls -l``).
* ``lookup`` and ``getattr`` — the most frequent requests (every path component, every
  ``stat``): answered straight from ``lookup_core``/``getattr_core`` with C-layout replies
  (``vfd.fuse.cstat``, x86-64 only, checked at start), skipping the request coroutine,
  context and attribute objects pyfuse3 builds for each; the same code as the handlers.
* ``init`` — wraps pyfuse3's: also asks for ``READDIRPLUS_AUTO`` and symlink caching.
* ``getxattr`` — wraps pyfuse3's: names outside ``user.`` are answered "no such attribute"
  at once. The kernel asks for ``security.capability`` before every write (to know whether
  a write must drop privileges); this answers it without building a request coroutine.

After ``pyfuse3.init`` the session holds its own copy of pyfuse3's table of libfuse
callbacks (located and checked by ``vfd.fuse.libfuse``, only for verified library
versions, whose layouts it supplies). :func:`install` puts ctypes callbacks into it; they run
synchronously on the trio thread inside ``fuse_session_process_buf`` and reply at once. Each
answers its request exactly once whatever happens: a handler's reply is its last step, and
anything it raises before is answered with an errno (:func:`answering`); nothing escapes
into libfuse. When the fast path is off nothing is changed: ``statfs`` then reports the host
file system, ``fallocate`` is emulated by glibc, and every listing is a readdirplus.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
from collections.abc import Callable
from typing import Any, Protocol

from vfd.folders.quota import FsStats
from vfd.fuse import cstat
from vfd.fuse.guard import COUNTS, to_fuse_error
from vfd.fuse.libfuse import (
    SLOT_FALLOCATE,
    SLOT_GETATTR,
    SLOT_GETXATTR,
    SLOT_INIT,
    SLOT_LOOKUP,
    SLOT_READDIR,
    SLOT_STATFS,
    Internals,
    Layout,
)

log = logging.getLogger("vfd.fuse")

FUSE_CAP_READDIRPLUS = 1 << 13
FUSE_CAP_READDIRPLUS_AUTO = 1 << 14
FUSE_CAP_CACHE_SYMLINKS = 1 << 23
_U64 = struct.Struct("<Q")
ENOATTR = errno.ENODATA


class LowLevelOps(Protocol):
    entry_timeout: float
    attr_timeout: float

    def lookup_core(self, parent_inode: int, name: bytes) -> tuple[int, os.stat_result | None]: ...

    def getattr_core(self, ino: int) -> os.stat_result | None: ...

    def synthetic_nlink(self, ino: int) -> int: ...

    def statfs_of(self, ino: int) -> FsStats: ...

    def fallocate_sync(self, ino: int, mode: int, offset: int, length: int) -> int: ...

    def is_dir_handle(self, fh: int) -> bool: ...

    def readdir_plain(self, fh: int, off: int, size: int) -> bytes: ...


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


_VP = ctypes.c_void_p
_INIT = ctypes.CFUNCTYPE(None, _VP, _VP)
_PY_INIT = ctypes.PYFUNCTYPE(None, _VP, _VP)  # pyfuse3's own init: runs Python, keeps the GIL
_STATFS = ctypes.CFUNCTYPE(None, _VP, ctypes.c_uint64)
_FALLOCATE = ctypes.CFUNCTYPE(
    None, _VP, ctypes.c_uint64, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, _VP
)
_GETXATTR = ctypes.CFUNCTYPE(None, _VP, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t)
_PY_GETXATTR = ctypes.PYFUNCTYPE(None, _VP, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t)
_LOOKUP = ctypes.CFUNCTYPE(None, _VP, ctypes.c_uint64, ctypes.c_char_p)
_GETATTR = ctypes.CFUNCTYPE(None, _VP, ctypes.c_uint64, _VP)
_READDIR = ctypes.CFUNCTYPE(None, _VP, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_int64, _VP)
_keep: list[Any] = []  # the installed callbacks must outlive the session


def _file_handle(ops: LowLevelOps, layout: Layout, fi: int) -> int | None:
    """``fi->fh`` (at the verified offset) when it is one of our directory handles."""
    (fh,) = _U64.unpack(ctypes.string_at(fi + layout.fi_fh, 8))
    return int(fh) if ops.is_dir_handle(fh) else None


def answering(
    where: str, reply_err: Callable[[int, int], Any], fn: Callable[..., None]
) -> Callable[..., None]:
    """``fn(req, ...)`` as a C callback that answers ``req`` exactly once.

    ``fn`` replies as its last step, so when it raises it has not replied: the exception is
    answered with its errno (``vfd.fuse.guard.to_fuse_error``; EIO for anything unexpected,
    including ``BaseException``), and never propagates into libfuse, where ctypes would drop
    it and leave the request unanswered.
    """

    def callback(req: int, *args: Any) -> None:
        try:
            fn(req, *args)
        except BaseException as exc:
            err = to_fuse_error(exc, where).errno if isinstance(exc, Exception) else errno.EIO
            if not isinstance(exc, Exception):
                log.error("%s interrupted; answering EIO", where, exc_info=exc)
            try:
                reply_err(req, err)
            except BaseException:
                log.exception("%s: cannot answer the request", where)

    return callback


def _fast_paths(ops: LowLevelOps, internals: Internals) -> tuple[tuple[int, Any], ...]:
    """lookup and getattr answered with C-layout replies."""
    lib = internals.lib
    reply_err = lib.fuse_reply_err
    reply_entry = lib.fuse_reply_entry
    reply_entry.argtypes = [_VP, _VP]
    reply_attr = lib.fuse_reply_attr
    reply_attr.argtypes = [_VP, _VP, ctypes.c_double]
    entry = ctypes.create_string_buffer(cstat.ENTRY_SIZE)
    attr = ctypes.create_string_buffer(cstat.STAT.size)
    entry_addr, attr_addr = ctypes.addressof(entry), ctypes.addressof(attr)
    stat_at = cstat.ENTRY_HEAD.size
    tail_at = stat_at + cstat.STAT.size

    def on_lookup(req: int, parent: int, name: bytes) -> None:
        COUNTS["lookup"] += 1
        ino, st = ops.lookup_core(parent, name)
        if ino == 0:
            if ops.entry_timeout <= 0:
                reply_err(req, errno.ENOENT)
                return
            ctypes.memset(entry_addr, 0, cstat.ENTRY_SIZE)
            cstat.ENTRY_TAIL.pack_into(entry, tail_at, 0.0, ops.entry_timeout)
        else:
            cstat.ENTRY_HEAD.pack_into(entry, 0, ino, 0)
            if st is None:
                cstat.pack_synthetic(entry, stat_at, ino, ops.synthetic_nlink(ino))
            else:
                cstat.pack_stat(entry, stat_at, ino, st)
            cstat.ENTRY_TAIL.pack_into(entry, tail_at, ops.attr_timeout, ops.entry_timeout)
        reply_entry(req, entry_addr)

    def on_getattr(req: int, ino: int, fi: int) -> None:
        COUNTS["getattr"] += 1
        st = ops.getattr_core(ino)
        if st is None:
            cstat.pack_synthetic(attr, 0, ino, ops.synthetic_nlink(ino))
        else:
            cstat.pack_stat(attr, 0, ino, st)
        reply_attr(req, attr_addr, ops.attr_timeout)

    return (
        (SLOT_LOOKUP, _LOOKUP(answering("lookup", reply_err, on_lookup))),
        (SLOT_GETATTR, _GETATTR(answering("getattr", reply_err, on_getattr))),
    )


def install(ops: LowLevelOps, internals: Internals) -> str | None:
    """Install the handlers into the session; why not (nothing changed) when not possible."""
    if internals.slots[SLOT_FALLOCATE] or internals.slots[SLOT_READDIR]:
        return "pyfuse3 already fills the fallocate or readdir slot"
    if not cstat.layout_ok():
        return "struct stat is not laid out as vfd.fuse.cstat expects"
    lib, layout = internals.lib, internals.layout
    reply_err = lib.fuse_reply_err
    reply_statfs = lib.fuse_reply_statfs
    reply_statfs.argtypes = [_VP, ctypes.POINTER(_Statvfs)]
    reply_buf = lib.fuse_reply_buf
    reply_buf.argtypes = [_VP, ctypes.c_char_p, ctypes.c_size_t]
    pyfuse3_init = _PY_INIT(internals.slots[SLOT_INIT])
    pyfuse3_getxattr = _PY_GETXATTR(internals.slots[SLOT_GETXATTR])

    def on_init(userdata: int, conn: int) -> None:
        pyfuse3_init(userdata, conn)
        try:
            capable = ctypes.c_uint.from_address(conn + layout.conn_capable).value
            want = ctypes.c_uint.from_address(conn + layout.conn_want)
            extra = FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_CACHE_SYMLINKS
            if capable & FUSE_CAP_READDIRPLUS:
                want.value |= extra & capable
        except BaseException:  # init has no request to answer; the mount goes on without
            log.exception("cannot ask for READDIRPLUS_AUTO and symlink caching")

    def on_getxattr(req: int, ino: int, name: bytes, size: int) -> None:
        if name.startswith(b"user."):
            pyfuse3_getxattr(req, ino, name, size)  # the handler, as a request coroutine
            return
        COUNTS["getxattr"] += 1
        reply_err(req, ENOATTR)

    def on_statfs(req: int, ino: int) -> None:
        COUNTS["statfs"] += 1
        s = ops.statfs_of(ino)
        out = _Statvfs()
        out.f_bsize = out.f_frsize = s.bsize
        out.f_blocks, out.f_bfree, out.f_bavail = s.blocks, s.bfree, s.bavail
        out.f_files, out.f_ffree, out.f_favail = s.files, s.ffree, s.ffree
        out.f_namemax = 255
        reply_statfs(req, ctypes.byref(out))

    def on_fallocate(req: int, ino: int, mode: int, offset: int, length: int, fi: int) -> None:
        COUNTS["fallocate"] += 1
        reply_err(req, ops.fallocate_sync(ino, mode, offset, length))

    def on_readdir(req: int, ino: int, size: int, off: int, fi: int) -> None:
        COUNTS["readdir_plain"] += 1
        fh = _file_handle(ops, layout, fi) if fi else None
        if fh is None:
            reply_err(req, errno.EBADF)
            return
        data = ops.readdir_plain(fh, off, size)
        reply_buf(req, data, len(data))

    callbacks = (
        *_fast_paths(ops, internals),
        (SLOT_INIT, _INIT(on_init)),
        (SLOT_STATFS, _STATFS(answering("statfs", reply_err, on_statfs))),
        (SLOT_FALLOCATE, _FALLOCATE(answering("fallocate", reply_err, on_fallocate))),
        (SLOT_READDIR, _READDIR(answering("readdir", reply_err, on_readdir))),
        (SLOT_GETXATTR, _GETXATTR(answering("getxattr", reply_err, on_getxattr))),
    )
    _keep.extend([pyfuse3_init, pyfuse3_getxattr, *(cb for _, cb in callbacks)])
    for slot, cb in callbacks:
        internals.slots[slot] = ctypes.cast(cb, _VP).value
    return None
