"""Two low-level handlers pyfuse3 lacks, installed into the running libfuse session.

pyfuse3's ``statfs`` handler is not told which inode the kernel asks about (libfuse is), so
it cannot report a folder's quota; and pyfuse3 has no ``fallocate`` at all, so glibc's
``posix_fallocate`` falls back to writing a byte per block — which passes the quota check one
block at a time instead of failing at once with EDQUOT.

After ``pyfuse3.init`` the session holds its own copy of pyfuse3's table of libfuse
callbacks. :func:`install` finds that copy and replaces two entries with ctypes callbacks that
answer synchronously on the trio thread (both are cheap: a ``statvfs``, an ``fallocate``
that allocates extents without writing them). Every step is checked — pyfuse3's symbols are
read from its ELF symbol table, the copy must match pyfuse3's table byte for byte, and the
entries around the two slots must be the functions the libfuse header puts there — and
anything unexpected leaves the session as it was (``statfs`` then reports the host file
system, ``fallocate`` is emulated by glibc).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
from pathlib import Path
from typing import Any, Protocol

import pyfuse3

from vfd.storage.quota import FsStats

log = logging.getLogger("vfd.fuse")

# Slots in struct fuse_lowlevel_ops (libfuse 3 fuse_lowlevel.h; the ABI only appends).
SLOT_STATFS = 24
SLOT_FORGET_MULTI = 38
SLOT_FALLOCATE = 40
SLOT_READDIRPLUS = 41
_PTR = ctypes.sizeof(ctypes.c_void_p)

_SYMBOLS = (
    "__pyx_v_7pyfuse3_session",
    "__pyx_v_7pyfuse3_fuse_ops",
    "__pyx_f_7pyfuse3_fuse_statfs",
    "__pyx_f_7pyfuse3_fuse_forget_multi",
    "__pyx_f_7pyfuse3_fuse_readdirplus",
)


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


def elf_symbols(path: str, names: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """``name -> (value, size)`` from the ELF64 ``.symtab`` of ``path`` (empty if stripped)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return {}
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    wanted = {n.encode() for n in names}
    found: dict[str, tuple[int, int]] = {}
    for sec in sections:
        if sec[1] != 2:  # SHT_SYMTAB
            continue
        stroff = sections[sec[6]][4]
        for off in range(sec[4], sec[4] + sec[5], 24):
            st_name, _info, _other, _shndx, value, size = struct.unpack_from("<IBBHQQ", data, off)
            end = data.index(b"\0", stroff + st_name)
            name = data[stroff + st_name : end]
            if name in wanted:
                found[name.decode()] = (value, size)
    return found


def _load_base(path: str) -> int | None:
    real = os.path.realpath(path)
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == real and int(parts[2], 16) == 0:
                return int(parts[0].split("-")[0], 16)
    return None


def _find_ops_copy(session: int, ops_addr: int, ops_size: int) -> int | None:
    wanted = ctypes.string_at(ops_addr, ops_size)
    window = ctypes.string_at(session, 512 + ops_size)
    at = window.find(wanted)
    if at < 0 or at % _PTR or window.find(wanted, at + 1) >= 0:
        return None
    return session + at


def install(ops: LowLevelOps) -> bool:
    """Install per-inode statfs and fallocate into the session; False when not possible."""
    try:
        return _install(ops)
    except Exception:
        log.exception("cannot install the low-level statfs/fallocate handlers")
        return False


def _install(ops: LowLevelOps) -> bool:
    so = pyfuse3.__file__
    if so is None or not so.endswith(".so"):
        return False
    syms = elf_symbols(so, _SYMBOLS)
    base = _load_base(so)
    if base is None or len(syms) != len(_SYMBOLS):
        log.info("pyfuse3 has no symbol table; statfs stays whole-mount")
        return False
    session = ctypes.c_void_p.from_address(base + syms["__pyx_v_7pyfuse3_session"][0]).value
    ops_addr, ops_size = syms["__pyx_v_7pyfuse3_fuse_ops"]
    if not session or ops_size < (SLOT_READDIRPLUS + 1) * _PTR:
        return False
    table = _find_ops_copy(session, base + ops_addr, ops_size)
    if table is None:
        return False
    slots = (ctypes.c_void_p * (ops_size // _PTR)).from_address(table)
    expect = {
        SLOT_STATFS: "__pyx_f_7pyfuse3_fuse_statfs",
        SLOT_FORGET_MULTI: "__pyx_f_7pyfuse3_fuse_forget_multi",
        SLOT_READDIRPLUS: "__pyx_f_7pyfuse3_fuse_readdirplus",
    }
    for slot, name in expect.items():
        if slots[slot] != base + syms[name][0]:
            log.info("libfuse's ops table is not laid out as expected; statfs stays whole-mount")
            return False
    if slots[SLOT_FALLOCATE]:
        return False
    libfuse = ctypes.CDLL("libfuse3.so.3")
    reply_err = libfuse.fuse_reply_err
    reply_err.argtypes = [ctypes.c_void_p, ctypes.c_int]
    reply_statfs = libfuse.fuse_reply_statfs
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
    _keep.extend([statfs_cb, fallocate_cb, reply_err, reply_statfs])
    slots[SLOT_STATFS] = ctypes.cast(statfs_cb, ctypes.c_void_p).value
    slots[SLOT_FALLOCATE] = ctypes.cast(fallocate_cb, ctypes.c_void_p).value
    return True
