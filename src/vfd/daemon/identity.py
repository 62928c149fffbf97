"""Who is calling: SO_PEERCRED on the unix socket, bearer tokens on TCP, admins acting for users.

The rules (docs/api.md "Identity"):

- unix socket: the peer's uid is the caller. A uid seen for the first time that has a passwd
  entry becomes a vfd user ``<login>@local`` (host account); uid 0 and members of the
  ``vfd-admin`` group are admins. A uid without a passwd entry is accepted only when exactly
  one vfd user has that uid; otherwise ``401 unauthenticated``.
- TCP: ``Authorization: Bearer <token>``; only the token's SHA-256 is stored. Without that
  header, the web console's session cookie (``vfd_session``, :mod:`vfd.console.auth`): a
  mutating call made with it must carry the session's CSRF token in ``X-CSRF-Token`` and come
  from the console's own origin, else ``403 csrf_failed``.
- ``X-Vfd-Act-As: <email>``: an admin acts as that user; anyone else gets ``403 admin_required``.
- a deactivated user (caller or act-as target) gets ``403 user_inactive``.

The peer's credentials are read once per connection by :class:`PeerCredProtocol`, uvicorn's
h11 protocol with ``connection_made`` extended, and reach the app in the ASGI scope's
``state`` (uvicorn copies the protocol's ``app_state`` into every request's scope).
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import logging
import os
import pwd
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from uvicorn.protocols.http.h11_impl import H11Protocol

from vfd.console import auth as console_auth
from vfd.daemon import runtime
from vfd.daemon.runtime import Pool
from vfd.daemon.services import audit
from vfd.daemon.services.context import Caller, Daemon
from vfd.errors import ErrorCode, VfdError
from vfd.store.models import ApiToken, User, UserRole, UserStatus

log = logging.getLogger(__name__)

ADMIN_GROUP = "vfd-admin"
PEER_KEY = "vfd_peer"
VIA_KEY = "vfd_via"
ACT_AS_HEADER = "x-vfd-act-as"
_UCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}


@dataclass(frozen=True)
class Peer:
    """The credentials of the process at the other end of a unix socket connection."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: Any) -> Peer | None:
    """SO_PEERCRED of a connected AF_UNIX socket; None for any other kind of socket."""
    if sock is None or getattr(sock, "family", None) != socket.AF_UNIX:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid=pid, uid=uid, gid=gid)


