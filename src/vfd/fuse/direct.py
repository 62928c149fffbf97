"""The direct data path of transfers: backing descriptors handed to the daemon, under grants.

The daemon opens a file through a folder view as the user (so permissions, read-only views
and containment are decided as for any open through the mount), then asks here for the
*backing* file of that inode (``backing_open``), to move the bytes without a FUSE round trip
per MiB (docs/transfers.md).

A **write grant** reserves quota up front and holds the file open in the accounting
(:class:`~vfd.fuse.usage.OpenFiles`) as a FUSE open does, so an unlink meanwhile keeps its
space until the grant ends; :meth:`DirectGrants.settle` then accounts the size the file
really has, gives back what was reserved and not used, and drops the kernel's caches of the
inode in both views. Grants live on their control connection and are settled when it
closes, however it closes.

Everything here runs on the trio thread, synchronously between awaits: ``Inode.fd`` is used
only until the next await, as the inode table's interface asks.
"""

from __future__ import annotations

import ctypes
import logging
import os
import stat
from dataclasses import dataclass
from typing import Any

import pyfuse3
import trio

from vfd.errors import ErrorCode, VfdError
from vfd.folders.quota import Usage
from vfd.fuse import groups
from vfd.fuse.control import Connection
from vfd.fuse.inodes import Inode, View
from vfd.fuse.ops_base import proc_path
from vfd.fuse.registry import Registry
from vfd.fuse.usage import OpenFile, ScopeUsage

log = logging.getLogger("vfd.fuse.direct")

MODES = {
    "read": os.O_RDONLY,
    "write": os.O_WRONLY,
    "dir": os.O_RDONLY | os.O_DIRECTORY,
    "tree": os.O_RDONLY | os.O_DIRECTORY,
}
_syncfs = ctypes.CDLL(None, use_errno=True).syncfs
_syncfs.argtypes = [ctypes.c_int]


def syncfs(fd: int) -> None:
    """``syncfs(2)``: write everything of the file system holding ``fd`` to disk. Blocking."""
    if _syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@dataclass(eq=False)
class Grant:
    """A write grant: mountd's own descriptor on the backing file (for the size at settle),
    the file's accounting entry (held open), and the bytes reserved for it."""

    id: int
    fd: int
    of: OpenFile
    reserved: int


@dataclass(eq=False)
class TreeGrant:
    """A grant to make one new tree, ``name``, below a directory: mountd's descriptor on the
    directory, the inode it was asked through (rw/), and the bytes and files reserved so
    far. At settle (or when the connection closes) the tree is counted, and that is what is
    charged."""

    id: int
    fd: int
    inode: Inode
    name: str
    usage: ScopeUsage
    reserved_bytes: int
    reserved_files: int


