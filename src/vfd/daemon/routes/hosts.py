"""``GET /v1/hosts`` and ``GET /v1/storage-status``."""

from __future__ import annotations

from fastapi import APIRouter

from vfd.daemon.routes.deps import JSON, CallerDep, DaemonDep, run
from vfd.daemon.services import hosts, vfolders

router = APIRouter()


@router.get("/v1/hosts")
async def list_hosts(daemon: DaemonDep, caller: CallerDep) -> JSON:
    """Storage hosts with capacity, the caller's quota, and whether the caller may use them."""
    return await run(hosts.list_hosts, daemon, caller)


@router.get("/v1/storage-status")
async def storage_status(daemon: DaemonDep, caller: CallerDep) -> JSON:
    """How many folders the caller has, may have, and reaches through projects and sharing."""
    return await run(vfolders.storage_status, daemon, caller)
