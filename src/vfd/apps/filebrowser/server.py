"""The file manager's HTTP server: its static page and a small JSON API over a :class:`Tree`.

Reachable only with the server's token: ``GET /?vfd_token=…`` (the URL vfd prints) sets it as an
``HttpOnly``, ``SameSite=Lax`` cookie named after the port (two file managers on one host
keep theirs) and redirects to ``/``. Lax, not Strict: the link is opened from another site
(the console, a terminal), and a Strict cookie set on that navigation's redirect would not
be sent with the redirected request. Lax sends it with top-level navigations only, which
change nothing here, which drops the token from the address bar and history;
every other request needs the cookie, and every request that changes something also needs
the ``X-Vfd-Files`` header, which no other site's page can send without the browser asking
this server first. Errors are vfd's JSON error shape with its stable codes.

API (paths are ``<folder>/<path inside it>``; ``""`` is the list of folders)::

    GET    /api/list?path=&offset=&limit=      one page of a directory, its quota use
    GET    /api/download?path=                 a file, or a directory as a tar archive
    POST   /api/mkdir   {path}                 POST /api/rename {path, name}
    POST   /api/move    {paths, dest}          POST /api/delete {paths}
    POST   /api/uploads {dest, names}          an upload: its key (see uploads.py)
    PUT    /api/uploads/KEY/file?path=REL      one file's bytes
    POST   /api/uploads/KEY/dir?path=REL       an empty directory
    POST   /api/uploads/KEY/commit             place it; DELETE /api/uploads/KEY aborts it
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import signal
import socket
import stat
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from importlib import resources
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vfd.apps.filebrowser.spec import BrowserSpec
from vfd.apps.filebrowser.streams import (
    Held,
    OwnedStream,
    file_chunks,
    settle,
    tar_chunks,
    write_all,
)
from vfd.apps.filebrowser.tree import Tree
from vfd.apps.filebrowser.uploads import Uploads
from vfd.config import RequestLimits
from vfd.daemon.connections import protocol_class
from vfd.errors import ErrorCode, VfdError

log = logging.getLogger(__name__)

TOKEN_PARAM = "vfd_token"
"""The query parameter of the token in the link vfd prints (as for the proxy's apps)."""
MAX_JSON = 1 << 20
FLUSH = 1 << 20
ASSETS = ("index.html", "app.js", "app.css")
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}  # fmt: skip


def load_assets() -> dict[str, bytes]:
    """The page's files, read once at start: a confined server cannot reach the package."""
    base = resources.files("vfd.apps.filebrowser") / "static"
    return {name: (base / name).read_bytes() for name in ASSETS}


def _error(exc: VfdError) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.code.http, headers=HEADERS)


def _page(status: int, title: str, text: str) -> Response:
    body = f"<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}</h1><p>{text}</p>"
    return Response(body, status_code=status, media_type="text/html", headers=HEADERS)


class Guard:
    """The token check in front of the whole application (see the module's docstring)."""

    def __init__(self, app: ASGIApp, token: str, cookie: str) -> None:
        self.app = app
        self.token = token.encode()
        self.cookie = cookie

    def _matches(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get(TOKEN_PARAM)
        if scope["path"] == "/" and given is not None:
            if not self._matches(given):
                page = _page(403, "Wrong token", "This link's token is not valid here.")
                await page(scope, receive, send)
                return
            answer = RedirectResponse("/", status_code=303, headers=HEADERS)
            answer.set_cookie(self.cookie, given, httponly=True, samesite="lax", path="/")
            await answer(scope, receive, send)
            return
        if not self._matches(request.cookies.get(self.cookie)):
            err = VfdError(
                ErrorCode.UNAUTHENTICATED, "open the file manager with the link vfd printed"
            )
            if scope["path"].startswith("/api/"):
                await _error(err)(scope, receive, send)
            else:
                await _page(401, "Not signed in", err.message)(scope, receive, send)
            return
        if request.method not in ("GET", "HEAD") and request.headers.get("x-vfd-files") != "1":
            err = VfdError(ErrorCode.PERMISSION_DENIED, "a change needs the X-Vfd-Files header")
            await _error(err)(scope, receive, send)
            return
        await self.app(scope, receive, send)


Handler = Callable[[Request], Awaitable[Response]]


def _api(fn: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except VfdError as exc:
            return _error(exc)
        except ClientDisconnect:
            return Response(status_code=400)
        except Exception:
            log.exception("file manager: %s %s failed", request.method, request.url.path)
            return _error(VfdError(ErrorCode.INTERNAL, "internal error (logged)"))

    return wrapped


async def _json(request: Request) -> dict[str, Any]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON:
            raise VfdError(ErrorCode.INVALID_ARGUMENT, "request body is too large")
    try:
        obj = json.loads(body)
    except ValueError:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, "request body is not JSON") from None
    if not isinstance(obj, dict):
        raise VfdError(ErrorCode.INVALID_ARGUMENT, "request body must be a JSON object")
    return obj


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise VfdError(ErrorCode.INVALID_ARGUMENT, f"{key} must be a string", field=key)
    return value


def _strs(obj: dict[str, Any], key: str) -> list[str]:
    value = obj.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise VfdError(ErrorCode.INVALID_ARGUMENT, f"{key} must be a list of strings", field=key)
    return value


def _int(request: Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, f"{key} must be {low}-{high}", field=key)
    return value


def _disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    quoted = urllib.parse.quote(name.encode("utf-8", "surrogateescape"), safe="")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quoted}"


