"""Folders: create, list, rename and change, trash, restore, purge.

Creation is all or nothing: the row, its quota scope and the backing directory are made in one
transaction, and the directory is removed again if the commit fails. mountd is told after the
commit (attach, detach, purge, limits of a new scope); see ``vfd.daemon.mountlink``.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from vfd.config import PolicyDefaults
from vfd.daemon.services import (
    access,
    audit,
    folder_events,
    folder_groups,
    hosts,
    policies,
    session_mounts,
)
from vfd.daemon.services.access import Access
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.projects import find_project
from vfd.daemon.services.render import folder_json
from vfd.errors import ErrorCode, VfdError
from vfd.folders import layout
from vfd.folders.layout import Scope
from vfd.folders.lifecycle import LIVE, PURGEABLE, TRASHED, check_transition
from vfd.folders.names import is_automount, validate_name
from vfd.store.models import (
    InvitationState,
    Ownership,
    Permission,
    QuotaScope,
    UsageMode,
    User,
    VFolder,
    VFolderInvitation,
    VFolderPermission,
    VFolderStatus,
    utcnow,
)

log = logging.getLogger(__name__)


def mount_point(daemon: Daemon) -> str | None:
    """mountd's mount point when it answers (Folder JSON then carries ``views``)."""
    health = daemon.mountd.health()
    if health is None or not health.get("mount_point"):
        return None
    return str(health["mount_point"])


def render(access_: Access, mount: str | None) -> dict[str, Any]:
    return folder_json(
        access_.folder,
        owner=access_.owner,
        permission=access_.permission,
        is_owner=access_.is_owner,
        mount_point=mount,
    )


def backing_path(daemon: Daemon, folder: VFolder) -> Path:
    """Where ``folder``'s data lives on its host."""
    return layout.folder_path(
        daemon.config.host_path(folder.host), Scope.parse(folder.scope), folder.id
    )


def set_status(session: Session, folder: VFolder, status: VFolderStatus) -> None:
    """Move ``folder`` to ``status`` (checked by the status machine) and stamp the time."""
    check_transition(folder.status, status, name=folder.name)
    folder.status = status
    folder.status_changed_at = utcnow()
    session.add(folder)


def own_folder_count(session: Session, user: User) -> int:
    """The user's own folders that count against ``max_vfolder_count`` (purged ones don't)."""
    return session.exec(
        select(func.count()).where(
            VFolder.ownership == Ownership.USER,
            VFolder.user_id == user.id,
            VFolder.status != VFolderStatus.DELETE_COMPLETE,
        )
    ).one()


def check_policy(
    session: Session, daemon: Daemon, user: User, host: str, *, own: bool
) -> PolicyDefaults:
    """The user's policy, after checking that it allows a new folder on ``host`` (``own``: a
    folder of their own, which counts against ``max_vfolder_count``)."""
    policy = policies.effective_policy(session, daemon, user)
    if policy.allowed_hosts and host not in policy.allowed_hosts:
        raise VfdError(
            ErrorCode.HOST_NOT_ALLOWED,
            f"your resource policy does not allow folders on host {host!r}",
            host=host,
            allowed=list(policy.allowed_hosts),
        )
    if own:
        count = own_folder_count(session, user)
        if policy.max_vfolder_count and count >= policy.max_vfolder_count:
            raise VfdError(
                ErrorCode.FOLDER_LIMIT_REACHED,
                f"you have {count} folders (trash included); your limit is "
                f"{policy.max_vfolder_count}",
                count=count,
                limit=policy.max_vfolder_count,
            )
    return policy


