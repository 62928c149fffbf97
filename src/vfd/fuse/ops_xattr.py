"""Extended attributes and ``statfs``.

``user.*`` attributes pass through to the backing file (through ``/proc/self/fd``: an
``O_PATH`` descriptor takes no xattr calls). Other namespaces are not passed: ``trusted.*``
and ``security.*`` written as root on a user's behalf would mean more than the user may say,
and answering ``security.capability`` at once spares the kernel's per-write check a round
trip. Symbolic links hold no user attributes (as on Linux file systems).

Folder roots also answer read-only virtual attributes, like CephFS ``ceph.quota.*``::

    user.vfd.quota.max_bytes   user.vfd.quota.max_files
    user.vfd.quota.used_bytes  user.vfd.quota.used_files
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence

import pyfuse3

from vfd.folders.quota import FsStats, quota_stats
from vfd.fuse.guard import handler
from vfd.fuse.inodes import SYNTHETIC, Inode, View
from vfd.fuse.ops_base import OpsBase, proc_path
from vfd.fuse.usage import ScopeUsage

USER = b"user."
VIRTUAL: dict[bytes, Callable[[ScopeUsage], int]] = {
    b"user.vfd.quota.max_bytes": lambda u: u.limits.max_bytes,
    b"user.vfd.quota.max_files": lambda u: u.limits.max_files,
    b"user.vfd.quota.used_bytes": lambda u: u.used.clamp().bytes,
    b"user.vfd.quota.used_files": lambda u: u.used.clamp().files,
}
ENOATTR = pyfuse3.ENOATTR


def host_stats(path: str | int) -> FsStats:
    sv = os.statvfs(path)
    return FsStats(sv.f_frsize, sv.f_blocks, sv.f_bfree, sv.f_bavail, sv.f_files, sv.f_ffree)


def statvfs_data(stats: FsStats, namemax: int = 255) -> pyfuse3.StatvfsData:
    out = pyfuse3.StatvfsData()
    out.f_bsize = stats.bsize
    out.f_frsize = stats.bsize
    out.f_blocks = stats.blocks
    out.f_bfree = stats.bfree
    out.f_bavail = stats.bavail
    out.f_files = stats.files
    out.f_ffree = stats.ffree
    out.f_favail = stats.ffree
    out.f_namemax = namemax
    return out


class XattrOps(OpsBase):
    """xattr handlers and statfs."""

    def _xattr_inode(self, ino: int) -> Inode:
        if ino in SYNTHETIC:
            raise pyfuse3.FUSEError(ENOATTR)
        return self.inode(ino)

    @handler
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        node = self._xattr_inode(inode)
        if node.is_root and name in VIRTUAL:
            return str(VIRTUAL[name](node.folder.usage)).encode()
        if not name.startswith(USER) or stat.S_ISLNK(node.mode):
            raise pyfuse3.FUSEError(ENOATTR)
        return os.getxattr(proc_path(node.fd), name)

    @handler
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> Sequence[bytes]:
        if inode in SYNTHETIC:
            return []
        node = self.inode(inode)
        names: list[bytes] = list(VIRTUAL) if node.is_root else []
        if not stat.S_ISLNK(node.mode):
            names.extend(
                n.encode("utf-8", "surrogateescape")
                for n in os.listxattr(proc_path(node.fd))
                if n.startswith("user.")
            )
        return names

    def _settable(self, ino: int, name: bytes) -> Inode:
        if ino in SYNTHETIC:
            raise pyfuse3.FUSEError(errno.EPERM)
        node = self.inode(ino)
        if node.view is View.RO:
            raise pyfuse3.FUSEError(errno.EROFS)
        if node.is_root and name in VIRTUAL:
            raise pyfuse3.FUSEError(errno.EPERM)
        if not name.startswith(USER):
            raise pyfuse3.FUSEError(errno.EOPNOTSUPP)
        if stat.S_ISLNK(node.mode):
            raise pyfuse3.FUSEError(errno.EPERM)
        return node

    @handler
    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        node = self._settable(inode, name)
        os.setxattr(proc_path(node.fd), name, value)

    @handler
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        node = self._settable(inode, name)
        os.removexattr(proc_path(node.fd), name)

    def statfs_of(self, ino: int) -> FsStats:
        """What ``statfs`` on inode ``ino`` reports: its scope's quota inside a folder."""
        node = None if ino in SYNTHETIC else self.table.get(ino)
        if node is None or node.folder.detached:
            host = self.reg.config.host_path(self.reg.config.default_host)
            return host_stats(str(host) if host.exists() else "/")
        usage = node.folder.usage
        return quota_stats(usage.used.clamp(), usage.limits, host_stats(node.fd))

    @handler
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        # pyfuse3 does not say which inode is asked about; vfd.fuse.hooks patches the
        # session so that statfs_of() answers per inode where it can.
        return statvfs_data(self.statfs_of(0))
