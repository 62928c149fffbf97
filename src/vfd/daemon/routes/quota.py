"""Quota routes: admin list/show/set/rescan, and a folder's usage."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from vfd.daemon.routes.deps import INT64_MAX, JSON, Body, CallerDep, DaemonDep, run_mountd
from vfd.daemon.services import quota

router = APIRouter(tags=["quota"])


class ScopeBody(Body):
    scope: str | None = None
    user: str | None = None
    project: str | None = None
    host: str | None = None


class SetQuotaBody(ScopeBody):
    max_bytes: int | None = Field(default=None, ge=0, le=INT64_MAX, description="0 = unlimited")
    max_files: int | None = Field(default=None, ge=0, le=INT64_MAX, description="0 = unlimited")


@router.get("/v1/admin/quotas")
async def list_quotas(daemon: DaemonDep, caller: CallerDep, host: str | None = None) -> JSON:
    return await run_mountd(quota.list_quotas, daemon, caller, host=host)


@router.get("/v1/admin/quota")
async def show_quota(
    daemon: DaemonDep,
    caller: CallerDep,
    scope: str | None = None,
    user: str | None = None,
    project: str | None = None,
    host: str | None = None,
) -> JSON:
    return await run_mountd(
        quota.show_quota, daemon, caller, scope=scope, user=user, project=project, host=host
    )


@router.put("/v1/admin/quota")
async def set_quota(body: SetQuotaBody, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run_mountd(
        quota.set_quota,
        daemon,
        caller,
        max_bytes=body.max_bytes,
        max_files=body.max_files,
        scope=body.scope,
        user=body.user,
        project=body.project,
        host=body.host,
    )


@router.post("/v1/admin/quota/rescan")
async def rescan(body: ScopeBody, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run_mountd(
        quota.rescan,
        daemon,
        caller,
        host=body.host,
        scope=body.scope,
        user=body.user,
        project=body.project,
    )


@router.get("/v1/vfolders/{name}/usage")
async def folder_usage(name: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run_mountd(quota.folder_usage, daemon, caller, name)
