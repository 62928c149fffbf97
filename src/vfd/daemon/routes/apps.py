"""``/v1/sessions/{ref}/apps``: what a session may run, starting and stopping its apps
(docs/api.md "Apps", docs/apps.md "Service apps")."""

from __future__ import annotations

from fastapi import APIRouter

from vfd.daemon.routes.deps import JSON, CallerDep, DaemonDep
from vfd.daemon.services import service_apps

router = APIRouter(prefix="/v1/sessions/{ref}/apps", tags=["sessions"])


@router.get("")
async def list_apps(ref: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    """``{"session", "status", "apps": [...], "services_error"}``: the services the session's
    image declares and the apps plugins register, each with its running app (and, for a
    service or a linked app, its URL with the token) when it runs."""
    return await service_apps.list_apps(daemon, caller, ref)


@router.post("/{name}", status_code=201)
async def start(ref: str, name: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    """Start app ``name``: its App JSON (a service's with ``url``, the token in it)."""
    return await service_apps.start(daemon, caller, ref, name)


@router.delete("/{name}")
async def stop(ref: str, name: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    """Stop the session's running app ``name``: its App JSON once it has ended."""
    return await service_apps.stop(daemon, caller, ref, name)
