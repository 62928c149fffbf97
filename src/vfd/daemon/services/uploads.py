"""Abandoned uploads: part files (``.vfd-upload-<key>.part``) left by uploads never finished.

An interrupted upload keeps its part file so that it can resume; one nobody resumes would hold
its bytes against the scope's quota for ever. :func:`prune_parts` removes the part files that
have not been written to for a given time, in every ready folder, through the folders' ``rw/``
views: mountd accounts the freed space and drops what the kernel cached of the names (removing
them in the backing tree instead would leave a cached name that still opens the removed
file). An upload resumed after its part file went is answered ``upload_offset_mismatch``
(offset 0): the client starts over. Folders in the trash keep theirs until restored.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

from sqlmodel import select

from vfd.daemon.services.context import Caller, Daemon
from vfd.errors import ErrorCode, VfdError
from vfd.store.models import VFolder, VFolderStatus

log = logging.getLogger("vfd.daemon")

PART_NAME = re.compile(r"^\.vfd-upload-[A-Za-z0-9_-]{8,64}\.part$")
DEFAULT_AGE = 7 * 24 * 3600
"""Seconds without a write after which a part file counts as abandoned."""


def _stale_parts(root: Path, cutoff: float) -> list[tuple[str, int, float]]:
    """``(path relative to root, size, mtime)`` of stale part files under ``root``.

    Walks with ``O_NOFOLLOW`` directory descriptors: a symbolic link is never followed.
    """
    found: list[tuple[str, int, float]] = []
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        top = os.open(root, flags)
    except FileNotFoundError:
        return found
    stack: list[tuple[int, str]] = [(top, "")]
    while stack:
        fd, rel = stack.pop()
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    path = f"{rel}/{entry.name}" if rel else entry.name
                    if stat.S_ISDIR(st.st_mode):
                        try:
                            stack.append((os.open(entry.name, flags, dir_fd=fd), path))
                        except OSError as exc:  # gone, or swapped for a link meanwhile
                            log.debug("prune: skipping %s: %s", path, exc)
                    elif (
                        stat.S_ISREG(st.st_mode)
                        and PART_NAME.match(entry.name)
                        and st.st_mtime < cutoff
                    ):
                        found.append((path, st.st_size, st.st_mtime))
        finally:
            os.close(fd)
    return found


def _unlink_under(root: Path, rel: str) -> bool:
    """Remove ``root/rel`` walking each directory with ``O_NOFOLLOW``; False if it is gone."""
    parts = rel.split("/")
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, flags)
    try:
        for name in parts[:-1]:
            nfd = os.open(name, flags, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.unlink(parts[-1], dir_fd=fd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)


def prune_parts(
    daemon: Daemon, caller: Caller, *, older_than: int = DEFAULT_AGE, dry_run: bool = False
) -> dict[str, Any]:
    """Remove (or with ``dry_run`` only list) part files unwritten for ``older_than`` seconds."""
    caller.require_admin()
    if older_than < 0:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, "older_than must be 0 or more seconds")
    cutoff = time.time() - older_than
    with daemon.session() as session:
        ready = VFolder.status == VFolderStatus.READY
        folders = session.exec(select(VFolder).where(ready)).all()
        targets = [(f.name, f.host, daemon.config.mount_point / "rw" / f.id.hex) for f in folders]
    if targets and not (daemon.config.mount_point / "rw").is_dir():
        raise VfdError(
            ErrorCode.MOUNTD_UNAVAILABLE, "the folders' views are not mounted (is mountd up?)"
        )
    removed: list[dict[str, Any]] = []
    for name, host, root in targets:
        for rel, size, mtime in _stale_parts(root, cutoff):
            if not dry_run:
                try:
                    if not _unlink_under(root, rel):
                        continue
                except OSError as exc:
                    log.warning("prune: cannot remove %s in %s: %s", rel, name, exc)
                    continue
            removed.append(
                {
                    "vfolder": name,
                    "host": host,
                    "path": rel,
                    "bytes": size,
                    "idle_seconds": int(time.time() - mtime),
                }
            )
    return {
        "removed": removed,
        "bytes": sum(r["bytes"] for r in removed),
        "dry_run": dry_run,
        "older_than": older_than,
    }
