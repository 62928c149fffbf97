"""The pyfuse3 ``Operations`` of the vfd mount, assembled from its handler groups.

    ops_base   state, lookup, forget, getattr, readlink
    ops_names  mkdir, mknod, symlink, link, unlink, rmdir, rename, setattr
    ops_files  open, create, read, write, flush, fsync, release
    ops_dirs   opendir, readdir(plus), releasedir, fsyncdir
    ops_xattr  get/set/list/removexattr, statfs

Every handler is wrapped by ``vfd.fuse.guard`` so that it raises nothing but ``FUSEError``.
"""

from __future__ import annotations

import os

from vfd.fuse.ops_dirs import DirOps
from vfd.fuse.ops_files import FileOps
from vfd.fuse.ops_names import NameOps
from vfd.fuse.ops_xattr import XattrOps


class VfdOperations(NameOps, FileOps, DirOps, XattrOps):
    """The request handlers of the one vfd mount."""

    def close(self) -> None:
        """Close every descriptor still held (after the session ended)."""
        for handle in self.handles.values():
            try:
                os.close(handle.fd)
            except OSError:
                pass
        self.handles.clear()
        self.dirs.clear()
        self.table.close_all()