class PeerCredProtocol(H11Protocol):
    """uvicorn's h11 protocol, putting the peer's credentials into every request's scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        peer = peer_credentials(sock)
        via = "unix" if getattr(sock, "family", None) == socket.AF_UNIX else "tcp"
        # a per-connection copy: app_state is shared by every connection of the server
        self.app_state = {**self.app_state, PEER_KEY: peer, VIA_KEY: via}


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _in_admin_group(pw: pwd.struct_passwd | None, peer: Peer) -> bool:
    try:
        admin_gid = grp.getgrnam(ADMIN_GROUP).gr_gid
    except KeyError:
        return False
    if peer.gid == admin_gid:
        return True
    if pw is None:
        return False
    return admin_gid in os.getgrouplist(pw.pw_name, pw.pw_gid)


def _host_user(session: Session, peer: Peer) -> User:
    """The vfd user of a unix peer, provisioning a host account on first sight."""
    try:
        pw: pwd.struct_passwd | None = pwd.getpwuid(peer.uid)
    except KeyError:
        pw = None
    admin = peer.uid == 0 or _in_admin_group(pw, peer)
    user = session.exec(
        select(User).where(User.uid == peer.uid, User.host_account == True)  # noqa: E712
    ).first()
    if user is None and pw is not None:
        email = f"{pw.pw_name}@local"
        user = session.exec(select(User).where(User.email == email)).first()
        if user is not None and user.uid != peer.uid:
            raise VfdError(
                ErrorCode.UNAUTHENTICATED,
                f"vfd user {email} exists with uid {user.uid}, not your uid {peer.uid}",
                uid=peer.uid,
            )
        if user is None:
            user = User(
                email=email,
                username=pw.pw_name,
                uid=peer.uid,
                gid=pw.pw_gid,
                role=UserRole.ADMIN if admin else UserRole.USER,
                host_account=True,
            )
            session.add(user)
            session.flush()
            actor = Caller(user=user, actor=user, via="unix")
            audit.record(session, actor, "user.provision", email, uid=peer.uid)
            log.info("provisioned host account %s (uid %d)", email, peer.uid)
        if not user.host_account:
            user.host_account = True
            session.add(user)
    if user is None:
        same_uid = session.exec(select(User).where(User.uid == peer.uid).limit(2)).all()
        if len(same_uid) != 1:
            why = "no vfd user has it" if not same_uid else "several vfd users have it"
            raise VfdError(
                ErrorCode.UNAUTHENTICATED,
                f"uid {peer.uid} has no passwd entry and {why}",
                uid=peer.uid,
            )
        user = same_uid[0]
    if admin and user.role != UserRole.ADMIN:
        user.role = UserRole.ADMIN
        session.add(user)
        log.info("%s is an administrator now (uid 0 or group %s)", user.email, ADMIN_GROUP)
    return user


def _token_user(session: Session, authorization: str | None) -> User:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise VfdError(
            ErrorCode.UNAUTHENTICATED,
            "TCP requests need 'Authorization: Bearer <token>' or a console session",
        )
    row = session.exec(
        select(ApiToken).where(ApiToken.token_sha256 == token_digest(token.strip()))
    ).first()
    if row is None:
        raise VfdError(ErrorCode.UNAUTHENTICATED, "unknown or revoked token")
    if row.expires_at is not None:
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        if expires <= datetime.now(UTC):
            raise VfdError(ErrorCode.UNAUTHENTICATED, f"token {row.name!r} has expired")
    user = session.get(User, row.user_id)
    if user is None:
        raise VfdError(ErrorCode.UNAUTHENTICATED, "the token's user no longer exists")
    return user


def _check_active(user: User) -> None:
    if user.status != UserStatus.ACTIVE:
        raise VfdError(ErrorCode.USER_INACTIVE, f"user {user.email} is deactivated")


def resolve_caller(
    daemon: Daemon,
    *,
    peer: Peer | None,
    via: str,
    authorization: str | None,
    act_as: str | None,
    console_cookie: str | None = None,
) -> Caller:
    """Apply the identity rules to one request (blocking: runs in a worker thread).

    ``console_cookie`` (the ``vfd_session`` cookie) counts only on TCP without an
    ``Authorization`` header; the caller is then the session's user, ``via`` ``console``
    (its CSRF token is checked by :func:`get_caller`, which alone has the request).
    """
    for attempt in range(2):
        try:
            with daemon.session() as session:
                if via == "unix":
                    if peer is None:
                        raise VfdError(ErrorCode.UNAUTHENTICATED, "peer credentials unavailable")
                    actor = _host_user(session, peer)
                elif console_cookie is not None and not authorization:
                    actor = console_auth.session_of(session, console_cookie).user
                    via = "console"
                else:
                    actor = _token_user(session, authorization)
                _check_active(actor)
                user = actor
                if act_as is not None:
                    if actor.role != UserRole.ADMIN:
                        raise VfdError(
                            ErrorCode.ADMIN_REQUIRED, "only administrators may act as another user"
                        )
                    target = session.exec(select(User).where(User.email == act_as)).first()
                    if target is None:
                        raise VfdError(
                            ErrorCode.USER_NOT_FOUND, f"no user {act_as!r}", email=act_as
                        )
                    _check_active(target)
                    user = target
                return Caller(user=user, actor=actor, via=via)
        except IntegrityError:
            # two first requests of one uid raced to provision it; the loser reads the winner's
            if attempt:
                raise
    raise AssertionError("unreachable")


async def get_caller(request: Request) -> AsyncIterator[Caller]:
    """FastAPI dependency: the caller of this request, resolved in the identity pool.

    Until the request ends (its answer sent, a streamed one included), its work in the slow
    pools counts against the caller's per-user caps (``Runtime.user_slots``).
    """
    daemon: Daemon = request.app.state.daemon
    state = request.scope.get("state") or {}
    via = state.get(VIA_KEY, "tcp")
    authorization = request.headers.get("authorization")
    cookie = console_cookie(request) if via == "tcp" and not authorization else None
    live = runtime.current()
    caller = await live.run(
        Pool.IDENTITY,
        resolve_caller,
        daemon,
        peer=state.get(PEER_KEY),
        via=via,
        authorization=authorization,
        act_as=request.headers.get(ACT_AS_HEADER),
        console_cookie=cookie,
    )
    if cookie is not None:
        check_console_request(request, cookie)
    with live.user_slots(caller.user.id, daemon.config.limits):
        yield caller


def console_cookie(request: Request) -> str | None:
    """The console session cookie of ``request``, if it sent one.

    Several cookies of that name (a page of another port of the host may add one beside the
    real one, with another path or domain: browsers send a host's cookies to all its ports)
    are refused, ``401 unauthenticated`` (``details.reason: several``), rather than one of
    them picked."""
    values = [
        value.strip()
        for header in request.headers.getlist("cookie")
        for name, sep, value in (piece.partition("=") for piece in header.split(";"))
        if sep and name.strip() == console_auth.SESSION_COOKIE
    ]
    if len(values) > 1:
        raise VfdError(
            ErrorCode.UNAUTHENTICATED,
            "the browser sent several console session cookies (a page of another port of "
            "this host may have set one); clear this site's cookies and sign in again",
            reason="several",
        )
    return values[0] if values else None


def _same_origin(origin: str, host: str | None) -> bool:
    """Whether ``origin`` (``scheme://host[:port]``) is the origin the request was sent to."""
    scheme, sep, netloc = origin.partition("://")
    return bool(
        sep and host and scheme.lower() in ("http", "https") and netloc.lower() == host.lower()
    )


def check_console_request(request: Request, cookie: str) -> None:
    """The CSRF rules of a request made with the console's cookie (``403 csrf_failed``):

    - an ``Origin`` header, when sent, names this listener (``Host``): a page of another
      origin — another port of the same host included, such as an app's — cannot use the
      cookie, which browsers send to every port of the host;
    - a mutating method (anything but GET, HEAD, OPTIONS) carries the session's CSRF token
      in ``X-CSRF-Token``, and, when the browser says where it comes from
      (``Sec-Fetch-Site``), comes from this origin.
    """
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    if origin is not None and not _same_origin(origin, host):
        raise VfdError(
            ErrorCode.CSRF_FAILED,
            f"a console call from another origin ({origin}) is refused",
            reason="origin",
            origin=origin,
        )
    if request.method.upper() in console_auth.SAFE_METHODS:
        return
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise VfdError(
            ErrorCode.CSRF_FAILED,
            f"a console call from another site ({site}) is refused",
            reason="origin",
        )
    given = request.headers.get(console_auth.CSRF_HEADER)
    if not given:
        raise VfdError(
            ErrorCode.CSRF_FAILED,
            "a console call that changes something needs the session's CSRF token in "
            "X-CSRF-Token (GET /v1/console/session gives it)",
            reason="missing",
        )
    if not console_auth.csrf_matches(cookie, given):
        raise VfdError(
            ErrorCode.CSRF_FAILED,
            "wrong CSRF token for this console session",
            reason="mismatch",
        )
