"""A session's status moves, and what plugins see of a session: the one place both are made.

Every status change goes through :func:`transition`: checked by the status machine
(``vfd.sessions.lifecycle``), stamped, and recorded as a :class:`SessionEvent` in the same
transaction — so ``vfd session info`` shows the whole history with times and reasons.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from vfd.config import Config
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.types import MountView, SessionView
from vfd.scheduling.slots import allotments_from_json, allotments_json
from vfd.sessions.lifecycle import FINAL, LIVE, check_transition
from vfd.store.models import (
    ComputeSession,
    SessionEvent,
    SessionMount,
    SessionStatus,
    User,
    utcnow,
)


def node_name(config: Config) -> str:
    """This node's name: ``[sessions] node``, else the host name."""
    return config.sessions.node or socket.gethostname()


def transition(
    session: Session,
    row: ComputeSession,
    new: SessionStatus,
    reason: str | None = None,
    *,
    plugin: str | None = None,
) -> None:
    """Move ``row`` to ``new`` (checked), record why and by which plugin, in ``session``'s
    transaction. Final statuses stamp ``terminated_at``; ``running`` stamps ``started_at``.

    The move is a compare-and-set on the stored status: when another transaction (a destroy,
    the launcher, the scheduler of another node) moved the session since ``row`` was read,
    nothing is written and ``invalid_status`` is raised with the status it has now — so no
    two writers can both act on one status.
    """
    check_transition(row.status, new, name=row.name)
    now = utcnow()
    session.flush()
    values: dict[str, Any] = {
        "status": new,
        "status_changed_at": now,
        "status_reason": reason,
        "status_plugin": plugin,
    }
    if new is SessionStatus.RUNNING:
        values.update(started_at=now, scheduler_verdict=None)
    if new in FINAL:
        values.update(terminated_at=now, scheduler_verdict=None)
    moved = session.execute(
        update(ComputeSession)
        .where(col(ComputeSession.id) == row.id)
        .where(col(ComputeSession.status) == row.status)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(moved, "rowcount", 1) != 1:
        old = row.status
        session.refresh(row)
        raise VfdError(
            ErrorCode.INVALID_STATUS,
            f"session {row.name!r} is {row.status.value} now (it was {old.value}); it cannot "
            f"become {new.value}",
            status=row.status.value,
            wanted=new.value,
        )
    for key, value in values.items():
        setattr(row, key, value)
    session.add(row)
    session.add(SessionEvent(session_id=row.id, at=now, status=new, reason=reason, plugin=plugin))


def touch(session: Session, session_id: uuid.UUID) -> None:
    """Stamp ``session_id``'s last activity now (an exec or a shell opened or closed, a
    reaper sample of a busy container): the idle reaper (``vfd.daemon.reaper``) counts
    idleness from it."""
    session.execute(
        update(ComputeSession)
        .where(col(ComputeSession.id) == session_id)
        .values(last_activity_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def record_created(session: Session, row: ComputeSession, reason: str = "requested") -> None:
    """The first event of a new session (``pending``; ``preparing`` for a storage one)."""
    session.add(
        SessionEvent(session_id=row.id, at=row.created_at, status=row.status, reason=reason)
    )


def load(session: Session, session_id: uuid.UUID) -> ComputeSession:
    """The session ``session_id``, or ``session_not_found``."""
    row = session.get(ComputeSession, session_id)
    if row is None:
        raise VfdError(ErrorCode.SESSION_NOT_FOUND, f"no session {session_id}", id=str(session_id))
    return row


def mounts_of(session: Session, session_id: uuid.UUID) -> Sequence[SessionMount]:
    return session.exec(
        select(SessionMount)
        .where(SessionMount.session_id == session_id)
        .order_by(col(SessionMount.target))
    ).all()


def view_of(session: Session, row: ComputeSession) -> SessionView:
    """What plugins see of ``row`` (its user's email and its mounts read in ``session``)."""
    user = session.get(User, row.user_id)
    mounts = tuple(
        MountView(
            folder=m.name,
            folder_id=m.vfolder_id,
            target=m.target,
            permission=m.permission.value,
            automount=m.automount,
        )
        for m in mounts_of(session, row.id)
    )
    return SessionView(
        id=row.id,
        name=row.name,
        user_id=row.user_id,
        user_email=user.email if user is not None else "",
        uid=row.uid,
        gid=row.gid,
        node=row.node,
        image=row.image,
        command=tuple(row.command),
        env=dict(row.env),
        cpu=row.cpu,
        memory=row.memory,
        mounts=mounts,
        status=row.status.value,
        created_at=row.created_at,
        container_id=row.container_id,
        exit_code=row.exit_code,
        kind=row.kind.value,
        slots=dict(row.slots or {}),
        allocation=allotments_from_json(row.allocation),
    )


def find(session: Session, user: User, ref: str) -> ComputeSession:
    """The caller's session named by ``ref``: its id, a unique prefix of its id's hex (at least
    4 characters, dashes ignored), or the name of one of its live sessions.

    Raises ``session_not_found``, or ``ambiguous_id`` naming the candidates.
    """
    ref = ref.strip()
    mine = select(ComputeSession).where(ComputeSession.user_id == user.id)
    try:
        wanted = uuid.UUID(ref)
    except ValueError:
        wanted = None
    if wanted is not None:
        row = session.exec(mine.where(ComputeSession.id == wanted)).first()
        if row is not None:
            return row
    live = list(LIVE)
    named = session.exec(
        mine.where(ComputeSession.name == ref).where(col(ComputeSession.status).in_(live))
    ).all()
    if len(named) == 1:
        return named[0]
    prefix = ref.replace("-", "").lower()
    if len(prefix) >= 4 and all(c in "0123456789abcdef" for c in prefix):
        # uuids are stored natively on PostgreSQL and as hex on SQLite: compare in Python
        hits = [row for row in session.exec(mine).all() if row.id.hex.startswith(prefix)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise VfdError(
                ErrorCode.AMBIGUOUS_ID,
                f"{ref!r} is the start of {len(hits)} session ids; give more of it",
                ref=ref,
                candidates=sorted(row.id.hex[:12] for row in hits)[:20],
            )
    ended = session.exec(
        mine.where(ComputeSession.name == ref).order_by(col(ComputeSession.created_at).desc())
    ).first()
    if ended is not None:
        short = ended.id.hex[:8]
        raise VfdError(
            ErrorCode.SESSION_NOT_FOUND,
            f"you have no live session {ref!r}; your last session of that name, {short}, "
            f"is {ended.status.value} (an ended session is named by its id: {short})",
            ref=ref,
            ended=short,
        )
    raise VfdError(ErrorCode.SESSION_NOT_FOUND, f"you have no session {ref!r}", ref=ref)


def session_json(session: Session, row: ComputeSession, *, events: bool = False) -> dict[str, Any]:
    """The Session JSON of the API (docs/api.md "Sessions"); ``events`` adds the history."""
    user = session.get(User, row.user_id)
    out: dict[str, Any] = {
        "id": str(row.id),
        "short_id": row.id.hex[:8],
        "kind": row.kind.value,
        "name": row.name,
        "user": user.email if user is not None else None,
        "status": row.status.value,
        "status_reason": row.status_reason,
        "status_plugin": row.status_plugin,
        "status_changed_at": _iso(row.status_changed_at),
        "verdict": row.scheduler_verdict,
        "verdicts": list(row.scheduler_verdicts or []),
        "group": row.group,
        "lifetime": row.lifetime,
        "last_activity_at": _iso(row.last_activity_at),
        "image": row.image,
        "command": list(row.command),
        "env": dict(row.env),
        "cpu": row.cpu,
        "memory": row.memory,
        "node": row.node,
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at),
        "terminated_at": _iso(row.terminated_at),
        "exit_code": row.exit_code,
        "container_id": row.container_id,
        "auto_remove": row.auto_remove,
        "slots": dict(row.slots or {}),
        "allocation": allotments_json(allotments_from_json(row.allocation)),
        "mounts": [
            {
                "folder": m.name,
                "folder_id": str(m.vfolder_id),
                "target": m.target,
                "permission": m.permission.value,
                "automount": m.automount,
            }
            for m in mounts_of(session, row.id)
        ],
    }
    from vfd.daemon.services.session_apps import app_json, apps_of

    out["apps"] = [app_json(app) for app in apps_of(session, row.id)]
    if events:
        rows = session.exec(
            select(SessionEvent)
            .where(SessionEvent.session_id == row.id)
            .order_by(col(SessionEvent.at), col(SessionEvent.id))
        ).all()
        out["events"] = [
            {"at": _iso(e.at), "status": e.status.value, "reason": e.reason, "plugin": e.plugin}
            for e in rows
        ]
    return out


def iso(value: datetime | None) -> str | None:
    """``value`` in ISO 8601 with its time zone (UTC when the store dropped it)."""
    return _iso(value)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands naive datetimes back
        value = value.replace(tzinfo=UTC)
    return value.isoformat()
