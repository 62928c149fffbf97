"""``/v1/vfolders/{name}/clone`` and ``/clone-cancel``: copy a folder into a new one."""

from __future__ import annotations

from fastapi import APIRouter

from vfd.daemon.routes.deps import JSON, Body, CallerDep, Choice, DaemonDep, run_mountd
from vfd.daemon.services import clones
from vfd.store.models import Permission, UsageMode

router = APIRouter(prefix="/v1/vfolders")


class Clone(Body):
    target_name: str
    target_host: str | None = None
    usage_mode: Choice[UsageMode] | None = None
    permission: Choice[Permission] = Permission.RW


@router.post("/{name}/clone", status_code=201)
async def clone(name: str, body: Clone, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run_mountd(clones.clone, daemon, caller, name, **body.model_dump())


@router.post("/{name}/clone-cancel")
async def cancel(name: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run_mountd(clones.cancel, daemon, caller, name)
