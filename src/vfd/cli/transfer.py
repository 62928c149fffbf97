"""Streaming transfers for the CLI: resumable uploads and downloads with a progress bar.

Uploads go to ``PUT /v1/vfolders/{name}/upload`` in one streamed request per file, under a
key derived from the source file (path, size, mtime) and the destination, so running the same
``vfd vfolder upload`` again after an interruption resumes each file where the daemon's copy
stops. Before anything is sent or made, every file's upload state is asked for: an existing
destination (without ``--overwrite``) refuses the whole upload while no byte has travelled.

Downloads of files are written to ``<dest>/<name>.vfd-part`` and renamed when complete; the
file's ``ETag`` is kept beside it in ``<name>.vfd-part.etag``. An existing part file is
resumed with a Range request under ``If-Range: <etag>``: the daemon sends the rest only if
the file is still that version, else the whole file, and the part file starts over — so a
download never joins two versions. A part file without a tag starts over too. Directories
are downloaded as a tar stream and unpacked with the ``data`` filter (no absolute paths, no
escapes, no devices).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from vfd.cli.client import VfdClient, folder_path
from vfd.errors import ErrorCode, VfdError

CHUNK = 1 << 20


@dataclass(frozen=True)
class UploadItem:
    source: Path
    dest: str
    size: int
    key: str


def upload_key(source: Path, st: os.stat_result, dest: str) -> str:
    """A key stable for one version of one source file going to one destination."""
    ident = f"{source.absolute()}\0{st.st_size}\0{st.st_mtime_ns}\0{dest}"
    return hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def plan_upload(sources: list[Path], dest: str) -> tuple[list[str], list[UploadItem]]:
    """Directories to make and files to send, in order; refuses missing or special sources."""
    items: list[UploadItem] = []
    base = dest.strip("/")
    dirs: list[str] = [base] if base else []  # --dest is made when missing

    def join(*parts: str) -> str:
        return "/".join(p for p in (base, *parts) if p)

    def add_file(path: Path, rel: str) -> None:
        st = path.stat()
        target = join(rel)
        items.append(UploadItem(path, target, st.st_size, upload_key(path, st, target)))

    for src in sources:
        if not src.exists() and not src.is_symlink():
            raise VfdError(ErrorCode.PATH_NOT_FOUND, f"{src}: no such file or directory")
        if src.is_symlink():
            raise VfdError(ErrorCode.INVALID_PATH, f"{src}: symbolic links are not uploaded")
        if src.is_file():
            add_file(src, src.name)
        elif src.is_dir():
            top = src.resolve().name
            dirs.append(join(top))
            for root, subdirs, files in os.walk(src):
                rel_root = Path(root).relative_to(src)
                subdirs.sort()
                for d in subdirs:
                    if not (Path(root) / d).is_symlink():
                        dirs.append(join(top, *rel_root.parts, d))
                for f in sorted(files):
                    p = Path(root) / f
                    if p.is_file() and not p.is_symlink():
                        add_file(p, "/".join([top, *rel_root.parts, f]))
        else:
            raise VfdError(ErrorCode.INVALID_PATH, f"{src}: not a regular file or directory")
    return dirs, items


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


def _file_chunks(path: Path, offset: int, advance: Any) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(CHUNK):
            advance(len(chunk))
            yield chunk


def upload(
    client: VfdClient,
    console: Console,
    name: str,
    sources: list[Path],
    dest: str,
    *,
    overwrite: bool,
) -> dict[str, Any]:
    """Upload files and directories into folder ``name`` under ``dest``."""
    dirs, items = plan_upload(sources, dest)
    base = folder_path(name)
    offsets = _preflight(client, name, items, overwrite=overwrite)
    for d in dirs:
        client.post(f"{base}/mkdir", {"path": d, "parents": True})
    done: list[dict[str, Any]] = []
    total = sum(i.size for i in items)
    with _progress(console) as progress:
        task = progress.add_task(f"upload to {name}", total=total)
        for item, offset in zip(items, offsets, strict=True):
            progress.advance(task, offset)
            query = {
                "path": item.dest,
                "key": item.key,
                "size": str(item.size),
                "offset": str(offset),
            }
            if overwrite:
                query["overwrite"] = "true"
            result = client.send(
                "PUT",
                f"{base}/upload",
                params=query,
                content=_file_chunks(item.source, offset, lambda n: progress.advance(task, n)),
                timeout=None,
            )
            done.append(
                {
                    "source": str(item.source),
                    "path": item.dest,
                    "size": item.size,
                    "resumed_from": offset,
                }
            )
            if not result.get("complete"):
                raise VfdError(
                    ErrorCode.UPLOAD_OFFSET_MISMATCH,
                    f"{item.source}: the daemon stored {result.get('offset')} of {item.size} "
                    "bytes; run the same upload again to resume",
                )
    return {"vfolder": name, "directories": dirs, "files": done}


def _preflight(
    client: VfdClient, name: str, items: list[UploadItem], *, overwrite: bool
) -> list[int]:
    """Where each file's upload stands (the offset to resume from), asked before anything is
    sent: a destination that is a directory, or that exists without ``overwrite``, refuses
    the upload. The daemon would refuse it too, but only once a request body is on its way."""
    base = folder_path(name)
    offsets: list[int] = []
    for item in items:
        state = client.get(f"{base}/upload", params={"path": item.dest, "key": item.key})
        existing = state.get("existing")
        if existing == "dir":
            raise VfdError(
                ErrorCode.IS_A_DIRECTORY, f"{item.dest} is a directory in {name}", path=item.dest
            )
        if existing is not None and not overwrite:
            raise VfdError(
                ErrorCode.PATH_EXISTS,
                f"{item.dest} already exists in {name} (--overwrite replaces it)",
                path=item.dest,
            )
        offset = int(state["offset"])
        offsets.append(0 if offset > item.size else offset)  # a stale part file: start over
    return offsets


def download(
    client: VfdClient,
    console: Console,
    name: str,
    paths: list[str],
    dest: Path,
) -> dict[str, Any]:
    """Download files (resumable) and directories (tar, unpacked) from folder ``name``."""
    if not dest.is_dir():
        raise VfdError(ErrorCode.NOT_A_DIRECTORY, f"{dest} is not a directory")
    base = folder_path(name)
    entries = []
    for path in paths:
        listing = client.get(f"{base}/files", params={"path": path})
        entries.append((path, listing["type"] == "dir", listing["entries"]))
    results: list[dict[str, Any]] = []
    total = sum(e[2][0]["size"] for e in entries if not e[1])
    with _progress(console) as progress:
        task = progress.add_task(f"download from {name}", total=total or None)
        for path, is_dir, _listing in entries:
            if is_dir:
                results.append(_download_tree(client, base, path, dest, progress, task))
            else:
                results.append(_download_file(client, base, path, dest, progress, task))
    return {"vfolder": name, "downloaded": results}


def _download_file(
    client: VfdClient, base: str, path: str, dest: Path, progress: Progress, task: Any
) -> dict[str, Any]:
    filename = path.rstrip("/").rsplit("/", 1)[-1]
    final = dest / filename
    part = dest / f"{filename}.vfd-part"
    tag = dest / f"{filename}.vfd-part.etag"
    offset = part.stat().st_size if part.exists() else 0
    etag = tag.read_text().strip() if tag.exists() else ""
    try:
        offset = _fetch(client, base, path, part, tag, offset if etag else 0, etag, progress, task)
    except VfdError as exc:
        if exc.code is not ErrorCode.RANGE_NOT_SATISFIABLE:
            raise
        # The file is still the version of the part file, which has all of it (stopped
        # before the rename) or more (then it is not what we wrote: start over).
        if exc.details.get("size") != offset:
            offset = _fetch(client, base, path, part, tag, 0, "", progress, task)
        else:
            progress.advance(task, offset)
    os.replace(part, final)
    tag.unlink(missing_ok=True)
    return {"path": path, "to": str(final), "size": final.stat().st_size, "resumed_from": offset}


def _fetch(
    client: VfdClient,
    base: str,
    path: str,
    part: Path,
    tag: Path,
    offset: int,
    etag: str,
    progress: Progress,
    task: Any,
) -> int:
    """Write the file into ``part`` from ``offset`` (resumed only while the daemon's file is
    still version ``etag``, else from 0); where the written bytes began."""
    headers = {"Range": f"bytes={offset}-", "If-Range": etag} if offset else {}
    with client.stream("GET", f"{base}/download", params={"path": path}, headers=headers) as r:
        if r.status_code == 206:
            where = r.headers.get("content-range", "")
            if r.headers.get("etag") != etag or not where.startswith(f"bytes {offset}-"):
                raise VfdError(
                    ErrorCode.INTERNAL,
                    f"{path}: the daemon resumed another version or place; remove {part}",
                )
        else:
            offset = 0  # the whole file: a new version, or nothing to resume
        progress.advance(task, offset)
        with open(part, "r+b" if offset else "wb") as f:  # "wb" empties it before the tag
            if not offset:
                if new_tag := r.headers.get("etag"):
                    tag.write_text(new_tag)
                else:
                    tag.unlink(missing_ok=True)
            f.seek(offset)
            f.truncate()
            for chunk in r.iter_bytes(CHUNK):
                f.write(chunk)
                progress.advance(task, len(chunk))
    return offset


def _download_tree(
    client: VfdClient, base: str, path: str, dest: Path, progress: Progress, task: Any
) -> dict[str, Any]:
    reader = _StreamReader()
    with client.stream("GET", f"{base}/download", params={"path": path, "archive": "true"}) as r:
        reader.iterator = r.iter_bytes(CHUNK)
        reader.advance = lambda n: progress.advance(task, n)
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            count = 0
            for member in tar:
                tar.extract(member, dest, filter="data")
                count += 1
    top = path.strip("/").rsplit("/", 1)[-1] or "folder"
    return {"path": path, "to": str(dest / top), "entries": count}


class _StreamReader:
    """A file-like reader over an iterator of byte chunks (for tarfile's stream mode).

    tarfile reads small records; each read copies only what it returns (no re-slicing of the
    rest of a 1 MiB chunk per record).
    """

    def __init__(self) -> None:
        self.iterator: Iterator[bytes] = iter(())
        self.advance: Any = lambda n: None
        self._chunk = b""
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while n < 0 or len(out) < n:
            if self._pos >= len(self._chunk):
                try:
                    self._chunk = next(self.iterator)
                except StopIteration:
                    break
                self._pos = 0
                self.advance(len(self._chunk))
            left = len(self._chunk) - self._pos
            take = left if n < 0 else min(n - len(out), left)
            out += self._chunk[self._pos : self._pos + take]
            self._pos += take
        return bytes(out)
