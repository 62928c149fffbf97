"""Quota arithmetic and the parallel usage scan, shared by mountd and the daemon.

What is counted, per quota scope (one owner on one storage host):

* **bytes** — the apparent size (``st_size``) of every regular file, like CephFS ``rbytes``;
  directories, symbolic links and special files add no bytes.
* **files** — every inode below the folder roots: regular files, directories, symbolic links
  and special files alike (the roots themselves are not counted). A file with several hard
  links counts once, for both bytes and files.

A limit of 0 means unlimited. An operation may bring usage up to a limit, never past it; an
operation that shrinks usage is always allowed, even when usage is already above a lowered
limit. mountd keeps the live counters (``vfd.fuse.usage``); :func:`scan_trees` recounts from
the disk — the reconciliation at start and ``vfd admin quota rescan``.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SCAN_WORKERS = 8
"""Threads per scan: ``scandir``/``lstat`` release the GIL, so a slow (network) host is walked
several directories at a time."""


@dataclass(frozen=True)
class Usage:
    """Bytes and files used (or to be added, when negative: freed)."""

    bytes: int = 0
    files: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.bytes + other.bytes, self.files + other.files)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.bytes - other.bytes, self.files - other.files)

    def clamp(self) -> Usage:
        """Never below zero (a counter that drifted low is fixed by the next rescan)."""
        return Usage(max(self.bytes, 0), max(self.files, 0))

    def to_json(self) -> dict[str, int]:
        return {"bytes": self.bytes, "files": self.files}


@dataclass(frozen=True)
class Limits:
    """A scope's limits; 0 = unlimited."""

    max_bytes: int = 0
    max_files: int = 0


def grows_past(limits: Limits, used_bytes: int, used_files: int, nbytes: int, files: int) -> bool:
    """Whether adding ``nbytes`` and ``files`` to the use would pass a limit (mountd runs it
    for every write and create).

    Only growth is checked: a dimension that does not grow never fails, so deleting and
    shrinking always work even above a lowered limit.
    """
    if nbytes > 0 and limits.max_bytes and used_bytes + nbytes > limits.max_bytes:
        return True
    return bool(files > 0 and limits.max_files and used_files + files > limits.max_files)


@dataclass(frozen=True)
class FsStats:
    """What ``statfs`` reports: block counts in ``bsize`` units and inode counts."""

    bsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int


def quota_stats(used: Usage, limits: Limits, host: FsStats) -> FsStats:
    """``statfs`` numbers for a folder: the scope's limits as the size, its usage as used.

    An unlimited dimension reports the host file system's own numbers; a limit larger than
    what the host can still hold is capped at it, so ``df`` never promises space the disk does
    not have.
    """
    bsize = host.bsize or 4096
    blocks, bfree, bavail = host.blocks, host.bfree, host.bavail
    if limits.max_bytes:
        total = -(-limits.max_bytes // bsize)
        used_blocks = min(-(-used.bytes // bsize), total)
        free = total - used_blocks
        blocks, bfree, bavail = total, min(free, host.bfree), min(free, host.bavail)
    files, ffree = host.files, host.ffree
    if limits.max_files:
        files = limits.max_files
        ffree = max(limits.max_files - used.files, 0)
        if host.files:
            ffree = min(ffree, host.ffree)
    return FsStats(bsize, blocks, bfree, bavail, files, ffree)


class _Walk:
    """Shared state of one parallel scan: a queue of directories and the running totals."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pending: list[str] = []
        self.busy = 0
        self.bytes = 0
        self.files = 0
        self.linked: set[tuple[int, int]] = set()
        self.error: BaseException | None = None

    def scan_dir(self, path: str) -> list[str]:
        """Count one directory's entries; return its subdirectories (never followed links)."""
        subdirs: list[str] = []
        size = files = 0
        linked: list[tuple[int, int, int]] = []
        try:
            it = os.scandir(path)
        except (FileNotFoundError, NotADirectoryError):
            return subdirs  # removed while we walked
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    files += 1
                    subdirs.append(entry.path)
                elif st.st_nlink > 1:
                    nbytes = st.st_size if stat.S_ISREG(st.st_mode) else 0
                    linked.append((st.st_dev, st.st_ino, nbytes))
                else:
                    files += 1
                    if stat.S_ISREG(st.st_mode):
                        size += st.st_size
        with self.cond:
            for dev, ino, nbytes in linked:
                if (dev, ino) not in self.linked:
                    self.linked.add((dev, ino))
                    files += 1
                    size += nbytes
            self.bytes += size
            self.files += files
        return subdirs

    def worker(self) -> None:
        while True:
            with self.cond:
                while not self.pending and self.busy and self.error is None:
                    self.cond.wait()
                if not self.pending or self.error is not None:
                    self.cond.notify_all()
                    return
                path = self.pending.pop()
                self.busy += 1
            try:
                subdirs = self.scan_dir(path)
            except BaseException as exc:
                with self.cond:
                    self.error = exc
                    self.busy -= 1
                    self.cond.notify_all()
                return
            with self.cond:
                self.pending.extend(subdirs)
                self.busy -= 1
                self.cond.notify_all()


def scan_trees(roots: Iterable[Path], *, workers: int = SCAN_WORKERS) -> Usage:
    """Count the usage below ``roots`` (folder roots; each root itself is not counted).

    Directories are walked by ``workers`` threads in parallel; symbolic links are never
    followed; hard links inside the scanned trees count once. Blocks: run it in a thread.
    """
    walk = _Walk()
    walk.pending = [str(r) for r in roots if os.path.isdir(r) and not os.path.islink(r)]
    if not walk.pending:
        return Usage()
    threads = [threading.Thread(target=walk.worker, daemon=True) for _ in range(max(workers, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if walk.error is not None:
        raise walk.error
    return Usage(walk.bytes, walk.files)


def folder_roots(scope_dir: Path) -> list[Path]:
    """Every folder backing directory below a scope directory (``<xx>/<yy>/<rest>``)."""
    roots: list[Path] = []
    try:
        level1 = sorted(scope_dir.iterdir())
    except FileNotFoundError:
        return roots
    for a in level1:
        if not a.is_dir() or a.is_symlink():
            continue
        for b in sorted(a.iterdir()):
            if not b.is_dir() or b.is_symlink():
                continue
            roots.extend(c for c in sorted(b.iterdir()) if c.is_dir() and not c.is_symlink())
    return roots


def scan_scope(scope_dir: Path, *, workers: int = SCAN_WORKERS) -> Usage:
    """The usage of every folder of one scope on one host, attached or in the trash."""
    return scan_trees(folder_roots(scope_dir), workers=workers)
