"""Sharing folders: invitations, leaving, and per-member permissions.

User folders are shared by invitation (the owner invites, the invitee accepts or rejects, an
invited user may leave). Project folders are shared through project membership; admins may
override the folder's default permission per member. Automount (dot) folders are never shared.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import Session, col, or_, select

from vfd.daemon.services import access, audit, folder_groups
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.projects import is_member
from vfd.daemon.services.render import invitation_json, timestamp
from vfd.daemon.services.users import find_user
from vfd.errors import ErrorCode, VfdError
from vfd.folders.names import is_automount
from vfd.store.models import (
    InvitationState,
    Ownership,
    Permission,
    Project,
    User,
    VFolder,
    VFolderInvitation,
    VFolderPermission,
    VFolderStatus,
    utcnow,
)


def _render(session: Session, inv: VFolderInvitation) -> dict[str, Any]:
    folder = session.get(VFolder, inv.vfolder_id)
    inviter = session.get(User, inv.inviter_id)
    invitee = session.get(User, inv.invitee_id)
    return invitation_json(
        inv,
        folder=folder.name if folder else "?",
        inviter=inviter.email if inviter else "?",
        invitee=invitee.email if invitee else "?",
    )


def _check_shareable(folder: VFolder) -> None:
    if is_automount(folder.name):
        raise VfdError(
            ErrorCode.NOT_SHAREABLE,
            f"{folder.name!r} is an automount (dot) folder; those cannot be shared",
            name=folder.name,
        )
    if folder.ownership == Ownership.PROJECT:
        raise VfdError(
            ErrorCode.NOT_SHAREABLE,
            f"{folder.name!r} is a project folder; it is shared through project membership",
            name=folder.name,
        )


def invite(
    daemon: Daemon, caller: Caller, name: str, *, emails: list[str], permission: Permission
) -> dict[str, Any]:
    """Invite users to the caller's own folder (pending until each accepts)."""
    with daemon.session() as session:
        hit = access.find(session, caller.user, name)
        folder = hit.folder
        _check_shareable(folder)
        if not hit.is_owner:
            raise VfdError(
                ErrorCode.PERMISSION_DENIED, f"only the owner may share folder {name!r}", name=name
            )
        if folder.status != VFolderStatus.READY:
            raise VfdError(
                ErrorCode.INVALID_STATUS,
                f"folder {name!r} is {folder.status.value}",
                status=folder.status.value,
            )
        if not emails:
            raise VfdError(ErrorCode.INVALID_ARGUMENT, "name at least one user", field="emails")
        made = []
        for email in dict.fromkeys(emails):
            invitee = find_user(session, email)
            if invitee.id == caller.user.id:
                raise VfdError(
                    ErrorCode.INVALID_ARGUMENT, "you cannot invite yourself", field="emails"
                )
            if session.get(VFolderPermission, (folder.id, invitee.id)) is not None:
                raise VfdError(
                    ErrorCode.ALREADY_MEMBER,
                    f"folder {name!r} is already shared with {email}",
                    email=email,
                )
            pending = session.exec(
                select(VFolderInvitation).where(
                    VFolderInvitation.vfolder_id == folder.id,
                    VFolderInvitation.invitee_id == invitee.id,
                    VFolderInvitation.state == InvitationState.PENDING,
                )
            ).first()
            if pending is not None:
                raise VfdError(
                    ErrorCode.INVITATION_EXISTS,
                    f"{email} already has a pending invitation to {name!r}",
                    email=email,
                )
            inv = VFolderInvitation(
                vfolder_id=folder.id,
                inviter_id=caller.user.id,
                invitee_id=invitee.id,
                permission=permission,
            )
            session.add(inv)
            made.append(inv)
            audit.record(
                session, caller, "vfolder.invite", name, email=email, permission=permission.value
            )
        session.flush()
        return {"invitations": [_render(session, inv) for inv in made]}


def list_invitations(daemon: Daemon, caller: Caller) -> dict[str, Any]:
    """Pending invitations the caller received and sent."""
    me = caller.user.id
    with daemon.session() as session:
        rows = session.exec(
            select(VFolderInvitation)
            .where(
                VFolderInvitation.state == InvitationState.PENDING,
                or_(VFolderInvitation.invitee_id == me, VFolderInvitation.inviter_id == me),
            )
            .order_by(col(VFolderInvitation.created_at))
        ).all()
        return {
            "received": [_render(session, i) for i in rows if i.invitee_id == me],
            "sent": [_render(session, i) for i in rows if i.inviter_id == me],
        }


