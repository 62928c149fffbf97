"""The group of a folder shared ``rw``, and giving a user folder one of its own.

A project folder's group is its project's gid (its root is set-group-ID from birth). A user
folder has none until it is first shared ``rw`` (an accepted ``rw`` invitation, or the owner
raising an invitee to ``rw``): then it gets a gid of its own, recorded as
``VFolder.share_gid``, and mountd makes the folder group-shared (``vfd.fuse.groups``: its root
and every existing entry get the group, ``g = u``, set-group-ID directories). The gid stays
with the folder when sharing ends: only users who reach the folder are ever given it
(``vfd.daemon.services.session_groups``), so a former member holds it no more.

Folder gids come from ``project_gid_range``, the pool project gids come from: the lowest gid
that no project, no other folder and no host group uses. Allocation runs under the daemon's
naming lock, which project creation holds too, so a gid is never given twice.
"""

from __future__ import annotations

import grp
import logging
import os
import stat
import uuid
from pathlib import Path

from sqlmodel import Session, col, select

from vfd.daemon.services.context import Daemon
from vfd.errors import ErrorCode, VfdError
from vfd.store.models import Ownership, Project, VFolder, VFolderStatus

log = logging.getLogger(__name__)


def group_of(session: Session, folder: VFolder) -> int | None:
    """The folder's group: its project's gid, or its own once it was shared ``rw``."""
    if folder.ownership == Ownership.PROJECT:
        project = session.get(Project, folder.project_id)
        return None if project is None else project.gid
    return folder.share_gid


def host_group(gid: int) -> str | None:
    """The name of the host group with ``gid``, or None."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def used_gids(session: Session, low: int, high: int) -> set[int]:
    """The gids of ``[low, high]`` that projects and folders hold."""
    projects = session.exec(
        select(Project.gid).where(col(Project.gid) >= low, col(Project.gid) <= high)
    ).all()
    folders = session.exec(
        select(VFolder.share_gid).where(
            col(VFolder.share_gid) >= low, col(VFolder.share_gid) <= high
        )
    ).all()
    return {*projects, *(g for g in folders if g is not None)}


def held_by_folder(session: Session, gid: int) -> bool:
    """Whether a user folder has ``gid`` as its own group (a project may not take it)."""
    return session.exec(select(VFolder.id).where(VFolder.share_gid == gid)).first() is not None


def lowest_free_gid(session: Session, gid_range: tuple[int, int]) -> int | None:
    """The lowest gid of ``gid_range`` that no project, no folder and no host group uses;
    None when there is none."""
    low, high = gid_range
    used = used_gids(session, low, high)
    for gid in range(low, high + 1):
        if gid not in used and host_group(gid) is None:
            return gid
    return None


def free_gid(session: Session, gid_range: tuple[int, int]) -> int:
    """The lowest gid of ``gid_range`` that no project, no folder and no host group uses."""
    gid = lowest_free_gid(session, gid_range)
    if gid is not None:
        return gid
    low, high = gid_range
    raise VfdError(
        ErrorCode.INVALID_ARGUMENT,
        f"every gid of project_gid_range [{low}, {high}] is taken by a project, a shared "
        "folder or a host group; widen the range in the configuration",
        field="gid",
    )


def share_rw(daemon: Daemon, folder_id: uuid.UUID) -> int | None:
    """Give the user folder ``folder_id`` its own group if it has none, and have mountd make
    the folder group-shared with it; the gid (None for a folder that is not a user folder or
    no longer exists).

    Blocking (a store transaction and a tree walk in mountd): runs in a worker thread. Called
    before the change that gives someone ``rw`` is stored, so that a mountd that does not
    answer (``mountd_unavailable``) leaves no ``rw`` member the folder cannot take; a gid
    recorded meanwhile is harmless and kept for the next try. A mountd that is not running
    shares the folder when it starts (it reads ``share_gid`` with the folder).
    """
    with daemon.naming() as session:
        folder = session.get(VFolder, folder_id)
        if folder is None or folder.ownership != Ownership.USER:
            return None
        if folder.share_gid is None:
            folder.share_gid = free_gid(session, daemon.config.project_gid_range)
            session.add(folder)
            log.info("folder %s gets group %d", folder.id.hex, folder.share_gid)
        gid: int = folder.share_gid
        ready = folder.status == VFolderStatus.READY
        vfid = folder.id.hex
    if ready:
        daemon.mountd.share(vfid, gid)
    return gid


def reshare(daemon: Daemon, folder: VFolder, backing: Path) -> None:
    """After ``folder`` was attached again (restored): make it group-shared if it got its
    group while it was away (an ``rw`` invitation accepted while it was in the trash).

    A notification like the attach before it: when mountd does not answer it is logged, and
    mountd shares the folder when it starts.
    """
    gid = folder.share_gid
    if gid is None:
        return
    try:
        st = os.stat(backing)
    except OSError as exc:
        log.warning("folder %s: cannot check its group: %s", folder.id.hex, exc)
        return
    if st.st_mode & stat.S_ISGID and st.st_gid == gid:
        return
    try:
        daemon.mountd.share(folder.id.hex, gid)
    except VfdError as exc:
        log.warning("mountd share of %s: %s (it shares at start)", folder.id.hex, exc)
