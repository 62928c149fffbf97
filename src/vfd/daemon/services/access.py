"""Which folders a user can reach, with which permission — and the name rules built on that.

A user reaches (docs/api.md "Rules"):

- their own user folders, with ``wd``;
- the folders of the projects they belong to, with the folder's ``permission`` unless a
  per-member override says otherwise; administrators reach every project folder with ``wd``;
- user folders shared with them (an accepted invitation), with the invitation's permission.

A folder outside that set does not exist for the caller (``404 vfolder_not_found``). Names are
unique within each user's set, purged folders excepted; when sets overlap after the fact (a
user joins a project), lookups prefer own folders, then project folders, then shared ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlmodel import Session, col, select

from vfd.errors import ErrorCode, VfdError
from vfd.folders.lifecycle import TRASHED
from vfd.store.models import (
    Ownership,
    Permission,
    Project,
    ProjectMember,
    User,
    UserRole,
    VFolder,
    VFolderPermission,
    VFolderStatus,
)

NOT_PURGED: frozenset[VFolderStatus] = frozenset(VFolderStatus) - {VFolderStatus.DELETE_COMPLETE}


@dataclass
class Access:
    """A folder as one user sees it."""

    folder: VFolder
    permission: Permission
    is_owner: bool
    owner: str
    """The owning user's email or the owning project's name."""
    shared: bool = False
    """Reached through an accepted invitation."""


def _is_admin(user: User) -> bool:
    return user.role == UserRole.ADMIN


def accessible(
    session: Session,
    user: User,
    *,
    name: str | None = None,
    statuses: Collection[VFolderStatus] = NOT_PURGED,
) -> list[Access]:
    """Every folder ``user`` reaches (optionally only those named ``name``), in lookup order."""
    found: list[Access] = []
    status_in = col(VFolder.status).in_(list(statuses))

    own = select(VFolder).where(
        VFolder.ownership == Ownership.USER, VFolder.user_id == user.id, status_in
    )
    if name is not None:
        own = own.where(VFolder.name == name)
    for folder in session.exec(own.order_by(col(VFolder.created_at))):
        found.append(Access(folder, Permission.WD, True, user.email))

    proj = select(VFolder, Project).where(
        VFolder.ownership == Ownership.PROJECT, VFolder.project_id == Project.id, status_in
    )
    if not _is_admin(user):
        member_of = select(ProjectMember.project_id).where(ProjectMember.user_id == user.id)
        proj = proj.where(col(VFolder.project_id).in_(member_of))
    if name is not None:
        proj = proj.where(VFolder.name == name)
    rows = session.exec(proj.order_by(col(VFolder.created_at))).all()
    overrides: dict[uuid.UUID, Permission] = {}
    if rows and not _is_admin(user):
        ids = [f.id for f, _ in rows]
        for row in session.exec(
            select(VFolderPermission).where(
                VFolderPermission.user_id == user.id, col(VFolderPermission.vfolder_id).in_(ids)
            )
        ):
            overrides[row.vfolder_id] = row.permission
    for folder, project in rows:
        perm = Permission.WD if _is_admin(user) else overrides.get(folder.id, folder.permission)
        found.append(Access(folder, perm, False, project.name))

    shared = select(VFolder, VFolderPermission, User).where(
        VFolder.ownership == Ownership.USER,
        VFolderPermission.vfolder_id == VFolder.id,
        VFolderPermission.user_id == user.id,
        User.id == VFolder.user_id,
        status_in,
    )
    if name is not None:
        shared = shared.where(VFolder.name == name)
    for folder, perm_row, owner in session.exec(shared.order_by(col(VFolder.created_at))):
        found.append(Access(folder, perm_row.permission, False, owner.email, shared=True))
    return found


def find(
    session: Session,
    user: User,
    name: str,
    *,
    statuses: Collection[VFolderStatus] = NOT_PURGED,
) -> Access:
    """The folder ``name`` as ``user`` sees it, or ``404 vfolder_not_found``."""
    hits = accessible(session, user, name=name, statuses=statuses)
    if not hits:
        raise VfdError(ErrorCode.VFOLDER_NOT_FOUND, f"no folder named {name!r}", name=name)
    return hits[0]


def require(access: Access, needed: Permission, doing: str) -> None:
    """Refuse (``403 permission_denied``) unless the caller's permission allows ``needed``."""
    if not access.permission.allows(needed):
        raise VfdError(
            ErrorCode.PERMISSION_DENIED,
            f"{doing} folder {access.folder.name!r} needs {needed.value} permission; "
            f"you have {access.permission.value}",
            name=access.folder.name,
            needed=needed.value,
            permission=access.permission.value,
        )


def readers(session: Session, folder: VFolder) -> list[User]:
    """Every user who reaches ``folder`` (owner, invitees, project members, admins)."""
    users: dict[uuid.UUID, User] = {}
    if folder.ownership == Ownership.USER:
        owner = session.get(User, folder.user_id)
        if owner is not None:
            users[owner.id] = owner
        for user in session.exec(
            select(User).where(
                VFolderPermission.vfolder_id == folder.id, VFolderPermission.user_id == User.id
            )
        ):
            users[user.id] = user
    else:
        for user in project_readers(session, folder.project_id):
            users[user.id] = user
    return list(users.values())


def project_readers(session: Session, project_id: uuid.UUID | None) -> list[User]:
    """The members of a project and every admin: who reaches the project's folders."""
    member_ids = select(ProjectMember.user_id).where(ProjectMember.project_id == project_id)
    return list(
        session.exec(
            select(User).where(col(User.id).in_(member_ids) | (User.role == UserRole.ADMIN))
        )
    )


def check_name_free(
    session: Session,
    name: str,
    users: Iterable[User],
    *,
    caller: User,
    exclude: uuid.UUID | None = None,
) -> None:
    """Refuse (``409 vfolder_exists``) when any of ``users`` already reaches a folder ``name``.

    The message names the clash only for the caller's own set (no leak of others' folders).
    """
    for user in users:
        for hit in accessible(session, user, name=name):
            if hit.folder.id == exclude:
                continue
            if user.id == caller.id:
                where = " (in the trash)" if hit.folder.status in TRASHED else ""
                message = f"you already have a folder named {name!r}{where}"
            else:
                message = f"another user who would share this folder has one named {name!r}"
            raise VfdError(ErrorCode.VFOLDER_EXISTS, message, name=name)
