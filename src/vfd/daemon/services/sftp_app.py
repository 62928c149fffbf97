"""The SFTP app as the daemon plans it: keys, options, and the command that reaches it.

Each launch gets a fresh client keypair (its private key kept with the app for ``vfd session
sftp-key``, cleared when the app ends) and a fresh host key; the server accepts that key and
the keys of ``authorized_keys`` in the user's ``.ssh`` automount folder, when they have one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import asyncssh
from sqlmodel import col, select

from vfd.daemon import runtime
from vfd.daemon.runtime import Pool
from vfd.daemon.services import session_apps, session_state
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.files import identity_of
from vfd.daemon.userfs import FolderFS
from vfd.enums import AppStatus, Ownership, VFolderStatus
from vfd.errors import ErrorCode, VfdError
from vfd.store.models import SessionApp, User, VFolder

log = logging.getLogger(__name__)

KEYS_FOLDER = ".ssh"
KEYS_FILE = "authorized_keys"
KEYS_MAX = 256 * 1024
KEY_ALGORITHM = "ssh-ed25519"


def _user_keys(daemon: Daemon, user: User) -> str:
    """``authorized_keys`` of the user's own ``.ssh`` folder, read as the user through its
    ``ro`` view; empty when there is none."""
    with daemon.session() as session:
        folder = session.exec(
            select(VFolder)
            .where(VFolder.user_id == user.id)
            .where(VFolder.ownership == Ownership.USER)
            .where(VFolder.name == KEYS_FOLDER)
            .where(col(VFolder.status) == VFolderStatus.READY)
        ).first()
        if folder is None:
            return ""
        ident = identity_of(session, user, folder)
    root = daemon.config.mount_point / "ro" / folder.id.hex
    try:
        fd, _st = FolderFS(str(root), ident).open_file(KEYS_FILE)
    except VfdError:
        return ""
    try:
        data = os.read(fd, KEYS_MAX)
    except OSError:
        return ""
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace")


def _keypair() -> tuple[str, str, str]:
    """A client key (private, public) and a host key (private), in OpenSSH formats."""
    client = asyncssh.generate_private_key(KEY_ALGORITHM, comment="vfd-sftp")
    host = asyncssh.generate_private_key(KEY_ALGORITHM)
    return (
        client.export_private_key().decode(),
        client.export_public_key().decode(),
        host.export_private_key().decode(),
    )


async def plan(ctx: session_apps.PlanContext) -> session_apps.AppLaunch:
    live = runtime.current()
    private, public, host = await asyncio.to_thread(_keypair)
    user_keys = await live.run(Pool.FILES, _user_keys, ctx.daemon, ctx.user)
    options: dict[str, Any] = {
        "username": ctx.user.username,
        "host_key": host,
        "authorized_keys": public + "\n" + user_keys,
        "idle_timeout": ctx.daemon.config.apps.sftp_idle_timeout,
    }
    return session_apps.AppLaunch(
        module="vfd.apps.sftpd",
        options=options,
        secret=private,
        endpoint="sftp://" + ctx.user.username + "@{host}:{port}",
    )


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
