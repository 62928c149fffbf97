"""``/v1/dotfiles``: create, list, show, update and delete the dotfiles of a user, a project
or the cluster. The scope is named by ``scope`` (and ``project``) in the body or the query;
``{path}`` may hold ``/`` (it is relative to ``/home/work``)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from vfd.daemon.routes.deps import JSON, Body, CallerDep, Choice, DaemonDep, run
from vfd.daemon.services import dotfiles
from vfd.errors import ErrorCode
from vfd.store.models import DotfileScope

router = APIRouter(prefix="/v1/dotfiles", tags=["dotfiles"])

_PATH_CODES = {"path": ErrorCode.INVALID_PATH}


class DotfileCreate(Body):
    text_codes = _PATH_CODES

    path: str
    data: str
    """The content, base64."""
    mode: str = "644"
    """Octal permission bits."""
    scope: Choice[DotfileScope] | None = None
    project: str | None = None


class DotfileUpdate(Body):
    text_codes = _PATH_CODES

    path: str | None = None
    """If given, the path of the request (a dotfile is not moved by an update)."""
    data: str | None = None
    mode: str | None = None
    scope: Choice[DotfileScope] | None = None
    project: str | None = None


@router.post("", status_code=201)
async def create(body: DotfileCreate, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(dotfiles.create, daemon, caller, **body.model_dump())


@router.get("")
async def list_dotfiles(
    daemon: DaemonDep,
    caller: CallerDep,
    scope: DotfileScope | None = None,
    project: str | None = None,
) -> JSON:
    return await run(dotfiles.list_dotfiles, daemon, caller, scope=scope, project=project)


@router.get("/{path:path}")
async def get(
    path: str,
    daemon: DaemonDep,
    caller: CallerDep,
    scope: DotfileScope | None = None,
    project: str | None = None,
) -> JSON:
    return await run(dotfiles.get, daemon, caller, path, scope=scope, project=project)


@router.put("/{path:path}")
async def update(path: str, body: DotfileUpdate, daemon: DaemonDep, caller: CallerDep) -> JSON:
    fields = body.model_dump()
    body_path = fields.pop("path")
    return await run(dotfiles.update, daemon, caller, path, body_path=body_path, **fields)


@router.delete("/{path:path}", status_code=204)
async def delete(
    path: str,
    daemon: DaemonDep,
    caller: CallerDep,
    scope: DotfileScope | None = None,
    project: str | None = None,
) -> Response:
    await run(dotfiles.delete, daemon, caller, path, scope=scope, project=project)
    return Response(status_code=204)
