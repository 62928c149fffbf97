"""Resource policies: what a user may create (folder count, hosts) and their quota size.

A user's policy is ``user.resource_policy`` when set, else the config's ``default_policy``.
``max_quota_scope_size`` becomes the byte limit of the user's quota scopes: when a scope is
first made, and again whenever the policy or the user's assignment changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlmodel import Session, col, select

from vfd.config import PolicyDefaults
from vfd.daemon.services import audit
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.render import policy_json, user_json
from vfd.errors import ErrorCode, VfdError
from vfd.store.models import QuotaScope, ResourcePolicy, User

_POLICY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def find_policy(session: Session, name: str) -> ResourcePolicy:
    policy = session.get(ResourcePolicy, name)
    if policy is None:
        raise VfdError(ErrorCode.POLICY_NOT_FOUND, f"no resource policy {name!r}", policy=name)
    return policy


def effective_policy(session: Session, daemon: Daemon, user: User) -> PolicyDefaults:
    """The limits that apply to ``user``."""
    if user.resource_policy is None:
        return daemon.config.default_policy
    row = find_policy(session, user.resource_policy)
    return PolicyDefaults(
        max_vfolder_count=row.max_vfolder_count,
        max_quota_scope_size=row.max_quota_scope_size,
        allowed_hosts=tuple(row.allowed_hosts),
    )


def _check_hosts(daemon: Daemon, hosts: Iterable[str]) -> list[str]:
    out = []
    for host in hosts:
        if host not in daemon.config.hosts:
            raise VfdError(
                ErrorCode.HOST_NOT_FOUND,
                f"unknown storage host {host!r}",
                host=host,
                field="allowed_hosts",
            )
        out.append(host)
    return out


def _check_number(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT, f"{field} must be a non-negative integer", field=field
        )
    return value


def apply_quota(session: Session, daemon: Daemon, users: Iterable[User]) -> list[QuotaScope]:
    """Set the byte limit of the users' existing scopes from their policies; the changed rows."""
    changed = []
    for user in users:
        size = effective_policy(session, daemon, user).max_quota_scope_size
        rows = session.exec(
            select(QuotaScope).where(QuotaScope.scope == f"user:{user.id.hex}")
        ).all()
        for row in rows:
            if row.max_bytes != size:
                row.max_bytes = size
                session.add(row)
                changed.append(row)
    return changed


def tell_limits(daemon: Daemon, scopes: Iterable[QuotaScope]) -> None:
    """Pass new limits on to mountd (after the commit)."""
    for row in scopes:
        daemon.mountd.set_limits(row.host, row.scope, row.max_bytes, row.max_files)


def create_policy(
    daemon: Daemon,
    caller: Caller,
    *,
    name: str,
    max_vfolder_count: int = 0,
    max_quota_scope_size: int = 0,
    allowed_hosts: list[str] | None = None,
) -> dict[str, Any]:
    caller.require_admin()
    if not _POLICY_NAME.match(name):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            "policy names have 1-64 letters, digits, '.', '_' or '-'",
            field="name",
        )
    with daemon.session() as session:
        if session.get(ResourcePolicy, name) is not None:
            raise VfdError(ErrorCode.POLICY_EXISTS, f"policy {name!r} already exists", policy=name)
        policy = ResourcePolicy(
            name=name,
            max_vfolder_count=_check_number(max_vfolder_count, "max_vfolder_count"),
            max_quota_scope_size=_check_number(max_quota_scope_size, "max_quota_scope_size"),
            allowed_hosts=_check_hosts(daemon, allowed_hosts or []),
        )
        session.add(policy)
        audit.record(session, caller, "policy.create", name, **policy_json(policy))
        return policy_json(policy)


def list_policies(daemon: Daemon, caller: Caller) -> dict[str, Any]:
    caller.require_admin()
    with daemon.session() as session:
        rows = session.exec(select(ResourcePolicy).order_by(col(ResourcePolicy.name))).all()
        return {"policies": [policy_json(p) for p in rows]}


def patch_policy(
    daemon: Daemon, caller: Caller, name: str, changes: dict[str, Any]
) -> dict[str, Any]:
    caller.require_admin()
    with daemon.session() as session:
        policy = find_policy(session, name)
        for key, value in changes.items():
            if key in ("max_vfolder_count", "max_quota_scope_size"):
                setattr(policy, key, _check_number(value, key))
            elif key == "allowed_hosts":
                if value is None:
                    raise VfdError(
                        ErrorCode.INVALID_ARGUMENT, "allowed_hosts cannot be null", field=key
                    )
                policy.allowed_hosts = _check_hosts(daemon, value)
            else:
                raise VfdError(ErrorCode.INVALID_ARGUMENT, f"unknown field {key!r}", field=key)
        session.add(policy)
        audit.record(session, caller, "policy.update", name, fields=sorted(changes))
        session.flush()
        users = session.exec(select(User).where(User.resource_policy == name)).all()
        scopes = apply_quota(session, daemon, users)
        body = policy_json(policy)
    tell_limits(daemon, scopes)
    return body


def assign_policy(daemon: Daemon, caller: Caller, name: str, *, email: str) -> dict[str, Any]:
    caller.require_admin()
    with daemon.session() as session:
        find_policy(session, name)
        user = session.exec(select(User).where(User.email == email)).first()
        if user is None:
            raise VfdError(ErrorCode.USER_NOT_FOUND, f"no user {email!r}", email=email)
        user.resource_policy = name
        session.add(user)
        audit.record(session, caller, "policy.assign", email, policy=name)
        session.flush()
        scopes = apply_quota(session, daemon, [user])
        body = user_json(user)
    tell_limits(daemon, scopes)
    return body
