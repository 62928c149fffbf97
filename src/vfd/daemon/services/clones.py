"""Cloning folders: start a clone, cancel it, and follow mountd's jobs to their end.

A clone is a new user folder of the caller, made at once with status ``cloning`` (an empty
backing directory, not attached to the mount), then filled by mountd in the background
(``vfd.fuse.clone``): mountd owns the backing trees and the quota counters the copy charges.
The daemon's part:

- :func:`clone` checks the source (readable by the caller; cloneable, or the caller's own, or
  the caller an admin), the new name and the caller's policy, commits the new folder, and asks
  mountd to start the copy. mountd counts the source and refuses when the new folder's quota
  scope cannot hold it; the new folder is then removed again (record and directory), so a
  refused clone leaves nothing behind.
- :func:`supervise` (a background task of the daemon) polls mountd's job of every ``cloning``
  folder, writes its progress to the store, and settles it: a completed copy is attached and
  becomes ``ready``; a failed or cancelled one becomes ``clone-error`` with the reason. The job
  lives in mountd, so a daemon restarting mid-clone picks it up again; a job mountd no longer
  knows (mountd restarted) is settled as failed.
- :func:`cancel` stops the copy; the folder ends ``clone-error`` and may be purged.

Several daemons on one store each follow the clones of their own storage hosts; a shared
host's clones are followed by every node's daemon, which is not supported yet.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from vfd.daemon import runtime
from vfd.daemon.runtime import Pool
from vfd.daemon.services import access, audit, folder_events, vfolders
from vfd.daemon.services.access import Access
from vfd.daemon.services.context import Caller, Daemon
from vfd.errors import ErrorCode, VfdError
from vfd.folders import layout
from vfd.folders.layout import Scope
from vfd.folders.names import validate_name
from vfd.mountctl import proves_not_running
from vfd.store.models import (
    AuditEvent,
    Ownership,
    Permission,
    UsageMode,
    VFolder,
    VFolderStatus,
)

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.5
"""Seconds between polls of mountd while clones run."""
IDLE_INTERVAL = 2.0
"""Seconds between looks at the store for clones when none runs."""

_starting: set[uuid.UUID] = set()
"""Clones committed whose mountd job is being started by a request: not polled yet."""
_starting_lock = threading.Lock()
_kick = threading.Event()
"""Set when a clone starts: the follower looks at once instead of after ``IDLE_INTERVAL``."""


def _backing(daemon: Daemon, folder: VFolder) -> Path:
    return vfolders.backing_path(daemon, folder)


def clone(
    daemon: Daemon,
    caller: Caller,
    name: str,
    *,
    target_name: str,
    target_host: str | None = None,
    usage_mode: UsageMode | None = None,
    permission: Permission = Permission.RW,
) -> dict[str, Any]:
    """Clone folder ``name`` into a new folder ``target_name`` of the caller; the new folder
    (status ``cloning``, with its ``clone`` progress)."""
    user = caller.user
    validate_name(target_name)
    made: Path | None = None
    try:
        with daemon.naming() as session:
            hit = access.find(session, user, name)
            source = hit.folder
            if source.status != VFolderStatus.READY:
                raise VfdError(
                    ErrorCode.INVALID_STATUS,
                    f"folder {name!r} is {source.status.value}; only ready folders can be cloned",
                    status=source.status.value,
                )
            if not (source.cloneable or hit.is_owner or caller.is_admin):
                raise VfdError(
                    ErrorCode.PERMISSION_DENIED,
                    f"folder {name!r} is not cloneable (its owner may allow it with "
                    "`vfd vfolder update --cloneable`)",
                    name=name,
                )
            host = target_host or source.host
            host_root = daemon.config.host_path(host)
            policy = vfolders.check_policy(session, daemon, user, host, own=True)
            scope = Scope("user", user.id)
            access.check_name_free(session, target_name, [user], caller=user)
            folder = VFolder(
                id=uuid.uuid4(),
                name=target_name,
                host=host,
                ownership=Ownership.USER,
                user_id=user.id,
                creator_id=user.id,
                usage_mode=usage_mode or source.usage_mode,
                permission=permission,
                cloneable=False,
                status=VFolderStatus.CLONING,
                scope=str(scope),
                clone_source_id=source.id,
            )
            made, scope_row, new_scope = vfolders.add_folder(
                session,
                caller,
                folder,
                scope,
                host_root,
                policy,
                uid=user.uid,
                gid=user.gid,
                action="vfolder.clone",
                source=source.id.hex,
            )
            source_path = _backing(daemon, source)
            limits = (scope_row.max_bytes, scope_row.max_files)
            with _starting_lock:
                _starting.add(folder.id)
    except BaseException:
        if made is not None:
            layout.remove_folder_dir(made)
        raise
    try:
        if new_scope:
            daemon.mountd.set_limits(host, str(scope), *limits)
        job = daemon.mountd.clone(
            vfid=folder.id.hex,
            host=host,
            scope=str(scope),
            path=str(made),
            src_vfid=source.id.hex,
            src_host=source.host,
            src_scope=source.scope,
            src_path=str(source_path),
        )
    except BaseException as exc:
        _abandon(daemon, caller, folder, made, exc)
        raise
    finally:
        with _starting_lock:
            _starting.discard(folder.id)
    _kick.set()
    with daemon.session() as session:
        row = session.get(VFolder, folder.id)
        assert row is not None
        if row.status == VFolderStatus.CLONING:
            _record_progress(row, job)
            session.add(row)
        result = Access(row, Permission.WD, True, user.email)
    return vfolders.render(result, None)


def _abandon(
    daemon: Daemon, caller: Caller, folder: VFolder, path: Path, exc: BaseException
) -> None:
    """mountd did not start the copy: remove the new folder's record and directory."""
    if (
        isinstance(exc, VfdError)
        and exc.code is ErrorCode.MOUNTD_UNAVAILABLE
        and not proves_not_running(exc)
    ):
        try:  # mountd may have started the job after all
            daemon.mountd.clone_cancel(folder.id.hex)
        except VfdError as cancel_exc:
            log.warning("cancelling clone %s: %s", folder.id.hex, cancel_exc)
    with daemon.naming() as session:
        row = session.get(VFolder, folder.id)
        if row is not None:
            session.delete(row)
        audit.record(
            session,
            caller,
            "vfolder.clone.refused",
            folder.name,
            vfid=folder.id.hex,
            error=str(exc),
        )
    layout.remove_folder_dir(path)


