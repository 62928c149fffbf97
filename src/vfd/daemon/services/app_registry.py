"""The apps sessions may run: those the daemon's plugins register (``vfd_register_apps``;
vfd's own ``sftp`` and ``filebrowser`` are built-in plugins), and what planning one launch
hands the app's ``plan`` (:class:`~vfd.plugins.types.AppContext`).

A blocked or failed plugin's apps are not offered: launching one is ``app_not_found``, and
``vfd session apps`` does not list it.
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass

from sqlmodel import col, select

from vfd.daemon import runtime
from vfd.daemon.runtime import Pool
from vfd.daemon.services.context import Daemon
from vfd.daemon.services.files import identity_of
from vfd.daemon.userfs import FolderFS
from vfd.enums import Ownership, VFolderStatus
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.types import AppContext, AppLaunch, AppSpec, AppView, SessionView
from vfd.store.models import User, VFolder

log = logging.getLogger(__name__)

READ_MAX = 1024 * 1024
"""The most :attr:`AppContext.read_user_file` reads of a file."""


@dataclass(frozen=True)
class Registered:
    """An app as a plugin registered it."""

    plugin: str
    spec: AppSpec


def names(daemon: Daemon) -> list[str]:
    """The names of the apps offered, sorted."""
    return sorted(daemon.plugins.apps)


def find(daemon: Daemon, name: str) -> Registered:
    """App ``name`` (``app_not_found`` when no loaded plugin registers it)."""
    got = daemon.plugins.apps.get(name)
    if got is None:
        known = ", ".join(names(daemon)) or "none"
        raise VfdError(ErrorCode.APP_NOT_FOUND, f"no app named {name!r} (known: {known})", app=name)
    return Registered(*got)


def linked(daemon: Daemon, name: str) -> bool:
    """Whether app ``name``'s endpoint with its token is the URL its user opens."""
    got = daemon.plugins.apps.get(name)
    return got is not None and got[1].link


async def plan(
    daemon: Daemon, app: Registered, session: SessionView, user: User, starting: AppView
) -> AppLaunch:
    """Call the app's ``plan``; ``app_failed`` naming its plugin when it raises or answers
    something else than an :class:`AppLaunch`."""
    live = runtime.current()

    async def read_user_file(folder: str, name: str) -> bytes | None:
        return await live.run(Pool.FILES, read_own_file, daemon, user, folder, name)

    ctx = AppContext(
        session=session,
        app=starting,
        username=user.username,
        options=daemon.config.plugins.get(app.plugin, {}),
        config=daemon.config,
        read_user_file=read_user_file,
    )
    try:
        got = app.spec.plan(ctx)
        if inspect.isawaitable(got):
            got = await got
    except VfdError:
        raise
    except Exception as exc:
        log.exception("plugin %s failed planning app %s", app.plugin, app.spec.name)
        raise VfdError(
            ErrorCode.APP_FAILED,
            f"plugin {app.plugin} failed planning app {app.spec.name!r}: "
            f"{type(exc).__name__}: {exc}",
            plugin=app.plugin,
            app=app.spec.name,
        ) from None
    if not isinstance(got, AppLaunch):
        raise VfdError(
            ErrorCode.APP_FAILED,
            f"plugin {app.plugin}: the plan of app {app.spec.name!r} returned "
            f"{type(got).__name__}, not an AppLaunch",
            plugin=app.plugin,
            app=app.spec.name,
        )
    return got


def read_own_file(daemon: Daemon, user: User, folder_name: str, name: str) -> bytes | None:
    """The file ``name`` at the top of ``user``'s own folder ``folder_name``, read as the user
    through its ``ro`` view (a symbolic link there is not followed; at most
    :data:`READ_MAX` bytes). None when there is no such folder or file, or when it cannot be
    read (a warning in the log)."""
    with daemon.session() as session:
        folder = session.exec(
            select(VFolder)
            .where(VFolder.user_id == user.id)
            .where(VFolder.ownership == Ownership.USER)
            .where(VFolder.name == folder_name)
            .where(col(VFolder.status) == VFolderStatus.READY)
        ).first()
        if folder is None:
            return None
        ident = identity_of(session, user, folder)
    root = daemon.config.mount_point / "ro" / folder.id.hex
    where = f"{folder_name}/{name} of {user.username}"
    try:
        fd, _st = FolderFS(str(root), ident).open_file(name)
    except VfdError as exc:
        if exc.code is not ErrorCode.PATH_NOT_FOUND:
            log.warning("apps: %s not read (%s)", where, exc)
        return None
    try:
        return os.read(fd, READ_MAX)
    except OSError as exc:
        log.warning("apps: %s not read (%s)", where, exc)
        return None
    finally:
        os.close(fd)
