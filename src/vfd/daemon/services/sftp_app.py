"""The SFTP app as the daemon plans it: keys, options, and the command that reaches it.

Each launch gets a fresh client keypair (its private key kept with the app for ``vfd session
sftp-key``, cleared when the app ends) and a fresh host key; the server accepts that key and
the keys of ``authorized_keys`` at the top of the user's ``.ssh`` automount folder, when they
have one (read when the app starts; lines that are no plain public key are skipped, each with
a warning in the daemon's log).
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
    """The public keys of ``authorized_keys`` at the top of the user's own ``.ssh`` folder,
    read as the user through its ``ro`` view (a symbolic link there is not followed); one a
    line, the lines that are no plain public key left out (:func:`keys_of`). Empty when
    there is no such folder or file."""
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
    where = f"{KEYS_FOLDER}/{KEYS_FILE} of {user.username}"
    try:
        fd, _st = FolderFS(str(root), ident).open_file(KEYS_FILE)
    except VfdError as exc:
        if exc.code is not ErrorCode.PATH_NOT_FOUND:
            log.warning("SFTP keys: %s not read (%s): no key of it is accepted", where, exc)
        return ""
    try:
        data = os.read(fd, KEYS_MAX)
    except OSError as exc:
        log.warning("SFTP keys: %s not read (%s): no key of it is accepted", where, exc)
        return ""
    finally:
        os.close(fd)
    return keys_of(data.decode("utf-8", "replace"), where)


def keys_of(text: str, where: str) -> str:
    """The lines of an ``authorized_keys`` text that are a public key, one a line. Blank
    lines and comments are passed over; any other line that is no public key — a malformed
    one, or one with options (``from=``, ``command=``, ``restrict``...), which the SFTP app
    does not apply, so that accepting its key would allow more than the line says — is
    left out with a warning naming its line."""
    kept = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            asyncssh.import_public_key(line)
        except (asyncssh.KeyImportError, ValueError):
            log.warning(
                "SFTP keys: line %d of %s is no public key (options are not supported): skipped",
                number,
                where,
            )
            continue
        kept.append(line)
    return "".join(line + "\n" for line in kept)


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