def _my_invitation(session: Session, caller: Caller, invitation_id: str) -> VFolderInvitation:
    """The caller's invitation named by ``invitation_id``: its id, the first characters of its
    id (as the CLI's tables show), or the name of the folder of a pending one."""
    inv = _resolve_invitation(session, caller, invitation_id)
    if inv.state != InvitationState.PENDING:
        raise VfdError(
            ErrorCode.INVALID_STATUS,
            f"invitation {inv.id.hex[:8]} is already {inv.state.value}",
            state=inv.state.value,
        )
    return inv


def _resolve_invitation(session: Session, caller: Caller, given: str) -> VFolderInvitation:
    try:
        key = uuid.UUID(given)
    except ValueError:
        key = None
    if key is not None:
        inv = session.get(VFolderInvitation, key)
        if inv is None or inv.invitee_id != caller.user.id:
            raise VfdError(ErrorCode.INVITATION_NOT_FOUND, f"no invitation {given}", id=given)
        return inv
    received = session.exec(
        select(VFolderInvitation).where(VFolderInvitation.invitee_id == caller.user.id)
    ).all()
    prefix = given.lower()
    by_id = [i for i in received if prefix and i.id.hex.startswith(prefix)]

    def folder_name(inv: VFolderInvitation) -> str | None:
        folder = session.get(VFolder, inv.vfolder_id)
        return folder.name if folder is not None else None

    by_name = [
        i for i in received if i.state == InvitationState.PENDING and folder_name(i) == given
    ]
    found = list({i.id: i for i in by_id + by_name}.values())
    if not found:
        raise VfdError(
            ErrorCode.INVITATION_NOT_FOUND,
            f"no invitation {given!r} (give an id as `vfd vfolder invitations` shows it, or "
            "the folder's name)",
            id=given,
        )
    if len(found) > 1:
        listed = ", ".join(f"{i.id.hex[:8]} ({i.state.value})" for i in found)
        raise VfdError(
            ErrorCode.AMBIGUOUS_ID,
            f"{given!r} names {len(found)} invitations: {listed}; give more of the id",
            id=given,
            matches=[i.id.hex for i in found],
        )
    return found[0]


def accept(daemon: Daemon, caller: Caller, invitation_id: str) -> dict[str, Any]:
    """Accept an invitation: the folder joins the caller's folders (its name must be free).

    An ``rw`` invitation first makes the folder group-shared (``folder_groups.share_rw``)."""
    with daemon.session() as session:
        inv = _my_invitation(session, caller, invitation_id)
        rw_folder = inv.vfolder_id if inv.permission.allows(Permission.RW) else None
    if rw_folder is not None:
        folder_groups.share_rw(daemon, rw_folder)
    with daemon.naming() as session:
        inv = _my_invitation(session, caller, invitation_id)
        folder = session.get(VFolder, inv.vfolder_id)
        if folder is None or folder.status == VFolderStatus.DELETE_COMPLETE:
            raise VfdError(
                ErrorCode.INVITATION_NOT_FOUND,
                "the shared folder no longer exists",
                id=invitation_id,
            )
        access.check_name_free(session, folder.name, [caller.user], caller=caller.user)
        inv.state = InvitationState.ACCEPTED
        inv.modified_at = utcnow()
        session.add(inv)
        session.add(
            VFolderPermission(
                vfolder_id=folder.id, user_id=caller.user.id, permission=inv.permission
            )
        )
        audit.record(session, caller, "invitation.accept", folder.name, id=inv.id.hex)
        session.flush()
        return _render(session, inv)


def reject(daemon: Daemon, caller: Caller, invitation_id: str) -> dict[str, Any]:
    with daemon.session() as session:
        inv = _my_invitation(session, caller, invitation_id)
        inv.state = InvitationState.REJECTED
        inv.modified_at = utcnow()
        session.add(inv)
        audit.record(session, caller, "invitation.reject", inv.id.hex)
        session.flush()
        return _render(session, inv)


def leave(daemon: Daemon, caller: Caller, name: str) -> dict[str, Any]:
    """Stop sharing a folder someone else invited the caller to."""
    with daemon.session() as session:
        hit = access.find(session, caller.user, name)
        if hit.is_owner:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"you own folder {name!r}; owners cannot leave (delete it instead)",
                name=name,
            )
        if not hit.shared:
            raise VfdError(
                ErrorCode.NOT_A_MEMBER,
                f"folder {name!r} was not shared with you by invitation",
                name=name,
            )
        row = session.get(VFolderPermission, (hit.folder.id, caller.user.id))
        if row is not None:
            session.delete(row)
        audit.record(session, caller, "vfolder.leave", name, vfid=hit.folder.id.hex)
    return {"left": name}


