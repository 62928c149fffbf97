"""``/v1/sessions/{ref}/filebrowser``: the link to a session's web file manager
(docs/apps.md "Web file manager")."""

from __future__ import annotations

from fastapi import APIRouter

from vfd.daemon.routes.deps import JSON, CallerDep, DaemonDep, run
from vfd.daemon.services import filebrowser_app

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


@router.get("/{ref}/filebrowser")
async def filebrowser_url(ref: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    """The URL, with its token, of the session's running web file manager."""
    return await run(filebrowser_app.url_info, daemon, caller, ref)
