"""Handlers for open files: open, create, read, write, flush, fsync, release.

Each open gets its own descriptor, re-opened from the inode's ``O_PATH`` descriptor through
``/proc/self/fd`` with the caller's flags (there is no other way to turn an ``O_PATH``
descriptor into an I/O one), so reads and writes are plain ``pread``/``pwrite``.

Page cache: the kernel keeps a file's cached pages across opens (``keep_cache``) when the
backing file is as it was when the cache was last known good — passthrough_hp's
``cache=auto``. Writes through ``rw/`` keep that inode's cache right (write-through); a write
marks the ``ro/`` twin stale, so a reader there sees new data on its next open.

Small reads and writes run inline: a thread hop costs more than copying a few pages. Larger
ones run in worker threads so that the loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import errno
import os
import stat

import pyfuse3
import trio

from vfd.fuse import falloc, groups, syscalls
from vfd.fuse.guard import handler, quiet
from vfd.fuse.inodes import Inode, View
from vfd.fuse.ops_base import FileHandle, OpsBase, proc_path
from vfd.fuse.usage import OpenFile

INLINE_READ = 128 * 1024
"""Reads up to this size run on the trio thread (page-cache copies of this size take less
than a worker-thread round trip)."""
INLINE_WRITE = 128 * 1024
"""Writes up to this size run on the trio thread."""

_DROP_FLAGS = os.O_NOFOLLOW | os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_DIRECT
_WRITE_ACCESS = (os.O_WRONLY, os.O_RDWR)


def _sig(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size)


class FileOps(OpsBase):
    """Open files and their data."""

    def _open_handle(
        self, node: Inode, fd: int, flags: int, truncated_from: int | None
    ) -> pyfuse3.FileInfo:
        """Register an open descriptor (the inode's own is pinned while it is open); decide
        whether the kernel may keep its page cache."""
        try:
            self.table.pin(node)
        except BaseException:
            os.close(fd)
            raise
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            self.table.unpin(node)
            raise
        of: OpenFile | None = None
        if stat.S_ISREG(st.st_mode):
            known = self.reg.open_files.get(node.key) is not None
            of = self.reg.open_files.acquire(node.key, node.folder.usage, st.st_size)
            if truncated_from is not None:
                of.size = st.st_size
            if not known and st.st_nlink == 0:
                # Opened after its last name went (the kernel still held the inode): its
                # space was freed at the unlink; it is held again until the last release.
                of.orphaned = True
                of.usage.release(-st.st_size, -1)
        keep = node.cache_sig == _sig(st) and not node.stale
        node.cache_sig = _sig(st)
        node.stale = False
        fh = self.new_fh()
        self.handles[fh] = FileHandle(fd, node, of, bool(flags & os.O_APPEND))
        return pyfuse3.FileInfo(fh=fh, keep_cache=keep)

    def _size_before_truncate(self, node: Inode) -> int:
        of = self.reg.open_files.get(node.key)
        return of.size if of is not None else os.fstat(node.fd).st_size

    @handler
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self.inode(inode)
        writes = (flags & os.O_ACCMODE) in _WRITE_ACCESS
        truncates = bool(flags & os.O_TRUNC)
        if node.view is View.RO and (writes or truncates):
            raise pyfuse3.FUSEError(errno.EROFS)
        old = self._size_before_truncate(node) if truncates and stat.S_ISREG(node.mode) else None
        fd = self.open_fd(
            lambda: os.open(proc_path(node.fd), (flags & ~_DROP_FLAGS) | os.O_CLOEXEC)
        )
        if old is not None:
            node.folder.usage.release(old)
            self.data_changed(node)
        return self._open_handle(node, fd, flags, old)

    @handler
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = self.mutable_dir(parent_inode)
        usage = parent.folder.usage
        bflags = (flags & ~_DROP_FLAGS) | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        perm = stat.S_IMODE(mode) & ~ctx.umask
        usage.reserve(0, 1)
        try:
            fd = self.open_fd(lambda: os.open(name, bflags, perm, dir_fd=parent.fd))
        except FileExistsError:
            usage.release(0, 1)
            if flags & os.O_EXCL:
                raise
            return await self._create_existing(parent, name, flags, ctx)
        except BaseException:
            usage.release(0, 1)
            raise
        try:
            self._own_new_file(parent, fd, perm, ctx)
            inode, st = self.child(parent, name)
        except BaseException:
            os.close(fd)
            raise
        self.entry_changed(parent, name)
        return self._open_handle(inode, fd, flags, None), self.entry(inode, st)

    async def _create_existing(
        self, parent: Inode, name: bytes, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        """O_CREAT without O_EXCL of a name that exists (made behind the kernel's back)."""
        inode, _ = self.child(parent, name)
        try:
            info = await self.open(inode.id, flags & ~os.O_CREAT, ctx)
        except BaseException:
            self.table.forget(inode.id, 1)
            raise
        return info, self.entry(inode, os.fstat(inode.fd))

    def _own_new_file(self, parent: Inode, fd: int, perm: int, ctx: pyfuse3.RequestContext) -> None:
        """Give the new file to the caller; in a group-shared folder also the folder's group
        and ``g = u`` (``vfd.fuse.groups``)."""
        gid, shared = self.new_group(parent, ctx.gid)
        if ctx.uid == 0 and gid in (-1, 0):
            return
        os.fchown(fd, ctx.uid, gid)
        if shared is not None:
            os.fchmod(fd, groups.shared_mode(stat.S_IFREG | perm))
        elif perm & (stat.S_ISUID | stat.S_ISGID):
            os.fchmod(fd, perm)  # chown cleared them

    @handler
    async def read(self, fh: int, off: int, size: int) -> bytes:
        fd = self.handles[fh].fd
        if size <= INLINE_READ:
            return os.pread(fd, size, off)
        return await trio.to_thread.run_sync(os.pread, fd, size, off)

    @handler
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self.handles[fh]
        of = handle.of
        n = len(buf)
        if of is None:
            return os.pwrite(handle.fd, buf, off)
        end = of.size + n if handle.append else off + n
        if end > of.size:
            of.usage.reserve(end - of.size)  # EDQUOT before a byte is stored
            of.size = end
        of.inflight += 1
        written = 0
        try:
            if n <= INLINE_WRITE:
                written = os.pwrite(handle.fd, buf, off)
            else:
                written = await trio.to_thread.run_sync(os.pwrite, handle.fd, buf, off)
        finally:
            of.inflight -= 1
            if written < n:
                of.unsure = True
            if of.unsure and not of.inflight:
                self._resync(of, handle.fd)
        self.data_changed(handle.inode)
        return written

    def _resync(self, of: OpenFile, fd: int) -> None:
        """After a failed or short write: account the size the file really has."""
        try:
            actual = os.fstat(fd).st_size
        except OSError:
            return
        of.usage.release(of.size - actual)
        of.size = actual
        of.unsure = False

    def fallocate_sync(self, ino: int, mode: int, offset: int, length: int) -> int:
        """``fallocate`` (installed by ``vfd.fuse.hooks``); its errno, 0 on success.

        The modes and their quota rule are ``vfd.fuse.falloc``'s: growth is reserved before
        the call (EDQUOT allocates nothing; given back when the call fails), a collapse's
        shrinking is released after it. The size is then re-read from the backing file so
        the counters follow what the file system did.
        """
        try:
            node = self.mutable(ino)
            if stat.S_ISDIR(node.mode):
                return errno.EISDIR
            of = self.reg.open_files.get(node.key)
            disk = os.fstat(node.fd).st_size
            size = of.size if of is not None else disk
            eff = falloc.effect(mode, offset, length, size, disk)
            if eff.grow:
                node.folder.usage.reserve(eff.grow)
        except falloc.Refused as exc:
            return exc.errno
        except (pyfuse3.FUSEError, OSError) as exc:
            return exc.errno or errno.EIO
        try:
            fd = os.open(proc_path(node.fd), os.O_WRONLY | os.O_CLOEXEC)
            try:
                syscalls.fallocate(fd, mode, offset, length)
            finally:
                os.close(fd)
        except OSError as exc:
            if eff.grow:
                node.folder.usage.release(eff.grow)
            return exc.errno or errno.EIO
        if eff.shrink:
            node.folder.usage.release(eff.shrink)
        if of is not None:
            of.size += eff.grow - eff.shrink
            if eff.grow or eff.shrink:
                of.unsure = True  # a write in flight may overlap: settle on the real size
                if not of.inflight:
                    self._resync(of, node.fd)
        self.data_changed(node)
        return 0

    @handler
    async def flush(self, fh: int) -> None:
        # Nothing is buffered here; ENOSYS tells the kernel to stop sending FLUSH on close().
        raise pyfuse3.FUSEError(errno.ENOSYS)

    @handler
    async def fsync(self, fh: int, datasync: bool) -> None:
        fd = self.handles[fh].fd
        await trio.to_thread.run_sync(os.fdatasync if datasync else os.fsync, fd)

    @quiet
    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh)
        try:
            if not handle.inode.stale:
                handle.inode.cache_sig = _sig(os.fstat(handle.fd))
        finally:
            os.close(handle.fd)
            self.table.unpin(handle.inode)
            if handle.of is not None:
                self.reg.open_files.drop(handle.of)