class FileManager:
    """The routes of one server over one tree."""

    def __init__(self, spec: BrowserSpec, tree: Tree, assets: dict[str, bytes]) -> None:
        self.spec = spec
        self.tree = tree
        self.uploads = Uploads(tree, spec.stall)
        self.assets = assets

    def routes(self) -> list[Route]:
        api = [
            ("/api/list", self.list, ["GET"]),
            ("/api/download", self.download, ["GET"]),
            ("/api/mkdir", self.mkdir, ["POST"]),
            ("/api/rename", self.rename, ["POST"]),
            ("/api/move", self.move, ["POST"]),
            ("/api/delete", self.delete, ["POST"]),
            ("/api/uploads", self.upload_begin, ["POST"]),
            ("/api/uploads/{key}/file", self.upload_file, ["PUT"]),
            ("/api/uploads/{key}/dir", self.upload_dir, ["POST"]),
            ("/api/uploads/{key}/commit", self.upload_commit, ["POST"]),
            ("/api/uploads/{key}", self.upload_abort, ["DELETE"]),
        ]
        return [
            Route("/", self.asset, methods=["GET"]),
            Route("/static/{name}", self.asset, methods=["GET"]),
            *(Route(path, _api(fn), methods=methods) for path, fn, methods in api),
        ]

    async def asset(self, request: Request) -> Response:
        name = request.path_params.get("name", "index.html")
        data = self.assets.get(name)
        if data is None:
            return _page(404, "Not found", "No such page.")
        kind = _TYPES[os.path.splitext(name)[1]]
        return Response(data, media_type=kind, headers=HEADERS)

    async def list(self, request: Request) -> Response:
        path = request.query_params.get("path", "")
        offset = _int(request, "offset", 0, 0, 1 << 31)
        limit = _int(request, "limit", self.spec.page, 1, 1000)
        page = await settle(self.tree.listing, path, offset, limit)
        return JSONResponse(page, headers=HEADERS)

    async def download(self, request: Request) -> Response:
        path = request.query_params.get("path", "")
        fd, st = await settle(self.tree.open_read, path, cleanup=lambda r: os.close(r[0]))
        held = Held(fd)
        name = path.rstrip("/").rsplit("/", 1)[-1]
        headers = {**HEADERS}
        if stat.S_ISDIR(st.st_mode):
            headers["Content-Disposition"] = _disposition(name + ".tar")
            body = tar_chunks(held, name)
            media = "application/x-tar"
        else:
            headers["Content-Disposition"] = _disposition(name)
            headers["Content-Length"] = str(st.st_size)
            body = file_chunks(held, st.st_size)
            media = "application/octet-stream"
        return OwnedStream(body, held, headers=headers, media_type=media)

    async def mkdir(self, request: Request) -> Response:
        obj = await _json(request)
        return JSONResponse(await settle(self.tree.mkdir, _str(obj, "path")), headers=HEADERS)

    async def rename(self, request: Request) -> Response:
        obj = await _json(request)
        made = await settle(self.tree.rename, _str(obj, "path"), _str(obj, "name"))
        return JSONResponse(made, headers=HEADERS)

    async def move(self, request: Request) -> Response:
        obj = await _json(request)
        moved = await settle(self.tree.move, _strs(obj, "paths"), _str(obj, "dest"))
        return JSONResponse({"moved": moved}, headers=HEADERS)

    async def delete(self, request: Request) -> Response:
        obj = await _json(request)
        await settle(self.tree.delete, _strs(obj, "paths"))
        return JSONResponse({"deleted": obj["paths"]}, headers=HEADERS)

    # -- uploads ----------------------------------------------------------------------------

    async def upload_begin(self, request: Request) -> Response:
        obj = await _json(request)
        batch = await settle(self.uploads.begin, _str(obj, "dest"), _strs(obj, "names"))
        return JSONResponse({"key": batch.key}, status_code=201, headers=HEADERS)

    async def upload_file(self, request: Request) -> Response:
        batch = self.uploads.get(request.path_params["key"])
        rel = request.query_params.get("path", "")
        batch.busy += 1
        try:
            fd = await settle(self.uploads.open_file, batch, rel, cleanup=os.close)
            try:
                size = await self._receive(request, fd, rel)
            except BaseException:  # a file cut short: the whole upload goes, nothing shows
                with anyio.CancelScope(shield=True):
                    await settle(self.uploads.abort, batch)
                raise
            finally:
                os.close(fd)
        finally:
            batch.busy -= 1
            batch.touched = time.monotonic()
        return JSONResponse({"path": rel, "size": size}, headers=HEADERS)

    async def _receive(self, request: Request, fd: int, rel: str) -> int:
        size = 0
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) >= FLUSH:
                await settle(write_all, fd, buf, rel)
                size += len(buf)
                buf = bytearray()
        if buf:
            await settle(write_all, fd, buf, rel)
            size += len(buf)
        return size

    async def upload_dir(self, request: Request) -> Response:
        batch = self.uploads.get(request.path_params["key"])
        rel = request.query_params.get("path", "")
        await settle(self.uploads.mkdir, batch, rel)
        return JSONResponse({"path": rel}, headers=HEADERS)

    async def upload_commit(self, request: Request) -> Response:
        batch = self.uploads.get(request.path_params["key"])
        if batch.busy:
            raise VfdError(ErrorCode.INVALID_STATUS, "files of this upload are still coming")
        placed = await settle(self.uploads.commit, batch)
        return JSONResponse({"placed": placed}, headers=HEADERS)

    async def upload_abort(self, request: Request) -> Response:
        batch = self.uploads.get(request.path_params["key"])
        await settle(self.uploads.abort, batch)
        return JSONResponse({"aborted": batch.key}, headers=HEADERS)

    async def sweep(self) -> None:
        """Remove uploads whose client went silent, for as long as the server runs."""
        while True:
            await asyncio.sleep(max(self.spec.stall / 4, 0.05))
            for batch in self.uploads.stalled(time.monotonic()):
                log.info("file manager: upload into %s stalled; removed", batch.dest)
                await settle(self.uploads.abort, batch)