def set_member(
    daemon: Daemon, caller: Caller, name: str, email: str, *, permission: Permission
) -> dict[str, Any]:
    """Project folder: override a member's permission (admins). User folder: change what an
    invited user may do (owner); raising them to ``rw`` first makes the folder group-shared
    (``folder_groups.share_rw``)."""
    if permission.allows(Permission.RW):
        with daemon.session() as session:
            hit = access.find(session, caller.user, name)
            own_folder = hit.folder.id if hit.is_owner else None
        if own_folder is not None:
            folder_groups.share_rw(daemon, own_folder)
    with daemon.session() as session:
        hit = access.find(session, caller.user, name)
        folder = hit.folder
        target = find_user(session, email)
        row = session.get(VFolderPermission, (folder.id, target.id))
        if folder.ownership == Ownership.PROJECT:
            caller.require_admin()
            project = session.get(Project, folder.project_id)
            if project is None or not is_member(session, project, target):
                raise VfdError(
                    ErrorCode.NOT_A_MEMBER,
                    f"{email} is not a member of the project owning {name!r}",
                    email=email,
                )
            if row is None:
                row = VFolderPermission(
                    vfolder_id=folder.id, user_id=target.id, permission=permission
                )
        else:
            _owner_only(hit, name)
            if row is None:
                raise VfdError(
                    ErrorCode.NOT_A_MEMBER, f"{name!r} is not shared with {email}", email=email
                )
        row.permission = permission
        session.add(row)
        audit.record(
            session, caller, "vfolder.member.set", name, email=email, permission=permission.value
        )
    return {"vfolder": name, "email": email, "permission": permission.value}


def drop_member(daemon: Daemon, caller: Caller, name: str, email: str) -> dict[str, Any]:
    """Project folder: drop a member's override (back to the folder's permission). User
    folder: stop sharing it with an invited user. Answers the member's permission now."""
    with daemon.session() as session:
        hit = access.find(session, caller.user, name)
        folder = hit.folder
        target = find_user(session, email)
        row = session.get(VFolderPermission, (folder.id, target.id))
        if folder.ownership == Ownership.PROJECT:
            caller.require_admin()
            now: str | None = folder.permission.value
        else:
            _owner_only(hit, name)
            now = None
        if row is None:
            raise VfdError(
                ErrorCode.NOT_A_MEMBER,
                f"{email} has no permission of their own on {name!r}",
                email=email,
            )
        session.delete(row)
        audit.record(session, caller, "vfolder.member.drop", name, email=email)
    return {"vfolder": name, "email": email, "permission": now}


def members(daemon: Daemon, caller: Caller, name: str) -> dict[str, Any]:
    """Who a folder is shared with: its members (users with a permission of their own) and the
    pending invitations to it.

    A user folder answers its owner: the users who accepted an invitation, and those invited
    who have not answered yet. An invited member gets ``403 permission_denied``: they may see
    the folder, not who else shares it. A project folder answers administrators its per-member
    overrides (``default_permission`` applies to every other project member); anyone else gets
    ``403 admin_required``."""
    with daemon.session() as session:
        hit = access.find(session, caller.user, name)
        folder = hit.folder
        if folder.ownership == Ownership.PROJECT:
            caller.require_admin()
        elif not hit.is_owner:
            raise VfdError(
                ErrorCode.PERMISSION_DENIED,
                f"only the owner may see who shares folder {name!r}",
                name=name,
            )
        rows = session.exec(
            select(VFolderPermission, User)
            .where(VFolderPermission.vfolder_id == folder.id, User.id == VFolderPermission.user_id)
            .order_by(col(VFolderPermission.created_at), col(User.email))
        ).all()
        pending = session.exec(
            select(VFolderInvitation, User)
            .where(
                VFolderInvitation.vfolder_id == folder.id,
                VFolderInvitation.state == InvitationState.PENDING,
                User.id == VFolderInvitation.invitee_id,
            )
            .order_by(col(VFolderInvitation.created_at))
        ).all()
        answer: dict[str, Any] = {
            "vfolder": folder.name,
            "ownership": folder.ownership.value,
            "members": [
                {
                    "email": user.email,
                    "permission": row.permission.value,
                    "since": timestamp(row.created_at),
                }
                for row, user in rows
            ],
            "invitations": [
                {
                    "id": inv.id.hex,
                    "email": user.email,
                    "permission": inv.permission.value,
                    "created_at": timestamp(inv.created_at),
                }
                for inv, user in pending
            ],
        }
        if folder.ownership == Ownership.PROJECT:
            answer["default_permission"] = folder.permission.value
        return answer


def _owner_only(hit: access.Access, name: str) -> None:
    if not hit.is_owner:
        raise VfdError(
            ErrorCode.PERMISSION_DENIED,
            f"only the owner may change who shares folder {name!r}",
            name=name,
        )
