"""The one place where failures become HTTP answers.

    VfdError                   -> its code's HTTP status, ``VfdError.to_json()``
                                  (``mountd_unavailable`` is also logged: one warning line)
    RequestValidationError     -> 400 invalid_argument, ``details.field`` names the bad field
    unknown route              -> 404 not_found
    method not allowed         -> 405 method_not_allowed
    any other exception        -> 500 internal (logged with its traceback)

Every answer has the shape ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vfd import wirenames
from vfd.errors import ErrorCode, VfdError

log = logging.getLogger(__name__)


def error_response(exc: VfdError) -> JSONResponse:
    if exc.code is ErrorCode.MOUNTD_UNAVAILABLE:
        log.warning("answered mountd_unavailable: %s", exc.message)
    response = JSONResponse(wirenames.json_safe(exc.to_json()), status_code=exc.code.http)
    if exc.code is ErrorCode.TOO_MANY_REQUESTS:  # when to come back, in seconds
        response.headers["Retry-After"] = str(exc.details.get("retry_after", 1))
    return response


def _field(loc: tuple[Any, ...]) -> str:
    """``("body", "name")`` -> ``"name"``; a body that is not an object -> ``"body"``."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header") and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_error(exc: RequestValidationError) -> VfdError:
    errors = exc.errors()
    if not errors:
        return VfdError(ErrorCode.INVALID_ARGUMENT, "malformed request", field="body")
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    field = _field(loc)
    kind = first.get("type", "")
    if kind == "json_invalid":
        field, message = "body", "the request body is not valid JSON"
    elif kind == "extra_forbidden":
        message = f"unknown field {field!r}"
    elif kind == "missing":
        message = f"missing field {field!r}"
    else:
        message = f"{field}: {first.get('msg', 'invalid value')}"
    return VfdError(
        ErrorCode.INVALID_ARGUMENT, message, field=field, location=str(loc[0]) if loc else "body"
    )


async def _on_vfd_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VfdError)
    return error_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_error(exc))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        err = VfdError(ErrorCode.NOT_FOUND, f"no route {request.url.path}", path=request.url.path)
    elif exc.status_code == 405:
        err = VfdError(
            ErrorCode.METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed on {request.url.path}",
            method=request.method,
        )
    elif exc.status_code < 500:
        err = VfdError(ErrorCode.INVALID_ARGUMENT, str(exc.detail))
    else:
        err = VfdError(ErrorCode.INTERNAL, str(exc.detail))
    return error_response(err)


class InternalErrorMiddleware:
    """Answers ``500 internal`` for an unexpected exception, logging it once.

    A plain ASGI middleware rather than an ``Exception`` handler: Starlette re-raises after
    calling such a handler, which would log every failure twice.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            err = VfdError(ErrorCode.INTERNAL, "internal error; see the daemon's log")
            await error_response(err)(scope, receive, send)


def install(app: FastAPI) -> None:
    """Route every failure of ``app`` through this module."""
    app.add_exception_handler(VfdError, _on_vfd_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_middleware(InternalErrorMiddleware)
