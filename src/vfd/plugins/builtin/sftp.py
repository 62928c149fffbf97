"""The ``sftp`` app: an SFTP server (asyncssh, :mod:`vfd.apps.sftpd`) over the session's
folders, registered through ``vfd_register_apps`` like any app plugin's.

Each launch gets a fresh client keypair (its private key kept with the app for ``vfd session
sftp-key``, cleared when the app ends) and a fresh host key; the server accepts that key and
the keys of ``authorized_keys`` at the top of the user's ``.ssh`` automount folder, when they
have one (read as the user when the app starts; lines that are no plain public key are
skipped, each with a warning in the daemon's log). It ends itself after ``[apps]
sftp_idle_timeout`` seconds without a transfer.
"""

from __future__ import annotations

import asyncio
import logging

import asyncssh

from vfd.plugins.hookspecs import hookimpl
from vfd.plugins.types import AppContext, AppLaunch, AppSpec

log = logging.getLogger(__name__)

KEYS_FOLDER = ".ssh"
KEYS_FILE = "authorized_keys"
KEY_ALGORITHM = "ssh-ed25519"


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


async def plan(ctx: AppContext) -> AppLaunch:
    private, public, host = await asyncio.to_thread(_keypair)
    data = await ctx.read_user_file(KEYS_FOLDER, KEYS_FILE)
    where = f"{KEYS_FOLDER}/{KEYS_FILE} of {ctx.username}"
    user_keys = keys_of(data.decode("utf-8", "replace"), where) if data else ""
    return AppLaunch(
        options={
            "username": ctx.username,
            "host_key": host,
            "authorized_keys": public + "\n" + user_keys,
            "idle_timeout": ctx.config.apps.sftp_idle_timeout,
        },
        secret=private,
        endpoint="sftp://" + ctx.username + "@{host}:{port}",
    )


@hookimpl
def vfd_register_apps() -> list[AppSpec]:
    return [
        AppSpec(
            name="sftp",
            description="SFTP server over the session's folders (vfd session sftp-key ID)",
            module="vfd.apps.sftpd",
            plan=plan,
        )
    ]
