"""Folders shared ``rw``: the folder's group, and the "group = owner" rule mountd keeps in them.

A folder is *group-shared* when its backing root has the set-group-ID bit: a project folder
from birth (its project's gid), a user folder once it is first shared ``rw`` (a gid of its
own, given by the daemon with the ``share`` control op). Every user who holds ``rw`` on the
folder gets that gid among their groups (the daemon's file API, sessions), and nobody else
does (docs/storage.md "Folders shared rw").

Inside a group-shared folder mountd keeps one rule, whoever writes and whatever their umask:

* every entry belongs to the folder's group (new ones are given it; a ``chgrp`` to another
  group is refused with EPERM);
* its group permission bits equal its owner bits (``g = u``): set on create, ``mkdir``,
  ``mknod``, and on every ``chmod``;
* directories keep the set-group-ID bit.

The kernel checks permissions itself (``default_permissions``), so the rule is what lets the
other ``rw`` holders change what one of them wrote. The rule is read from the root's mode on
each call (one ``fstat``), so it holds from the moment ``share`` sets the root, with nothing
to persist or reload.
"""

from __future__ import annotations

import os
import stat

from vfd.fuse import syscalls
from vfd.fuse.inodes import Folder

O_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def folder_group(folder: Folder) -> int | None:
    """The folder's group when it is group-shared (set-group-ID root), else None."""
    st = os.fstat(folder.fd)
    return st.st_gid if st.st_mode & stat.S_ISGID else None


def shared_mode(mode: int) -> int:
    """The permission bits ``mode`` (a full ``st_mode``) gets under the rule: ``g = u``, and
    the set-group-ID bit on directories."""
    perm = stat.S_IMODE(mode)
    perm = (perm & ~0o070) | ((perm & 0o700) >> 3)
    if stat.S_ISDIR(mode):
        perm |= stat.S_ISGID
    return perm


def apply(fd: int, gid: int) -> bool:
    """Bring the inode ``fd`` (an ``O_PATH`` descriptor) under the rule; whether it changed.

    Symbolic links get the group only (their mode means nothing). The group is set before the
    mode: a ``chown`` by root clears a file's set-user-ID bit, which the mode then restores.
    """
    st = os.fstat(fd)
    changed = False
    if st.st_gid != gid:
        syscalls.fchown_empty(fd, -1, gid)
        changed = True
    if stat.S_ISLNK(st.st_mode):
        return changed
    want = shared_mode(st.st_mode)
    if changed or stat.S_IMODE(st.st_mode) != want:
        os.chmod(f"/proc/self/fd/{fd}", want)
        changed = True
    return changed


def share_tree(root_fd: int, gid: int) -> int:
    """Make the folder whose backing root ``root_fd`` holds group-shared with ``gid``: the
    root first (so entries made meanwhile follow the rule), then every existing entry.

    Walks without following symbolic links and reaches every entry through a descriptor
    opened ``O_NOFOLLOW`` in its parent, so nothing outside the folder is touched. Blocking:
    runs in a worker thread. Returns how many entries (the root included) changed.
    """
    changed = int(apply(root_fd, gid))
    for _path, dirs, files, dir_fd in os.fwalk(".", dir_fd=root_fd, follow_symlinks=False):
        for name in (*dirs, *files):
            try:
                fd = os.open(name, O_PATH_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                continue  # removed meanwhile
            try:
                changed += apply(fd, gid)
            finally:
                os.close(fd)
    return changed
