"""File handles and the bounded cache of descriptors that mountd holds for inodes.

mountd reaches every backing inode through an ``O_PATH`` descriptor (``vfd.fuse.inodes``).
Holding one for every inode the kernel has cached would make the number of descriptors grow
with the kernel's cache, without bound. Instead the descriptors live in an LRU of bounded
size (:class:`FdCache`). Before one is evicted, its inode's *file handle* is taken — the file
system's own persistent name for it, from ``name_to_handle_at(2)`` —, and the inode is opened
again from it with ``open_by_handle_at(2)`` when next used, as virtiofsd's inode-file-handles
mode does. Re-opening needs ``CAP_DAC_READ_SEARCH`` (mountd runs as root). While the cache
holds every inode the kernel knows, handles cost nothing.

Some descriptors are never evicted ("pinned"):

* inodes with open files or directories (a file deleted while open may not be openable by
  handle any more, and its open state must stay where it is);
* inodes of file systems that give no handles (``name_to_handle_at`` fails with
  ``EOPNOTSUPP``: cifs, 9p, procfs, overlayfs without ``nfs_export``...) or none that can be
  relied on (FUSE file systems, :data:`UNRELIABLE`), and inodes on another file system than
  their folder's root (a mount inside a backing directory): for these the descriptor is held
  as long as the kernel knows the inode, as before handles — the documented fallback, bounded
  by the kernel's cache only.

``struct file_handle`` is the documented kernel ABI of ``open_by_handle_at(2)``::

    struct file_handle {
        unsigned int  handle_bytes;   /* size of f_handle */
        int           handle_type;
        unsigned char f_handle[];     /* at most MAX_HANDLE_SZ (128) bytes */
    };

A handle is kept here as the bytes of that whole struct, so that opening it passes them as
they are.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import resource
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, TypeVar

from vfd import mountinfo
from vfd.config import FD_CACHE_MIN

log = logging.getLogger("vfd.fuse")

_libc = ctypes.CDLL(None, use_errno=True)

MAX_HANDLE_SZ = 128
AT_EMPTY_PATH = 0x1000
_HEAD = struct.Struct("=Ii")  # handle_bytes, handle_type

_name_to_handle_at = _libc.name_to_handle_at
_name_to_handle_at.argtypes = [
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_int),
    ctypes.c_int,
]
_name_to_handle_at.restype = ctypes.c_int

_open_by_handle_at = _libc.open_by_handle_at
_open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
_open_by_handle_at.restype = ctypes.c_int

NO_HANDLES = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EOVERFLOW})
"""``name_to_handle_at`` errors that mean "this file system gives no handles"."""
UNRELIABLE = ("fuse", "fuseblk", "virtiofs")
"""File system types (and ``fuse.*``) whose handles may not open again once the kernel has
dropped the inode: a FUSE file system answers them only if its server supports it (export
support), which cannot be told from here. Their inodes are treated as having no handles."""


def reliable(fstype: str) -> bool:
    """Whether handles of a file system of type ``fstype`` (mountinfo) can be relied on."""
    return fstype not in UNRELIABLE and not fstype.startswith("fuse.")


OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE})

MIN_CAPACITY = FD_CACHE_MIN
"""The smallest cache: an operation uses at most three inodes, the most recently used ones
are evicted last, so the ones in use are never closed under it."""
AUTO_MAX = 65536
"""``fd_cache = "auto"``: at most this many descriptors ..."""
AUTO_RESERVE = 128
"""... and at most half of the open-file limit less this many (the other half and the
reserve are for open files — each costs two descriptors —, directory listings, the control
socket, the store and the direct data path)."""
WARN_INTERVAL = 60.0
"""Seconds between two warnings about running out of descriptors."""


class _Buffers(threading.local):
    """Per thread: the ``struct file_handle`` and mount id ``name_to_handle_at`` fills."""

    def __init__(self) -> None:
        self.handle = ctypes.create_string_buffer(_HEAD.size + MAX_HANDLE_SZ)
        self.mount_id = ctypes.c_int()
        self.mount_id_ref = ctypes.byref(self.mount_id)


_buffers = _Buffers()


def handle_of(fd: int) -> bytes | None:
    """The file handle of the inode ``fd`` holds (a ``struct file_handle``, as bytes); None
    when its file system gives none (see :data:`NO_HANDLES`)."""
    got = handle_and_mount(fd)
    return None if got is None else got[0]


def handle_and_mount(fd: int) -> tuple[bytes, int] | None:
    """:func:`handle_of`, and the id of the mount ``fd`` is on (as in mountinfo)."""
    bufs = _buffers
    buf = bufs.handle
    _HEAD.pack_into(buf, 0, MAX_HANDLE_SZ, 0)
    if _name_to_handle_at(fd, b"", buf, bufs.mount_id_ref, AT_EMPTY_PATH) != 0:
        err = ctypes.get_errno()
        if err in NO_HANDLES:
            return None
        raise OSError(err, os.strerror(err))
    size, _type = _HEAD.unpack_from(buf, 0)
    return buf.raw[: _HEAD.size + size], bufs.mount_id.value


def open_handle(mount_fd: int, handle: bytes, flags: int) -> int:
    """Open the inode ``handle`` names on the file system ``mount_fd`` is on.

    ESTALE when the inode no longer exists (deleted behind mountd's back)."""
    fd = int(_open_by_handle_at(mount_fd, handle, flags))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit (a shell or systemd
    starts processes with 1,024); (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft, hard


def auto_capacity(soft_limit: int) -> int:
    """The cache size ``fd_cache = "auto"`` means under an open-file limit of ``soft_limit``."""
    return max(MIN_CAPACITY, min(AUTO_MAX, (soft_limit - AUTO_RESERVE) // 2))


class Cached(Protocol):
    """What the cache holds: an inode whose descriptor it may close (``drop_fd``: False when
    it cannot be opened again, and so was not closed)."""

    def drop_fd(self) -> bool: ...


T = TypeVar("T")


class FdCache:
    """The evictable descriptors, least recently used first, at most ``capacity`` of them.

    Pinned descriptors are not in it (and do not count). Everything happens on the trio
    thread; a descriptor taken from an entry stays open until the next ``await`` because
    only the least recently used entries are evicted and an operation uses few.
    """

    def __init__(self, capacity: int, setting: str = "[fuse] fd_cache") -> None:
        self.capacity = max(MIN_CAPACITY, capacity)
        self.configured = self.capacity
        self.setting = setting
        self._lru: OrderedDict[Cached, None] = OrderedDict()
        self.no_handles: set[int] = set()
        """File systems (``st_dev``) that give no handles, or none that can be relied on:
        their inodes are pinned."""
        self._checked: set[int] = set()
        self.pinned = 0
        """Descriptors held outside the cache (open inodes, no handles)."""
        self.evictions = 0
        self.reopens = 0
        """Evicted descriptors opened again from their handles."""
        self.readopted = 0
        """Evicted inodes looked up again by name (the handle compared; the new descriptor
        kept)."""
        self.stale = 0
        """Re-opens that found the inode gone (ESTALE)."""
        self.out_of_fds = 0
        """Times an open failed with EMFILE/ENFILE even after the cache was cut."""
        self._warned = -WARN_INTERVAL

    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, item: Cached) -> bool:
        return item in self._lru

    def add(self, item: Cached) -> None:
        """``item`` got a descriptor that may be evicted; it is the most recently used."""
        self._lru[item] = None
        if len(self._lru) > self.capacity:
            self.evict(len(self._lru) - self.capacity)

    def touch(self, item: Cached) -> None:
        self._lru.move_to_end(item)

    def remove(self, item: Cached) -> None:
        """``item`` is pinned or gone: its descriptor is not the cache's to close any more."""
        self._lru.pop(item, None)

    def evict(self, n: int) -> None:
        """Close the ``n`` least recently used descriptors (an inode that turns out to have
        no handle is pinned instead)."""
        lru = self._lru
        while n > 0 and lru:
            item, _ = lru.popitem(last=False)
            if item.drop_fd():
                self.evictions += 1
                n -= 1
            else:
                self.pinned += 1

    def usable(self, fd: int, dev: int) -> bool:
        """Whether inodes of the file system ``dev`` (``fd`` holds one) may be evicted: it
        gives handles, and of a type whose handles can be relied on (:data:`UNRELIABLE`).
        Decided once per file system; False, undecided, when it cannot be told now."""
        if dev in self._checked:
            return True
        if dev in self.no_handles:
            return False
        try:
            got = handle_and_mount(fd)
            entry = None if got is None else mountinfo.by_id(got[1])
        except OSError as exc:
            log.debug("cannot tell whether device %d gives file handles: %s", dev, exc)
            return False
        if entry is not None and reliable(entry.fstype):
            self._checked.add(dev)
            return True
        self.no_handles.add(dev)
        log.info(
            "the file system of device %d:%d (%s) gives no file handles that can be relied on: "
            "mountd holds a descriptor for each of its inodes the kernel knows",
            os.major(dev),
            os.minor(dev),
            "no handles" if got is None else "unknown" if entry is None else entry.fstype,
        )
        return False

    def handle_of(self, fd: int, dev: int) -> bytes | None:
        """:func:`handle_of` on a file system found :meth:`usable`; None elsewhere, and when
        the call fails (the descriptor is then held)."""
        if dev not in self._checked:
            return None
        try:
            return handle_of(fd)
        except OSError as exc:
            log.warning("no file handle for an inode on device %d: %s; holding it", dev, exc)
            return None

    def clear(self) -> None:
        self._lru.clear()

    def opening(self, fn: Callable[[], T]) -> T:
        """``fn()``, an open of a new descriptor; when the process is out of descriptors
        (EMFILE/ENFILE) the cache is cut to half and ``fn`` tried once more. If that fails
        too, one warning (at most every :data:`WARN_INTERVAL` seconds) says so, and the
        error goes to the caller (whose request is answered EMFILE)."""
        try:
            return fn()
        except OSError as exc:
            if exc.errno not in OUT_OF_FDS:
                raise
            first = exc
        self._cut()
        try:
            return fn()
        except OSError as exc:
            if exc.errno not in OUT_OF_FDS:
                raise
            self.out_of_fds += 1
            self._warn(f"a request is refused with {errno.errorcode[first.errno or 0]}")
            raise

    def _cut(self) -> None:
        # the most recently used stay: the operation at hand may be using them
        keep = max(len(self._lru) // 2, min(len(self._lru), MIN_CAPACITY // 2))
        old = self.capacity
        self.evict(len(self._lru) - keep)
        self.capacity = max(MIN_CAPACITY, keep)
        if self.capacity < old:
            self._warn(f"the descriptor cache is cut from {old} to {self.capacity}")

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._warned < WARN_INTERVAL:
            return
        self._warned = now
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        log.warning(
            "mountd is out of file descriptors (open-file limit %d; %d cached, %d held for "
            "open files and file systems without handles): %s. Raise LimitNOFILE of "
            "vfd-mountd.service, or lower %s (now %d)",
            soft,
            len(self._lru),
            self.pinned,
            what,
            self.setting,
            self.configured,
        )

    def stats(self) -> dict[str, int]:
        """What ``health`` may report."""
        return {
            "capacity": self.capacity,
            "configured": self.configured,
            "cached": len(self._lru),
            "pinned": self.pinned,
            "evictions": self.evictions,
            "reopens": self.reopens,
            "readopted": self.readopted,
            "stale": self.stale,
            "out_of_fds": self.out_of_fds,
        }
