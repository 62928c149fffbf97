"""``GET /v1/images``: the images present on this node, which sessions may use (sessions never
pull: no registry need be reachable)."""

from __future__ import annotations

from fastapi import APIRouter

from vfd.daemon import containers, runtime
from vfd.daemon.routes.deps import JSON, CallerDep, DaemonDep
from vfd.daemon.runtime import Pool
from vfd.errors import ErrorCode, VfdError

router = APIRouter(prefix="/v1/images", tags=["sessions"])


@router.get("")
async def list_images(daemon: DaemonDep, caller: CallerDep) -> JSON:
    """``{"images": [{id, tags, size, created}]}``, newest first."""
    why = await containers.available(daemon)
    if why is not None:
        raise VfdError(ErrorCode.RUNTIME_UNAVAILABLE, why)
    found = await runtime.current().run(
        Pool.DOCKER, containers.list_images, daemon.config.sessions.docker_url
    )
    found.sort(key=lambda image: image.created, reverse=True)
    return {
        "images": [
            {"id": i.id, "tags": list(i.tags), "size": i.size, "created": i.created} for i in found
        ]
    }
