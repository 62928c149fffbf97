"""File routes: list, mkdir, move, remove; uploads and downloads mapped onto
:mod:`vfd.daemon.services.transfer`, which holds their protocols."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from vfd import wirenames
from vfd.daemon import runtime
from vfd.daemon.connections import RAW_KEY, RawSocket
from vfd.daemon.errors import error_response
from vfd.daemon.rawio import ClientGone, RawBody
from vfd.daemon.routes.deps import (
    INT64_MAX,
    JSON,
    Body,
    CallerDep,
    DaemonDep,
    run_files,
    run_mountd,
)
from vfd.daemon.runtime import Pool
from vfd.daemon.services import transfer
from vfd.daemon.services.files import open_folder
from vfd.errors import ErrorCode, VfdError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/vfolders/{name}", tags=["files"])

_PATH_DOC = "path inside the folder; '' or '/' is its root"
_PATH_B64_DOC = "the path's bytes in base64, for a path that is not UTF-8 (instead of path)"


def _query_path(
    path: Annotated[str | None, Query(description=_PATH_DOC)] = None,
    path_b64: Annotated[str | None, Query(description=_PATH_B64_DOC)] = None,
) -> str | None:
    return wirenames.from_request(path, path_b64, "path")


def _root_default(path: Annotated[str | None, Depends(_query_path)]) -> str:
    return "" if path is None else path


def _required(path: Annotated[str | None, Depends(_query_path)]) -> str:
    if path is None:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, "missing field 'path'", field="path")
    return path


PathQ = Annotated[str, Depends(_required)]
"""The request's ``path`` (or ``path_b64``, see :mod:`vfd.wirenames`); required."""
RootPathQ = Annotated[str, Depends(_root_default)]
"""The request's ``path`` (or ``path_b64``); the folder root when neither is given."""
KeyQ = Annotated[str, Query(description="client-chosen upload key, 8-64 of [A-Za-z0-9_-]")]


class MkdirBody(Body):
    path: str | None = None
    path_b64: str | None = None
    parents: bool = False


class MoveBody(Body):
    src: str | None = None
    src_b64: str | None = None
    dst: str | None = None
    dst_b64: str | None = None


class RemoveBody(Body):
    paths: list[str] | None = None
    paths_b64: list[str] | None = None
    recursive: bool = False


def _body_path(text: str | None, b64: str | None, field: str) -> str:
    """A path field of a body, given as text or as ``<field>_b64`` (:mod:`vfd.wirenames`)."""
    path = wirenames.from_request(text, b64, field)
    if path is None:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, f"missing field {field!r}", field=field)
    return path


def _body_paths(body: RemoveBody) -> list[str]:
    if body.paths is not None and body.paths_b64 is not None:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT, "give 'paths' or 'paths_b64', not both", field="paths"
        )
    if body.paths_b64 is not None:
        return [wirenames.decode_b64(p, "paths_b64") for p in body.paths_b64]
    paths = body.paths or []
    for p in paths:
        wirenames.from_request(p, None, "paths")
    return paths


def _echo(result: JSON) -> JSON:
    """``result`` with its ``path`` written as the API writes names (``path_b64`` too when
    the path is not UTF-8)."""
    return {**result, **wirenames.fields("path", result["path"])}


@router.get("/files")
async def list_files(
    name: str,
    daemon: DaemonDep,
    caller: CallerDep,
    path: RootPathQ,
    entry_only: Annotated[
        bool,
        Query(alias="entry", description="the entry of path itself, not a directory's listing"),
    ] = False,
) -> JSON:
    """The entries of a directory (or the one entry of a file), links not followed; with
    ``entry=true`` the one entry of ``path`` whatever it is (what it is, without listing a
    directory of many files)."""
    fs = await run_files(open_folder, daemon, caller, name, write=False)
    entry = await run_files(fs.stat, path)
    if entry["type"] != "dir" or entry_only:
        return _echo({"path": path, "type": entry["type"], "entries": [entry]})
    return _echo({"path": path, "type": "dir", "entries": await run_files(fs.listdir, path)})