def _record_progress(row: VFolder, job: dict[str, Any]) -> bool:
    """Copy a job's figures onto its folder's row; whether anything changed."""
    figures = {
        "clone_total_bytes": int(job.get("total_bytes") or 0),
        "clone_total_files": int(job.get("total_files") or 0),
        "clone_done_bytes": int(job.get("done_bytes") or 0),
        "clone_done_files": int(job.get("done_files") or 0),
    }
    changed = False
    for key, value in figures.items():
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed = True
    return changed


def cancel(daemon: Daemon, caller: Caller, name: str) -> dict[str, Any]:
    """Stop the copy into folder ``name``; it ends ``clone-error`` (or ``ready``, when the
    copy had completed already)."""
    with daemon.session() as session:
        hit = access.find(session, caller.user, name)
        access.require(hit, Permission.WD, "cancelling the clone of")
        if hit.folder.status != VFolderStatus.CLONING:
            raise VfdError(
                ErrorCode.INVALID_STATUS,
                f"folder {name!r} is {hit.folder.status.value}, not being cloned",
                status=hit.folder.status.value,
            )
        vfid = hit.folder.id
    job: dict[str, Any] | None
    try:
        job = daemon.mountd.clone_cancel(vfid.hex)
    except VfdError as exc:
        if exc.code is not ErrorCode.NOT_FOUND and not proves_not_running(exc):
            raise
        job = None  # no copy runs: nothing to stop
    who = caller.user.email
    if job is None or job.get("state") == "running":
        job = {**(job or {}), "state": "cancelled"}
    if job["state"] == "cancelled":
        job["error"] = {"code": ErrorCode.INVALID_STATUS.value, "message": f"cancelled by {who}"}
    _settle(daemon, vfid, job)
    with daemon.session() as session:
        hit = access.find(session, caller.user, name)
    return vfolders.render(hit, vfolders.mount_point(daemon))


