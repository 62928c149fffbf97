"""The web file manager's link for its user: the URL, with its token, of a session's running
``filebrowser`` app. The app itself is the built-in plugin :mod:`vfd.plugins.builtin.filebrowser`
(a fresh token per launch, kept with the app while it runs; the endpoint recorded and shown in
``vfd session info`` is the bare address).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from vfd.daemon.services import session_state
from vfd.daemon.services.context import Caller, Daemon
from vfd.enums import AppStatus
from vfd.errors import ErrorCode, VfdError
from vfd.store.models import SessionApp

APP = "filebrowser"
TOKEN_PARAM = "vfd_token"


def url_info(daemon: Daemon, caller: Caller, ref: str) -> dict[str, Any]:
    """``GET /v1/sessions/{ref}/filebrowser``: the URL (with its token) of the session's
    running file manager."""
    with daemon.session() as session:
        row = session_state.find(session, caller.user, ref)
        app = session.exec(
            select(SessionApp)
            .where(SessionApp.session_id == row.id)
            .where(SessionApp.name == APP)
            .where(col(SessionApp.status) == AppStatus.RUNNING)
        ).first()
        if app is None or app.secret is None or app.endpoint is None:
            raise VfdError(
                ErrorCode.APP_NOT_FOUND,
                f"session {row.name!r} runs no file manager (start one with "
                "`vfd vfolder web NAME`)",
                app=APP,
            )
        return {
            "session_id": str(row.id),
            "app_id": str(app.id),
            "endpoint": app.endpoint,
            "port": app.port,
            "url": f"{app.endpoint}?{TOKEN_PARAM}={app.secret}",
        }