@router.post("/mkdir", status_code=201)
async def mkdir(name: str, body: MkdirBody, daemon: DaemonDep, caller: CallerDep) -> JSON:
    fs = await run_files(open_folder, daemon, caller, name, write=True)
    path = _body_path(body.path, body.path_b64, "path")
    return await run_files(fs.mkdir, path, parents=body.parents)


@router.post("/move")
async def move(name: str, body: MoveBody, daemon: DaemonDep, caller: CallerDep) -> JSON:
    src = _body_path(body.src, body.src_b64, "src")
    dst = _body_path(body.dst, body.dst_b64, "dst")
    fs = await run_files(open_folder, daemon, caller, name, write=True)
    return await run_files(fs.move, src, dst)


@router.post("/remove")
async def remove(name: str, body: RemoveBody, daemon: DaemonDep, caller: CallerDep) -> JSON:
    """Remove each path in order; stops at the first failure (the ones before it are gone)."""
    paths = _body_paths(body)
    if not paths:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, "name at least one path", field="paths")
    fs = await run_files(open_folder, daemon, caller, name, write=True)
    removed: list[str] = []
    for path in paths:
        await run_files(fs.remove, path, recursive=body.recursive)
        removed.append(path)
    return wirenames.list_fields("removed", removed)


@router.get("/upload")
async def upload_status(
    name: str, daemon: DaemonDep, caller: CallerDep, path: PathQ, key: KeyQ
) -> JSON:
    """How many bytes of an upload are stored (the offset to resume from), and what is at
    ``path`` now (``existing``), so that a client can refuse before it sends anything."""
    fs = await run_files(open_folder, daemon, caller, name, write=True)
    return _echo(await run_files(transfer.upload_status, fs, path, key))


_OCTETS = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


@router.put(
    "/upload",
    response_model=None,
    openapi_extra={"requestBody": {"required": True, "content": _OCTETS}},
)
async def upload(
    name: str,
    request: Request,
    daemon: DaemonDep,
    caller: CallerDep,
    path: PathQ,
    key: KeyQ,
    size: Annotated[int, Query(ge=0, le=INT64_MAX, description="the whole file's size")],
    offset: Annotated[int, Query(ge=0, le=INT64_MAX, description="where this body starts")] = 0,
    overwrite: bool = False,
    durable: Annotated[
        bool, Query(description="answer only once the data is on disk (fsync); false skips it")
    ] = True,
) -> JSON | Response:
    """Append the body at ``offset``; when the file reaches ``size`` it appears under ``path``.

    An upload that can be refused without its data (an existing ``path`` without
    ``overwrite``, a directory, a wrong offset) is answered before the body is read. Every
    refusal closes the connection, so that the client stops sending the rest of the body
    instead of the server reading and dropping it. Past the quota the upload fails with
    ``507 quota_exceeded`` and its part file is removed; if the connection breaks, what was
    stored stays for a resume from ``GET .../upload``. The remaining size is reserved of the
    quota before the body is read, and the answer waits for ``fsync`` unless
    ``durable=false`` (docs/transfers.md).
    """
    raw = _raw_body(request, transfer.DIRECT_MIN)
    try:
        fs = await run_files(open_folder, daemon, caller, name, write=True)
        return _echo(
            await transfer.receive_upload(
                fs,
                raw or request.stream(),
                path=path,
                key=key,
                size=size,
                offset=offset,
                overwrite=overwrite,
                link=daemon.mountd.transfer(),
                durable=durable,
            )
        )
    except VfdError as exc:
        return _closing(error_response(exc))
    except (ClientDisconnect, ClientGone) as exc:
        why = f": {exc}" if isinstance(exc, ClientGone) else ""
        log.info(
            "upload of %s into %s: the client went away mid-body%s",
            wirenames.escaped(path),
            name,
            why,
        )
        err = VfdError(ErrorCode.INVALID_ARGUMENT, "the request body ended early", path=path)
        return _closing(error_response(err))
    finally:
        if raw is not None:
            raw.close()


