"""Apps of sessions as the daemon keeps them: launched, recorded, followed, stopped.

An app is a server process over the session's folder views (one a plugin registers with
``vfd_register_apps``, :mod:`~vfd.daemon.services.app_registry`: ``sftp``, ``filebrowser``), run
as the session's user and confined to those folders (:mod:`vfd.apps.confine`), or a service
of the session's container reached through the daemon's proxy. Each is a ``sessionapp`` row:
``starting`` → ``running`` → ``stopped`` / ``failed``.

:func:`launch` asks every plugin (``vfd_app_before_launch``, which may veto), takes a port,
starts the process and waits until it serves, records it ``running`` and calls
``vfd_app_launched``; a task of the daemon follows it to its end, records it and calls
``vfd_app_stopped``. A storage-only session ends when its last app ends (an idle SFTP server
ends itself). :func:`stop_session_apps` stops a session's apps (its destroy), and
:func:`serve`, a task of the daemon, stops every app when the daemon stops and, at its start,
records the apps a previous daemon left as ended (they died with it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from vfd.apps import process
from vfd.apps.confine import ConfineSpec, FolderBind
from vfd.daemon import runtime
from vfd.daemon.runtime import Pool
from vfd.daemon.services import app_registry, session_groups, session_state
from vfd.daemon.services.context import Daemon
from vfd.enums import AppStatus, SessionKind
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.types import AppView, SessionView
from vfd.sessions.lifecycle import FINAL
from vfd.store.models import ComputeSession, SessionApp, SessionStatus, User, utcnow

log = logging.getLogger(__name__)

LIVE_APP = (AppStatus.STARTING, AppStatus.RUNNING)


def public_host(daemon: Daemon) -> str:
    """The host name printed in the commands that reach apps."""
    return daemon.config.apps.public_host or socket.getfqdn()


@dataclass(frozen=True)
class _Prepared:
    view: SessionView
    user: User
    folders: tuple[FolderBind, ...]
    groups: tuple[int, ...]


def _prepare(daemon: Daemon, session_id: uuid.UUID, name: str) -> _Prepared:
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if row.status not in (SessionStatus.PREPARING, SessionStatus.RUNNING):
            raise VfdError(
                ErrorCode.SESSION_NOT_RUNNING,
                f"session {row.name!r} is {row.status.value}: its apps cannot start",
                status=row.status.value,
            )
        refuse_other_node(daemon, row.name, row.node)
        live = session.exec(
            select(SessionApp)
            .where(SessionApp.session_id == session_id)
            .where(SessionApp.name == name)
            .where(col(SessionApp.status).in_(list(LIVE_APP)))
        ).first()
        if live is not None:
            raise VfdError(
                ErrorCode.INVALID_STATUS,
                f"session {row.name!r} runs app {name!r} already ({live.endpoint})",
                app=name,
                status=live.status.value,
            )
        user = session.get(User, row.user_id)
        if user is None:
            raise VfdError(ErrorCode.USER_NOT_FOUND, "the session's user is gone")
        refuse_root(row.uid, row.gid)
        session.expunge(user)
        mounts = list(session_state.mounts_of(session, row.id))
        root = daemon.config.mount_point
        folders = tuple(
            FolderBind(
                name=root_name(m.target),
                source=str(root / m.permission.value / m.vfolder_id.hex),
                read_only=m.permission.value != "rw",
            )
            for m in mounts
        )
        groups = session_groups.groups_for(session, user, mounts)
        return _Prepared(session_state.view_of(session, row), user, folders, tuple(groups))


def refuse_other_node(daemon: Daemon, name: str, node: str) -> None:
    """A session's apps start on the node it runs on, not on this one."""
    if node != session_state.node_name(daemon.config):
        raise VfdError(
            ErrorCode.SESSION_NOT_RUNNING,
            f"session {name!r} runs on node {node}; start its apps there",
            node=node,
        )


def refuse_root(uid: int, gid: int) -> None:
    """App servers never run as root (:func:`vfd.apps.confine.drop`): refuse, before anything
    is made or recorded, a session whose user is root's."""
    if uid == 0 or gid == 0:
        raise VfdError(
            ErrorCode.PERMISSION_DENIED,
            "app servers never run as root, and this session's user is root (uid 0): serve "
            "the folders as a user account (share them with one, or `vfd --as EMAIL ...`)",
            reason="root",
        )


