"""Quota scopes: list, show and set limits, rescan, and a folder's usage.

Limits live in the store (``QuotaScope``) and are pushed to mountd; live usage comes from
mountd (O(1): its in-memory counters) and falls back to the last flushed figures in the store
when mountd does not answer (``"live": false``).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from vfd.daemon.services.access import find
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.hosts import ensure_scope
from vfd.daemon.services.projects import find_project
from vfd.daemon.services.users import find_user
from vfd.errors import ErrorCode, VfdError
from vfd.folders.layout import Scope
from vfd.store.models import Project, QuotaScope, User, utcnow


def resolve_scope(
    session: Session,
    daemon: Daemon,
    *,
    scope: str | None,
    user: str | None,
    project: str | None,
    host: str | None,
) -> tuple[str, str]:
    """``(host, scope)`` from exactly one of a scope string, a user's email, a project's name;
    a scope whose user or project does not exist is ``404 user_not_found`` /
    ``project_not_found`` (no limits are kept for nobody)."""
    given = [x for x in (scope, user, project) if x]
    if len(given) != 1:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            "name exactly one of a scope (user:<uuid> / project:<uuid>), a user or a project",
            field="scope",
        )
    host = host or daemon.config.default_host
    daemon.config.host_path(host)  # unknown host -> host_not_found
    if scope:
        parsed = Scope.parse(scope)
        if parsed.kind == "user" and session.get(User, parsed.owner) is None:
            raise VfdError(
                ErrorCode.USER_NOT_FOUND, f"no user owns scope {parsed}", scope=str(parsed)
            )
        if parsed.kind == "project" and session.get(Project, parsed.owner) is None:
            raise VfdError(
                ErrorCode.PROJECT_NOT_FOUND, f"no project owns scope {parsed}", scope=str(parsed)
            )
        return host, str(parsed)
    if user:
        return host, str(Scope("user", find_user(session, user).id))
    assert project
    return host, str(Scope("project", find_project(session, project).id))


def _scope_json(row: QuotaScope, live: dict[str, Any] | None) -> dict[str, Any]:
    """A scope's limits and use; ``over_limit`` names the limits its use is above (a limit set
    below the use: writes that add bytes or files fail with EDQUOT until use drops below)."""
    body: dict[str, Any] = {
        "host": row.host,
        "scope": row.scope,
        "max_bytes": row.max_bytes,
        "max_files": row.max_files,
        "used_bytes": row.used_bytes,
        "used_files": row.used_files,
        "live": False,
    }
    if live is not None:
        body.update(used_bytes=live["used_bytes"], used_files=live["used_files"], live=True)
    body["over_limit"] = [
        kind for kind in ("bytes", "files") if 0 < body[f"max_{kind}"] < body[f"used_{kind}"]
    ]
    return body


def _owner(session: Session, scope: str) -> str | None:
    """The email of a user scope's user, the name of a project scope's project."""
    parsed = Scope.parse(scope)
    if parsed.kind == "user":
        user = session.get(User, parsed.owner)
        return user.email if user is not None else None
    project = session.get(Project, parsed.owner)
    return project.name if project is not None else None


def list_quotas(daemon: Daemon, caller: Caller, *, host: str | None) -> dict[str, Any]:
    """Every quota scope (of one host with ``host``): owner, limits and use."""
    caller.require_admin()
    query = select(QuotaScope).order_by(col(QuotaScope.host), col(QuotaScope.scope))
    if host:
        daemon.config.host_path(host)  # unknown host -> host_not_found
        query = query.where(QuotaScope.host == host)
    with daemon.session() as session:
        rows = session.exec(query).all()
        owners = {row.scope: _owner(session, row.scope) for row in rows}
    scopes = [
        {"owner": owners[row.scope], **_scope_json(row, daemon.mountd.usage(row.host, row.scope))}
        for row in rows
    ]
    return {"scopes": scopes}


def _find_row(session: Session, host: str, scope: str) -> QuotaScope:
    row = session.exec(
        select(QuotaScope).where(QuotaScope.host == host, QuotaScope.scope == scope)
    ).first()
    if row is None:
        raise VfdError(
            ErrorCode.SCOPE_NOT_FOUND,
            f"no quota scope {scope} on host {host} (it is made with the owner's first folder)",
            host=host,
            scope=scope,
        )
    return row


def show_quota(daemon: Daemon, caller: Caller, **which: str | None) -> dict[str, Any]:
    caller.require_admin()
    with daemon.session() as session:
        host, scope = resolve_scope(session, daemon, **which)
        row = _find_row(session, host, scope)
    return _scope_json(row, daemon.mountd.usage(host, scope))


def set_quota(
    daemon: Daemon,
    caller: Caller,
    *,
    max_bytes: int | None,
    max_files: int | None,
    **which: str | None,
) -> dict[str, Any]:
    """Set a scope's limits (made if missing); mountd applies them at once."""
    caller.require_admin()
    if max_bytes is None and max_files is None:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, "give max_bytes and/or max_files", field="body")
    with daemon.session() as session:
        host, scope = resolve_scope(session, daemon, **which)
        row, _ = ensure_scope(session, host, scope, 0)
        if max_bytes is not None:
            row.max_bytes = max_bytes
        if max_files is not None:
            row.max_files = max_files
        row.updated_at = utcnow()
        session.add(row)
    daemon.mountd.set_limits(host, scope, row.max_bytes, row.max_files)
    return _scope_json(row, daemon.mountd.usage(host, scope))


def rescan(
    daemon: Daemon, caller: Caller, *, host: str | None, **which: str | None
) -> dict[str, Any]:
    """Recount usage on disk (all scopes, one host's, or one scope) and report each drift."""
    caller.require_admin()
    fields: dict[str, str] = {}
    if any(which.values()):
        with daemon.session() as session:
            fields["host"], fields["scope"] = resolve_scope(session, daemon, host=host, **which)
    elif host:
        daemon.config.host_path(host)
        fields["host"] = host
    result = daemon.mountd.rescan(**fields)
    scopes = result.get("scopes", [])
    drifted = [s for s in scopes if s.get("before") != s.get("after")]
    return {"scopes": scopes, "drifted": len(drifted)}


def folder_usage(daemon: Daemon, caller: Caller, name: str) -> dict[str, Any]:
    """The usage and limits of the scope a folder belongs to (any permission may read it)."""
    with daemon.session() as session:
        folder = find(session, caller.user, name).folder
        row = _find_row(session, folder.host, folder.scope)
    body = _scope_json(row, daemon.mountd.usage(folder.host, folder.scope))
    return {"vfolder": name, **body}
