"""Uploads of files and directory trees that appear whole or not at all.

A browser upload is a *batch*: the names it will place in one directory, then each file's
bytes, then a commit. The batch writes into a hidden staging directory beside its target,
``.vfd-upload-<key>.part`` (the daemon's name for an upload in progress, which listings hide
and ``vfd admin uploads prune`` removes), and the commit renames the staging directory's
top-level entries into the target, refusing to replace anything. An aborted batch, one whose
client went silent for ``stall`` seconds, and every batch left when the server stops are
removed with their staging directory, so an interrupted upload leaves nothing visible.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass, field

from vfd.apps.filebrowser.tree import Tree, check_name, rename_noreplace
from vfd.daemon.userfs import os_error, part_name, split_path
from vfd.errors import ErrorCode, VfdError

_DIR_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_BATCHES = 64
"""Batches open at once; more are refused (a browser runs a handful)."""


@dataclass
class Batch:
    """One upload in progress."""

    key: str
    dest: str  # the target directory's API path
    names: frozenset[str]  # the top-level names it may place
    busy: int = 0  # requests writing into it now
    touched: float = field(default_factory=time.monotonic)


class Uploads:
    """The batches of one server; every method blocks (worker threads)."""

    def __init__(self, tree: Tree, stall: float) -> None:
        self.tree = tree
        self.stall = stall
        self.batches: dict[str, Batch] = {}

    def begin(self, dest: str, names: list[str]) -> Batch:
        """Open a batch placing ``names`` in the directory ``dest``; refused at once when one
        of them exists there already."""
        if not names:
            raise VfdError(ErrorCode.INVALID_ARGUMENT, "an upload names what it places")
        for name in names:
            check_name(name, "names")
        if len(self.batches) >= MAX_BATCHES:
            raise VfdError(ErrorCode.TOO_MANY_REQUESTS, "too many uploads at once", retry_after=5)
        key = secrets.token_urlsafe(12)
        with self.tree.directory(dest, write=True) as dfd:
            for name in names:
                try:
                    os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise os_error(exc, f"{dest}/{name}") from None
                where = f"{dest}/{name}"
                raise VfdError(ErrorCode.PATH_EXISTS, f"{where} already exists", path=where)
            try:
                os.mkdir(part_name(key), 0o700, dir_fd=dfd)
            except OSError as exc:
                raise os_error(exc, dest) from None
        batch = Batch(key, dest, frozenset(names))
        self.batches[key] = batch
        return batch

    def get(self, key: str) -> Batch:
        batch = self.batches.get(key)
        if batch is None:
            raise VfdError(ErrorCode.NOT_FOUND, "no such upload (finished, aborted or stalled)")
        batch.touched = time.monotonic()
        return batch

    def _staging(self, batch: Batch, rel: str, *, make: bool) -> tuple[int, str]:
        """The directory of ``rel`` inside the batch's staging directory (made with
        ``make``) and the last component."""
        parts = split_path(rel)
        if not parts or parts[0] not in batch.names:
            raise VfdError(
                ErrorCode.INVALID_PATH, f"{rel!r} is not below a name of this upload", path=rel
            )
        for part in parts:
            check_name(part, "path")
        with self.tree.directory(batch.dest) as dfd:
            fd = os.open(part_name(batch.key), _DIR_PATH, dir_fd=dfd)
        for part in parts[:-1]:
            try:
                if make:
                    try:
                        os.mkdir(part, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass
                nxt = os.open(part, _DIR_PATH, dir_fd=fd)
            except OSError as exc:
                os.close(fd)
                raise os_error(exc, rel) from None
            os.close(fd)
            fd = nxt
        return fd, parts[-1]

    def open_file(self, batch: Batch, rel: str) -> int:
        """A new file ``rel`` of the batch, open for writing (the caller closes it)."""
        pfd, name = self._staging(batch, rel, make=True)
        try:
            return os.open(name, _FILE_FLAGS, 0o666, dir_fd=pfd)
        except OSError as exc:
            raise os_error(exc, rel) from None
        finally:
            os.close(pfd)

    def mkdir(self, batch: Batch, rel: str) -> None:
        """An (empty) directory ``rel`` of the batch."""
        pfd, name = self._staging(batch, rel, make=True)
        try:
            os.mkdir(name, 0o777, dir_fd=pfd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise os_error(exc, rel) from None
        finally:
            os.close(pfd)

    def commit(self, batch: Batch) -> list[str]:
        """Place what the batch staged; answers the paths placed. A name taken meanwhile
        stops the commit (what was placed before it stays, the rest is removed)."""
        self.batches.pop(batch.key, None)
        placed: list[str] = []
        try:
            with self.tree.directory(batch.dest, write=True) as dfd:
                sfd = os.open(part_name(batch.key), _DIR_PATH, dir_fd=dfd)
                try:
                    for name in sorted(batch.names):
                        try:
                            os.stat(name, dir_fd=sfd, follow_symlinks=False)
                        except FileNotFoundError:
                            continue  # named but never sent (an empty selection)
                        where = f"{batch.dest}/{name}"
                        try:
                            rename_noreplace(sfd, name, dfd, name)
                        except OSError as exc:
                            raise os_error(exc, where) from None
                        placed.append(where)
                finally:
                    os.close(sfd)
        except OSError as exc:
            raise os_error(exc, batch.dest) from None
        finally:
            self._remove(batch)
        return placed

    def abort(self, batch: Batch) -> None:
        self.batches.pop(batch.key, None)
        self._remove(batch)

    def _remove(self, batch: Batch) -> None:
        try:
            with self.tree.directory(batch.dest) as dfd:
                name = part_name(batch.key)
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
        except VfdError as exc:
            if exc.code not in (ErrorCode.PATH_NOT_FOUND, ErrorCode.NOT_A_DIRECTORY):
                raise

    def stalled(self, now: float) -> list[Batch]:
        """The batches no request has touched for ``stall`` seconds, none writing now."""
        return [b for b in self.batches.values() if not b.busy and now - b.touched > self.stall]

    def abort_all(self) -> None:
        for batch in list(self.batches.values()):
            self.abort(batch)