def root_name(target: str) -> str:
    """The directory a mount gets at an app's root: the last part of its target."""
    return target.rstrip("/").rsplit("/", 1)[-1]


async def launch(
    daemon: Daemon, session_id: uuid.UUID, name: str, *, port: int | None = None
) -> dict[str, Any]:
    """Start app ``name`` of the session (see the module's docstring); its App JSON.

    Raises ``app_not_found``, ``session_not_running``, ``app_rejected`` (a plugin's veto),
    ``no_free_port`` or ``app_failed``; then nothing of the app is left (no row, process or
    port)."""
    app = app_registry.find(daemon, name)
    live = runtime.current()
    prepared = await live.run(Pool.STORE, _prepare, daemon, session_id, name)
    app_id = uuid.uuid4()
    starting = AppView(
        id=app_id, session_id=session_id, name=name, kind="process", status="starting", port=port
    )
    await daemon.plugins.before_app_launch(prepared.view, starting)
    how = await app_registry.plan(daemon, app, prepared.view, prepared.user, starting)
    options = daemon.config.apps
    sock = process.bind(options.listen, options.ports, port)
    bound = sock.getsockname()[1]
    spec = ConfineSpec(
        uid=prepared.user.uid,
        gid=prepared.user.gid,
        groups=prepared.groups,
        folders=prepared.folders,
        listen_fd=sock.fileno(),
        parent_pid=os.getpid(),
        options=how.options,
    )
    endpoint = how.endpoint.format(host=public_host(daemon), port=bound)
    try:
        await live.run(Pool.STORE, _insert, daemon, app_id, session_id, name, bound, how.secret)
    except BaseException:
        sock.close()
        raise
    try:
        started = await process.start(app_id, app.spec.module, spec, sock, options.start_timeout)
    except BaseException as exc:
        reason = exc.message if isinstance(exc, VfdError) else "its launch was interrupted"
        status = AppStatus.FAILED
        if isinstance(exc, VfdError) and exc.code is ErrorCode.SESSION_NOT_RUNNING:
            reason, status = str(exc.details.get("reason", reason)), AppStatus.STOPPED
        await asyncio.shield(live.run(Pool.STORE, _ended, daemon, app_id, status, reason))
        raise
    view = await live.run(Pool.STORE, _running, daemon, app_id, started.pid, endpoint)
    live.spawn(f"app {name} {app_id}", lambda: _follow(daemon, started))
    if view is None:  # its session ended while it started
        await started.stop("its session ended", options.stop_timeout)
        raise VfdError(
            ErrorCode.SESSION_NOT_RUNNING,
            f"session {prepared.view.name!r} ended while its app {name} started",
        )
    await daemon.plugins.notify("vfd_app_launched", session=prepared.view, app=view)
    return await live.run(Pool.STORE, _app_json_of, daemon, app_id)


def _insert(
    daemon: Daemon,
    app_id: uuid.UUID,
    session_id: uuid.UUID,
    name: str,
    port: int,
    secret: str | None,
) -> None:
    with daemon.session() as session:
        session.add(
            SessionApp(
                id=app_id,
                session_id=session_id,
                name=name,
                kind="process",
                port=port,
                status=AppStatus.STARTING,
                secret=secret,
            )
        )


def _running(daemon: Daemon, app_id: uuid.UUID, pid: int, endpoint: str) -> AppView | None:
    """Record the app serving; None when it was recorded ended meanwhile (its session
    ended). A compare-and-set on ``starting``, so that an end recorded meanwhile stays."""
    with daemon.session() as session:
        if not _moved(
            session,
            app_id,
            (AppStatus.STARTING,),
            status=AppStatus.RUNNING,
            pid=pid,
            endpoint=endpoint,
        ):
            return None
        return app_view(_load(session, app_id))


def _ended(daemon: Daemon, app_id: uuid.UUID, status: AppStatus, reason: str) -> AppView | None:
    """Record app ``app_id`` ended, once: None when it was already (see :func:`_end`)."""
    ended = _end(daemon, app_id, status, reason)
    return ended[0] if ended is not None else None


