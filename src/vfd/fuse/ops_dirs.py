"""Directory listing: opendir, readdir (plain and plus), releasedir, fsyncdir.

Each ``opendir`` lists the directory once, when the first ``readdir`` (offset 0) comes, and
answers every later ``readdir`` from that snapshot by index: the offset handed to the kernel
is the index of the next entry, so entries created or removed meanwhile can never make the
listing skip or repeat a name (an entry removed since the snapshot is left out of a
readdirplus reply, which must look it up; a plain reply lists the snapshot as taken).

The kernel asks for readdirplus (names with attributes; every entry counts one lookup) for
the first batch and while entries are being stat'ed, and for plain readdir (names, inode
numbers and types, built here as ``struct fuse_dirent`` records) otherwise — see
``vfd.fuse.hooks``.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import pyfuse3
import trio

from vfd.fuse import attrs
from vfd.fuse.guard import handler, quiet
from vfd.fuse.inodes import FALLBACK_BASE, RO_ID, ROOT_ID, RW_ID, SYNTHETIC, Inode, View
from vfd.fuse.ops_base import OpsBase

_DOTS = (b".", b"..")
DIR_FH_BASE = 0x7666_6400_0000_0000
"""Directory handle numbers carry these high bits, so that the low-level readdir hook can
tell a directory handle in ``fuse_file_info`` from anything else."""
_DT_DIR, _DT_REG, _DT_LNK, _DT_UNKNOWN = 4, 8, 10, 0
_DIRENT = struct.Struct("<QQII")  # ino, off, namelen, type; the name follows, 8-aligned
_PADS = [b"\0" * n for n in range(8)]
PLUS_BATCH = 128
"""Entries per readdirplus reply. The kernel's buffer holds thousands, each costing a lookup
(an ``openat`` and ``fstat``) here; a short batch ends the reply early, and the kernel asks
for the rest as plain readdir unless the entries are being stat'ed (``READDIRPLUS_AUTO``)."""


@dataclass(eq=False)
class DirHandle:
    """One ``opendir``: the directory and what it held at the first ``readdir``."""

    ino: int
    inode: Inode | None
    names: list[bytes] = field(default_factory=list)
    inos: list[int] = field(default_factory=list)
    records: list[bytes] = field(default_factory=list)
    """Each entry as a ``struct fuse_dirent``, ready for a plain readdir reply."""


class DirOps(OpsBase):
    """Directory handles."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dirs: dict[int, DirHandle] = {}
        self._next_dir = DIR_FH_BASE

    def is_dir_handle(self, fh: int) -> bool:
        return fh in self.dirs

    @handler
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = None if inode in SYNTHETIC else self.inode(inode)
        if node is not None:
            if not node.is_dir:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            self.table.pin(node)  # listed from its descriptor, even once removed
        self._next_dir += 1
        self.dirs[self._next_dir] = DirHandle(inode, node)
        return self._next_dir

    def _snapshot(self, d: DirHandle) -> None:
        """List the directory: names, and the plain readdir record of each entry."""
        names: list[bytes] = [*_DOTS]
        inos: list[int]
        types: list[int] = [_DT_DIR, _DT_DIR]
        node = d.inode
        if node is None:
            inos = [d.ino, ROOT_ID]
            if d.ino == ROOT_ID:
                names += [b"rw", b"ro"]
                inos += [RW_ID, RO_ID]
                types += [_DT_DIR, _DT_DIR]
            else:
                view = View.RW if d.ino == RW_ID else View.RO
                for vfid, folder in sorted(self.reg.folders.items()):
                    names.append(vfid.encode())
                    inos.append(self.table.number(view, *folder.key))
                    types.append(_DT_DIR)
        else:
            inos = [node.id, self._dotdot_number(node)]
            self._list_backing(node, names, inos, types)
        d.names, d.inos = names, inos
        pack, pads = _DIRENT.pack, _PADS
        d.records = [
            pack(ino, idx, len(name), dtype) + name + pads[-(_DIRENT.size + len(name)) % 8]
            for idx, name, ino, dtype in zip(
                range(1, len(names) + 1), names, inos, types, strict=True
            )
        ]

    def _list_backing(
        self, node: Inode, names: list[bytes], inos: list[int], types: list[int]
    ) -> None:
        """Append a backing directory's entries (name, inode number, d_type), in one pass;
        this is the cost of listing a large directory, so it is kept tight."""
        number, view, dev = self.table.number, node.view, node.key[0]
        probe = number(view, dev, 0)  # the number of inode 0: dev index and view bits
        small = 1 << 48 if probe < FALLBACK_BASE else 0
        fsencode = os.fsencode
        add_name, add_ino, add_type = names.append, inos.append, types.append
        fd = self.open_fd(
            lambda: os.open(b".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=node.fd)
        )
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    add_name(fsencode(entry.name))
                    ino = entry.inode()
                    add_ino(probe | (ino << 1) if ino < small else number(view, dev, ino))
                    if entry.is_file(follow_symlinks=False):
                        add_type(_DT_REG)
                    elif entry.is_dir(follow_symlinks=False):
                        add_type(_DT_DIR)
                    elif entry.is_symlink():
                        add_type(_DT_LNK)
                    else:
                        add_type(_DT_UNKNOWN)
        finally:
            os.close(fd)

    def _dotdot_number(self, node: Inode) -> int:
        if node.is_root:
            return node.view.dir_id
        st = os.stat(b"..", dir_fd=node.fd, follow_symlinks=False)
        return self.table.number(node.view, st.st_dev, st.st_ino)

    def readdir_plain(self, fh: int, off: int, size: int) -> bytes:
        """A plain readdir reply: ``struct fuse_dirent`` records from index ``off`` on."""
        d = self.dirs[fh]
        if off == 0:
            self._snapshot(d)
        records = d.records
        end, used = off, 0
        while end < len(records) and used + len(records[end]) <= size:
            used += len(records[end])
            end += 1
        return b"".join(records[off:end])

    def _dot_entry(self, d: DirHandle, idx: int) -> pyfuse3.EntryAttributes:
        """``.`` and ``..``: inode numbers only; the kernel counts no lookups for them."""
        node = d.inode
        if node is None:
            return self.synthetic_entry(d.inos[idx])
        if idx == 0:
            return self.entry(node, os.fstat(node.fd))
        if node.is_root:
            return self.synthetic_entry(node.view.dir_id)
        st = os.stat(b"..", dir_fd=node.fd, follow_symlinks=False)
        e = attrs.from_stat(st, 0, 0, 0)
        e.st_ino = d.inos[idx]
        return e

    @handler
    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        d = self.dirs[fh]
        if start_id == 0:
            self._snapshot(d)
        names = d.names
        reply = self.readdir_reply
        sent = 0
        for idx in range(start_id, len(names)):
            if sent >= PLUS_BATCH:
                return
            name = names[idx]
            counted: Inode | None = None
            if idx < 2:
                e = self._dot_entry(d, idx)
            elif d.inode is None:
                if d.ino == ROOT_ID:
                    e = self.synthetic_entry(d.inos[idx])
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
            sent += 1

    @quiet
    async def releasedir(self, fh: int) -> None:
        d = self.dirs.pop(fh, None)
        if d is not None and d.inode is not None:
            self.table.unpin(d.inode)

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