class DirectGrants:
    """``backing_open`` and ``backing_settle`` over the registry."""

    def __init__(self, registry: Registry) -> None:
        self.reg = registry
        self._next = 1
        self.outstanding = 0
        """Grants not settled yet, over every connection (``health``)."""

    def _inode(self, ino: int, mode: str) -> Inode:
        if mode not in MODES:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"backing_open: mode must be 'read', 'write' or 'dir', not {mode!r}",
                field="mode",
            )
        inode = self.reg.table.get(ino)
        if mode in ("dir", "tree"):
            if inode is None or inode.folder.detached:
                raise VfdError(ErrorCode.PATH_NOT_FOUND, f"inode {ino} is not known", ino=ino)
            if not stat.S_ISDIR(inode.mode):
                raise VfdError(ErrorCode.NOT_A_DIRECTORY, f"inode {ino} is not a directory")
            if mode == "tree" and inode.view is not View.RW:
                raise VfdError(ErrorCode.READ_ONLY, f"inode {ino} is seen read-only", ino=ino)
            return inode
        if inode is not None and not inode.folder.detached and not stat.S_ISREG(inode.mode):
            raise VfdError(
                ErrorCode.NOT_A_REGULAR_FILE, f"inode {ino} is not a regular file", ino=ino
            )
        if inode is None or inode.folder.detached or self.reg.open_files.get(inode.key) is None:
            raise VfdError(
                ErrorCode.PATH_NOT_FOUND,
                f"inode {ino} is not open through the mount (open it through a view first)",
                ino=ino,
            )
        if mode == "write" and inode.view is not View.RW:  # a file
            raise VfdError(ErrorCode.READ_ONLY, f"inode {ino} is seen read-only", ino=ino)
        return inode

    def open(
        self,
        conn: Connection,
        ino: int,
        mode: str,
        reserve_bytes: int,
        reserve_files: int = 0,
        name: str | None = None,
    ) -> dict[str, Any]:
        """The backing file of inode ``ino`` reopened for ``mode``, left in
        ``conn.outgoing``; a write reserves ``reserve_bytes`` first and opens a grant.
        ``dir`` opens a directory (for an archive: the daemon walks below it as the user);
        ``tree`` too, with a grant to make one new tree below it (see :class:`TreeGrant`)."""
        inode = self._inode(ino, mode)
        fd = os.open(proc_path(inode.fd), MODES[mode] | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != inode.key or stat.S_IFMT(st.st_mode) != stat.S_IFMT(
                inode.mode
            ):
                raise VfdError(ErrorCode.PATH_NOT_FOUND, f"inode {ino} changed", ino=ino)
            if mode == "tree":
                return self._open_tree(conn, inode, fd, name, reserve_bytes, reserve_files)
            if mode != "write":
                conn.outgoing.append(fd)
                return {"size": st.st_size}
            usage = inode.folder.usage
            try:
                usage.reserve(reserve_bytes)
            except pyfuse3.FUSEError:
                raise VfdError(
                    ErrorCode.QUOTA_EXCEEDED,
                    "the folder's quota is exceeded",
                    needed_bytes=reserve_bytes,
                ) from None
            sent = os.dup(fd)
        except BaseException:
            os.close(fd)
            raise
        known = self.reg.open_files.get(inode.key) is not None
        of = self.reg.open_files.acquire(inode.key, usage, st.st_size)
        if not known and st.st_nlink == 0:  # as a FUSE open of an unlinked file
            of.orphaned = True
            usage.release(-st.st_size, -1)
        grant = Grant(self._next, fd, of, reserve_bytes)
        self._next += 1
        conn.grants[grant.id] = grant
        conn.outgoing.append(sent)
        self.outstanding += 1
        return {"size": st.st_size, "grant": grant.id, "reserved": reserve_bytes}

    def _reserve(self, usage: ScopeUsage, nbytes: int, files: int) -> None:
        try:
            usage.reserve(nbytes, files)
        except pyfuse3.FUSEError:
            raise VfdError(
                ErrorCode.QUOTA_EXCEEDED,
                "the folder's quota is exceeded",
                needed_bytes=nbytes,
                needed_files=files,
            ) from None

    def _open_tree(
        self, conn: Connection, inode: Inode, fd: int, name: str | None, nbytes: int, files: int
    ) -> dict[str, Any]:
        """A tree grant for the new entry ``name`` of the directory ``fd`` (the caller
        closes ``fd`` when this raises)."""
        if not name or "/" in name or name in (".", "..") or len(name.encode()) > 255:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT, f"a tree grant needs a name, not {name!r}", field="name"
            )
        try:
            os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            raise VfdError(ErrorCode.PATH_EXISTS, f"{name} exists already", path=name)
        usage = inode.folder.usage
        self._reserve(usage, nbytes, files)
        try:
            sent = os.dup(fd)
        except BaseException:
            usage.release(nbytes, files)
            raise
        grant = TreeGrant(self._next, fd, inode, name, usage, nbytes, files)
        self._next += 1
        conn.grants[grant.id] = grant
        conn.outgoing.append(sent)
        self.outstanding += 1
        return {"grant": grant.id, "reserved": nbytes, "reserved_files": files}

    def reserve(self, conn: Connection, grant_id: int, nbytes: int, files: int) -> dict[str, Any]:
        """More room for a tree grant (``quota_exceeded``: nothing more reserved)."""
        grant = conn.grants.get(grant_id)
        if not isinstance(grant, TreeGrant):
            raise VfdError(ErrorCode.NOT_FOUND, f"no tree grant {grant_id} here", grant=grant_id)
        self._reserve(grant.usage, nbytes, files)
        grant.reserved_bytes += nbytes
        grant.reserved_files += files
        return {"reserved": grant.reserved_bytes, "reserved_files": grant.reserved_files}

    def take(self, conn: Connection, grant_id: int) -> Grant | TreeGrant:
        grant = conn.grants.pop(grant_id, None)
        if not isinstance(grant, Grant | TreeGrant):
            raise VfdError(
                ErrorCode.NOT_FOUND, f"no grant {grant_id} on this connection", grant=grant_id
            )
        return grant

    async def settle(self, conn: Connection, grant_id: int) -> dict[str, Any]:
        grant = self.take(conn, grant_id)
        if isinstance(grant, TreeGrant):
            return await self.settle_tree(grant)
        return self._settle(grant)

    async def settle_tree(self, grant: TreeGrant) -> dict[str, Any]:
        """Count the tree (the granted directory's new entry, whatever became of it), charge
        exactly that, give back the rest of the reservation, apply the folder's
        group-sharing rule to it, and drop what the kernel cached of the name."""
        self.outstanding -= 1
        counted = Usage()
        try:
            counted = await trio.to_thread.run_sync(_count_and_share, grant)
        finally:
            os.close(grant.fd)
            grant.usage.release(
                grant.reserved_bytes - counted.bytes, grant.reserved_files - counted.files
            )
            for view in View:
                inode = self.reg.table.find(view, grant.inode.key)
                if inode is not None:
                    self.reg.notifier.invalidate_entry(inode.id, grant.name.encode())
        return {"bytes": counted.bytes, "files": counted.files}

    async def settle_all(self, conn: Connection) -> None:
        """Settle the grants a closed connection left (a tree: what was made of it)."""
        grants, conn.grants = list(conn.grants.values()), {}
        for grant in grants:
            try:
                if isinstance(grant, TreeGrant):
                    done = await self.settle_tree(grant)
                else:
                    done = self._settle(grant)
                log.info("settled grant %d of a closed connection: %s", grant.id, done)
            except Exception:
                log.exception("settling grant %d failed", grant.id)

    def _settle(self, grant: Grant) -> dict[str, Any]:
        self.outstanding -= 1
        of = grant.of
        try:
            actual: int | None = os.fstat(grant.fd).st_size
        except OSError:
            actual = None
        finally:
            os.close(grant.fd)
        before = of.size
        of.usage.release(grant.reserved)
        if actual is None or of.inflight:
            of.unsure = True  # the FUSE write in flight re-reads the size when it ends
        else:
            of.usage.release(of.size - actual)
            of.size = actual
        self.reg.open_files.drop(of)
        for view in View:
            inode = self.reg.table.find(view, of.key)
            if inode is not None:
                inode.stale = True
                self.reg.notifier.invalidate_inode(inode.id)
        return {"size": actual, "grown": (actual - before) if actual is not None else None}


