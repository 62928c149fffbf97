"""The ``*at()`` calls Python's ``os`` module does not expose in the form mountd needs.

``os`` has no ``renameat2`` (for ``RENAME_NOREPLACE``/``RENAME_EXCHANGE``) and cannot pass
``AT_EMPTY_PATH``, which is how an ``O_PATH`` descriptor is changed in place without a name
(and so without a race against a rename): ``fchownat``, ``linkat`` and ``utimensat`` on the
inode the descriptor holds, as libfuse's ``passthrough_hp`` does.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

AT_EMPTY_PATH = 0x1000
AT_SYMLINK_NOFOLLOW = 0x100
AT_FDCWD = -100
UTIME_OMIT = (1 << 30) - 2

_renameat2 = _libc.renameat2
_renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_renameat2.restype = ctypes.c_int

_fchownat = _libc.fchownat
_fchownat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
_fchownat.restype = ctypes.c_int

_linkat = _libc.linkat
_linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
_linkat.restype = ctypes.c_int


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_utimensat = _libc.utimensat
_utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Timespec), ctypes.c_int]
_utimensat.restype = ctypes.c_int


def _check(res: int) -> None:
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def renameat2(olddirfd: int, oldname: bytes, newdirfd: int, newname: bytes, flags: int) -> None:
    """``renameat2(2)``; ``flags`` 0 is a plain ``renameat``."""
    if not flags:
        os.rename(oldname, newname, src_dir_fd=olddirfd, dst_dir_fd=newdirfd)
        return
    _check(_renameat2(olddirfd, oldname, newdirfd, newname, flags))


def fchown_empty(fd: int, uid: int, gid: int) -> None:
    """Change the owner of the inode ``fd`` (an ``O_PATH`` descriptor) holds; -1 keeps."""
    _check(_fchownat(fd, b"", uid & 0xFFFFFFFF, gid & 0xFFFFFFFF, AT_EMPTY_PATH))


def link_empty(fd: int, newdirfd: int, newname: bytes) -> None:
    """Give the inode ``fd`` holds a new name (needs CAP_DAC_READ_SEARCH, which mountd has)."""
    _check(_linkat(fd, b"", newdirfd, newname, AT_EMPTY_PATH))


def utimens_empty(fd: int, atime_ns: int | None, mtime_ns: int | None) -> None:
    """Set the times of the inode ``fd`` holds (symbolic links included); None keeps one."""
    times = (_Timespec * 2)()
    for slot, value in ((0, atime_ns), (1, mtime_ns)):
        if value is None:
            times[slot].tv_sec, times[slot].tv_nsec = 0, UTIME_OMIT
        else:
            times[slot].tv_sec, times[slot].tv_nsec = divmod(value, 1_000_000_000)
    _check(_utimensat(fd, b"", times, AT_EMPTY_PATH))


_fallocate = _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """``fallocate(2)`` with any mode (``os.posix_fallocate`` knows only mode 0; the modes
    are in ``vfd.fuse.falloc``)."""
    _check(_fallocate(fd, mode, offset, length))
