"""The console's routes: its files at ``/console/``, sign-in (one-time link or API token),
who is signed in, sign-out, and the links ``vfd console`` asks for (docs/console.md).

Everything else the console does goes through the ordinary API with the session's cookie
(:mod:`vfd.daemon.identity`).
"""

from __future__ import annotations

import html
import json
import socket
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from vfd.console import assets, auth
from vfd.daemon.identity import console_cookie
from vfd.daemon.routes.deps import JSON, CallerDep, DaemonDep, run
from vfd.daemon.services import audit
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.render import user_json
from vfd.daemon.services.session_apps import public_host
from vfd.errors import ErrorCode, VfdError
from vfd.store.models import UserStatus

router = APIRouter(tags=["console"])

SIGNIN_BODY_MAX = 8192
"""The largest sign-in body read (a token is far shorter)."""


# ------------------------------------------------------------------------------- blocking


def _check_active(status: UserStatus, email: str) -> None:
    if status != UserStatus.ACTIVE:
        raise VfdError(ErrorCode.USER_INACTIVE, f"user {email} is deactivated")


def console_base(daemon: Daemon) -> str:
    """``http://HOST:PORT`` of the console: the TCP listener, a wildcard address replaced by
    ``[apps] public_host`` or this host's name."""
    listen = daemon.config.tcp_listen
    if not listen:
        raise VfdError(
            ErrorCode.CONSOLE_UNAVAILABLE,
            "this node serves no console: it has no TCP listener (set tcp_listen, e.g. "
            '"127.0.0.1:8090", in vfd.toml or VFD_TCP_LISTEN)',
        )
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = public_host(daemon) or socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def make_link(daemon: Daemon, caller: Caller) -> JSON:
    """A one-time sign-in link for the caller (``vfd console``)."""
    if caller.via == "console":
        raise VfdError(
            ErrorCode.PERMISSION_DENIED,
            "a console session cannot make sign-in links; run `vfd console` on the node",
        )
    base = console_base(daemon)
    with daemon.session() as session:
        minted = auth.mint_link(session, caller.user, caller.actor)
        audit.record(session, caller, "console.link", caller.user.email)
    path = f"/console/signin?code={quote(minted.secret, safe='')}"
    return {
        "url": base + path,
        "path": path,
        "code": minted.secret,
        "expires_at": minted.expires_at.isoformat(),
        "expires_in": int(auth.LINK_TTL.total_seconds()),
        "user": caller.user.email,
    }


def _session_json(info: auth.SessionInfo, cookie: str) -> JSON:
    return {
        "user": user_json(info.user),
        "role": info.user.role.value,
        "csrf_token": auth.csrf_token(cookie),
        "method": info.method,
        "created_at": info.created_at.isoformat(),
        "expires_at": info.expires_at.isoformat(),
    }


def signin_with_link(daemon: Daemon, code: str, previous: str | None = None) -> auth.Minted:
    """Redeem a link's code: the new session's cookie (the ``previous`` session of the
    browser, if any, ends)."""
    with daemon.session() as session:
        link, user = auth.redeem_link(session, code)
        auth.end_replaced(session, previous)
        _check_active(user.status, user.email)
        minted = auth.start_session(session, user, method="link", actor_id=link.actor_id)
        actor = Caller(user=user, actor=user, via="console")
        audit.record(session, actor, "console.signin", user.email, method="link")
    return minted


def signin_with_token(daemon: Daemon, token: str, previous: str | None = None) -> auth.Minted:
    """Sign in with an API token: the new session's cookie (the ``previous`` session of the
    browser, if any, ends)."""
    with daemon.session() as session:
        row, user = auth.token_user(session, token)
        auth.end_replaced(session, previous)
        _check_active(user.status, user.email)
        minted = auth.start_session(session, user, method="token", token=row)
        actor = Caller(user=user, actor=user, via="console")
        audit.record(session, actor, "console.signin", user.email, method="token")
    return minted


def describe(daemon: Daemon, cookie: str) -> JSON:
    with daemon.session() as session:
        return _session_json(auth.session_of(session, cookie), cookie)


def signout(daemon: Daemon, caller: Caller, cookie: str) -> None:
    with daemon.session() as session:
        info = auth.session_of(session, cookie)
        auth.end_session(session, info.id)
        audit.record(session, caller, "console.signout", caller.user.email)


# ----------------------------------------------------------------------------- answers


def _set_session_cookie(response: Response, minted: auth.Minted) -> None:
    response.set_cookie(
        auth.SESSION_COOKIE,
        minted.secret,
        max_age=max(
            1, int((minted.expires_at - datetime.now(minted.expires_at.tzinfo)).total_seconds())
        ),
        path="/",
        httponly=True,
        samesite="strict",
    )


def _clear_session_cookie(response: Response) -> None:
    response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="strict")


def _no_store(response: Response) -> None:
    response.headers.update(assets.SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-store"


def _error_page(exc: VfdError) -> HTMLResponse:
    """A sign-in that failed, for a person in a browser."""
    reason = exc.details.get("reason")
    code = exc.code.value + (f" ({reason})" if reason else "")
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>vfd console: sign-in failed</title></head><body><main>"
        "<h1>Sign-in failed</h1>"
        f"<p>{html.escape(exc.message)}</p>"
        f"<p>Error code: <code>{html.escape(code)}</code></p>"
        '<p><a href="/console/">Sign in with an API token</a></p>'
        "</main></body></html>"
    )
    response = HTMLResponse(body, status_code=exc.code.http)
    _no_store(response)
    return response


