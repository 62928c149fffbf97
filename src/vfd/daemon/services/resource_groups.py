"""Resource groups: sets of nodes sharing one queue and one scheduler, and who may use each.

Every node belongs to one group (``agent.group``); every session asks for one
(``session.group``, default ``[sessions] group``). A group with no access rows is open to
everyone; otherwise only the users named and the members of the projects named may run
sessions in it (administrators too, acting for themselves). The group ``default`` is made by
the migrations and cannot be deleted; a group with nodes or live sessions cannot be either.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, delete, select

from vfd.daemon.services import audit
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.projects import find_project
from vfd.daemon.services.users import find_user
from vfd.enums import SessionKind
from vfd.errors import ErrorCode, VfdError
from vfd.sessions.lifecycle import LIVE
from vfd.store.models import (
    Agent,
    ComputeSession,
    Project,
    ProjectMember,
    ResourceGroup,
    ResourceGroupAccess,
    User,
)

GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_GROUP = "default"
DESCRIPTION_MAX = 1024


def find_group(session: Session, name: str) -> ResourceGroup:
    row = session.get(ResourceGroup, name)
    if row is None:
        raise VfdError(
            ErrorCode.GROUP_NOT_FOUND,
            f"no resource group {name!r} (`vfd admin resource-group list` shows them)",
            group=name,
        )
    return row


def may_use(session: Session, user: User, group: str) -> bool:
    """Whether ``user`` may run sessions in ``group`` by its access rows (open when none)."""
    rows = session.exec(select(ResourceGroupAccess).where(ResourceGroupAccess.group == group)).all()
    if not rows:
        return True
    if any(r.user_id == user.id for r in rows):
        return True
    projects = [r.project_id for r in rows if r.project_id is not None]
    if not projects:
        return False
    member = session.exec(
        select(ProjectMember.user_id)
        .where(ProjectMember.user_id == user.id)
        .where(col(ProjectMember.project_id).in_(projects))
    ).first()
    return member is not None


def _check_name(name: str) -> None:
    if not GROUP_NAME.fullmatch(name):
        raise VfdError(
            ErrorCode.INVALID_NAME,
            f"{name!r} is no resource group name: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            field="name",
            name=name,
        )


def _check_scheduler(daemon: Daemon, name: str) -> str:
    """An installed scheduler's name, or "" (the scheduling leader's ``[sessions]
    scheduler``)."""
    installed = sorted(daemon.plugins.schedulers)
    if name and name not in installed:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"no installed plugin registers a scheduler named {name!r} (installed: "
            f"{', '.join(installed) or 'none'})",
            field="scheduler",
            scheduler=name,
            installed=installed,
        )
    return name


def _check_description(text: str) -> str:
    if len(text) > DESCRIPTION_MAX or "\x00" in text:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"description: at most {DESCRIPTION_MAX} characters, no NUL",
            field="description",
        )
    return text


def _set_access(
    session: Session, group: str, *, users: list[str] | None, projects: list[str] | None
) -> None:
    """Replace the group's user rows (``users`` given) and project rows (``projects`` given)."""
    if users is not None:
        ids = {find_user(session, email).id for email in users}
        session.exec(
            delete(ResourceGroupAccess)
            .where(col(ResourceGroupAccess.group) == group)
            .where(col(ResourceGroupAccess.user_id).is_not(None))
        )
        for user_id in sorted(ids):
            session.add(ResourceGroupAccess(group=group, user_id=user_id))
    if projects is not None:
        pids = {find_project(session, name).id for name in projects}
        session.exec(
            delete(ResourceGroupAccess)
            .where(col(ResourceGroupAccess.group) == group)
            .where(col(ResourceGroupAccess.project_id).is_not(None))
        )
        for project_id in sorted(pids):
            session.add(ResourceGroupAccess(group=group, project_id=project_id))
    session.flush()


def group_json(session: Session, group: ResourceGroup) -> dict[str, Any]:
    rows = session.exec(
        select(ResourceGroupAccess).where(ResourceGroupAccess.group == group.name)
    ).all()
    users = [session.get(User, r.user_id) for r in rows if r.user_id is not None]
    projects = [session.get(Project, r.project_id) for r in rows if r.project_id is not None]
    nodes = session.exec(
        select(Agent.id).where(Agent.group == group.name).order_by(col(Agent.id))
    ).all()
    live = session.exec(
        select(func.count())
        .select_from(ComputeSession)
        .where(ComputeSession.group == group.name)
        .where(ComputeSession.kind == SessionKind.COMPUTE)  # storage ones are not placed
        .where(col(ComputeSession.status).in_(list(LIVE)))
    ).one()
    return {
        "name": group.name,
        "scheduler": group.scheduler or None,
        "description": group.description,
        "allowed_users": sorted(u.email for u in users if u is not None),
        "allowed_projects": sorted(p.name for p in projects if p is not None),
        "open": not rows,
        "nodes": list(nodes),
        "live_sessions": int(live),
    }