def add_folder(
    session: Session,
    caller: Caller,
    folder: VFolder,
    folder_scope: Scope,
    host_root: Path,
    policy: PolicyDefaults,
    *,
    uid: int,
    gid: int,
    action: str,
    **details: str,
) -> tuple[Path, QuotaScope, bool]:
    """Add a new folder's row, its quota scope when new and the audit event, then make its
    backing directory owned by ``uid``/``gid``.

    The directory's path, the scope's row and whether the scope is new. Raises with nothing on
    disk; the caller's transaction takes the rows back.
    """
    session.add(folder)
    scope_row, new_scope = hosts.ensure_scope(
        session, folder.host, str(folder_scope), policy.max_quota_scope_size
    )
    audit.record(
        session, caller, action, folder.name, vfid=folder.id.hex, host=folder.host, **details
    )
    session.flush()
    path = layout.folder_path(host_root, folder_scope, folder.id)
    try:
        layout.create_folder_dir(
            path, uid=uid, gid=gid, project=folder.ownership == Ownership.PROJECT
        )
    except OSError as exc:
        log.error("cannot create backing directory %s: %s", path, exc)
        raise VfdError(
            ErrorCode.INTERNAL,
            f"cannot create the folder's directory on host {folder.host!r}: {exc.strerror or exc}",
            host=folder.host,
        ) from None
    return path, scope_row, new_scope


def create(
    daemon: Daemon,
    caller: Caller,
    *,
    name: str,
    host: str | None = None,
    project: str | None = None,
    usage_mode: UsageMode = UsageMode.GENERAL,
    permission: Permission = Permission.RW,
    cloneable: bool = False,
) -> dict[str, Any]:
    """Create a folder (a project folder when ``project`` is given: admins only)."""
    user = caller.user
    validate_name(name)
    host = host or daemon.config.default_host
    host_root = daemon.config.host_path(host)
    if project is not None:
        caller.require_admin()
        if is_automount(name):
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"{name!r}: automount (dot) folders belong to a user, not a project",
                field="name",
            )
    made: Path | None = None
    try:
        with daemon.naming() as session:
            policy = check_policy(session, daemon, user, host, own=project is None)
            if project is None:
                scope = Scope("user", user.id)
                uid, gid = user.uid, user.gid
                sharers = [user]
                owner = user.email
            else:
                proj = find_project(session, project)
                scope = Scope("project", proj.id)
                uid, gid = user.uid, proj.gid
                sharers = [user, *access.project_readers(session, proj.id)]
                owner = proj.name
            access.check_name_free(session, name, sharers, caller=user)
            folder = VFolder(
                id=uuid.uuid4(),
                name=name,
                host=host,
                ownership=Ownership.USER if project is None else Ownership.PROJECT,
                user_id=user.id if project is None else None,
                project_id=None if project is None else proj.id,
                creator_id=user.id,
                usage_mode=usage_mode,
                permission=permission,
                cloneable=cloneable,
                scope=str(scope),
            )
            made, scope_row, new_scope = add_folder(
                session,
                caller,
                folder,
                scope,
                host_root,
                policy,
                uid=uid,
                gid=gid,
                action="vfolder.create",
                scope=str(scope),
            )
            result = Access(folder, Permission.WD, project is None, owner)
            limits = (scope_row.max_bytes, scope_row.max_files)
    except BaseException:
        if made is not None:
            layout.remove_folder_dir(made)
        raise
    folder_events.announce(daemon, "vfd_folder_created", folder)
    daemon.mountd.attach(folder.id.hex, host, str(scope), made)
    if new_scope:
        daemon.mountd.set_limits(host, str(scope), *limits)
    return render(result, mount_point(daemon))


def list_folders(
    daemon: Daemon, caller: Caller, *, trash: bool = False, automount: bool = False
) -> dict[str, Any]:
    """The caller's folders: usable ones, or (``trash``) trashed ones; ``automount``: dot only."""
    with daemon.session() as session:
        hits = access.accessible(session, caller.user, statuses=TRASHED if trash else LIVE)
    if automount:
        hits = [h for h in hits if is_automount(h.folder.name)]
    hits.sort(key=lambda h: (h.folder.name, h.owner))
    mount = mount_point(daemon) if hits else None
    return {"vfolders": [render(h, mount) for h in hits]}


def get(daemon: Daemon, caller: Caller, name: str) -> dict[str, Any]:
    with daemon.session() as session:
        hit = access.find(session, caller.user, name)
    return render(hit, mount_point(daemon))


