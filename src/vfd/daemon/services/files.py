"""File operations inside folders, on the caller's behalf, through the mount's views.

A caller with ``rw`` or ``wd`` works on ``<mount>/rw/<vfid>``, one with ``ro`` on
``<mount>/ro/<vfid>`` — so a read-only user cannot write on any path, and quota is enforced by
mountd on every byte. The work itself is done by :class:`vfd.daemon.userfs.FolderFS` with the
user's uid, gid and project groups, so what the daemon writes belongs to the user.
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, col, select

from vfd.daemon.services.access import find, require
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.folder_groups import group_of
from vfd.daemon.userfs import FolderFS, Identity
from vfd.errors import ErrorCode, VfdError
from vfd.store.models import Permission, Project, ProjectMember, User, VFolder, VFolderStatus


def identity_of(session: Session, user: User, folder: VFolder | None = None) -> Identity:
    """The filesystem identity of ``user``: uid, gid, the gids of their projects and, working
    on ``folder`` (which the caller checked the user reaches), the folder's group, as a
    session mounting it gets (``session_groups``)."""
    gids = session.exec(
        select(Project.gid).where(
            col(Project.id).in_(
                select(ProjectMember.project_id).where(ProjectMember.user_id == user.id)
            )
        )
    ).all()
    shared = group_of(session, folder) if folder is not None else None
    extra = () if shared is None else (shared,)
    return Identity(user.uid, user.gid, tuple(sorted({user.gid, *gids, *extra})))


def folder_view(
    daemon: Daemon, caller: Caller, name: str, *, write: bool = False, ro: bool = False
) -> tuple[str, Path, Identity]:
    """The view (``rw``/``ro``) of the ready folder ``name`` the caller may use, its path in
    the mount, and the caller's identity. ``write`` needs ``rw``; ``ro`` asks for ``ro/``."""
    with daemon.session() as session:
        access = find(session, caller.user, name)
        if access.folder.status != VFolderStatus.READY:
            raise VfdError(
                ErrorCode.INVALID_STATUS,
                f"folder {name!r} is {access.folder.status.value}; restore it first",
                name=name,
                status=access.folder.status.value,
            )
        if write:
            require(access, Permission.RW, "writing to")
        ident = identity_of(session, caller.user, access.folder)
    view = "rw" if access.permission.allows(Permission.RW) and not ro else "ro"
    return view, daemon.config.mount_point / view / access.folder.id.hex, ident


def open_folder(daemon: Daemon, caller: Caller, name: str, *, write: bool) -> FolderFS:
    """The folder ``name`` as the caller may use it; ``write`` needs ``rw``."""
    _view, root, ident = folder_view(daemon, caller, name, write=write)
    return FolderFS(str(root), ident)
