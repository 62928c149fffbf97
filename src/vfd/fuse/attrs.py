"""Building the ``EntryAttributes`` replies: from a backing ``stat``, for the synthetic
directories, and the negative entry that lets the kernel cache "no such name"."""

from __future__ import annotations

import os
import stat
import time

import pyfuse3

BLKSIZE = 1 << 20
"""Reported ``st_blksize``: tools that size their buffers by it (``cp``, ``shutil``) then
issue writes as large as a FUSE request can carry (1 MiB), not 4 KiB ones."""

SYNTHETIC_MODE = stat.S_IFDIR | 0o700
"""The mount root, ``rw/`` and ``ro/`` are root-only: listing them would show every folder
of the node and entering them would reach folders by id, so users reach a folder only through
a bind mount (sessions, ``vfd mount``) or the daemon."""
START_NS = time.time_ns()


def from_stat(
    st: os.stat_result, ino: int, entry_timeout: float, attr_timeout: float
) -> pyfuse3.EntryAttributes:
    """The reply for backing inode ``st`` known to the kernel as ``ino``."""
    e = pyfuse3.EntryAttributes()
    e.st_ino = ino
    e.entry_timeout = entry_timeout
    e.attr_timeout = attr_timeout
    e.st_mode = st.st_mode
    e.st_nlink = st.st_nlink
    e.st_uid = st.st_uid
    e.st_gid = st.st_gid
    e.st_rdev = st.st_rdev
    e.st_size = st.st_size
    e.st_blksize = BLKSIZE
    e.st_blocks = st.st_blocks
    e.st_atime_ns = st.st_atime_ns
    e.st_mtime_ns = st.st_mtime_ns
    e.st_ctime_ns = st.st_ctime_ns
    return e


def synthetic_dir(
    ino: int, nlink: int, entry_timeout: float, attr_timeout: float
) -> pyfuse3.EntryAttributes:
    """The mount root, ``rw/`` and ``ro/``: root-only (0700) directories."""
    e = pyfuse3.EntryAttributes()
    e.st_ino = ino
    e.entry_timeout = entry_timeout
    e.attr_timeout = attr_timeout
    e.st_mode = SYNTHETIC_MODE
    e.st_nlink = nlink
    e.st_uid = 0
    e.st_gid = 0
    e.st_size = 4096
    e.st_blksize = 4096
    e.st_atime_ns = e.st_mtime_ns = e.st_ctime_ns = START_NS
    return e


def negative(timeout: float) -> pyfuse3.EntryAttributes:
    """The answer to a lookup of a missing name: cached by the kernel for ``timeout``."""
    e = pyfuse3.EntryAttributes()
    e.st_ino = 0
    e.entry_timeout = timeout
    return e