def _is_shared(session: Session, folder: VFolder) -> bool:
    perms = session.exec(
        select(func.count()).where(VFolderPermission.vfolder_id == folder.id)
    ).one()
    pending = session.exec(
        select(func.count()).where(
            VFolderInvitation.vfolder_id == folder.id,
            VFolderInvitation.state == InvitationState.PENDING,
        )
    ).one()
    return bool(perms or pending)


def patch(daemon: Daemon, caller: Caller, name: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Rename (needs ``wd``) or change ``permission``/``cloneable`` (owner; project: admin)."""
    with daemon.naming() as session:
        hit = access.find(session, caller.user, name)
        folder = hit.folder
        if folder.status != VFolderStatus.READY:
            raise VfdError(
                ErrorCode.INVALID_STATUS,
                f"folder {name!r} is {folder.status.value}; only ready folders can be changed",
                status=folder.status.value,
            )
        new_name = changes.get("name")
        if new_name is not None and new_name != folder.name:
            access.require(hit, Permission.WD, "renaming")
            validate_name(new_name)
            session_mounts.refuse_if_mounted(session, folder, caller.user, "rename")
            if is_automount(new_name):
                if folder.ownership == Ownership.PROJECT:
                    raise VfdError(
                        ErrorCode.INVALID_ARGUMENT,
                        "project folders cannot become automount (dot) folders",
                        field="name",
                    )
                if _is_shared(session, folder):
                    raise VfdError(
                        ErrorCode.NOT_SHAREABLE,
                        f"{name!r} is shared; automount (dot) folders cannot be",
                        name=name,
                    )
            access.check_name_free(
                session,
                new_name,
                access.readers(session, folder),
                caller=caller.user,
                exclude=folder.id,
            )
        settings = {k: v for k, v in changes.items() if k in ("permission", "cloneable")}
        if settings:
            allowed = caller.is_admin if folder.ownership == Ownership.PROJECT else hit.is_owner
            if not allowed:
                who = "an administrator" if folder.ownership == Ownership.PROJECT else "its owner"
                raise VfdError(
                    ErrorCode.PERMISSION_DENIED,
                    f"only {who} may change the settings of folder {name!r}",
                    name=name,
                )
            for key, value in settings.items():
                if value is None:
                    raise VfdError(ErrorCode.INVALID_ARGUMENT, f"{key} cannot be null", field=key)
                setattr(folder, key, value)
        if new_name is not None:
            folder.name = new_name
        session.add(folder)
        audit.record(
            session,
            caller,
            "vfolder.update",
            name,
            vfid=folder.id.hex,
            **{k: str(v) for k, v in changes.items()},
        )
    return render(hit, mount_point(daemon))


def trash(daemon: Daemon, caller: Caller, name: str) -> dict[str, Any]:
    """Move a folder to the trash (``delete-pending``): detached from the mount, restorable."""
    with daemon.naming() as session:
        hit = access.find(session, caller.user, name)
        access.require(hit, Permission.WD, "deleting")
        if hit.folder.status in (VFolderStatus.CLONING, VFolderStatus.CLONE_ERROR):
            raise VfdError(
                ErrorCode.INVALID_STATUS,
                f"folder {name!r} is {hit.folder.status.value}: "
                + (
                    "cancel the clone first (vfd vfolder clone-cancel)"
                    if hit.folder.status == VFolderStatus.CLONING
                    else "it never became ready; purge it instead"
                ),
                status=hit.folder.status.value,
            )
        session_mounts.refuse_if_mounted(session, hit.folder, caller.user, "trash")
        set_status(session, hit.folder, VFolderStatus.DELETE_PENDING)
        audit.record(session, caller, "vfolder.trash", name, vfid=hit.folder.id.hex)
    folder_events.announce(daemon, "vfd_folder_trashed", hit.folder)
    daemon.mountd.detach(hit.folder.id.hex)
    return render(hit, mount_point(daemon))


def restore(daemon: Daemon, caller: Caller, name: str) -> dict[str, Any]:
    """Bring a trashed folder back (``ready``) and attach it again."""
    with daemon.naming() as session:
        hit = access.find(session, caller.user, name)
        access.require(hit, Permission.WD, "restoring")
        path = backing_path(daemon, hit.folder)
        set_status(session, hit.folder, VFolderStatus.READY)
        audit.record(session, caller, "vfolder.restore", name, vfid=hit.folder.id.hex)
    folder = hit.folder
    folder_events.announce(daemon, "vfd_folder_restored", folder)
    daemon.mountd.attach(folder.id.hex, folder.host, folder.scope, path)
    folder_groups.reshare(daemon, folder, path)
    return render(hit, mount_point(daemon))


def purge(daemon: Daemon, caller: Caller, name: str, *, confirm: str) -> dict[str, Any]:
    """Delete a trashed folder's data for good; ``confirm`` must repeat its name exactly.

    ``delete-ongoing`` is committed first, so a crash midway leaves a visible state; the folder
    ends ``delete-complete`` (its name free again) or ``delete-error`` (purge may be retried).
    """
    with daemon.naming() as session:
        hit = access.find(session, caller.user, name)
        access.require(hit, Permission.WD, "purging")
        folder = hit.folder
        if confirm != folder.name:
            raise VfdError(
                ErrorCode.CONFIRMATION_MISMATCH,
                f"to purge folder {name!r}, confirm with its exact name",
                name=name,
                confirm=confirm,
            )
        session_mounts.refuse_if_mounted(session, folder, caller.user, "purge")
        if folder.status not in PURGEABLE:
            raise VfdError(
                ErrorCode.INVALID_STATUS,
                f"folder {name!r} is {folder.status.value}; move it to the trash first",
                status=folder.status.value,
            )
        path = backing_path(daemon, folder)
        set_status(session, folder, VFolderStatus.DELETE_ONGOING)
        audit.record(session, caller, "vfolder.purge", name, vfid=folder.id.hex)
    try:
        daemon.mountd.purge(folder.id.hex, folder.host, folder.scope, path)
    except Exception as exc:
        log.error("purging folder %s (%s) failed: %s", name, folder.id.hex, exc)
        with daemon.naming() as session:
            row = session.get(VFolder, folder.id)
            assert row is not None
            set_status(session, row, VFolderStatus.DELETE_ERROR)
            audit.record(session, caller, "vfolder.purge.error", name, error=str(exc))
        if isinstance(exc, VfdError):
            raise
        raise VfdError(
            ErrorCode.INTERNAL, f"purging folder {name!r} failed: {exc}", name=name
        ) from None
    with daemon.naming() as session:
        row = session.get(VFolder, folder.id)
        assert row is not None
        set_status(session, row, VFolderStatus.DELETE_COMPLETE)
        for perm in session.exec(
            select(VFolderPermission).where(VFolderPermission.vfolder_id == row.id)
        ):
            session.delete(perm)
        for inv in session.exec(
            select(VFolderInvitation).where(
                VFolderInvitation.vfolder_id == row.id,
                VFolderInvitation.state == InvitationState.PENDING,
            )
        ):
            inv.state = InvitationState.CANCELED
            inv.modified_at = utcnow()
            session.add(inv)
        audit.record(session, caller, "vfolder.purge.complete", name, vfid=row.id.hex)
        hit.folder = row
    folder_events.announce(daemon, "vfd_folder_purged", row)
    return {"purged": render(hit, None)}


def storage_status(daemon: Daemon, caller: Caller) -> dict[str, Any]:
    """``{created, limit, project_folders, invited_folders}`` for the caller."""
    with daemon.session() as session:
        policy = policies.effective_policy(session, daemon, caller.user)
        hits = access.accessible(session, caller.user)
        created = own_folder_count(session, caller.user)
    return {
        "created": created,
        "limit": policy.max_vfolder_count,
        "project_folders": sum(1 for h in hits if h.folder.ownership == Ownership.PROJECT),
        "invited_folders": sum(1 for h in hits if h.shared),
    }
