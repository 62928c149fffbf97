"""``GET /v1/status`` and ``GET /v1/whoami``."""

from __future__ import annotations

from fastapi import APIRouter

import vfd
from vfd.daemon.routes.deps import JSON, CallerDep, DaemonDep, run, run_mountd
from vfd.daemon.services import users

router = APIRouter()


@router.get("/v1/status")
async def status(daemon: DaemonDep, caller: CallerDep) -> JSON:
    """The daemon's version, store, hosts, mountd health (null when it does not answer;
    ``fast_path`` in it says whether mountd's low-level fast path is on, and if not, why)."""
    mountd = await run_mountd(daemon.mountd.health)
    return {
        "version": vfd.__version__,
        "database": daemon.engine.dialect.name,
        "hosts": sorted(daemon.config.hosts),
        "mountd": mountd,
        "identity": await run(users.whoami, daemon, caller),
    }


@router.get("/v1/whoami")
async def whoami(daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(users.whoami, daemon, caller)