def _raw_socket(scope: Scope) -> RawSocket | None:
    raw = scope.get("state", {}).get(RAW_KEY)
    return raw if isinstance(raw, RawSocket) else None


def _raw_body(request: Request, minimum: int = 0, *, chunked: bool = False) -> RawBody | None:
    """The request's body read straight from its socket (connections.RawSocket), when the
    connection offers that and the body has a ``Content-Length`` of ``minimum`` bytes or
    more, or, with ``chunked``, is chunked and its client waits for ``100 Continue``; None:
    read it as ASGI messages (``request.stream()``)."""
    raw = _raw_socket(request.scope)
    length = request.headers.get("content-length")
    if raw is None or (length is not None and (not length.isdigit() or int(length) < minimum)):
        return None
    return raw.take_body(request.scope, chunked=chunked)


def _closing(response: Response) -> Response:
    """``response``, closing the connection after it (the request body may be unread)."""
    response.headers["Connection"] = "close"
    return response


@router.put(
    "/upload-archive",
    response_model=None,
    openapi_extra={"requestBody": {"required": True, "content": _OCTETS}},
)
async def upload_archive(
    name: str,
    request: Request,
    daemon: DaemonDep,
    caller: CallerDep,
    key: KeyQ,
    path: RootPathQ,
    overwrite: bool = False,
    durable: Annotated[
        bool, Query(description="answer only once the data is on disk (one syncfs)")
    ] = True,
) -> JSON | Response:
    """Unpack a tar body (any content type) into the directory ``path`` (the folder root by
    default): its top-level entries appear there together once the whole archive is in.
    Regular files, directories and symbolic links are made, as the caller; other entries are
    listed in ``skipped``. An existing top-level name is refused (``409 path_exists``)
    unless ``overwrite`` (files only). Every refusal removes what was unpacked and closes
    the connection (docs/transfers.md)."""
    raw = _raw_body(request, chunked=True)
    try:
        fs = await run_files(open_folder, daemon, caller, name, write=True)
        vfid = os.path.basename(fs.root)
        sync = functools.partial(daemon.mountd.sync, vfid) if durable else None
        result = await transfer.receive_archive(
            fs,
            raw or request.stream(),
            path=path,
            key=key,
            overwrite=overwrite,
            sync=sync,
            link=daemon.mountd.transfer(),
        )
        return _echo(result)
    except VfdError as exc:
        return _closing(error_response(exc))
    except (ClientDisconnect, ClientGone) as exc:
        why = f": {exc}" if isinstance(exc, ClientGone) else ""
        log.info("archive upload into %s: the client went away mid-body%s", name, why)
        err = VfdError(ErrorCode.INVALID_ARGUMENT, "the request body ended early", path=path)
        return _closing(error_response(err))
    finally:
        if raw is not None:
            raw.close()


