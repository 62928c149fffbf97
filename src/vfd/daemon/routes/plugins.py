"""``GET /v1/plugins``: what the daemon's plugin manager loaded, left out and blocked."""

from __future__ import annotations

from fastapi import APIRouter

from vfd.daemon.routes.deps import JSON, CallerDep, DaemonDep

router = APIRouter()


@router.get("/v1/plugins")
async def list_plugins(daemon: DaemonDep, caller: CallerDep) -> JSON:
    """Every plugin found (distribution, version, built in or not, hooks, load error,
    notification calls that failed), the schedulers and apps they register, and the names
    blocked by ``[plugins] block``. Any user may ask: it is what ``vfd plugins`` shows."""
    return daemon.plugins.listing()
