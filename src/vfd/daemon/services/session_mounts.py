"""Which folders a new session mounts, where, through which view — and the folders that live
sessions hold.

:func:`resolve_mounts` turns the ``-m`` specs of a session request into :class:`PlannedMount`
records: each named folder looked up as the file API looks it up (``vfd.daemon.services.
access``), checked ready and permitted, then the user's automount dot-folders added, and every
target checked against the others. Nothing is stored here; the session service stores the
plan as ``SessionMount`` rows with the session.

:func:`refuse_if_mounted` is the guard of trash, purge and rename: a folder a live session
mounts keeps its name and its data until the session ends (docs/session-mounts.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from vfd.daemon.services import access
from vfd.errors import ErrorCode, VfdError
from vfd.folders.lifecycle import TRASHED
from vfd.folders.names import is_automount
from vfd.sessions import mounts
from vfd.sessions.lifecycle import LIVE
from vfd.store.models import (
    ComputeSession,
    Permission,
    SessionMount,
    User,
    VFolder,
    VFolderStatus,
)


@dataclass
class PlannedMount:
    """A folder a session will mount."""

    folder: VFolder
    name: str
    """The folder's name as the user sees it."""
    target: str
    """Absolute path inside the container."""
    permission: Permission
    """The view mounted: ``ro`` or ``rw`` (never ``wd``)."""
    automount: bool
    """One of the user's dot-folders, added without being asked for."""


def resolve_mounts(session: Session, user: User, specs: Sequence[str]) -> list[PlannedMount]:
    """The mounts of a session of ``user`` asked with ``specs`` (``NAME[:TARGET][:ro]``), its
    automount dot-folders included, in the order asked (automount ones last, by name).

    Raises ``invalid_mount`` (a bad spec, a reserved or overlapping target),
    ``vfolder_not_found``, ``invalid_status`` (the folder is in the trash or not ready) or
    ``permission_denied`` (``rw`` asked on a folder the user may only read: never downgraded).
    """
    parsed = [mounts.parse(spec) for spec in specs]
    mounts.check_overlaps((p.spec, p.target) for p in parsed)
    planned: list[PlannedMount] = []
    labels: list[tuple[str, str]] = []  # (what an overlap error names, target)
    for spec in parsed:
        hit = access.find(session, user, spec.name)
        _check_ready(hit.folder, spec.spec)
        if spec.permission is Permission.RW and not hit.permission.allows(Permission.RW):
            raise VfdError(
                ErrorCode.PERMISSION_DENIED,
                f"folder {spec.name!r} is read-only for you; "
                f"mount it with :ro (-m {spec.read_only_spec()})",
                spec=spec.spec,
                name=spec.name,
                permission=hit.permission.value,
                needed=Permission.RW.value,
            )
        planned.append(
            PlannedMount(hit.folder, spec.name, spec.target, spec.permission, automount=False)
        )
        labels.append((spec.spec, spec.target))
    named = {p.folder.id for p in planned}
    for hit in access.accessible(session, user, statuses=(VFolderStatus.READY,)):
        name = hit.folder.name
        if not is_automount(name) or hit.folder.id in named:
            continue
        named.add(hit.folder.id)
        target = mounts.resolve_target(f"{name} (automount)", mounts.default_target(name))
        view = Permission.RW if hit.permission.allows(Permission.RW) else Permission.RO
        planned.append(PlannedMount(hit.folder, name, target, view, automount=True))
        labels.append((name, target))
    mounts.check_overlaps(labels, automount={p.name for p in planned if p.automount})
    return planned


def record_mounts(session: Session, session_id: uuid.UUID, planned: Sequence[PlannedMount]) -> None:
    """Store the session's ``planned`` mounts (its row flushed first)."""
    for m in planned:
        session.add(
            SessionMount(
                session_id=session_id,
                target=m.target,
                vfolder_id=m.folder.id,
                name=m.name,
                permission=m.permission,
                automount=m.automount,
            )
        )


def _check_ready(folder: VFolder, spec: str) -> None:
    if folder.status is VFolderStatus.READY:
        return
    why = (
        "it is in the trash (restore it first)"
        if folder.status in TRASHED
        else f"it is {folder.status.value}, not ready"
    )
    raise VfdError(
        ErrorCode.INVALID_STATUS,
        f"cannot mount folder {folder.name!r}: {why}",
        spec=spec,
        name=folder.name,
        status=folder.status.value,
    )


def live_sessions_mounting(session: Session, folder_id: uuid.UUID) -> list[ComputeSession]:
    """The live sessions (any user's) that mount folder ``folder_id``, oldest first."""
    rows = session.exec(
        select(ComputeSession)
        .where(
            SessionMount.session_id == ComputeSession.id,
            SessionMount.vfolder_id == folder_id,
            col(ComputeSession.status).in_(list(LIVE)),
        )
        .order_by(col(ComputeSession.created_at))
    ).all()
    unique: dict[uuid.UUID, ComputeSession] = {row.id: row for row in rows}
    return list(unique.values())


def refuse_if_mounted(session: Session, folder: VFolder, caller: User, doing: str) -> None:
    """Refuse (``409 folder_in_use``) ``doing`` (``trash``, ``purge``, ``rename``) a folder
    that a live session mounts, naming the session (the caller's own by name and short id;
    another user's by its short id only)."""
    using = live_sessions_mounting(session, folder.id)
    if not using:
        return
    first = using[0]
    short = first.id.hex[:8]
    if first.user_id == caller.id:
        who = f"your session {first.name!r} ({short}, {first.status.value})"
        hint = f"; destroy it first (vfd session destroy {short}) or wait until it ends"
    else:
        who = f"a session of another user ({short}, {first.status.value})"
        hint = "; wait until it ends"
    more = f" and {len(using) - 1} more" if len(using) > 1 else ""
    raise VfdError(
        ErrorCode.FOLDER_IN_USE,
        f"cannot {doing} folder {folder.name!r}: {who}{more} mounts it{hint}",
        name=folder.name,
        sessions=[
            {
                "short_id": row.id.hex[:8],
                "name": row.name if row.user_id == caller.id else None,
                "status": row.status.value,
            }
            for row in using
        ],
    )
