"""Sharing routes: invite, leave, members and their permissions, invitations."""

from __future__ import annotations

from fastapi import APIRouter

from vfd.daemon.routes.deps import JSON, Body, CallerDep, Choice, DaemonDep, run
from vfd.daemon.services import sharing
from vfd.store.models import Permission

router = APIRouter()


class Invite(Body):
    emails: list[str]
    permission: Choice[Permission] = Permission.RW


class MemberPermission(Body):
    permission: Choice[Permission]


@router.post("/v1/vfolders/{name}/invite")
async def invite(name: str, body: Invite, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(
        sharing.invite, daemon, caller, name, emails=body.emails, permission=body.permission
    )


@router.post("/v1/vfolders/{name}/leave")
async def leave(name: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(sharing.leave, daemon, caller, name)


@router.get("/v1/vfolders/{name}/members")
async def list_members(name: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(sharing.members, daemon, caller, name)


@router.put("/v1/vfolders/{name}/members/{email}")
async def set_member(
    name: str, email: str, body: MemberPermission, daemon: DaemonDep, caller: CallerDep
) -> JSON:
    return await run(sharing.set_member, daemon, caller, name, email, permission=body.permission)


@router.delete("/v1/vfolders/{name}/members/{email}")
async def drop_member(name: str, email: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(sharing.drop_member, daemon, caller, name, email)


@router.get("/v1/invitations")
async def list_invitations(daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(sharing.list_invitations, daemon, caller)


@router.post("/v1/invitations/{invitation_id}/accept")
async def accept(invitation_id: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(sharing.accept, daemon, caller, invitation_id)


@router.post("/v1/invitations/{invitation_id}/reject")
async def reject(invitation_id: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(sharing.reject, daemon, caller, invitation_id)
