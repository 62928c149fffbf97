"""``/v1/vfolders``: create, list, show, change, trash, restore, purge."""

from __future__ import annotations

from fastapi import APIRouter

from vfd.daemon.routes.deps import JSON, Body, CallerDep, Choice, DaemonDep, run, run_mountd
from vfd.daemon.services import vfolders
from vfd.errors import ErrorCode
from vfd.store.models import Permission, UsageMode

router = APIRouter(prefix="/v1/vfolders")


_NAME_CODES = {"name": ErrorCode.INVALID_NAME}


class FolderCreate(Body):
    text_codes = _NAME_CODES

    name: str
    host: str | None = None
    project: str | None = None
    usage_mode: Choice[UsageMode] = UsageMode.GENERAL
    permission: Choice[Permission] = Permission.RW
    cloneable: bool = False


class FolderPatch(Body):
    text_codes = _NAME_CODES

    name: str | None = None
    permission: Choice[Permission] | None = None
    cloneable: bool | None = None


class Purge(Body):
    confirm: str


@router.post("", status_code=201)
async def create(body: FolderCreate, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run_mountd(vfolders.create, daemon, caller, **body.model_dump())


@router.get("")
async def list_folders(
    daemon: DaemonDep, caller: CallerDep, trash: bool = False, automount: bool = False
) -> JSON:
    return await run(vfolders.list_folders, daemon, caller, trash=trash, automount=automount)


@router.get("/{name}")
async def get(name: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(vfolders.get, daemon, caller, name)


@router.patch("/{name}")
async def patch(name: str, body: FolderPatch, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(vfolders.patch, daemon, caller, name, body.model_dump(exclude_unset=True))


@router.delete("/{name}")
async def trash(name: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run_mountd(vfolders.trash, daemon, caller, name)


@router.post("/{name}/restore")
async def restore(name: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run_mountd(vfolders.restore, daemon, caller, name)


@router.post("/{name}/purge")
async def purge(name: str, body: Purge, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run_mountd(vfolders.purge, daemon, caller, name, confirm=body.confirm)