def _count_and_share(grant: TreeGrant) -> Usage:
    """The usage of the granted new entry (itself included), after the folder's
    group-sharing rule was applied to it; nothing when it is not there. Blocking."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_DIRECTORY
    try:
        fd = os.open(grant.name, flags, dir_fd=grant.fd)
    except FileNotFoundError:
        return Usage()
    except OSError:  # not a directory (made behind the daemon's back): counted as one file
        st = os.stat(grant.name, dir_fd=grant.fd, follow_symlinks=False)
        return Usage(st.st_size if stat.S_ISREG(st.st_mode) else 0, 1)
    try:
        folder = grant.inode.folder
        try:  # a folder detached meanwhile has no root fd: the count still matters
            gid = None if folder.detached else groups.folder_group(folder)
        except OSError:
            gid = None
        if gid is not None:
            groups.share_tree(fd, gid)
        return _count_tree(fd)
    finally:
        os.close(fd)


def _count_tree(fd: int) -> Usage:
    """The usage of the directory ``fd`` and everything below it, counted as a rescan does
    (``vfd.folders.quota``: every inode a file, regular files their size, an inode with
    several links once), walked through descriptors without following links. Blocking."""
    nbytes, files = 0, 1
    seen: set[tuple[int, int]] = set()
    for _path, dirs, names, dir_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
        for name in (*dirs, *names):
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            files += 1
            if stat.S_ISREG(st.st_mode):
                nbytes += st.st_size
    return Usage(nbytes, files)
