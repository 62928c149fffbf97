"""The SFTP app's server: ``python -m vfd.apps.sftpd``, started by the daemon.

An asyncssh server for one session, confined to its folders as its user
(:mod:`vfd.apps.confine`): ``/`` holds one directory per folder. It accepts only public-key
logins of the session's user with the keys its spec lists (the session's own key and the
user's ``authorized_keys``); SFTP is the only thing it serves (no shell, exec, scp or
forwarding). A write into a read-only folder is answered "permission denied" (SFTP version 3
has no read-only status) with the reason; a write past the quota is answered with the quota
error. It ends itself after ``idle_timeout`` seconds without an SFTP request, saying so.

Spec options: ``username``, ``host_key`` (OpenSSH private key text), ``authorized_keys``
(text), ``idle_timeout`` (seconds; 0 = never), ``login_timeout`` (seconds).
"""

from __future__ import annotations

# Everything the server needs is imported before it confines itself: afterwards only the
# session's folders exist.
import asyncio
import concurrent.futures.thread
import encodings.idna
import errno
import functools
import importlib
import inspect
import logging
import pkgutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import asyncssh

from vfd.apps import confine

_PRELOADED = (concurrent.futures.thread, encodings.idna)


def preload() -> None:
    """Import every module of asyncssh (it imports some only when first needed, which would
    fail once confined); optional ones that cannot load here are not needed either."""
    for info in pkgutil.walk_packages(asyncssh.__path__, "asyncssh."):
        try:
            importlib.import_module(info.name)
        except Exception:
            continue


log = logging.getLogger("vfd.apps.sftpd")

WRAPPED = (
    "open",
    "open56",
    "close",
    "read",
    "write",
    "lstat",
    "fstat",
    "stat",
    "setstat",
    "lsetstat",
    "fsetstat",
    "statvfs",
    "fstatvfs",
    "remove",
    "rename",
    "posix_rename",
    "mkdir",
    "rmdir",
    "scandir",
    "readlink",
    "symlink",
    "link",
    "realpath",
    "fsync",
)
"""The server's file operations: each counts as activity, and a read-only refusal is
answered as such."""


class Activity:
    """When the server was last asked something."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.busy = 0

    def touch(self) -> None:
        self.last = time.monotonic()


def _refusal(exc: OSError) -> Exception:
    if exc.errno == errno.EROFS:
        return asyncssh.SFTPPermissionDenied("read-only folder: writes are refused here")
    if exc.errno == errno.EDQUOT:
        return asyncssh.SFTPFailure("disk quota exceeded: the folder's quota is used up")
    return exc


def _wrap(name: str, method: Callable[..., Any], activity: Activity) -> Callable[..., Any]:
    async def finish(result: Any) -> Any:
        activity.busy += 1
        try:
            return await result
        except OSError as exc:
            raise _refusal(exc) from None
        finally:
            activity.busy -= 1
            activity.touch()

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        activity.touch()
        try:
            result = method(*args, **kwargs)
        except OSError as exc:
            raise _refusal(exc) from None
        if inspect.isawaitable(result):
            return finish(result)
        if inspect.isasyncgen(result):
            return result  # scandir: its entries come from a generator
        return result

    return call


def server_class(names: dict[int, str], groups: dict[int, str], activity: Activity) -> type:
    """The SFTPServer of this process: activity counted, refusals mapped, ids named without
    a passwd file (there is none in the confined tree)."""

    class Server(asyncssh.SFTPServer):
        def __init__(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
            super().__init__(chan)
            for op in WRAPPED:
                setattr(self, op, _wrap(op, getattr(self, op), activity))

        def format_user(self, uid: int | None) -> str:
            return "" if uid is None else names.get(uid, str(uid))

        def format_group(self, gid: int | None) -> str:
            return "" if gid is None else groups.get(gid, str(gid))

    return Server


class Gate(asyncssh.SSHServer):
    """Public keys of the session's user, and nothing else."""

    def __init__(self, username: str, keys: list[asyncssh.SSHKey], activity: Activity) -> None:
        self.username = username
        self.keys = {key.public_data for key in keys}
        self.activity = activity

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.activity.touch()

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self.username and key.public_data in self.keys


def authorized(text: str) -> list[asyncssh.SSHKey]:
    """The keys of an ``authorized_keys`` text; lines that are no key are skipped."""
    keys = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            keys.append(asyncssh.import_public_key(line))
        except (asyncssh.KeyImportError, ValueError):
            try:  # with options before the key
                keys.append(asyncssh.import_public_key(line.split(None, 1)[1]))
            except (asyncssh.KeyImportError, ValueError, IndexError):
                log.warning("an authorized_keys line that is no public key was skipped")
    return keys


def server_options(
    spec: confine.ConfineSpec, activity: Activity
) -> asyncssh.SSHServerConnectionOptions:
    """The asyncssh options of this server, built before it confines itself (their keys
    and algorithms are loaded here)."""
    options = spec.options
    username = str(options["username"])
    host_key = asyncssh.import_private_key(str(options["host_key"]))
    keys = authorized(str(options.get("authorized_keys", "")))
    names = {spec.uid: username}
    groups = {spec.gid: str(options.get("group", spec.gid))}
    return asyncssh.SSHServerConnectionOptions(
        server_factory=lambda: Gate(username, keys, activity),
        server_host_keys=[host_key],
        sftp_factory=server_class(names, groups, activity),
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
        login_timeout=float(options.get("login_timeout", 60)),
        keepalive_interval=30,
    )


async def serve(
    spec: confine.ConfineSpec,
    listener: socket.socket,
    options: asyncssh.SSHServerConnectionOptions,
    activity: Activity,
) -> str:
    """Serve until idle or asked to stop; why it stopped."""
    idle = float(spec.options.get("idle_timeout", 0))
    loop = asyncio.get_running_loop()
    stopping = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set_result, "stopped by the daemon")
    server = await asyncssh.listen(sock=listener, options=options)
    confine.report(ready={"port": listener.getsockname()[1]})
    try:
        while not stopping.done():
            if idle and activity.busy == 0 and time.monotonic() - activity.last > idle:
                return f"idle for {idle:g} s (no SFTP request)"
            await asyncio.wait([stopping], timeout=min(1.0, idle / 4) if idle else 1.0)
        return str(stopping.result())
    finally:
        server.close()
        await server.wait_closed()


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="vfd-sftpd: %(levelname)s %(message)s"
    )
    try:
        spec = confine.read_spec()
        listener = socket.socket(fileno=spec.listen_fd)
        listener.setblocking(False)
        activity = Activity()
        preload()
        options = server_options(spec, activity)
        confine.confine(spec)
    except Exception as exc:
        confine.report(error=f"{type(exc).__name__}: {exc}")
        sys.exit(1)
    reason = asyncio.run(serve(spec, listener, options, activity))
    confine.report(stopped=reason)


if __name__ == "__main__":
    main()
