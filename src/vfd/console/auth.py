"""Sign-in to the web console: one-time links, cookie sessions and their CSRF tokens.

Blocking functions on the store (run in the daemon's store pool). Secrets are random
(``secrets.token_urlsafe``) and only their SHA-256 is stored:

- a **link** (``vfd console``, ``POST /v1/console/links``) carries a code that signs in once,
  within :data:`LINK_TTL`; redeeming it is one compare-and-set on ``used_at``, so two
  browsers racing with one link cannot both get a session;
- a **session** is the value of the ``vfd_session`` cookie (HttpOnly, SameSite=Strict),
  valid until :data:`SESSION_TTL` after sign-in, sign-out, the user's deactivation, or the
  revocation or expiry of the API token it signed in with;
- the session's **CSRF token** is derived from the cookie's value (:func:`csrf_token`), so it
  needs no storage and cannot be reused with another session; every mutating call made with
  the cookie must carry it in ``X-CSRF-Token`` (checked in :mod:`vfd.daemon.identity`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, delete, select

from vfd.errors import ErrorCode, VfdError
from vfd.store.models import ApiToken, ConsoleLink, ConsoleSession, User

SESSION_COOKIE = "vfd_session"
"""The cookie holding a console session (HttpOnly, SameSite=Strict, Path=/)."""
CSRF_HEADER = "x-csrf-token"
"""The header carrying the session's CSRF token on every mutating call."""
LINK_TTL = timedelta(minutes=5)
"""How long a one-time sign-in link may wait to be opened."""
SESSION_TTL = timedelta(hours=12)
"""How long a console session lasts after sign-in."""
KEEP_ENDED = timedelta(days=1)
"""How long used, expired or ended records stay (then they are pruned)."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing: no CSRF token needed."""
_SECRET_MAX = 256
"""No code or cookie vfd makes is longer; longer ones are refused before any hashing."""


def digest(secret: str) -> str:
    """The SHA-256 (hex) under which a secret is stored."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def csrf_token(session_token: str) -> str:
    """The CSRF token of the session whose cookie is ``session_token``."""
    return hashlib.sha256(
        b"vfd-console-csrf\0" + session_token.encode("utf-8", "replace")
    ).hexdigest()


def csrf_matches(session_token: str, given: str | None) -> bool:
    """Whether ``given`` is the CSRF token of ``session_token`` (constant time)."""
    if not given:
        return False
    return hmac.compare_digest(
        csrf_token(session_token).encode(), given.strip().encode("utf-8", "replace")
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(at: datetime) -> datetime:
    """SQLite gives back naive datetimes; they are UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Minted:
    """A new secret (shown once) and when it stops working."""

    secret: str
    expires_at: datetime


@dataclass(frozen=True)
class SessionInfo:
    """A live console session, as ``GET /v1/console/session`` describes it."""

    id: uuid.UUID
    user: User
    actor_id: uuid.UUID | None
    method: str
    created_at: datetime
    expires_at: datetime


def _prune(session: Session, now: datetime) -> None:
    """Drop links and sessions that have been over for :data:`KEEP_ENDED`."""
    before = now - KEEP_ENDED
    session.exec(
        delete(ConsoleLink)
        .where(col(ConsoleLink.expires_at) < before)
        .execution_options(synchronize_session=False)
    )
    session.exec(
        delete(ConsoleSession)
        .where(col(ConsoleSession.expires_at) < before)
        .execution_options(synchronize_session=False)
    )
    session.exec(
        delete(ConsoleSession)
        .where(col(ConsoleSession.ended_at) < before)
        .execution_options(synchronize_session=False)
    )


def mint_link(session: Session, user: User, actor: User) -> Minted:
    """A one-time sign-in code for ``user`` (asked for by ``actor``)."""
    now = _now()
    _prune(session, now)
    code = secrets.token_urlsafe(32)
    expires = now + LINK_TTL
    session.add(
        ConsoleLink(
            user_id=user.id,
            actor_id=actor.id if actor.id != user.id else None,
            code_sha256=digest(code),
            created_at=now,
            expires_at=expires,
        )
    )
    return Minted(secret=code, expires_at=expires)


def _refused(reason: str, message: str) -> VfdError:
    return VfdError(ErrorCode.UNAUTHENTICATED, message, reason=reason)