def _settle(daemon: Daemon, vfid: uuid.UUID, job: dict[str, Any]) -> None:
    """Apply a finished job to its folder: ``ready`` (and attached) or ``clone-error``."""
    with daemon.naming() as session:
        row = session.get(VFolder, vfid)
        if row is None or row.status != VFolderStatus.CLONING:
            return  # settled by someone else
        _record_progress(row, job)
        done = job.get("state") == "done"
        if done:
            vfolders.set_status(session, row, VFolderStatus.READY)
            row.status_error = row.status_reason = None
            action = "vfolder.clone.done"
        else:
            error = job.get("error") or {}
            vfolders.set_status(session, row, VFolderStatus.CLONE_ERROR)
            row.status_error = str(error.get("code") or ErrorCode.INTERNAL.value)[:32]
            row.status_reason = str(error.get("message") or "the clone failed")[:1024]
            action = "vfolder.clone.error"
        session.add(row)
        session.add(
            AuditEvent(
                actor_id=None,
                action=action,
                target=row.name,
                detail={"vfid": row.id.hex, "reason": row.status_reason},
            )
        )
        host, scope, path = row.host, row.scope, _backing(daemon, row)
    log.info("clone into %s: %s", vfid.hex, job.get("state"))
    if done:
        folder_events.announce(daemon, "vfd_folder_created", row)
        daemon.mountd.attach(vfid.hex, host, scope, path)


LOST = {
    "state": "failed",
    "error": {
        "code": ErrorCode.MOUNTD_UNAVAILABLE.value,
        "message": "the copy was lost: mountd restarted while it ran",
    },
}


def poll_once(daemon: Daemon) -> int:
    """Follow every clone of this node's hosts once; how many are still running."""
    with daemon.session() as session:
        rows = session.exec(
            select(VFolder).where(
                VFolder.status == VFolderStatus.CLONING,
                col(VFolder.host).in_(list(daemon.config.hosts)),
            )
        ).all()
        pending = [row.id for row in rows]
    running = 0
    for vfid in pending:
        with _starting_lock:
            if vfid in _starting:
                running += 1
                continue
        try:
            job = daemon.mountd.clone_status(vfid.hex)
        except VfdError as exc:
            if exc.code is ErrorCode.NOT_FOUND:
                _settle(daemon, vfid, LOST)
            else:
                running += 1  # mountd away or busy: ask again later
                log.debug("clone %s: %s", vfid.hex, exc)
            continue
        if job.get("state") == "running":
            running += 1
            with daemon.session() as session:
                row = session.get(VFolder, vfid)
                live = row is not None and row.status == VFolderStatus.CLONING
                if live and row is not None and _record_progress(row, job):
                    session.add(row)
        else:
            _settle(daemon, vfid, job)
    return running


async def supervise(daemon: Daemon) -> None:
    """Follow clones until cancelled (a background task of the daemon)."""
    while True:
        _kick.clear()
        try:
            running = await runtime.current().run(Pool.MOUNTD, poll_once, daemon)
        except Exception:
            log.exception("following clones failed; will retry")
            running = 0
        idle = 0.0
        while not running and not _kick.is_set() and idle < IDLE_INTERVAL:
            await asyncio.sleep(POLL_INTERVAL)
            idle += POLL_INTERVAL
        if running:
            await asyncio.sleep(POLL_INTERVAL)