def create_group(
    daemon: Daemon,
    caller: Caller,
    *,
    name: str,
    scheduler: str = "",
    description: str = "",
    allowed_users: list[str] | None = None,
    allowed_projects: list[str] | None = None,
) -> dict[str, Any]:
    """``POST /v1/admin/resource-groups``."""
    caller.require_admin()
    _check_name(name)
    _check_scheduler(daemon, scheduler)
    with daemon.session() as session:
        if session.get(ResourceGroup, name) is not None:
            raise VfdError(ErrorCode.GROUP_EXISTS, f"resource group {name!r} exists", group=name)
        row = ResourceGroup(
            name=name, scheduler=scheduler, description=_check_description(description)
        )
        session.add(row)
        session.flush()
        _set_access(session, name, users=allowed_users or [], projects=allowed_projects or [])
        body = group_json(session, row)
        audit.record(session, caller, "group.create", name, scheduler=scheduler)
        return body


def list_groups(daemon: Daemon, caller: Caller) -> dict[str, Any]:
    """``GET /v1/admin/resource-groups``."""
    caller.require_admin()
    with daemon.session() as session:
        rows = session.exec(select(ResourceGroup).order_by(col(ResourceGroup.name))).all()
        return {"groups": [group_json(session, g) for g in rows]}


def group_info(daemon: Daemon, caller: Caller, name: str) -> dict[str, Any]:
    """``GET /v1/admin/resource-groups/{name}``."""
    caller.require_admin()
    with daemon.session() as session:
        return group_json(session, find_group(session, name))


def patch_group(
    daemon: Daemon, caller: Caller, name: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """``PATCH /v1/admin/resource-groups/{name}``: ``scheduler``, ``description``, and
    ``allowed_users``/``allowed_projects`` (each, when given, replaces that kind of row; both
    empty opens the group to everyone)."""
    caller.require_admin()
    with daemon.session() as session:
        row = find_group(session, name)
        for key, value in changes.items():
            if value is None:
                raise VfdError(ErrorCode.INVALID_ARGUMENT, f"{key} cannot be null", field=key)
            if key == "scheduler":
                row.scheduler = _check_scheduler(daemon, value)
            elif key == "description":
                row.description = _check_description(value)
            elif key not in ("allowed_users", "allowed_projects"):
                raise VfdError(ErrorCode.INVALID_ARGUMENT, f"unknown field {key!r}", field=key)
        session.add(row)
        _set_access(
            session,
            name,
            users=changes.get("allowed_users"),
            projects=changes.get("allowed_projects"),
        )
        audit.record(session, caller, "group.update", name, fields=sorted(changes))
        return group_json(session, row)


def delete_group(daemon: Daemon, caller: Caller, name: str) -> dict[str, Any]:
    """``DELETE /v1/admin/resource-groups/{name}``: refused (``group_in_use``) while nodes
    belong to it or sessions in it are live; ``default`` is never deleted."""
    caller.require_admin()
    with daemon.session() as session:
        row = find_group(session, name)
        if name == DEFAULT_GROUP:
            raise VfdError(
                ErrorCode.GROUP_IN_USE,
                "the resource group 'default' cannot be deleted (new nodes and sessions use it)",
                group=name,
            )
        body = group_json(session, row)
        if body["nodes"] or body["live_sessions"]:
            raise VfdError(
                ErrorCode.GROUP_IN_USE,
                f"resource group {name!r} has {len(body['nodes'])} node(s) and "
                f"{body['live_sessions']} live session(s); move its nodes "
                "(`vfd admin node set-group`) and end its sessions first",
                group=name,
                nodes=body["nodes"],
                live_sessions=body["live_sessions"],
            )
        session.exec(delete(ResourceGroupAccess).where(col(ResourceGroupAccess.group) == name))
        session.delete(row)
        audit.record(session, caller, "group.delete", name)
        return body
