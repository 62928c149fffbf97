"""The SFTP app's key for its user: the private key of a session's running ``sftp`` app and
the command that reaches it. The app itself is the built-in plugin
:mod:`vfd.plugins.builtin.sftp` (its keys, options and endpoint).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from vfd.daemon.services import session_apps, session_state
from vfd.daemon.services.context import Caller, Daemon
from vfd.enums import AppStatus
from vfd.errors import ErrorCode, VfdError
from vfd.store.models import SessionApp


def key_info(daemon: Daemon, caller: Caller, ref: str) -> dict[str, Any]:
    """``GET /v1/sessions/{ref}/sftp-key``: the private key of the session's running SFTP
    app and the command that connects with it."""
    with daemon.session() as session:
        row = session_state.find(session, caller.user, ref)
        app = session.exec(
            select(SessionApp)
            .where(SessionApp.session_id == row.id)
            .where(SessionApp.name == "sftp")
            .where(col(SessionApp.status) == AppStatus.RUNNING)
        ).first()
        if app is None or app.secret is None or app.port is None:
            raise VfdError(
                ErrorCode.APP_NOT_FOUND,
                f"session {row.name!r} runs no SFTP app (start one with `vfd vfolder sftp NAME`)",
                app="sftp",
            )
        host = session_apps.public_host(daemon)
        user = caller.user.username
        return {
            "session_id": str(row.id),
            "app_id": str(app.id),
            "private_key": app.secret,
            "user": user,
            "host": host,
            "port": app.port,
            "key_file": "id_container",
            "command": f"sftp -i id_container -P {app.port} {user}@{host}",
        }