def _end(
    daemon: Daemon, app_id: uuid.UUID, status: AppStatus, reason: str
) -> tuple[AppView, AppStatus] | None:
    """Record app ``app_id`` ended, once: a compare-and-set on the live status it has, so
    that of several enders (its follower, its launch, the stop of its session) one alone
    records it and calls ``vfd_app_stopped``; that one gets the app and the status it had
    (``running``: it served; ``starting``: it never did), the others None."""
    with daemon.session() as session:
        while True:  # again only when it moved meanwhile (starting → running)
            raw = session.exec(select(SessionApp.status).where(SessionApp.id == app_id)).first()
            if raw is None or (had := AppStatus(raw)) not in LIVE_APP:
                return None
            if _moved(
                session,
                app_id,
                (had,),
                status=status,
                status_reason=reason[:1024],
                ended_at=utcnow(),
                secret=None,
            ):
                return app_view(_load(session, app_id)), had


def _moved(
    session: Session, app_id: uuid.UUID, statuses: tuple[AppStatus, ...], **values: Any
) -> bool:
    """Set ``values`` on app ``app_id`` if its status is one of ``statuses`` (one UPDATE,
    atomic in the store); whether it was."""
    done = session.execute(
        update(SessionApp)
        .where(col(SessionApp.id) == app_id)
        .where(col(SessionApp.status).in_(list(statuses)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return getattr(done, "rowcount", 0) == 1


def _load(session: Session, app_id: uuid.UUID) -> SessionApp:
    row = session.get(SessionApp, app_id)
    if row is None:
        raise VfdError(ErrorCode.APP_NOT_FOUND, f"no app {app_id}")
    return row


async def _follow(daemon: Daemon, app: process.AppProcess) -> None:
    """Follow an app server to its end; record it, tell plugins, end a storage session
    whose last app it was."""
    live = runtime.current()
    # cancelled (the daemon stops): the app stays known, so that serve() stops it
    reason = await app.wait()
    process.forget(app.app_id)
    failed = app.asked_to_stop is None and app.stopped_reason is None
    status = AppStatus.FAILED if failed else AppStatus.STOPPED
    ended = await live.run(Pool.STORE, _ended, daemon, app.app_id, status, reason)
    if ended is None:
        return
    view = await live.run(Pool.STORE, _session_view, daemon, ended.session_id)
    await daemon.plugins.notify("vfd_app_stopped", session=view, app=ended)
    await live.run(Pool.STORE, _end_if_last, daemon, ended.session_id, ended.name, reason)


def _session_view(daemon: Daemon, session_id: uuid.UUID) -> SessionView:
    with daemon.session() as session:
        return session_state.view_of(session, session_state.load(session, session_id))


def _end_if_last(daemon: Daemon, session_id: uuid.UUID, name: str, reason: str) -> None:
    """A running storage session with no live app left ends ``terminated``."""
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if row.kind is not SessionKind.STORAGE or row.status is not SessionStatus.RUNNING:
            return
        if _live_apps(session, session_id):
            return
        try:
            session_state.transition(
                session, row, SessionStatus.TERMINATED, f"its app {name} ended: {reason}"
            )
        except VfdError as exc:  # destroyed meanwhile: the destroy ends it
            if exc.code is not ErrorCode.INVALID_STATUS:
                raise


def _live_apps(session: Session, session_id: uuid.UUID) -> list[SessionApp]:
    return list(
        session.exec(
            select(SessionApp)
            .where(SessionApp.session_id == session_id)
            .where(col(SessionApp.status).in_(list(LIVE_APP)))
        ).all()
    )


async def stop_session_apps(daemon: Daemon, session_id: uuid.UUID, reason: str) -> None:
    """Stop every app of the session this daemon runs and wait until each is recorded
    ended (SIGTERM, then SIGKILL after ``[apps] stop_timeout``)."""
    live = runtime.current()
    ids = await live.run(Pool.STORE, _live_app_ids, daemon, session_id)
    timeout = daemon.config.apps.stop_timeout
    running = [app for app in (process.running(i) for i in ids) if app is not None]
    # apps with no process here (a previous daemon's, or one whose launch has not started
    # it yet): recorded ended here; the others by their follower (or their launch)
    orphans = [i for i in ids if process.running(i) is None]
    await asyncio.gather(*(app.stop(reason, timeout) for app in running))
    for app_id in orphans:
        ended = await live.run(Pool.STORE, _end, daemon, app_id, AppStatus.STOPPED, reason)
        if ended is not None and ended[1] is AppStatus.RUNNING:  # it served: tell plugins
            view = await live.run(Pool.STORE, _session_view, daemon, session_id)
            await daemon.plugins.notify("vfd_app_stopped", session=view, app=ended[0])
    # the followers record the ended processes; wait for them
    deadline = asyncio.get_running_loop().time() + timeout + 5
    while await live.run(Pool.STORE, _live_app_ids, daemon, session_id):
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)


def _live_app_ids(daemon: Daemon, session_id: uuid.UUID) -> list[uuid.UUID]:
    with daemon.session() as session:
        return [row.id for row in _live_apps(session, session_id)]


async def serve(daemon: Daemon) -> None:
    """A task of the daemon: at its start, end the apps (and the storage sessions of this
    node) a previous daemon left; at its stop, stop every app server it runs."""
    live = runtime.current()
    began = utcnow()
    try:
        await live.run(Pool.STORE, _end_leftovers, daemon, began)
        await asyncio.Event().wait()
    finally:
        await asyncio.shield(
            process.stop_all("the daemon stopped", daemon.config.apps.stop_timeout)
        )


DOWN = "the daemon stopped while it ran"


def _end_leftovers(daemon: Daemon, began: datetime) -> None:
    """End what a previous daemon of this node left: its apps (started before ``began``)
    and its storage sessions with no live app."""
    node = session_state.node_name(daemon.config)
    with daemon.session() as session:
        apps = session.exec(
            select(SessionApp, ComputeSession)
            .where(SessionApp.session_id == ComputeSession.id)
            .where(ComputeSession.node == node)
            .where(col(SessionApp.status).in_(list(LIVE_APP)))
            .where(col(SessionApp.started_at) < began)
        ).all()
        for app, _ in apps:
            if process.running(app.id) is not None:
                continue
            app.status, app.status_reason = AppStatus.STOPPED, DOWN
            app.ended_at, app.secret = utcnow(), None
            session.add(app)
        rows = session.exec(
            select(ComputeSession)
            .where(ComputeSession.node == node)
            .where(ComputeSession.kind == SessionKind.STORAGE)
            .where(col(ComputeSession.status).not_in(list(FINAL)))
        ).all()
        for row in rows:
            if _live_apps(session, row.id) or aware(row.created_at) >= began:
                continue
            ending = (
                SessionStatus.ERROR
                if row.status is SessionStatus.PREPARING
                else SessionStatus.TERMINATED
            )
            session_state.transition(session, row, ending, f"its apps ended: {DOWN}")


def aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def app_view(row: SessionApp) -> AppView:
    return AppView(
        id=row.id,
        session_id=row.session_id,
        name=row.name,
        kind=row.kind,
        status=row.status.value,
        port=row.port,
        endpoint=row.endpoint,
        pid=row.pid,
        reason=row.status_reason,
    )


def app_json(row: SessionApp) -> dict[str, Any]:
    """The App JSON of the API (docs/api.md "Sessions"): never its secret."""
    return {
        "id": str(row.id),
        "name": row.name,
        "kind": row.kind,
        "status": row.status.value,
        "status_reason": row.status_reason,
        "port": row.port,
        "endpoint": row.endpoint,
        "pid": row.pid,
        "started_at": session_state.iso(row.started_at),
        "ended_at": session_state.iso(row.ended_at),
    }


def apps_of(session: Session, session_id: uuid.UUID) -> list[SessionApp]:
    """Every app of the session, oldest first."""
    return list(
        session.exec(
            select(SessionApp)
            .where(SessionApp.session_id == session_id)
            .order_by(col(SessionApp.started_at), col(SessionApp.name))
        ).all()
    )


def _app_json_of(daemon: Daemon, app_id: uuid.UUID) -> dict[str, Any]:
    with daemon.session() as session:
        return app_json(_load(session, app_id))