def redeem_link(session: Session, code: str) -> tuple[ConsoleLink, User]:
    """Use a sign-in code once: its link and user. ``401 unauthenticated`` with
    ``details.reason`` ``unknown``, ``used`` or ``expired`` otherwise."""
    if not code or len(code) > _SECRET_MAX:
        raise _refused("unknown", "this sign-in link is not valid; run `vfd console` for a new one")
    now = _now()
    key = digest(code)
    claimed = session.execute(
        update(ConsoleLink)
        .where(
            col(ConsoleLink.code_sha256) == key,
            col(ConsoleLink.used_at).is_(None),
            col(ConsoleLink.expires_at) > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    link = session.exec(select(ConsoleLink).where(ConsoleLink.code_sha256 == key)).first()
    if link is None:
        raise _refused("unknown", "this sign-in link is not valid; run `vfd console` for a new one")
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        if link.used_at is not None:
            raise _refused(
                "used", "this sign-in link was used already; run `vfd console` for a new one"
            )
        raise _refused("expired", "this sign-in link has expired; run `vfd console` for a new one")
    user = session.get(User, link.user_id)
    if user is None:
        raise _refused("unknown", "the link's user no longer exists")
    return link, user


def token_user(session: Session, token: str) -> tuple[ApiToken, User]:
    """The API token ``token`` and its user, for a sign-in with a token."""
    token = token.strip()
    row = None
    if token and len(token) <= _SECRET_MAX:
        row = session.exec(select(ApiToken).where(ApiToken.token_sha256 == digest(token))).first()
    if row is None:
        raise _refused("unknown", "unknown or revoked token")
    if row.expires_at is not None and _aware(row.expires_at) <= _now():
        raise _refused("expired", f"token {row.name!r} has expired")
    user = session.get(User, row.user_id)
    if user is None:
        raise _refused("unknown", "the token's user no longer exists")
    return row, user


def start_session(
    session: Session,
    user: User,
    *,
    method: str,
    actor_id: uuid.UUID | None = None,
    token: ApiToken | None = None,
) -> Minted:
    """A new console session for ``user``: the cookie's value (shown once) and its end."""
    now = _now()
    _prune(session, now)
    expires = now + SESSION_TTL
    if token is not None and token.expires_at is not None:
        expires = min(expires, _aware(token.expires_at))
    cookie = secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(
            user_id=user.id,
            actor_id=actor_id,
            token_sha256=digest(cookie),
            method=method,
            token_id=token.id if token is not None else None,
            created_at=now,
            expires_at=expires,
        )
    )
    return Minted(secret=cookie, expires_at=expires)


def session_of(session: Session, cookie: str) -> SessionInfo:
    """The live session whose cookie is ``cookie``; ``401 unauthenticated`` (with
    ``details.reason``: ``unknown``, ``ended``, ``expired``) when there is none."""
    row = None
    if cookie and len(cookie) <= _SECRET_MAX:
        row = session.exec(
            select(ConsoleSession).where(ConsoleSession.token_sha256 == digest(cookie))
        ).first()
    if row is None:
        raise _refused("unknown", "not signed in to the console (unknown session)")
    if row.ended_at is not None:
        raise _refused("ended", "this console session was signed out; sign in again")
    if _aware(row.expires_at) <= _now():
        raise _refused("expired", "this console session has expired; sign in again")
    if row.token_id is not None:
        token = session.get(ApiToken, row.token_id)
        if token is None:
            raise _refused("revoked", "the token this console session signed in with was revoked")
        if token.expires_at is not None and _aware(token.expires_at) <= _now():
            raise _refused(
                "expired", f"the token {token.name!r} this session signed in with expired"
            )
    user = session.get(User, row.user_id)
    if user is None:
        raise _refused("unknown", "the session's user no longer exists")
    return SessionInfo(
        id=row.id,
        user=user,
        actor_id=row.actor_id,
        method=row.method,
        created_at=_aware(row.created_at),
        expires_at=_aware(row.expires_at),
    )


def end_session(session: Session, session_id: uuid.UUID) -> None:
    """Sign out: the session stops working at once, everywhere."""
    row = session.get(ConsoleSession, session_id)
    if row is not None and row.ended_at is None:
        row.ended_at = _now()
        session.add(row)


def end_replaced(session: Session, cookie: str | None) -> None:
    """End the session a browser had before it signed in again (its cookie is replaced)."""
    if not cookie or len(cookie) > _SECRET_MAX:
        return
    session.execute(
        update(ConsoleSession)
        .where(
            col(ConsoleSession.token_sha256) == digest(cookie),
            col(ConsoleSession.ended_at).is_(None),
        )
        .values(ended_at=_now())
        .execution_options(synchronize_session=False)
    )
