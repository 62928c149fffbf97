"""The attached folders and quota scopes mountd serves, and how the kernel hears of changes.

The :class:`Registry` is the mount's state outside the inode table: folders by vfid (each
with its backing root held open), scopes by (host, scope) with their live counters, and the
open files. It is changed only on the trio thread — by the control server and by request
handlers — so it needs no locks.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import stat
import threading
import uuid
from pathlib import Path
from typing import Protocol

import pyfuse3
import trio

from vfd.config import Config
from vfd.errors import ErrorCode, VfdError
from vfd.folders import layout
from vfd.folders.quota import Limits, Usage
from vfd.fuse.inodes import Folder, InodeTable, View
from vfd.fuse.usage import OpenFiles, ScopeUsage

log = logging.getLogger("vfd.fuse")

_VFID = re.compile(r"^[0-9a-f]{32}$")


class Notifier(Protocol):
    """Tells the kernel to drop what it cached; never blocks the caller."""

    def invalidate_entry(self, parent: int, name: bytes) -> None: ...

    def invalidate_inode(self, ino: int) -> None: ...

    async def drain(self) -> None:
        """Return once everything asked so far has reached the kernel."""


class KernelNotifier:
    """The real notifier: pyfuse3's notifications, sent from a worker thread.

    A notification may wait for a request on the same inode to finish (a read holding a
    page lock), so it must never be sent from the trio thread that serves that request.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[int, bytes | None] | threading.Event | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._active = False

    def start(self) -> None:
        """Begin sending (the session exists); until then there is nothing to invalidate."""
        self._active = True

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            ino, name = item
            try:
                if name is None:
                    pyfuse3.invalidate_inode(ino)
                else:
                    pyfuse3.invalidate_entry(ino, name)
            except OSError as exc:
                log.debug("invalidation of %d %r: %s", ino, name, exc)
            except Exception:
                log.exception("invalidation of %d %r failed", ino, name)

    def _put(self, item: tuple[int, bytes | None] | threading.Event) -> None:
        if not self._active:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vfd-notify", daemon=True)
            self._thread.start()
        self._queue.put(item)

    def invalidate_entry(self, parent: int, name: bytes) -> None:
        self._put((parent, name))

    def invalidate_inode(self, ino: int) -> None:
        self._put((ino, None))

    async def drain(self) -> None:
        if not self._active:
            return
        done = threading.Event()
        self._put(done)
        await trio.to_thread.run_sync(done.wait, abandon_on_cancel=True)

    def stop(self) -> None:
        """Send what is queued and stop (before the session is closed)."""
        self._active = False
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None


def check_vfid(vfid: object) -> str:
    if not isinstance(vfid, str) or not _VFID.match(vfid):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"bad vfid {vfid!r}: expected 32 lower-case hex digits",
            vfid=str(vfid),
        )
    return vfid


class Registry:
    """Attached folders, quota scopes and open files."""

    def __init__(self, config: Config, table: InodeTable, notifier: Notifier) -> None:
        self.config = config
        self.table = table
        self.notifier = notifier
        self.folders: dict[str, Folder] = {}
        self.scopes: dict[tuple[str, str], ScopeUsage] = {}
        self.open_files = OpenFiles()

    def scope(self, host: str, scope: str) -> ScopeUsage:
        """The scope's counters, created (unlimited, empty) on first use."""
        self.config.host_path(host)
        layout.Scope.parse(scope)
        usage = self.scopes.get((host, scope))
        if usage is None:
            usage = self.scopes[(host, scope)] = ScopeUsage(host, scope, Limits(), Usage())
        return usage

    def existing_scope(self, host: str, scope: str) -> ScopeUsage:
        usage = self.scopes.get((host, scope))
        if usage is None:
            raise VfdError(
                ErrorCode.SCOPE_NOT_FOUND,
                f"mountd knows no quota scope {scope} on host {host}",
                host=host,
                scope=scope,
            )
        return usage

    def expected_path(self, vfid: str, host: str, scope: str) -> Path:
        return layout.folder_path(
            self.config.host_path(host), layout.Scope.parse(scope), uuid.UUID(vfid)
        )

    def check_path(self, vfid: str, host: str, scope: str, path: object) -> Path:
        """``path`` when it is where the layout puts the folder; INVALID_PATH otherwise."""
        expected = self.expected_path(vfid, host, scope)
        if not isinstance(path, str) or not path.startswith("/"):
            raise VfdError(ErrorCode.INVALID_PATH, f"bad folder path {path!r}", path=str(path))
        given = Path(os.path.normpath(path))
        if given != expected:
            raise VfdError(
                ErrorCode.INVALID_PATH,
                f"folder {vfid} of {scope} on {host} lives at {expected}, not {given}",
                path=str(given),
                expected=str(expected),
            )
        return given

    def attach(self, vfid: str, host: str, scope: str, path: Path) -> Folder:
        """Serve the folder at ``rw/<vfid>`` and ``ro/<vfid>``; a repeated attach is a no-op."""
        folder = self.folders.get(vfid)
        if folder is not None:
            return folder
        usage = self.scope(host, scope)
        try:
            fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise VfdError(
                ErrorCode.PATH_NOT_FOUND,
                f"backing directory {path} of folder {vfid}: {exc.strerror}",
                path=str(path),
            ) from None
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            os.close(fd)
            raise VfdError(ErrorCode.NOT_A_DIRECTORY, f"{path} is not a directory")
        folder = Folder(vfid, host, scope, path, usage, fd, (st.st_dev, st.st_ino))
        self.folders[vfid] = folder
        self.table.rebind(folder)
        name = vfid.encode()
        for view in View:
            self.notifier.invalidate_entry(view.dir_id, name)  # a cached "no such folder"
        return folder

    def detach(self, vfid: str) -> Folder:
        """Make the folder's views disappear; open files keep working until closed."""
        folder = self.folders.pop(vfid, None)
        if folder is None:
            raise VfdError(ErrorCode.VFOLDER_NOT_FOUND, f"folder {vfid} is not attached", vfid=vfid)
        folder.detached = True
        name = vfid.encode()
        for view in View:
            self.notifier.invalidate_entry(view.dir_id, name)
        folder.close()
        return folder

    def set_limits(self, host: str, scope: str, limits: Limits) -> ScopeUsage:
        usage = self.scope(host, scope)
        usage.limits = limits
        usage.dirty = True
        return usage

    def scope_roots(self, host: str, scope: str) -> Path:
        return layout.scope_path(self.config.host_path(host), layout.Scope.parse(scope))

    def close(self) -> None:
        for folder in self.folders.values():
            folder.close()
        self.folders.clear()
