"""Storage-only sessions: folders served by an app (SFTP, the file manager), no container.

A storage session is made on the node that is asked (no scheduling): it holds no cpu or
memory and is not counted among the user's compute sessions; a resource policy bounds how
many a user has at once (``max_storage_sessions``; without a policy, ``[apps]
max_storage_sessions``). It is stored ``preparing`` with its mounts (the folders named, with
the user's automount folders), its app is launched (:mod:`.session_apps`), and it becomes
``running``; a launch that fails or is vetoed ends it ``error`` or ``cancelled`` with the
reason, so nothing of it stays live. It ends ``terminated`` when its last app ends (an idle
SFTP server ends itself) or when it is destroyed (its apps stopped first); destroyed while
its app starts, it ends ``cancelled`` ("destroyed by … while its app started"), whichever of
the launch and the destroy ends it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, col, func, select

from vfd.daemon import runtime
from vfd.daemon.runtime import Pool
from vfd.daemon.services import app_registry, audit, session_apps, session_state
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.sessions import check_name, default_name
from vfd.enums import SessionKind
from vfd.errors import ErrorCode, VfdError
from vfd.sessions.lifecycle import LIVE
from vfd.store.models import (
    ComputeSession,
    ResourcePolicy,
    SessionStatus,
    User,
    utcnow,
)


@dataclass(frozen=True)
class StorageAsk:
    """``POST /v1/sessions/storage``."""

    mounts: list[str] = field(default_factory=list)
    """``NAME[:TARGET][:ro]`` each; the folder appears at the app's root under the target's
    last part (its name by default)."""
    app: str = "sftp"
    name: str | None = None
    port: int | None = None
    """The port the user would like the app on (when free)."""


def storage_limit(session: Session, daemon: Daemon, user: User) -> tuple[int, str]:
    """The most live storage sessions ``user`` may have (0 = unlimited), and where it is
    set."""
    if user.resource_policy is not None:
        row = session.get(ResourcePolicy, user.resource_policy)
        if row is not None:
            return row.max_storage_sessions, f"resource policy {row.name!r}"
    return daemon.config.apps.max_storage_sessions, "[apps] max_storage_sessions"


def check_ask(daemon: Daemon, ask: StorageAsk) -> None:
    if not ask.mounts:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT, "name at least one folder to serve", field="mounts"
        )
    if ask.name is not None:
        check_name(ask.name)
    if ask.port is not None and not 1024 <= ask.port <= 65535:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT, "port must be between 1024 and 65535", field="port"
        )
    app_registry.find(daemon, ask.app)


async def create(daemon: Daemon, caller: Caller, ask: StorageAsk) -> dict[str, Any]:
    """Make a storage session serving ``ask.mounts`` with app ``ask.app``; its Session JSON
    (``running``, its app's endpoint in ``apps``). Refused before anything is stored when a
    folder, a name or the user's limit says no; ended ``cancelled``/``error`` (and the
    error raised) when its app does not start."""
    check_ask(daemon, ask)
    live = runtime.current()
    session_id = await live.run(Pool.STORE, _store, daemon, caller, ask)
    try:
        await session_apps.launch(daemon, session_id, ask.app, port=ask.port)
    except BaseException as exc:
        await live.run(Pool.STORE, _failed, daemon, session_id, exc)
        raise
    out = await live.run(Pool.STORE, _started, daemon, session_id, ask.app)
    if out["status"] != SessionStatus.RUNNING.value:  # destroyed while its app started
        await session_apps.stop_session_apps(daemon, session_id, "its session ended")
    return out


def _store(daemon: Daemon, caller: Caller, ask: StorageAsk) -> uuid.UUID:
    from vfd.daemon.services.session_mounts import record_mounts, resolve_mounts

    user = caller.user
    session_apps.refuse_root(user.uid, user.gid)
    with daemon.naming() as session:
        limit, where = storage_limit(session, daemon, user)
        count = session.scalar(
            select(func.count())
            .select_from(ComputeSession)
            .where(ComputeSession.user_id == user.id)
            .where(ComputeSession.kind == SessionKind.STORAGE)
            .where(col(ComputeSession.status).in_(list(LIVE)))
        )
        if limit and (count or 0) >= limit:
            raise VfdError(
                ErrorCode.POLICY_VIOLATION,
                f"you have {count} live storage session(s); {where} allows {limit} "
                "(end one with `vfd session destroy ID`)",
                limit="max_storage_sessions",
                asked=(count or 0) + 1,
                allowed=limit,
                policy=user.resource_policy or "",
            )
        planned = resolve_mounts(session, user, ask.mounts)
        names = [session_apps.root_name(m.target) for m in planned]
        for m, root in zip(planned, names, strict=True):
            if names.count(root) > 1:
                raise VfdError(
                    ErrorCode.INVALID_MOUNT,
                    f"two folders would both appear as /{root}: give one another target "
                    f"(-m {m.name}:OTHER)",
                    spec=m.name,
                    reason="same name at the root",
                )
        name = ask.name or default_name(ask.app)
        taken = session.exec(
            select(ComputeSession.id)
            .where(ComputeSession.user_id == user.id)
            .where(ComputeSession.name == name)
            .where(col(ComputeSession.status).in_(list(LIVE)))
        ).first()
        if taken is not None:
            if ask.name is not None:
                raise VfdError(
                    ErrorCode.SESSION_EXISTS,
                    f"you have a live session named {name!r} already; give another --name, "
                    "or destroy that one",
                    name=name,
                )
            name = default_name(ask.app)
        now = utcnow()
        row = ComputeSession(
            kind=SessionKind.STORAGE,
            name=name,
            user_id=user.id,
            uid=user.uid,
            gid=user.gid,
            node=session_state.node_name(daemon.config),
            image="",
            command=[],
            env={},
            cpu=0.0,
            memory=0,
            group=daemon.config.sessions.group,
            status=SessionStatus.PREPARING,
            status_reason=f"starting its app {ask.app}",
            created_at=now,
            status_changed_at=now,
        )
        session.add(row)
        session.flush()
        record_mounts(session, row.id, planned)
        session_state.record_created(session, row, reason=f"storage session for {ask.app}")
        audit.record(session, caller, "session.create", name, id=str(row.id), app=ask.app)
        return row.id


DESTROYED = "destroyed by "
"""How the reason of a storage session destroyed while its app starts begins: the destroy
marks it (it stays ``preparing`` until its apps are stopped), and whoever ends it then —
the launch that fails or returns, or the destroy — ends it ``cancelled`` with that
reason."""


def _destroy_asked(row: ComputeSession) -> str | None:
    """The reason a destroy marked a ``preparing`` storage session with; None unmarked."""
    reason = row.status_reason or ""
    if row.status is SessionStatus.PREPARING and reason.startswith(DESTROYED):
        return reason
    return None


def _cancel(session: Session, row: ComputeSession, reason: str) -> None:
    """End a storage session a destroy marked ``cancelled``, unless another ender (the
    launch, the destroy) did so first."""
    try:
        session_state.transition(session, row, SessionStatus.CANCELLED, reason)
    except VfdError as exc:
        if exc.code is not ErrorCode.INVALID_STATUS:
            raise


def _failed(daemon: Daemon, session_id: uuid.UUID, exc: BaseException) -> None:
    """End a storage session whose app did not start: ``cancelled`` by a plugin's veto or
    a destroy meanwhile, ``error`` otherwise."""
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if (destroyed := _destroy_asked(row)) is not None:
            _cancel(session, row, destroyed)
        elif row.status in (SessionStatus.PREPARING, SessionStatus.RUNNING):
            if isinstance(exc, VfdError) and exc.code is ErrorCode.APP_REJECTED:
                session_state.transition(
                    session,
                    row,
                    SessionStatus.CANCELLED,
                    str(exc.details.get("reason", exc.message)),
                    plugin=str(exc.details.get("plugin")),
                )
            else:
                why = exc.message if isinstance(exc, VfdError) else "its start was interrupted"
                ending = (
                    SessionStatus.ERROR
                    if row.status is SessionStatus.PREPARING
                    else SessionStatus.TERMINATED
                )
                session_state.transition(session, row, ending, f"could not start: {why}")


def _started(daemon: Daemon, session_id: uuid.UUID, app: str) -> dict[str, Any]:
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if (destroyed := _destroy_asked(row)) is not None:
            _cancel(session, row, destroyed)
            session.flush()
        elif row.status is SessionStatus.PREPARING:
            session_state.transition(session, row, SessionStatus.RUNNING, f"its app {app} serves")
            session.flush()
        return session_state.session_json(session, row, events=True)


async def destroy(daemon: Daemon, caller: Caller, row_id: uuid.UUID) -> None:
    """End a live storage session: ``terminating``, its apps stopped, ``terminated``."""
    live = runtime.current()
    by = caller.actor.email
    moved = await live.run(Pool.STORE, _to_terminating, daemon, caller, row_id, by)
    if moved is None:
        return
    view, was_running = moved
    if was_running:
        await daemon.plugins.notify("vfd_session_before_stop", session=view)
    await session_apps.stop_session_apps(daemon, row_id, f"its session was destroyed by {by}")
    await live.run(Pool.STORE, _to_terminated, daemon, row_id, by)


def _to_terminating(
    daemon: Daemon, caller: Caller, session_id: uuid.UUID, by: str
) -> tuple[Any, bool] | None:
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if row.status is SessionStatus.RUNNING:
            session_state.transition(session, row, SessionStatus.TERMINATING, f"destroyed by {by}")
            audit.record(session, caller, "session.destroy", row.name, id=str(row.id))
            session.flush()
            return session_state.view_of(session, row), True
        if row.status is SessionStatus.TERMINATING:
            return session_state.view_of(session, row), False
        if row.status is SessionStatus.PREPARING:  # its launch is in flight: stop its app
            marked = session.execute(  # only while it is still preparing
                update(ComputeSession)
                .where(col(ComputeSession.id) == row.id)
                .where(col(ComputeSession.status) == SessionStatus.PREPARING)
                .where(
                    or_(
                        col(ComputeSession.status_reason).is_(None),
                        ~col(ComputeSession.status_reason).startswith(DESTROYED),
                    )
                )
                .values(status_reason=f"{DESTROYED}{by} while its app started")
                .execution_options(synchronize_session=False)
            )
            if getattr(marked, "rowcount", 0) == 1:
                audit.record(session, caller, "session.destroy", row.name, id=str(row.id))
            return session_state.view_of(session, row), False
        return None


def _to_terminated(daemon: Daemon, session_id: uuid.UUID, by: str) -> None:
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if row.status is SessionStatus.TERMINATING:
            session_state.transition(
                session, row, SessionStatus.TERMINATED, f"stopped (destroyed by {by})"
            )
        elif row.status is SessionStatus.PREPARING:
            _cancel(session, row, _destroy_asked(row) or f"{DESTROYED}{by} while its app started")