@router.post("/sync")
async def sync(name: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    """Write what was stored in the folder to disk (``syncfs`` of its file system, by
    mountd): one call after many uploads made with ``durable=false`` makes them as durable
    as ``durable=true`` would have, at the cost of one sync instead of one per file."""
    fs = await run_files(open_folder, daemon, caller, name, write=True)
    vfid = os.path.basename(fs.root)
    await run_mountd(daemon.mountd.sync, vfid)
    return {"vfolder": name, "synced": True}


@router.delete("/upload")
async def upload_abort(
    name: str, daemon: DaemonDep, caller: CallerDep, path: PathQ, key: KeyQ
) -> JSON:
    fs = await run_files(open_folder, daemon, caller, name, write=True)
    await run_files(fs.upload_abort, path, key)
    return {**wirenames.fields("path", path), "key": key, "aborted": True}


class SourceResponse(StreamingResponse):
    """A streamed download that closes its source however the exchange ends: sent, the
    client gone, or the request cancelled."""

    def __init__(self, source: transfer.Source) -> None:
        headers = dict(source.headers)
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{_quote(source.filename)}"
        super().__init__(
            source.chunks(),
            status_code=source.status,
            headers=headers,
            media_type=source.media_type,
        )
        self.source = source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            span = self.source.span() if isinstance(self.source, transfer.FileSource) else None
            raw = _raw_socket(scope)
            if raw is not None and isinstance(self.source, transfer.TarSource):
                raw.widen(scope, transfer.CHUNK)
            if span is None or raw is None or scope["method"] != "GET":
                await super().__call__(scope, receive, send)
                return
            await self._sendfile(raw, span, scope, send)
        finally:
            await self.source.aclose()

    async def _sendfile(
        self, raw: RawSocket, span: tuple[int, int, int], scope: Scope, send: Send
    ) -> None:
        """The answer with its bytes sent by ``sendfile`` from the backing file (a thread of
        the transfer pool for the whole file; its slot is taken before the head is sent,
        so that a user past ``[limits] user_transfer`` gets a 429 instead of a cut answer)."""
        try:
            runtime.current().take_slot(Pool.TRANSFER)
        except VfdError as exc:
            await error_response(exc)(scope, _no_receive, send)
            return
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        fd, offset, count = span
        try:
            sent = await raw.sendfile(scope, transfer.in_transfer_pool, fd, offset, count)
        except ClientGone as exc:
            log.info("download of %s: %s", wirenames.escaped(self.source.filename), exc)
            for _ in range(2):  # the connection's loss is seen before the request ends
                await asyncio.sleep(0)
            return
        if not sent:  # the head is still in the transport's buffer: the bytes follow it
            async for chunk in self.source.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _header(name: str, doc: str) -> Any:
    return Header(alias=name, description=doc)


RangeH = Annotated[str | None, _header("Range", "bytes=<first>-<last> (RFC 9110 §14.2)")]
IfRangeH = Annotated[str | None, _header("If-Range", "send the range only for this ETag")]
IfMatchH = Annotated[str | None, _header("If-Match", "ETags; 412 unless one names the file")]
IfNoneMatchH = Annotated[str | None, _header("If-None-Match", "ETags; 304 if one names it")]


@router.get("/download", response_model=None)
async def download(
    name: str,
    daemon: DaemonDep,
    caller: CallerDep,
    path: PathQ,
    archive: bool = False,
    range_header: RangeH = None,
    if_range: IfRangeH = None,
    if_match: IfMatchH = None,
    if_none_match: IfNoneMatchH = None,
) -> Response:
    """A file's bytes with ``ETag``/``Last-Modified``; ``Range``, ``If-Range``, ``If-Match``
    and ``If-None-Match`` honoured. With ``archive=true``, a tar stream of a path."""
    fs = await run_files(open_folder, daemon, caller, name, write=False)
    source: transfer.Source
    if archive:
        source = await transfer.open_archive(fs, path, daemon.mountd.transfer())
    else:
        try:
            source = await transfer.open_download(
                fs,
                path,
                range_header=range_header,
                if_range=if_range,
                if_match=if_match,
                if_none_match=if_none_match,
                link=daemon.mountd.transfer(),
            )
        except VfdError as exc:
            if exc.code is not ErrorCode.RANGE_NOT_SATISFIABLE:
                raise
            refused = error_response(exc)  # RFC 9110 §15.5.17: say the current length
            refused.headers["Content-Range"] = f"bytes */{exc.details['size']}"
            return refused
        if source.status == 304:
            return Response(status_code=304, headers=source.headers)
    return SourceResponse(source)


def _quote(text: str) -> str:
    """``text`` percent-encoded from its bytes: a name that is not UTF-8 keeps them."""
    return quote(wirenames.name_bytes(text), safe="")
