"""Handlers that change names or attributes: mkdir, mknod, symlink, link, unlink, rmdir,
rename, setattr.

Quota bookkeeping, in the order that keeps counters right when a call fails: growth is
reserved before the syscall (EDQUOT leaves nothing behind) and given back if the syscall
fails; what a removal frees is read (``fstatat``) before it and released after it succeeded.
Everything here runs inline on the trio thread, so no other request can run in between.
"""

from __future__ import annotations

import errno
import os
import stat

import pyfuse3

from vfd.fuse import groups, syscalls
from vfd.fuse.guard import handler
from vfd.fuse.inodes import O_PATH_FLAGS, Folder, Inode, View
from vfd.fuse.ops_base import OpsBase, proc_path

RENAME_WHITEOUT = 4
"""``renameat2`` flag: leave a whiteout (a 0/0 character device, as overlayfs reads it) at
the old name. pyfuse3 does not name it; the value is ``<linux/fs.h>``'s."""
RENAME_FLAGS = pyfuse3.RENAME_EXCHANGE | pyfuse3.RENAME_NOREPLACE | RENAME_WHITEOUT


class NameOps(OpsBase):
    """Namespace and attribute changes."""

    def freed(self, folder: Folder, st: os.stat_result) -> None:
        """Account for the removal of one name of the inode ``st`` describes."""
        if stat.S_ISDIR(st.st_mode):
            folder.usage.release(0, 1)
            return
        if st.st_nlink > 1:
            return  # other names remain; hard links count once
        if stat.S_ISREG(st.st_mode):
            of = self.reg.open_files.get((st.st_dev, st.st_ino))
            if of is not None:
                of.orphaned = True  # freed at the last release
                return
            folder.usage.release(st.st_size, 1)
        else:
            folder.usage.release(0, 1)

    def _new_entry(
        self, parent: Inode, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        shared = self.own(parent, name, ctx.uid, ctx.gid)
        inode, st = self.child(parent, name)
        if shared is not None and groups.apply(inode.fd, shared):
            st = os.fstat(inode.fd)
            inode.mode = st.st_mode
        self.entry_changed(parent, name)
        return self.entry(inode, st)

    @handler
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self.mutable_dir(parent_inode)
        parent.folder.usage.reserve(0, 1)
        try:
            os.mkdir(name, stat.S_IMODE(mode) & ~ctx.umask, dir_fd=parent.fd)
        except BaseException:
            parent.folder.usage.release(0, 1)
            raise
        return self._new_entry(parent, name, ctx)

    @handler
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self.mutable_dir(parent_inode)
        parent.folder.usage.reserve(0, 1)
        try:
            perm = stat.S_IMODE(mode) & ~ctx.umask
            os.mknod(name, stat.S_IFMT(mode) | perm, rdev, dir_fd=parent.fd)
        except BaseException:
            parent.folder.usage.release(0, 1)
            raise
        return self._new_entry(parent, name, ctx)

    @handler
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self.mutable_dir(parent_inode)
        parent.folder.usage.reserve(0, 1)
        try:
            os.symlink(target, name, dir_fd=parent.fd)
        except BaseException:
            parent.folder.usage.release(0, 1)
            raise
        return self._new_entry(parent, name, ctx)

    @handler
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self.mutable_dir(new_parent_inode)
        node = self.inode(inode)
        if node.view is View.RO:
            raise pyfuse3.FUSEError(errno.EROFS)
        if node.folder is not parent.folder:
            raise pyfuse3.FUSEError(errno.EXDEV)
        syscalls.link_empty(node.fd, parent.fd, new_name)  # no new inode: quota unchanged
        linked, st = self.child(parent, new_name)
        self.entry_changed(parent, new_name)
        self.data_changed(linked)  # st_nlink and ctime changed
        return self.entry(linked, st)

    @handler
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self.mutable_dir(parent_inode)
        st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        os.unlink(name, dir_fd=parent.fd)
        self.freed(parent.folder, st)
        self.entry_changed(parent, name)

    @handler
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self.mutable_dir(parent_inode)
        st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        os.rmdir(name, dir_fd=parent.fd)
        self.freed(parent.folder, st)
        self.entry_changed(parent, name)

    @handler
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        src = self.mutable_dir(parent_inode_old)
        dst = self.mutable_dir(parent_inode_new)
        if src.folder is not dst.folder:
            raise pyfuse3.FUSEError(errno.EXDEV)  # folders are separate trees (and scopes)
        if flags & ~RENAME_FLAGS:
            raise pyfuse3.FUSEError(errno.EINVAL)
        replaced: os.stat_result | None = None
        if not flags & pyfuse3.RENAME_EXCHANGE:
            try:
                replaced = os.stat(name_new, dir_fd=dst.fd, follow_symlinks=False)
            except FileNotFoundError:
                replaced = None
            if replaced is not None:
                moved = os.stat(name_old, dir_fd=src.fd, follow_symlinks=False)
                if (moved.st_dev, moved.st_ino) == (replaced.st_dev, replaced.st_ino):
                    replaced = None  # two names of one inode: rename does nothing
        whiteout = bool(flags & RENAME_WHITEOUT)
        if whiteout:
            src.folder.usage.reserve(0, 1)  # the whiteout is a new inode (EDQUOT: no rename)
        try:
            syscalls.renameat2(src.fd, name_old, dst.fd, name_new, flags)
        except BaseException:
            if whiteout:
                src.folder.usage.release(0, 1)
            raise
        if replaced is not None:
            self.freed(dst.folder, replaced)
        if whiteout:
            # made by mountd (root): the caller's, and under the group rule, as a mknod is
            shared = self.own(src, name_old, ctx.uid, ctx.gid)
            if shared is not None:
                fd = self.open_fd(lambda: os.open(name_old, O_PATH_FLAGS, dir_fd=src.fd))
                try:
                    groups.apply(fd, shared)
                finally:
                    os.close(fd)
        self.entry_changed(src, name_old)
        self.entry_changed(dst, name_new)

    @handler
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        node = self.mutable(inode)
        handle_fd = self.handle_fd(fh)
        # one fstat of the folder root, only for the calls the group rule concerns
        shared = (
            groups.folder_group(node.folder) if fields.update_gid or fields.update_mode else None
        )
        if shared is not None and fields.update_gid and attr.st_gid != shared:
            raise pyfuse3.FUSEError(errno.EPERM)  # the folder's entries keep its group
        if fields.update_size:
            self._truncate(node, attr.st_size, handle_fd)
        if fields.update_mode:
            mode = stat.S_IMODE(attr.st_mode)
            if shared is not None:
                mode = groups.shared_mode(stat.S_IFMT(node.mode) | mode)
            if handle_fd is not None:
                os.fchmod(handle_fd, mode)
            elif not stat.S_ISLNK(node.mode):
                os.chmod(proc_path(node.fd), mode)
        changes = (
            fields.update_size
            or fields.update_mode
            or fields.update_uid
            or fields.update_gid
            or fields.update_atime
            or fields.update_mtime
        )
        if fields.update_uid or fields.update_gid or not changes:
            # chown(f, -1, -1) arrives as a setattr that changes nothing (only ctime, and only
            # the kernel's own copy); chown(-1, -1) on the backing inode gives it the ctime
            # update a local file system makes
            uid = attr.st_uid if fields.update_uid else -1
            gid = attr.st_gid if fields.update_gid else -1
            syscalls.fchown_empty(node.fd, uid, gid)
        if fields.update_atime or fields.update_mtime:
            syscalls.utimens_empty(
                node.fd,
                attr.st_atime_ns if fields.update_atime else None,
                attr.st_mtime_ns if fields.update_mtime else None,
            )
        st = os.fstat(node.fd)
        node.mode = st.st_mode
        self.data_changed(node)
        return self.entry(node, st)

    def _truncate(self, node: Inode, size: int, handle_fd: int | None) -> None:
        if stat.S_ISDIR(node.mode):
            raise pyfuse3.FUSEError(errno.EISDIR)
        of = self.reg.open_files.get(node.key)
        if of is not None:
            old = of.size
        else:
            st = os.fstat(node.fd)
            if st.st_nlink == 0:  # unlinked and not open: already given back
                os.truncate(proc_path(node.fd), size)
                return
            old = st.st_size
        usage = node.folder.usage
        grow = size - old
        if grow > 0:
            usage.reserve(grow)
        try:
            if handle_fd is not None:
                os.ftruncate(handle_fd, size)
            else:
                os.truncate(proc_path(node.fd), size)
        except BaseException:
            if grow > 0:
                usage.release(grow)
            raise
        if grow < 0:
            usage.release(-grow)
        if of is not None:
            of.size = size
