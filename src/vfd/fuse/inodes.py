"""The inode table: what each FUSE inode number stands for, with its lookup count.

Three inodes are synthetic — the mount root (1) and the view directories ``rw/`` (2) and
``ro/`` (3). Every other inode is a backing inode seen through one view, keyed by
``(view, st_dev, st_ino)`` and holding an ``O_PATH|O_NOFOLLOW`` descriptor that every
operation on it starts from (``*at()`` calls), as in libfuse's ``passthrough_hp``. The same
backing file seen through ``rw/`` and ``ro/`` is two inodes ("twins").

Inode numbers are derived from the backing inode, ``dev index << 49 | st_ino << 1 | view``,
so a file keeps its ``st_ino`` when the kernel forgets and looks it up again (``du``, ``tar``
and ``rsync -H`` find hard links by it). A number is never in use for two backing inodes at
once: while the table holds an entry its descriptor keeps the backing inode alive, so the
backing file system cannot reuse the number. Inodes outside that range get counter numbers.
"""

from __future__ import annotations

import enum
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from vfd.fuse.usage import BackingKey, ScopeUsage

ROOT_ID = 1
RW_ID = 2
RO_ID = 3
SYNTHETIC = frozenset({ROOT_ID, RW_ID, RO_ID})

_INO_BITS = 48
_DEV_BITS = 14
FALLBACK_BASE = 1 << 63


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


@dataclass(slots=True, eq=False)
class Inode:
    """A backing inode seen through one view."""

    id: int
    view: View
    folder: Folder
    fd: int
    key: BackingKey
    mode: int
    nlookup: int = 0
    is_root: bool = False
    cache_sig: tuple[int, int, int] | None = None
    """(mtime_ns, ctime_ns, size) when the kernel's page cache of this inode was last known
    to match the backing file; an open that finds the same keeps the cache."""
    stale: bool = False
    """The twin changed the backing file; the kernel was told to drop this inode's caches."""

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


class InodeTable:
    """Inodes the kernel knows (lookup count above zero), by number and by backing key."""

    def __init__(self) -> None:
        self.by_id: dict[int, Inode] = {}
        self.by_key: dict[tuple[View, int, int], Inode] = {}
        self._devs: dict[int, int] = {}
        self._fallback: dict[tuple[View, int, int], int] = {}

    def __len__(self) -> int:
        return len(self.by_id)

    def number(self, view: View, dev: int, ino: int) -> int:
        idx = self._devs.get(dev)
        if idx is None:
            idx = self._devs[dev] = len(self._devs) + 1
        if idx < (1 << _DEV_BITS) and ino < (1 << _INO_BITS):
            return (idx << (_INO_BITS + 1)) | (ino << 1) | int(view)
        key = (view, dev, ino)
        number = self._fallback.get(key)
        if number is None:
            number = self._fallback[key] = FALLBACK_BASE + len(self._fallback)
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
        if inode is not None:
            os.close(fd)
            inode.folder = folder
            inode.mode = st.st_mode
            inode.is_root = inode.is_root or is_root
        else:
            number = self.number(view, st.st_dev, st.st_ino)
            inode = Inode(number, view, folder, fd, (st.st_dev, st.st_ino), st.st_mode)
            inode.is_root = is_root
            self.by_id[number] = inode
            self.by_key[tkey] = inode
        inode.nlookup += 1
        return inode

    def forget(self, ino: int, n: int) -> None:
        """Drop ``n`` lookups; at zero the inode and its descriptor go."""
        inode = self.by_id.get(ino)
        if inode is None:
            return
        inode.nlookup -= n
        if inode.nlookup <= 0:
            del self.by_id[ino]
            del self.by_key[(inode.view, inode.key[0], inode.key[1])]
            os.close(inode.fd)

    def rebind(self, folder: Folder) -> None:
        """Point inodes left from an earlier attachment of the same folder at ``folder``."""
        for inode in self.by_id.values():
            if inode.folder.vfid == folder.vfid and inode.folder is not folder:
                inode.folder = folder

    def close_all(self) -> None:
        for inode in self.by_id.values():
            os.close(inode.fd)
        self.by_id.clear()
        self.by_key.clear()
