"""The JSON shapes of the API's objects (docs/api.md "Objects")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vfd.folders.names import is_automount
from vfd.store.models import (
    Permission,
    Project,
    ResourcePolicy,
    User,
    VFolder,
    VFolderInvitation,
    VFolderStatus,
)


def timestamp(value: datetime) -> str:
    """ISO 8601 in UTC (SQLite hands back naive datetimes; they were stored as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id.hex,
        "email": user.email,
        "username": user.username,
        "uid": user.uid,
        "gid": user.gid,
        "role": user.role.value,
        "status": user.status.value,
        "host_account": user.host_account,
        "resource_policy": user.resource_policy,
        "created_at": timestamp(user.created_at),
    }


def project_json(project: Project, members: list[str]) -> dict[str, Any]:
    return {
        "id": project.id.hex,
        "name": project.name,
        "description": project.description,
        "gid": project.gid,
        "members": sorted(members),
        "created_at": timestamp(project.created_at),
    }


def policy_json(policy: ResourcePolicy) -> dict[str, Any]:
    return {
        "name": policy.name,
        "max_vfolder_count": policy.max_vfolder_count,
        "max_quota_scope_size": policy.max_quota_scope_size,
        "allowed_hosts": list(policy.allowed_hosts),
    }


def folder_json(
    folder: VFolder,
    *,
    owner: str,
    permission: Permission,
    is_owner: bool,
    mount_point: str | None,
) -> dict[str, Any]:
    """A Folder; ``mount_point`` (from mountd's health) adds the ``views`` paths of a ready
    folder (no other is in the mount): only the ``ro`` one for a caller with the ``ro``
    permission (the ``rw`` view is not theirs)."""
    body: dict[str, Any] = {
        "id": folder.id.hex,
        "name": folder.name,
        "host": folder.host,
        "ownership": folder.ownership.value,
        "owner": owner,
        "usage_mode": folder.usage_mode.value,
        "permission": permission.value,
        "default_permission": folder.permission.value,
        "cloneable": folder.cloneable,
        "status": folder.status.value,
        "automount": is_automount(folder.name),
        "is_owner": is_owner,
        "created_at": timestamp(folder.created_at),
        "status_changed_at": timestamp(folder.status_changed_at),
        "scope": folder.scope,
        "status_reason": folder.status_reason,
    }
    if folder.clone_source_id is not None:
        body["clone"] = {
            "source_id": folder.clone_source_id.hex,
            "total_bytes": folder.clone_total_bytes,
            "total_files": folder.clone_total_files,
            "done_bytes": folder.clone_done_bytes,
            "done_files": folder.clone_done_files,
            "error": folder.status_error,
        }
    if mount_point is not None and folder.status == VFolderStatus.READY:
        top = mount_point.rstrip("/")
        views = {view: f"{top}/{view}/{folder.id.hex}" for view in ("rw", "ro")}
        if permission == Permission.RO:
            del views["rw"]
        body["views"] = views
    return body


def invitation_json(
    inv: VFolderInvitation, *, folder: str, inviter: str, invitee: str
) -> dict[str, Any]:
    return {
        "id": inv.id.hex,
        "vfolder": folder,
        "vfolder_id": inv.vfolder_id.hex,
        "inviter": inviter,
        "invitee": invitee,
        "permission": inv.permission.value,
        "state": inv.state.value,
        "created_at": timestamp(inv.created_at),
    }
