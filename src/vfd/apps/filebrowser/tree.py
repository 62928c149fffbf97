"""The file manager's view of its root: one directory per folder, walked without links.

The server's root holds one directory per folder (in a confined launch the root is the
private ``/`` holding the folders' bind mounts; run standalone, any directory). A path of the
API is ``<folder>/<components...>``; it is split (``..`` refused, see
:func:`vfd.daemon.userfs.split_path`) and walked one directory at a time with
``O_PATH|O_NOFOLLOW`` from the root's descriptor, so no symbolic link inside a folder — or
swapped in during the walk — leads anywhere else. A folder given as read-only is refused
every write here, before the kernel (its read-only bind mount) would refuse it too.

Every function blocks: the server calls them in worker threads. Each descriptor opened is
closed before the call returns, on every path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vfd import wirenames
from vfd.daemon.userfs import is_part_name, open_regular, os_error, split_path
from vfd.errors import ErrorCode, VfdError
from vfd.fuse import syscalls

RENAME_NOREPLACE = 1
_DIR_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_DIR_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
QUOTA_XATTRS = ("user.vfd.quota.max_bytes", "user.vfd.quota.used_bytes")


def rename_noreplace(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    """``renameat2(..., RENAME_NOREPLACE)``: EEXIST rather than replacing ``dst``."""
    syscalls.renameat2(
        src_fd, wirenames.name_bytes(src), dst_fd, wirenames.name_bytes(dst), RENAME_NOREPLACE
    )


@dataclass(frozen=True)
class Folder:
    """One folder the server shows: its name (a directory at the root) and whether it is
    read-only."""

    name: str
    readonly: bool = False


def check_name(name: str, field: str = "name") -> str:
    """A new entry's name: one component, not ``.``/``..``, not an upload's hidden name."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise VfdError(
            ErrorCode.INVALID_NAME,
            f"{name!r} is not a valid name: one path component, not '.' or '..', no '/'",
            field=field,
        )
    if len(wirenames.name_bytes(name)) > 255:
        raise VfdError(ErrorCode.NAME_TOO_LONG, "a name is at most 255 bytes", field=field)
    if is_part_name(name):
        raise VfdError(
            ErrorCode.RESERVED_NAME, f"{name!r} is reserved for uploads in progress", field=field
        )
    return name


def entry(name: str, st: os.stat_result) -> dict[str, Any]:
    """What the browser is told of one entry."""
    mode = st.st_mode
    kind = "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"
    if stat.S_ISLNK(mode):
        kind = "link"
    return {**wirenames.fields("name", name), "type": kind, "size": st.st_size,
            "mtime": st.st_mtime}  # fmt: skip


