"""Streaming transfers for the CLI: resumable uploads and downloads with a progress bar.

Uploads go to ``PUT /v1/vfolders/{name}/upload`` in one streamed request per file, under a
key derived from the source file (path, size, mtime) and the destination, so running the same
``vfd vfolder upload`` again after an interruption resumes each file where the daemon's copy
stops. Downloads of files are written to ``<dest>/<name>.vfd-part`` and renamed when complete;
an existing part file is resumed with an HTTP Range request. Directories are downloaded as a
tar stream and unpacked with the ``data`` filter (no absolute paths, no escapes, no devices).
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
    for d in dirs:
        client.post(f"{base}/mkdir", {"path": d, "parents": True})
    done: list[dict[str, Any]] = []
    total = sum(i.size for i in items)
    with _progress(console) as progress:
        task = progress.add_task(f"upload to {name}", total=total)
        for item in items:
            params = {"path": item.dest, "key": item.key}
            offset = int(client.get(f"{base}/upload", params=params)["offset"])
            if offset > item.size:
                offset = 0  # a stale part file: start over
            progress.advance(task, offset)
            query = {**params, "size": str(item.size), "offset": str(offset)}
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
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with client.stream("GET", f"{base}/download", params={"path": path}, headers=headers) as r:
        if r.status_code != 206:
            offset = 0  # the daemon sent the whole file
        progress.advance(task, offset)
        with open(part, "r+b" if offset else "wb") as f:
            f.seek(offset)
            f.truncate()
            for chunk in r.iter_bytes(CHUNK):
                f.write(chunk)
                progress.advance(task, len(chunk))
    os.replace(part, final)
    return {"path": path, "to": str(final), "size": final.stat().st_size, "resumed_from": offset}


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
