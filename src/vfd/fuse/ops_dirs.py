"""Directory listing: opendir, readdir (always readdirplus), releasedir, fsyncdir.

Each ``opendir`` lists the directory once, when the first ``readdir`` (offset 0) comes, and
answers every later ``readdir`` from that snapshot by index: the offset handed to the kernel
is the index of the next entry, so entries created or removed meanwhile can never make the
listing skip or repeat a name (an entry removed since the snapshot is left out). Every entry
comes with its attributes and counts one lookup, unless the kernel's buffer is full.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import Any

import pyfuse3
import trio

from vfd.fuse import attrs
from vfd.fuse.guard import handler, quiet
from vfd.fuse.inodes import RO_ID, ROOT_ID, RW_ID, SYNTHETIC, Inode, View
from vfd.fuse.ops_base import OpsBase

_DOTS = (b".", b"..")


@dataclass(eq=False)
class DirHandle:
    """One ``opendir``: the directory and the names it held at the first ``readdir``."""

    ino: int
    inode: Inode | None
    names: list[bytes] = field(default_factory=list)


class DirOps(OpsBase):
    """Directory handles."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dirs: dict[int, DirHandle] = {}

    @handler
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = None if inode in SYNTHETIC else self.inode(inode)
        if node is not None and not node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        fh = self.new_fh()
        self.dirs[fh] = DirHandle(inode, node)
        return fh

    def _snapshot(self, d: DirHandle) -> list[bytes]:
        if d.inode is None:
            if d.ino == ROOT_ID:
                return [*_DOTS, b"rw", b"ro"]
            return [*_DOTS, *(vfid.encode() for vfid in sorted(self.reg.folders))]
        fd = os.open(b".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=d.inode.fd)
        try:
            return [*_DOTS, *map(os.fsencode, os.listdir(fd))]
        finally:
            os.close(fd)

    def _dot_entry(self, d: DirHandle, name: bytes) -> pyfuse3.EntryAttributes:
        """``.`` and ``..``: inode numbers only; the kernel does not count lookups for them."""
        node = d.inode
        if node is None:
            ino = d.ino if name == b"." or d.ino == ROOT_ID else ROOT_ID
            return self.synthetic_entry(ino)
        if name == b".":
            return self.entry(node, os.fstat(node.fd))
        if node.is_root:
            return self.synthetic_entry(node.view.dir_id)
        st = os.stat(b"..", dir_fd=node.fd, follow_symlinks=False)
        e = attrs.from_stat(st, 0, 0, 0)
        key = (st.st_dev, st.st_ino)
        found = self.table.find(node.view, key)
        e.st_ino = found.id if found is not None else self.table.number(node.view, *key)
        return e

    @handler
    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        d = self.dirs[fh]
        if start_id == 0:
            d.names = self._snapshot(d)
        names = d.names
        reply = self.readdir_reply
        for idx in range(start_id, len(names)):
            name = names[idx]
            counted: Inode | None = None
            if name in _DOTS:
                e = self._dot_entry(d, name)
            elif d.inode is None:
                if d.ino == ROOT_ID:
                    e = self.synthetic_entry(RW_ID if name == b"rw" else RO_ID)
                else:
                    view = View.RW if d.ino == RW_ID else View.RO
                    found = self.folder_root(view, name)
                    if found is None:
                        continue  # detached since the snapshot
                    counted = found[0]
                    e = self.entry(*found)
            else:
                try:
                    counted, st = self.child(d.inode, name)
                except FileNotFoundError:
                    continue  # removed since the snapshot
                e = self.entry(counted, st)
            if not reply(token, name, e, idx + 1):
                if counted is not None:
                    self.table.forget(counted.id, 1)
                return

    @quiet
    async def releasedir(self, fh: int) -> None:
        self.dirs.pop(fh, None)

    @handler
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        d = self.dirs[fh]
        if d.inode is None:
            return
        fd = os.open(b".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=d.inode.fd)
        try:
            await trio.to_thread.run_sync(os.fsync, fd)
        finally:
            os.close(fd)