class Tree:
    """The folders below one root directory: opened once (:meth:`open`, which a confined
    server calls after its chroot), closed by the caller."""

    def __init__(self, root: str, folders: list[Folder]) -> None:
        self.root = root
        self.folders = {f.name: f for f in folders}
        self.root_fd = -1

    def open(self) -> Tree:
        if self.root_fd < 0:
            self.root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return self

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    # -- walking ----------------------------------------------------------------------------

    def parts(self, path: str, *, write: bool = False) -> list[str]:
        """The components of ``path``; the first names a folder of the server. ``write``
        refuses a read-only folder and the root (which is no folder)."""
        parts = split_path(path)
        if parts and parts[0] not in self.folders:
            raise VfdError(ErrorCode.VFOLDER_NOT_FOUND, f"no folder {parts[0]!r} here", path=path)
        if write:
            if not parts:
                raise VfdError(
                    ErrorCode.PERMISSION_DENIED, "the top level holds only folders", path="/"
                )
            if self.folders[parts[0]].readonly:
                raise VfdError(
                    ErrorCode.READ_ONLY, f"{parts[0]}: the folder is read-only", path=path
                )
        return parts

    def walk(self, parts: list[str], path: str) -> int:
        """An ``O_PATH`` descriptor of the directory ``parts`` (links never followed)."""
        fd = os.dup(self.root_fd)
        for part in parts:
            try:
                nxt = os.open(part, _DIR_PATH, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                    exc = OSError(errno.ENOTDIR, "not a directory (links are not followed)")
                raise os_error(exc, path) from None
            finally:
                os.close(fd)
            fd = nxt
        return fd

    @contextlib.contextmanager
    def parent(self, path: str, *, write: bool = False) -> Iterator[tuple[int, str]]:
        """The parent directory of ``path`` (inside a folder) and its last component."""
        parts = self.parts(path, write=write)
        if len(parts) < 2:
            raise VfdError(ErrorCode.INVALID_PATH, "a folder itself cannot be used here", path=path)
        fd = self.walk(parts[:-1], path)
        try:
            yield fd, parts[-1]
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def directory(self, path: str, *, write: bool = False) -> Iterator[int]:
        """An ``O_PATH`` descriptor of the directory ``path`` inside a folder."""
        parts = self.parts(path, write=write)
        if not parts:
            raise VfdError(ErrorCode.INVALID_PATH, "give a folder's directory", path=path)
        fd = self.walk(parts, path)
        try:
            yield fd
        finally:
            os.close(fd)

    # -- reading ----------------------------------------------------------------------------

    def listing(self, path: str, offset: int, limit: int) -> dict[str, Any]:
        """One page of ``path``: directories first, then by name; ``total`` counts them all.

        The names and types come from one ``readdir`` pass; only the page's entries are
        ``stat``-ed, so a directory of many thousands of entries answers quickly.
        """
        parts = self.parts(path)
        if not parts:
            return self._folders()
        folder = self.folders[parts[0]]
        pfd = self.walk(parts, path)
        try:
            dfd = os.open(".", _DIR_READ, dir_fd=pfd)
        except OSError as exc:
            raise os_error(exc, path) from None
        finally:
            os.close(pfd)
        try:
            with os.scandir(dfd) as it:
                found = [
                    (not e.is_dir(follow_symlinks=False), e.name)
                    for e in it
                    if not is_part_name(e.name)
                ]
            found.sort()
            page = []
            for _, name in found[offset : offset + limit]:
                try:
                    page.append(entry(name, os.stat(name, dir_fd=dfd, follow_symlinks=False)))
                except FileNotFoundError:
                    continue  # removed meanwhile
        except OSError as exc:
            raise os_error(exc, path) from None
        finally:
            os.close(dfd)
        return {
            "path": "/".join(parts),
            "readonly": folder.readonly,
            "total": len(found),
            "offset": offset,
            "entries": page,
            "quota": self.quota(parts[0]),
        }

    def _folders(self) -> dict[str, Any]:
        shown = []
        for folder in sorted(self.folders.values(), key=lambda f: f.name):
            try:
                st = os.stat(folder.name, dir_fd=self.root_fd, follow_symlinks=False)
            except OSError:
                continue  # not there (yet): not shown
            if stat.S_ISDIR(st.st_mode):
                shown.append({**entry(folder.name, st), "readonly": folder.readonly})
        return {"path": "", "readonly": True, "total": len(shown), "offset": 0,
                "entries": shown, "quota": None}  # fmt: skip

    def quota(self, name: str) -> dict[str, int] | None:
        """The folder's quota use: vfd's quota xattrs on a folder view's root, else what
        ``statvfs`` says of its file system (a vfd view reports its scope's quota as size)."""
        try:
            fd = os.open(name, _DIR_READ, dir_fd=self.root_fd)
        except OSError:
            return None
        try:
            try:
                limit, used = (int(os.getxattr(fd, key)) for key in QUOTA_XATTRS)
                return {"used": used, "limit": limit}
            except (OSError, ValueError):
                pass
            vfs = os.fstatvfs(fd)
            return {
                "used": (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize,
                "limit": vfs.f_blocks * vfs.f_frsize,
            }
        except OSError:
            return None
        finally:
            os.close(fd)

    def open_read(self, path: str) -> tuple[int, os.stat_result]:
        """A readable descriptor of the file or directory ``path`` and its stat (the caller
        closes it); FIFOs, sockets and devices are refused without waiting on them."""
        parts = self.parts(path)
        if len(parts) == 1:
            fd = self.walk([], path)
            try:
                dfd = os.open(parts[0], _DIR_READ, dir_fd=fd)
            except OSError as exc:
                raise os_error(exc, path) from None
            finally:
                os.close(fd)
            return dfd, os.fstat(dfd)
        with self.parent(path) as (pfd, name):
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    dfd = os.open(name, _DIR_READ, dir_fd=pfd)
                    return dfd, os.fstat(dfd)
            except OSError as exc:
                raise os_error(exc, path) from None
            fd = open_regular(name, pfd, os.O_RDONLY, path)
            return fd, os.fstat(fd)

    # -- changing ---------------------------------------------------------------------------

    def mkdir(self, path: str) -> dict[str, Any]:
        with self.parent(path, write=True) as (pfd, name):
            check_name(name)
            try:
                os.mkdir(name, 0o777, dir_fd=pfd)
                return entry(name, os.stat(name, dir_fd=pfd, follow_symlinks=False))
            except OSError as exc:
                raise os_error(exc, path) from None

    def rename(self, path: str, new_name: str) -> dict[str, Any]:
        check_name(new_name)
        with self.parent(path, write=True) as (pfd, name):
            try:
                rename_noreplace(pfd, name, pfd, new_name)
                return entry(new_name, os.stat(new_name, dir_fd=pfd, follow_symlinks=False))
            except OSError as exc:
                where = path if exc.errno != errno.EEXIST else new_name
                raise os_error(exc, where) from None

    def move(self, paths: list[str], dest: str) -> list[str]:
        """Move each of ``paths`` into the directory ``dest`` under its own name; nothing
        existing is replaced. Answers the new paths; the first failure stops the moves."""
        dparts = self.parts(dest, write=True)
        for path in paths:
            sparts = self.parts(path, write=True)
            if len(sparts) < 2:
                raise VfdError(ErrorCode.INVALID_PATH, "a folder cannot be moved", path=path)
            if sparts[0] != dparts[0]:
                raise VfdError(
                    ErrorCode.CROSS_SCOPE,
                    f"{path}: entries move only within their folder ({sparts[0]})",
                    path=path,
                )
            if dparts[: len(sparts)] == sparts:
                raise VfdError(ErrorCode.INVALID_PATH, f"cannot move {path} into itself", path=path)
        moved = []
        with self.directory(dest, write=True) as dfd:
            for path in paths:
                with self.parent(path, write=True) as (pfd, name):
                    target = "/".join([*dparts, name])
                    try:
                        rename_noreplace(pfd, name, dfd, name)
                    except OSError as exc:
                        raise os_error(exc, target if exc.errno == errno.EEXIST else path) from None
                moved.append(target)
        return moved

    def delete(self, paths: list[str]) -> None:
        """Remove each of ``paths``, directories with their contents (the walk below them
        runs on descriptors and never follows a link)."""
        for path in paths:
            with self.parent(path, write=True) as (pfd, name):
                try:
                    st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        shutil.rmtree(name, dir_fd=pfd)
                    else:
                        os.unlink(name, dir_fd=pfd)
                except OSError as exc:
                    raise os_error(exc, path) from None