def build_app(
    spec: BrowserSpec, tree: Tree, port: int, assets: dict[str, bytes] | None = None
) -> ASGIApp:
    """The whole application: the token guard around the file manager's routes."""
    manager = FileManager(spec, tree, load_assets() if assets is None else assets)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(manager.sweep())
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await asyncio.to_thread(manager.uploads.abort_all)

    app = Starlette(routes=manager.routes(), lifespan=lifespan)
    return Guard(app, spec.token, f"vfd_files_{port}")


def bind(host: str, port: int) -> socket.socket:
    """The server's listening socket (bound before a confined server gives up root)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.set_inheritable(False)
    except BaseException:
        sock.close()
        raise
    return sock


PEER_CONNECTIONS = 64
"""Connections one address may hold open at once (one more is answered ``429``)."""


class _Server(uvicorn.Server):
    """uvicorn's server ending on SIGTERM/SIGINT with a clean exit (uvicorn's own capture
    re-raises the signal after shutdown: status -15), calling ``on_ready`` once it serves."""

    on_ready: Callable[[], None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.on_ready is not None and self.started:
            self.on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _on_signal(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


def server_for(
    spec: BrowserSpec,
    tree: Tree,
    sock: socket.socket,
    assets: dict[str, bytes] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> uvicorn.Server:
    """A uvicorn server of the file manager on ``sock`` (bound, listening), its
    configuration loaded (so that nothing is imported once it serves)."""
    port = sock.getsockname()[1]
    limits = RequestLimits(
        peer_connections=PEER_CONNECTIONS,
        header_timeout=spec.header_timeout,
        body_timeout=spec.body_timeout,
    )
    config = uvicorn.Config(
        build_app(spec, tree, port, assets),
        http=protocol_class(limits),
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=limits.keepalive_timeout,
        timeout_graceful_shutdown=5,
        ws="none",
        loop="none",
    )
    config.load()
    server = _Server(config)
    server.on_ready = on_ready
    return server


async def serve(spec: BrowserSpec, sock: socket.socket) -> None:
    """Serve ``spec.root`` on ``sock`` until SIGTERM/SIGINT."""
    tree = Tree(spec.root, spec.folders).open()
    try:
        await server_for(spec, tree, sock).serve(sockets=[sock])
    finally:
        tree.close()
