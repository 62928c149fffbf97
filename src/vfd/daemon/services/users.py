"""Users and their API tokens (admin routes), and ``whoami``."""

from __future__ import annotations

import re
import secrets
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from vfd.daemon.identity import token_digest
from vfd.daemon.services import audit, policies
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.render import user_json
from vfd.errors import ErrorCode, VfdError
from vfd.folders.names import unshown
from vfd.store.models import ApiToken, User, UserRole, UserStatus

_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$")
MAX_EMAIL = 256
MAX_USERNAME = 64
MAX_TOKEN_NAME = 64
TOKEN_PREFIX = "vfd_"


def find_user(session: Session, email: str) -> User:
    """The user with ``email``, or ``404 user_not_found``."""
    user = session.exec(select(User).where(User.email == email)).first()
    if user is None:
        raise VfdError(ErrorCode.USER_NOT_FOUND, f"no user {email!r}", email=email)
    return user


def check_email(email: str) -> str:
    if len(email) > MAX_EMAIL or not _EMAIL.match(email) or unshown(email):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT, f"{email!r} is not an email address", field="email"
        )
    return email


def _check_username(username: str) -> str:
    if not username or len(username) > MAX_USERNAME or username != username.strip():
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"username must have 1-{MAX_USERNAME} characters without surrounding spaces",
            field="username",
        )
    if (bad := unshown(username)) is not None:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"username must not contain {bad} (a control, format or separator character)",
            field="username",
        )
    return username


def _check_id(value: int, field: str) -> int:
    if not 0 <= value < 2**32 - 1:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, f"{field} out of range", field=field)
    return value


def whoami(daemon: Daemon, caller: Caller) -> dict[str, Any]:
    return user_json(caller.user)


def create_user(
    daemon: Daemon,
    caller: Caller,
    *,
    email: str,
    username: str | None = None,
    uid: int | None = None,
    gid: int | None = None,
    role: UserRole = UserRole.USER,
    resource_policy: str | None = None,
) -> dict[str, Any]:
    caller.require_admin()
    check_email(email)
    name = _check_username(username if username is not None else email.split("@")[0][:64])
    with daemon.session() as session:
        exists = session.exec(select(func.count()).where(User.email == email)).one()
        if exists:
            raise VfdError(ErrorCode.USER_EXISTS, f"user {email!r} already exists", email=email)
        if resource_policy is not None:
            policies.find_policy(session, resource_policy)
        user = User(
            email=email,
            username=name,
            uid=_check_id(daemon.config.default_uid if uid is None else uid, "uid"),
            gid=_check_id(daemon.config.default_gid if gid is None else gid, "gid"),
            role=role,
            resource_policy=resource_policy,
        )
        session.add(user)
        audit.record(session, caller, "user.create", email, role=role.value)
        session.flush()
        return user_json(user)


def list_users(daemon: Daemon, caller: Caller) -> dict[str, Any]:
    caller.require_admin()
    with daemon.session() as session:
        users = session.exec(select(User).order_by(User.email)).all()
        return {"users": [user_json(u) for u in users]}


def patch_user(
    daemon: Daemon, caller: Caller, email: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Apply the given fields (only those the request named; ``resource_policy`` may be None)."""
    caller.require_admin()
    changed_policy = False
    with daemon.session() as session:
        user = find_user(session, email)
        for key, value in changes.items():
            if key == "username":
                user.username = _check_username(value)
            elif key in ("uid", "gid"):
                if value is None:
                    raise VfdError(ErrorCode.INVALID_ARGUMENT, f"{key} cannot be null", field=key)
                setattr(user, key, _check_id(value, key))
            elif key in ("role", "status"):
                if value is None:
                    raise VfdError(ErrorCode.INVALID_ARGUMENT, f"{key} cannot be null", field=key)
                if key == "status" and value != UserStatus.ACTIVE and user.id == caller.actor.id:
                    raise VfdError(
                        ErrorCode.INVALID_ARGUMENT, "you cannot deactivate yourself", field=key
                    )
                setattr(user, key, value)
            elif key == "resource_policy":
                if value is not None:
                    policies.find_policy(session, value)
                user.resource_policy = value
                changed_policy = True
            else:  # the request model forbids other fields
                raise VfdError(ErrorCode.INVALID_ARGUMENT, f"unknown field {key!r}", field=key)
        session.add(user)
        audit.record(session, caller, "user.update", email, fields=sorted(changes))
        scopes = policies.apply_quota(session, daemon, [user]) if changed_policy else []
        body = user_json(user)
    policies.tell_limits(daemon, scopes)
    return body


def deactivate_user(daemon: Daemon, caller: Caller, email: str) -> dict[str, Any]:
    return patch_user(daemon, caller, email, {"status": UserStatus.INACTIVE})


def create_token(daemon: Daemon, caller: Caller, *, email: str, name: str) -> dict[str, Any]:
    """A new bearer token for ``email``; the token itself is returned once and never stored."""
    caller.require_admin()
    if not name or len(name) > MAX_TOKEN_NAME or unshown(name):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"token name must have 1-{MAX_TOKEN_NAME} characters that show as themselves",
            field="name",
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with daemon.session() as session:
        user = find_user(session, email)
        row = ApiToken(user_id=user.id, name=name, token_sha256=token_digest(token))
        session.add(row)
        audit.record(session, caller, "token.create", email, name=name)
        session.flush()
        return {"id": row.id.hex, "name": name, "token": token}
