"""Abandoned uploads: part files (``.vfd-upload-<key>.part``) left by uploads never finished,
and the staging directories of the same name left by archive uploads whose daemon went away.

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
import posixpath
import time
from typing import Any

from sqlmodel import select

from vfd import wirenames
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.userfs import FolderFS, Identity, is_part_name
from vfd.errors import ErrorCode, VfdError
from vfd.store.models import VFolder, VFolderStatus

log = logging.getLogger("vfd.daemon")

DEFAULT_AGE = 7 * 24 * 3600
"""Seconds without a write after which a part file counts as abandoned."""
ROOT = Identity(0, 0)


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
        fs = FolderFS(str(root), ROOT)
        try:
            entries = fs.walk_files()
        except VfdError as exc:  # its view went (trashed meanwhile)
            log.info("prune: skipping %s: %s", name, exc.message)
            continue
        for rel, st in entries:
            if not (is_part_name(posixpath.basename(rel)) and st.st_mtime < cutoff):
                continue
            if not dry_run:
                try:
                    fs.remove(rel, expect=(st.st_dev, st.st_ino), recursive=True)
                except VfdError as exc:
                    if exc.code is not ErrorCode.PATH_NOT_FOUND:  # gone meanwhile: not counted
                        log.warning(
                            "prune: cannot remove %s in %s: %s",
                            wirenames.escaped(rel),
                            name,
                            wirenames.readable(exc.message),
                        )
                    continue
            removed.append(
                {
                    "vfolder": name,
                    "host": host,
                    **wirenames.fields("path", rel),
                    "bytes": st.st_size,
                    "idle_seconds": int(time.time() - st.st_mtime),
                }
            )
    return {
        "removed": removed,
        "bytes": sum(r["bytes"] for r in removed),
        "dry_run": dry_run,
        "older_than": older_than,
    }
