"""The inode table: what each FUSE inode number stands for, with its lookup count.

Three inodes are synthetic — the mount root (1) and the view directories ``rw/`` (2) and
``ro/`` (3). Every other inode is a backing inode seen through one view, keyed by
``(view, st_dev, st_ino)``. Every operation on it starts from an ``O_PATH|O_NOFOLLOW``
descriptor of it (``*at()`` calls), as in libfuse's ``passthrough_hp``. The same backing
file seen through ``rw/`` and ``ro/`` is two inodes ("twins").

Descriptors are bounded (``vfd.fuse.handles``): they live in an LRU of ``[fuse] fd_cache``
entries; an inode's file handle (``name_to_handle_at``) is taken when its descriptor is
evicted, and :attr:`Inode.fd` opens an evicted inode again from it. A descriptor read from
``Inode.fd`` stays open until the next ``await`` (only the least recently used descriptors
are evicted, and the cache never holds fewer than 16), so handlers use it synchronously and
read it again after an ``await``. Inodes with open files or directories, and inodes of file
systems without (reliable) handles, keep their descriptor (pinned) until closed or forgotten.
An evicted inode whose backing file was deleted behind mountd's back answers ESTALE.

Inode numbers are derived from the backing inode, ``dev index << 49 | st_ino << 1 | view``,
so a file keeps its ``st_ino`` when the kernel forgets and looks it up again (``du``, ``tar``
and ``rsync -H`` find hard links by it). A number never stands for two backing files while
the kernel knows it: while an inode's descriptor is open the backing file system cannot reuse
its number; when it was evicted and a lookup finds another file (another handle) under the
same ``(st_dev, st_ino)`` — the old file was deleted behind mountd's back and its number
reused —, the old entry is no longer found by key (it answers ESTALE) and the new file gets a
counter number. Inodes outside the derived range get counter numbers too.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from vfd.fuse.handles import MIN_CAPACITY, FdCache, open_handle
from vfd.fuse.usage import BackingKey, ScopeUsage

ROOT_ID = 1
RW_ID = 2
RO_ID = 3
SYNTHETIC = frozenset({ROOT_ID, RW_ID, RO_ID})

_INO_BITS = 48
_DEV_BITS = 14
FALLBACK_BASE = 1 << 63
O_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def _stale(what: str) -> OSError:
    return OSError(errno.ESTALE, f"{os.strerror(errno.ESTALE)}: {what}")


class View(enum.IntEnum):
    """A path prefix of the mount that fixes what may be done."""

    RW = 0  # rw/<vfid>: quota-enforced writes
    RO = 1  # ro/<vfid>: every mutation fails with EROFS

    @property
    def dir_id(self) -> int:
        return RW_ID if self is View.RW else RO_ID

    @property
    def dirname(self) -> bytes:
        return b"rw" if self is View.RW else b"ro"


@dataclass(eq=False)
class Folder:
    """An attached folder: its backing directory, held open, and its quota scope."""

    vfid: str
    host: str
    scope: str
    path: Path
    usage: ScopeUsage
    fd: int
    """``O_PATH`` descriptor of the backing root: the anchor of every path in the folder."""
    key: BackingKey
    detached: bool = False
    handle_fd: int = -1
    """A plain (``O_RDONLY``) descriptor of the backing root, opened when an inode of the
    folder is first opened from its handle: ``open_by_handle_at`` takes no ``O_PATH`` one."""

    def mount_fd(self, cache: FdCache) -> int:
        """The descriptor that names the folder's file system to ``open_by_handle_at``."""
        if self.handle_fd < 0:
            if self.fd < 0:
                raise _stale(f"folder {self.vfid} is detached")
            root = self.fd
            self.handle_fd = cache.opening(
                lambda: os.open(b".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root)
            )
        return self.handle_fd

    def close(self) -> None:
        """Close the descriptors of the backing root (detach, shutdown)."""
        for fd in (self.fd, self.handle_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.handle_fd = -1


@dataclass(slots=True, eq=False)
class Inode:
    """A backing inode seen through one view."""

    id: int
    view: View
    folder: Folder
    _fd: int
    """The descriptor while open; -1 when evicted (opened again from ``handle``) or gone."""
    key: BackingKey
    mode: int
    cache: FdCache
    evictable: bool
    """Whether the descriptor may be closed and opened again from a handle: False on a file
    system without handles, or another one than the folder root's (held until forgotten)."""
    handle: bytes | None = None
    """The file handle, taken when the descriptor is first evicted. An inode without
    descriptor and handle is gone (forgotten, or its number was reused by another file)."""
    nlookup: int = 0
    opens: int = 0
    """Open files and directories of this inode: its descriptor is pinned while any are."""
    is_root: bool = False
    cache_sig: tuple[int, int, int] | None = None
    """(mtime_ns, ctime_ns, size) when the kernel's page cache of this inode was last known
    to match the backing file; an open that finds the same keeps the cache."""
    stale: bool = False
    """The twin changed the backing file; the kernel was told to drop this inode's caches."""

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def fd(self) -> int:
        """An ``O_PATH`` descriptor of the inode, valid until the next ``await``; OSError
        ESTALE when the backing inode is gone, EMFILE when no descriptor can be had."""
        fd = self._fd
        if fd >= 0:
            if self.evictable and not self.opens:
                self.cache.touch(self)
            return fd
        return self._reopen()

    @property
    def cached(self) -> bool:
        """Whether the inode holds its descriptor now (not evicted)."""
        return self._fd >= 0

    def _reopen(self) -> int:
        handle, cache, folder = self.handle, self.cache, self.folder
        if handle is None:
            raise _stale("the inode was forgotten or its file deleted")
        if folder.key[0] != self.key[0]:  # the folder came back on another file system
            raise _stale("the folder's file system changed")
        mount_fd = folder.mount_fd(cache)
        try:
            # The handle was taken on the file system of the folder's root, which mount_fd
            # is on: it opens this very inode (its generation included), or fails ESTALE.
            fd = cache.opening(lambda: open_handle(mount_fd, handle, O_PATH_FLAGS))
        except OSError as exc:
            if exc.errno == errno.ESTALE:
                cache.stale += 1
            raise
        cache.reopens += 1
        self._fd = fd
        cache.add(self)
        return fd

    def drop_fd(self) -> bool:
        """Close the descriptor (evicted from the cache), first taking the handle that opens
        it again; False (nothing closed, no longer evictable) where there is no handle."""
        if self.handle is None:
            handle = self.cache.handle_of(self._fd, self.key[0])
            if handle is None:
                self.evictable = False
                return False
            self.handle = handle
        os.close(self._fd)
        self._fd = -1
        return True


class InodeTable:
    """Inodes the kernel knows (lookup count above zero), by number and by backing key."""

    def __init__(self, fd_cache: int = MIN_CAPACITY) -> None:
        self.by_id: dict[int, Inode] = {}
        self.by_key: dict[tuple[View, int, int], Inode] = {}
        self.fds = FdCache(fd_cache)
        self._devs: dict[int, int] = {}
        self._fallback: dict[tuple[View, int, int], int] = {}
        self._next_fallback = FALLBACK_BASE
        self.renumbered = 0
        """Lookups that found another file under the number of a known inode."""

    def __len__(self) -> int:
        return len(self.by_id)

    def _counter(self) -> int:
        number = self._next_fallback
        self._next_fallback += 1
        return number

    def number(self, view: View, dev: int, ino: int) -> int:
        idx = self._devs.get(dev)
        if idx is None:
            idx = self._devs[dev] = len(self._devs) + 1
        if idx < (1 << _DEV_BITS) and ino < (1 << _INO_BITS):
            return (idx << (_INO_BITS + 1)) | (ino << 1) | int(view)
        key = (view, dev, ino)
        number = self._fallback.get(key)
        if number is None:
            number = self._fallback[key] = self._counter()
        return number

    def get(self, ino: int) -> Inode | None:
        return self.by_id.get(ino)

    def find(self, view: View, key: BackingKey) -> Inode | None:
        return self.by_key.get((view, key[0], key[1]))

    def twin(self, inode: Inode) -> Inode | None:
        """The same backing inode seen through the other view, if the kernel knows it."""
        other = View.RO if inode.view is View.RW else View.RW
        return self.by_key.get((other, inode.key[0], inode.key[1]))

    def remember(
        self, view: View, folder: Folder, fd: int, st: os.stat_result, *, is_root: bool = False
    ) -> Inode:
        """Count one lookup of the backing inode ``fd`` holds; the table owns ``fd`` after."""
        tkey = (view, st.st_dev, st.st_ino)
        inode = self.by_key.get(tkey)
        if inode is None:
            inode = self._new(view, folder, fd, st, self.number(*tkey))
        elif inode._fd >= 0:
            os.close(fd)  # it holds the backing inode open: the same file
            if inode.evictable and not inode.opens:
                self.fds.touch(inode)
        elif inode.handle is not None and self.fds.handle_of(fd, st.st_dev) == inode.handle:
            inode._fd = fd  # the same file, evicted: it keeps the new descriptor
            self.fds.readopted += 1
            self.fds.add(inode)
        else:
            # Another file under the number of a known one whose descriptor was evicted: the
            # old file was deleted behind mountd's back and the backing file system reused
            # its number. The old entry stays for the kernel's forget but answers ESTALE;
            # the new file gets a number of its own.
            del self.by_key[tkey]
            inode.handle = None
            self.renumbered += 1
            inode = self._new(view, folder, fd, st, self._counter())
        inode.folder = folder
        inode.mode = st.st_mode
        inode.is_root = inode.is_root or is_root
        inode.nlookup += 1
        return inode

    def _new(self, view: View, folder: Folder, fd: int, st: os.stat_result, number: int) -> Inode:
        dev = st.st_dev
        # Handles only on the folder root's file system: the one open_by_handle_at is given.
        evictable = dev == folder.key[0] and self.fds.usable(fd, dev)
        inode = Inode(number, view, folder, fd, (dev, st.st_ino), st.st_mode, self.fds, evictable)
        self.by_id[number] = inode
        self.by_key[(view, dev, st.st_ino)] = inode
        if evictable:
            self.fds.add(inode)
        else:
            self.fds.pinned += 1
        return inode

    def pin(self, inode: Inode) -> None:
        """An open file or directory of ``inode`` (open again when evicted): its descriptor
        is not evicted until :meth:`unpin` of the last one."""
        if inode._fd < 0:
            inode._reopen()  # raises when the inode is gone
        inode.opens += 1
        if inode.opens == 1 and inode.evictable:
            self.fds.remove(inode)
            self.fds.pinned += 1

    def unpin(self, inode: Inode) -> None:
        inode.opens -= 1
        if inode.opens == 0 and inode.evictable and inode._fd >= 0:
            self.fds.pinned -= 1
            self.fds.add(inode)

    def _close(self, inode: Inode) -> None:
        """Close the inode's descriptor for good (forgotten)."""
        if inode._fd >= 0:
            if inode in self.fds:
                self.fds.remove(inode)
            else:
                self.fds.pinned -= 1
            os.close(inode._fd)
            inode._fd = -1
        inode.handle = None

    def forget(self, ino: int, n: int) -> None:
        """Drop ``n`` lookups; at zero the inode and its descriptor go."""
        inode = self.by_id.get(ino)
        if inode is None:
            return
        inode.nlookup -= n
        if inode.nlookup <= 0:
            del self.by_id[ino]
            tkey = (inode.view, inode.key[0], inode.key[1])
            if self.by_key.get(tkey) is inode:
                del self.by_key[tkey]
            self._close(inode)

    def rebind(self, folder: Folder) -> None:
        """Point inodes left from an earlier attachment of the same folder at ``folder``."""
        for inode in self.by_id.values():
            if inode.folder.vfid == folder.vfid and inode.folder is not folder:
                inode.folder = folder

    def close_all(self) -> None:
        for inode in self.by_id.values():
            self._close(inode)
        self.by_id.clear()
        self.by_key.clear()
        self.fds.clear()
