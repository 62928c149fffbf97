"""File routes: list, mkdir, move, remove, resumable upload, download with Range or as tar."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from vfd.daemon.routes.deps import JSON, Body, CallerDep, DaemonDep, run
from vfd.daemon.services.files import open_folder
from vfd.daemon.userfs import FolderFS, os_error, write_tar
from vfd.errors import ErrorCode, VfdError

router = APIRouter(prefix="/v1/vfolders/{name}", tags=["files"])

CHUNK = 1 << 20
PathQ = Annotated[str, Query(description="path inside the folder; '' or '/' is its root")]
KeyQ = Annotated[str, Query(description="client-chosen upload key, 8-64 of [A-Za-z0-9_-]")]


class MkdirBody(Body):
    path: str
    parents: bool = False


class MoveBody(Body):
    src: str
    dst: str


class RemoveBody(Body):
    paths: list[str]
    recursive: bool = False


@router.get("/files")
async def list_files(name: str, daemon: DaemonDep, caller: CallerDep, path: PathQ = "") -> JSON:
    """The entries of a directory (or the one entry of a file), links not followed."""
    fs = await run(open_folder, daemon, caller, name, write=False)
    entry = await run(fs.stat, path)
    if entry["type"] != "dir":
        return {"path": path, "type": entry["type"], "entries": [entry]}
    return {"path": path, "type": "dir", "entries": await run(fs.listdir, path)}


@router.post("/mkdir", status_code=201)
async def mkdir(name: str, body: MkdirBody, daemon: DaemonDep, caller: CallerDep) -> JSON:
    fs = await run(open_folder, daemon, caller, name, write=True)
    return await run(fs.mkdir, body.path, parents=body.parents)


@router.post("/move")
async def move(name: str, body: MoveBody, daemon: DaemonDep, caller: CallerDep) -> JSON:
    fs = await run(open_folder, daemon, caller, name, write=True)
    return await run(fs.move, body.src, body.dst)


@router.post("/remove")
async def remove(name: str, body: RemoveBody, daemon: DaemonDep, caller: CallerDep) -> JSON:
    """Remove each path in order; stops at the first failure (the ones before it are gone)."""
    if not body.paths:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, "name at least one path", field="paths")
    fs = await run(open_folder, daemon, caller, name, write=True)
    removed: list[str] = []
    for path in body.paths:
        await run(fs.remove, path, recursive=body.recursive)
        removed.append(path)
    return {"removed": removed}


@router.get("/upload")
async def upload_status(
    name: str, daemon: DaemonDep, caller: CallerDep, path: PathQ, key: KeyQ
) -> JSON:
    """How many bytes of an upload are stored: the offset to resume from."""
    fs = await run(open_folder, daemon, caller, name, write=True)
    return {"path": path, "key": key, "offset": await run(fs.upload_offset, path, key)}


@router.put("/upload")
async def upload(
    name: str,
    request: Request,
    daemon: DaemonDep,
    caller: CallerDep,
    path: PathQ,
    key: KeyQ,
    size: Annotated[int, Query(ge=0, description="the whole file's size")],
    offset: Annotated[int, Query(ge=0, description="where this body starts")] = 0,
    overwrite: bool = False,
) -> JSON:
    """Append the body at ``offset``; when the file reaches ``size`` it appears under ``path``.

    Past the quota the upload fails with ``507 quota_exceeded`` and its part file is removed.
    If the connection breaks, what was stored stays for a resume from ``GET .../upload``.
    """
    if offset > size:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, "offset is past size", field="offset")
    fs = await run(open_folder, daemon, caller, name, write=True)
    fd = await run(fs.upload_open, path, key, offset)
    stored = offset
    try:
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) >= CHUNK:
                stored += await run(_write_all, fd, bytes(buf), path)
                buf.clear()
            if stored + len(buf) > size:
                raise VfdError(
                    ErrorCode.INVALID_ARGUMENT, f"the body is longer than size={size}", field="size"
                )
        if buf:
            stored += await run(_write_all, fd, bytes(buf), path)
    except VfdError as exc:
        await run(os.close, fd)
        if exc.code in (ErrorCode.QUOTA_EXCEEDED, ErrorCode.INVALID_ARGUMENT):
            await run(fs.upload_abort, path, key)
        raise
    except OSError as exc:
        await run(os.close, fd)
        raise os_error(exc, path) from None
    await run(os.close, fd)
    if stored < size:
        return {"path": path, "key": key, "offset": stored, "complete": False}
    entry = await run(fs.upload_complete, path, key, size=size, overwrite=overwrite)
    return {"path": path, "key": key, "offset": stored, "complete": True, "entry": entry}


@router.delete("/upload")
async def upload_abort(
    name: str, daemon: DaemonDep, caller: CallerDep, path: PathQ, key: KeyQ
) -> JSON:
    fs = await run(open_folder, daemon, caller, name, write=True)
    await run(fs.upload_abort, path, key)
    return {"path": path, "key": key, "aborted": True}


def _write_all(fd: int, data: bytes, path: str) -> int:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError as exc:
            raise os_error(exc, path) from None
        view = view[n:]
    return len(data)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str, size: int) -> tuple[int, int]:
    """``(start, end)`` inclusive for one ``Range: bytes=`` spec, or 416 range_not_satisfiable."""
    m = _RANGE.match(header.strip())
    bad = VfdError(
        ErrorCode.RANGE_NOT_SATISFIABLE,
        f"range {header!r} does not fit a file of {size} bytes",
        size=size,
    )
    if not m or (not m.group(1) and not m.group(2)):
        raise bad
    if not m.group(1):  # suffix: the last N bytes
        n = int(m.group(2))
        if n == 0:
            raise bad
        return max(size - n, 0), size - 1
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        raise bad
    return start, min(end, size - 1)


@router.get("/download", response_model=None)
async def download(
    name: str,
    request: Request,
    daemon: DaemonDep,
    caller: CallerDep,
    path: PathQ,
    archive: bool = False,
) -> Response:
    """A file's bytes (``Range`` honoured), or with ``archive=true`` a tar stream of a path."""
    fs = await run(open_folder, daemon, caller, name, write=False)
    if archive:
        await run(fs.stat, path)  # a bad path fails here, before a 200 is sent
        return _tar_response(fs, path)
    fd, st = await run(fs.open_file, path)
    size = st.st_size
    start, end, status = 0, size - 1, 200
    headers = {"Accept-Ranges": "bytes"}
    range_header = request.headers.get("range")
    try:
        if range_header:
            start, end = parse_range(range_header, size)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    except VfdError:
        os.close(fd)
        raise
    headers["Content-Length"] = str(end - start + 1)
    base = path.rstrip("/").rsplit("/", 1)[-1] or name
    headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{_quote(base)}"

    async def body() -> AsyncIterator[bytes]:
        pos = start
        try:
            while pos <= end:
                data = await asyncio.to_thread(os.pread, fd, min(CHUNK, end - pos + 1), pos)
                if not data:
                    break
                pos += len(data)
                yield data
        finally:
            os.close(fd)

    return StreamingResponse(
        body(), status_code=status, headers=headers, media_type="application/octet-stream"
    )


def _quote(text: str) -> str:
    return quote(text, safe="")


def _tar_response(fs: FolderFS, path: str) -> StreamingResponse:
    """Run the tar writer in a thread; its output reaches the client through a pipe."""
    rfd, wfd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(wfd, "wb", buffering=CHUNK) as out:
                write_tar(fs, path, out)
        except BaseException as exc:  # reported by truncating the stream; logged by caller
            failure.append(exc)

    thread = threading.Thread(target=produce, name="vfd-tar", daemon=True)
    thread.start()

    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                data = await asyncio.to_thread(os.read, rfd, CHUNK)
                if not data:
                    break
                yield data
        finally:
            os.close(rfd)
            await asyncio.to_thread(thread.join)
        if failure:
            raise failure[0]

    base = path.rstrip("/").rsplit("/", 1)[-1] or "folder"
    return StreamingResponse(
        body(),
        media_type="application/x-tar",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{_quote(base)}.tar"},
    )
