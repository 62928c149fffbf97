"""Bind mounts of folder views on the node: ``vfd mount`` / ``vfd umount``."""

from __future__ import annotations

from fastapi import APIRouter

from vfd.daemon.routes.deps import JSON, Body, CallerDep, DaemonDep, run_files
from vfd.daemon.services import mounts

router = APIRouter(tags=["mounts"])


class MountBody(Body):
    target: str
    ro: bool = False


class UmountBody(Body):
    target: str


@router.post("/v1/vfolders/{name}/mount")
async def mount(name: str, body: MountBody, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run_files(mounts.mount, daemon, caller, name, target=body.target, ro=body.ro)


@router.post("/v1/umount")
async def umount(body: UmountBody, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run_files(mounts.umount, daemon, caller, target=body.target)
