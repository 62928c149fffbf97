"""Resource policies: what a user may create (folder count, hosts) and their quota size, and
the limits of their compute sessions.

A user's policy is ``user.resource_policy`` when set, else the config's ``default_policy``.
``max_quota_scope_size`` becomes the byte limit of the user's quota scopes: when a scope is
first made, and again whenever the policy or the user's assignment changes.

Session limits (docs/resource-groups.md): ``max_sessions`` live (compute) sessions at once,
``max_storage_sessions`` live storage-only sessions (docs/apps.md),
``max_session_cpu`` and ``max_session_memory`` for all of them together, ``idle_timeout`` and
``max_lifetime`` in seconds, ``allowed_images`` (fnmatch patterns) and ``allowed_groups``.
0 or empty means no limit; users without a policy have none.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from vfd.config import PolicyDefaults
from vfd.daemon.services import audit
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.render import policy_json as _folder_policy_json
from vfd.daemon.services.render import user_json
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.types import UserLimits
from vfd.store.models import QuotaScope, ResourceGroup, ResourcePolicy, User

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


@dataclass(frozen=True)
class SessionLimits:
    """The session part of a user's policy (0 or empty = no limit)."""

    max_sessions: int = 0
    max_session_cpu: float = 0.0
    max_session_memory: int = 0
    idle_timeout: float = 0.0
    max_lifetime: float = 0.0
    allowed_images: tuple[str, ...] = ()
    allowed_groups: tuple[str, ...] = ()


NO_LIMITS = SessionLimits()

SESSION_INTS = ("max_sessions", "max_session_memory", "max_storage_sessions")
SESSION_FLOATS = ("max_session_cpu", "idle_timeout", "max_lifetime")
SESSION_LISTS = ("allowed_images", "allowed_groups")
PATTERN_MAX = 512


def session_limits(session: Session, user: User) -> SessionLimits:
    """The session limits that apply to ``user`` (none without a policy)."""
    if user.resource_policy is None:
        return NO_LIMITS
    row = session.get(ResourcePolicy, user.resource_policy)
    if row is None:
        return NO_LIMITS
    return limits_of(row)


def limits_of(row: ResourcePolicy) -> SessionLimits:
    return SessionLimits(
        max_sessions=row.max_sessions,
        max_session_cpu=row.max_session_cpu,
        max_session_memory=row.max_session_memory,
        idle_timeout=row.idle_timeout,
        max_lifetime=row.max_lifetime,
        allowed_images=tuple(row.allowed_images),
        allowed_groups=tuple(row.allowed_groups),
    )


def scheduler_limits(row: ResourcePolicy) -> UserLimits:
    """The part of a policy's session limits a scheduler sees (``Snapshot.limits``)."""
    return UserLimits(
        max_sessions=row.max_sessions,
        max_cpu=row.max_session_cpu,
        max_memory=row.max_session_memory,
        allowed_images=tuple(row.allowed_images),
        allowed_groups=tuple(row.allowed_groups),
        max_slots=max_slots_of(row),
    )


def max_slots_of(row: ResourcePolicy) -> dict[str, float]:
    """A policy's ``max_slots`` (a slot missing or 0 = no limit of it): the positive ones."""
    out: dict[str, float] = {}
    for name, amount in (row.max_slots or {}).items():
        if isinstance(amount, int | float) and not isinstance(amount, bool) and amount > 0:
            out[str(name)] = float(amount)
    return out


def policy_json(policy: ResourcePolicy) -> dict[str, Any]:
    """The Policy JSON of the API (docs/api.md "Resource policies")."""
    return {
        **_folder_policy_json(policy),
        "max_sessions": policy.max_sessions,
        "max_session_cpu": policy.max_session_cpu,
        "max_session_memory": policy.max_session_memory,
        "idle_timeout": policy.idle_timeout,
        "max_lifetime": policy.max_lifetime,
        "allowed_images": list(policy.allowed_images),
        "allowed_groups": list(policy.allowed_groups),
        "max_storage_sessions": policy.max_storage_sessions,
        "max_slots": max_slots_of(policy),
    }


def _check_seconds(value: Any, field: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT, f"{field} must be a non-negative number", field=field
        )
    return float(value)


def _check_images(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT, "allowed_images must be a list", field="allowed_images"
        )
    for item in value:
        if not isinstance(item, str) or not item or len(item) > PATTERN_MAX or "\x00" in item:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"allowed_images: {str(item)[:80]!r} is no image pattern (1-{PATTERN_MAX} "
                "characters; * ? [..] as in shell globs)",
                field="allowed_images",
            )
    return list(dict.fromkeys(value))


def _check_groups(session: Session, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            "allowed_groups must be a list of group names",
            field="allowed_groups",
        )
    for name in value:
        if session.get(ResourceGroup, name) is None:
            raise VfdError(
                ErrorCode.GROUP_NOT_FOUND,
                f"no resource group {name!r}",
                group=name,
                field="allowed_groups",
            )
    return list(dict.fromkeys(value))


def _set_session_limit(session: Session, policy: ResourcePolicy, key: str, value: Any) -> None:
    """Set one session limit of ``policy``, checked."""
    if key in SESSION_INTS:
        setattr(policy, key, _check_number(value, key))
    elif key in SESSION_FLOATS:
        setattr(policy, key, _check_seconds(value, key))
    elif key == "allowed_images":
        policy.allowed_images = _check_images(value)
    elif key == "allowed_groups":
        policy.allowed_groups = _check_groups(session, value)
    elif key == "max_slots":
        # checked against the slot specs by the route (vfd.daemon.services.session_slots)
        policy.max_slots = {str(k): float(v) for k, v in value.items() if v}
    else:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, f"unknown field {key!r}", field=key)


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
    **session_limits: Any,
) -> dict[str, Any]:
    """``POST /v1/admin/policies``; ``session_limits``: the fields of :class:`SessionLimits`
    (``allowed_*`` as lists)."""
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
        for key, value in session_limits.items():
            _set_session_limit(session, policy, key, value)
        session.add(policy)
        audit.record(session, caller, "policy.create", name, **policy_json(policy))
        return policy_json(policy)


def list_policies(daemon: Daemon, caller: Caller) -> dict[str, Any]:
    caller.require_admin()
    with daemon.session() as session:
        rows = session.exec(select(ResourcePolicy).order_by(col(ResourcePolicy.name))).all()
        return {"policies": [policy_json(p) for p in rows]}


def policy_info(daemon: Daemon, caller: Caller, name: str) -> dict[str, Any]:
    caller.require_admin()
    with daemon.session() as session:
        return policy_json(find_policy(session, name))


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
            elif value is None:
                raise VfdError(ErrorCode.INVALID_ARGUMENT, f"{key} cannot be null", field=key)
            else:
                _set_session_limit(session, policy, key, value)
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