def _check_signin_origin(request: Request) -> None:
    """A sign-in form must be this console's own (login CSRF: another site must not sign a
    browser in as someone else)."""
    origin = request.headers.get("origin")
    host = request.headers.get("host") or ""
    site = request.headers.get("sec-fetch-site")
    foreign = origin is not None and origin.partition("://")[2].lower() != host.lower()
    if foreign or (site is not None and site not in ("same-origin", "none")):
        raise VfdError(
            ErrorCode.CSRF_FAILED,
            "a sign-in from another origin is refused",
            reason="origin",
        )


async def _signin_token_of(request: Request) -> tuple[str, bool]:
    """The token of a sign-in body (JSON ``{"token"}`` or a form's ``token``) and whether it
    came from a form."""
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > SIGNIN_BODY_MAX:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT, "the sign-in body is too large", field="body"
            )
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    token: Any = None
    if kind == "application/x-www-form-urlencoded":
        values = parse_qs(data.decode("utf-8", "replace"), max_num_fields=8).get("token")
        token = values[0] if values else None
    else:
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT, "the request body is not valid JSON", field="body"
            ) from None
        if not isinstance(body, dict) or set(body) - {"token"}:
            raise VfdError(ErrorCode.INVALID_ARGUMENT, 'the body is {"token": "..."}', field="body")
        token = body.get("token")
    if not isinstance(token, str) or not token.strip() or "\x00" in token:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, "missing field 'token'", field="token")
    return token, kind == "application/x-www-form-urlencoded"


# ------------------------------------------------------------------------------ routes


@router.get("/console", include_in_schema=False)
async def console_root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=308)


@router.get("/console/signin", include_in_schema=False)
async def signin_link(request: Request, daemon: DaemonDep, code: str = "") -> Response:
    """Open a one-time link: the session cookie is set and the browser sent to the console
    (the code leaves the address bar); a used, expired or unknown code gets a page saying so."""
    try:
        if not code:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                "this sign-in link has no code; run `vfd console` for a link",
                field="code",
            )
        previous = request.cookies.get(auth.SESSION_COOKIE)
        minted = await run(signin_with_link, daemon, code, previous)
    except VfdError as exc:
        return _error_page(exc)
    response = RedirectResponse("/console/", status_code=303)
    _set_session_cookie(response, minted)
    _no_store(response)
    return response


@router.api_route("/console/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def console_file(path: str, daemon: DaemonDep) -> Response:
    """The console's page and its files."""
    return assets.response(path)


_SIGNIN_BODY = {  # a form's ``token`` is taken too (docs/console.md)
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"token": {"type": "string"}},
                "required": ["token"],
                "additionalProperties": False,
            }
        },
    },
}


@router.post("/v1/console/signin", openapi_extra={"requestBody": _SIGNIN_BODY})
async def signin(request: Request, daemon: DaemonDep) -> Response:
    """Sign in with an API token (JSON ``{"token"}``, or a form's ``token`` field): the
    session cookie is set; a form is sent on to the console, JSON answers as
    ``GET /v1/console/session``."""
    _check_signin_origin(request)
    token, form = await _signin_token_of(request)
    previous = request.cookies.get(auth.SESSION_COOKIE)
    minted = await run(signin_with_token, daemon, token, previous)
    response: Response
    if form:
        response = RedirectResponse("/console/", status_code=303)
    else:
        response = JSONResponse(await run(describe, daemon, minted.secret))
    _set_session_cookie(response, minted)
    _no_store(response)
    return response


def _console_caller(request: Request, caller: Caller) -> str:
    cookie = console_cookie(request)
    if caller.via != "console" or cookie is None:
        raise VfdError(
            ErrorCode.UNAUTHENTICATED,
            "not signed in to the console (this call needs its session cookie)",
            reason="missing",
        )
    return cookie


@router.get("/v1/console/session")
async def session_info(request: Request, daemon: DaemonDep, caller: CallerDep) -> Response:
    """Who is signed in: the user, role, the session's CSRF token, how and until when."""
    cookie = _console_caller(request, caller)
    response = JSONResponse(await run(describe, daemon, cookie))
    _no_store(response)
    return response


@router.post("/v1/console/signout")
async def signout_route(request: Request, daemon: DaemonDep, caller: CallerDep) -> Response:
    """End the console session (at once, server-side) and drop its cookie."""
    cookie = _console_caller(request, caller)
    await run(signout, daemon, caller, cookie)
    response = JSONResponse({"signed_out": True})
    _clear_session_cookie(response)
    _no_store(response)
    return response


@router.post("/v1/console/links", status_code=201)
async def links(daemon: DaemonDep, caller: CallerDep) -> JSON:
    """A one-time sign-in link for the caller (``vfd console``): ``{url, path, code,
    expires_at, expires_in, user}``."""
    return await run(make_link, daemon, caller)
