"""Telling mountd about folder and quota changes.

The store is the truth: mountd reloads every folder and quota scope from it when it starts, so
a change it misses while it is down is not lost. Hence every call here except ``purge`` logs a
warning and carries on when mountd does not answer. ``purge`` removes the backing directory:
directly when mountd is provably not running (no socket file, or ``connect()`` refused), and
never behind the back of a mountd that may still serve the folder — a timeout or a connection
lost in mid-call fails the purge with ``mountd_unavailable``, leaving the data (and its usage)
in place for a retry.

All methods block; they run in the service's worker thread.

A transfer keeps a connection of its own (:class:`TransferLink`, from :meth:`MountdLink.
transfer`) for its whole duration: the quota reservation of an upload belongs to that
connection, and mountd settles it when the connection closes, whatever became of the daemon
(docs/transfers.md).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vfd.errors import ErrorCode, VfdError
from vfd.folders import layout
from vfd.mountctl import MountdClient, proves_not_running

log = logging.getLogger(__name__)
T = TypeVar("T")

HEALTH_TIMEOUT = 2.0
CALL_TIMEOUT = 60.0
PURGE_TIMEOUT = 3600.0


class MountdLink:
    """The daemon's side of the mountd control socket (``config.mountd_socket``)."""

    def __init__(
        self,
        socket_path: Path,
        *,
        health_timeout: float = HEALTH_TIMEOUT,
        call_timeout: float = CALL_TIMEOUT,
        purge_timeout: float = PURGE_TIMEOUT,
    ) -> None:
        """``purge_timeout`` bounds the long calls (purge, rescan); ``call_timeout`` the rest."""
        self.socket_path = socket_path
        self.health_timeout = health_timeout
        self.call_timeout = call_timeout
        self.purge_timeout = purge_timeout

    def _call(self, op: str, *, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        if not self.socket_path.exists():
            raise VfdError(
                ErrorCode.MOUNTD_UNAVAILABLE,
                f"mountd is not running (no socket at {self.socket_path})",
                socket=str(self.socket_path),
                not_running=True,
            )
        timeout = self.call_timeout if timeout is None else timeout
        with MountdClient(self.socket_path, timeout=timeout) as client:
            return client.call(op, **fields)

    def _tell(self, op: str, **fields: Any) -> dict[str, Any] | None:
        """A notification: None (and a log line) when mountd does not take it."""
        try:
            return self._call(op, **fields)
        except VfdError as exc:
            if exc.code is ErrorCode.MOUNTD_UNAVAILABLE:
                if self.socket_path.exists():
                    log.warning("mountd %s: %s (it reloads from the store on start)", op, exc)
                else:
                    log.debug("mountd %s skipped: %s", op, exc)
            else:
                log.warning("mountd refused %s %s: %s", op, fields, exc)
            return None

    def health(self) -> dict[str, Any] | None:
        """mountd's health answer, or None when it does not answer."""
        if not self.socket_path.exists():
            return None
        try:
            return self._call("health", timeout=self.health_timeout)
        except VfdError as exc:
            log.debug("mountd health: %s", exc)
            return None

    def usage(self, host: str, scope: str) -> dict[str, Any] | None:
        """Live usage of a scope, or None when mountd does not answer (callers fall back to
        the figures last flushed to the store)."""
        try:
            return self._call("usage", host=host, scope=scope)
        except VfdError as exc:
            log.debug("mountd usage: %s", exc)
            return None

    def rescan(self, **fields: str) -> dict[str, Any]:
        """Recount usage on disk (``host``/``scope`` narrow it); raises when mountd is away."""
        return self._call("rescan", timeout=self.purge_timeout, **fields)

    def attach(self, vfid: str, host: str, scope: str, path: Path) -> None:
        self._tell("attach", vfid=vfid, host=host, scope=scope, path=str(path))

    def detach(self, vfid: str) -> None:
        self._tell("detach", vfid=vfid)

    def set_limits(self, host: str, scope: str, max_bytes: int, max_files: int) -> None:
        self._tell("set_limits", host=host, scope=scope, max_bytes=max_bytes, max_files=max_files)

    def purge(self, vfid: str, host: str, scope: str, path: Path) -> None:
        """Remove a folder's backing tree through mountd, or directly when mountd is provably
        not running.

        Raises the error mountd answered when it refused, and ``mountd_unavailable`` when it
        did not answer in time or the connection broke in mid-call: the folder then stays on
        disk, untouched, and the purge may be retried.
        """
        try:
            try:
                # mountd purges detached folders only; one it reloaded may still be attached
                self._call("detach", vfid=vfid)
            except VfdError as exc:
                if exc.code is not ErrorCode.VFOLDER_NOT_FOUND:
                    raise
            self._call(
                "purge",
                timeout=self.purge_timeout,
                vfid=vfid,
                host=host,
                scope=scope,
                path=str(path),
            )
            return
        except VfdError as exc:
            if not proves_not_running(exc):
                if exc.code is ErrorCode.MOUNTD_UNAVAILABLE:
                    raise VfdError(
                        ErrorCode.MOUNTD_UNAVAILABLE,
                        f"{exc.message}; mountd may still serve folder {vfid}, so its data is "
                        "left in place (retry the purge once mountd answers)",
                        **exc.details,
                    ) from None
                raise
            if self.socket_path.exists():
                log.warning("mountd purge: %s; removing %s directly", exc, path)
        layout.remove_folder_dir(path)

    def clone(self, **fields: str) -> dict[str, Any]:
        """Start mountd's copy of a folder into a new one (``vfd.fuse.clone``); the job.

        mountd counts the source first, so this may take a while; raises what mountd answered
        (``quota_exceeded``...) or ``mountd_unavailable``.
        """
        return self._call("clone", timeout=self.purge_timeout, **fields)

    def clone_status(self, vfid: str) -> dict[str, Any]:
        """A clone job; ``not_found`` when mountd has none (it restarted)."""
        return self._call("clone_status", vfid=vfid)

    def share(self, vfid: str, gid: int) -> None:
        """Make a folder group-shared with ``gid`` (its root and every entry; a tree walk).

        When mountd is provably not running it does so itself at start (from the folder's
        ``share_gid``); any other failure is raised (``mountd_unavailable`` when it did not
        answer), so that nobody is given ``rw`` on a folder that would refuse their writes.
        A folder mountd does not serve (not attached) is left alone: it is shared at attach.
        """
        try:
            self._call("share", timeout=self.purge_timeout, vfid=vfid, gid=gid)
        except VfdError as exc:
            if proves_not_running(exc):
                log.debug("mountd share skipped: %s (it shares at start)", exc)
            elif exc.code is not ErrorCode.VFOLDER_NOT_FOUND:
                raise

    def sync(self, vfid: str) -> None:
        """Have mountd write the folder's file system to disk (``syncfs``); raises what
        mountd answered, ``mountd_unavailable`` when it did not."""
        self._call("sync", timeout=self.purge_timeout, vfid=vfid)

    def transfer(self) -> TransferLink:
        """A connection for one transfer's backing descriptors (not connected yet)."""
        return TransferLink(self.socket_path, self.call_timeout)

    def clone_cancel(self, vfid: str) -> dict[str, Any]:
        """Stop a clone job; the job once its copy stopped."""
        return self._call("clone_cancel", vfid=vfid)


class TransferLink:
    """One transfer's own mountd connection: backing descriptors of files the daemon holds
    open through a view, and the upload's quota grant (settled by mountd if the connection
    drops). Calls block: make them from a worker thread. :meth:`close` never blocks and may
    be called at any time, from any thread: during a call it takes effect when the call
    returns (so no thread is left reading a closed socket)."""

    def __init__(self, socket_path: Path, timeout: float) -> None:
        self._client = MountdClient(socket_path, timeout=timeout)
        self._lock = threading.Lock()
        self._busy = False
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._busy:
                return  # the call in progress closes it when it returns
        self._client.close()

    def _call(self, call: Callable[[], T]) -> T:
        with self._lock:
            if self._closed:
                raise VfdError(ErrorCode.MOUNTD_UNAVAILABLE, "the transfer's mountd link is closed")
            self._busy = True
        try:
            return call()
        finally:
            with self._lock:
                self._busy = False
                closed = self._closed
            if closed:
                self._client.close()

    def _backing(
        self, view_fd: int, mode: str, **fields: int | str
    ) -> tuple[int, int | None] | None:
        ino = os.fstat(view_fd).st_ino  # the FUSE inode number of the view's file
        try:
            result, fd = self._call(
                functools.partial(
                    self._client.call_fd, "backing_open", ino=ino, mode=mode, **fields
                )
            )
        except VfdError as exc:
            if exc.code is ErrorCode.MOUNTD_UNAVAILABLE or (
                exc.code is ErrorCode.INVALID_ARGUMENT and "unknown op" in exc.message
            ):
                log.warning("no direct transfer path (%s); moving the bytes through the view", exc)
                self.close()
                return None
            raise
        grant = result.get("grant")
        return fd, grant if isinstance(grant, int) else None

    def _granted(self, view_fd: int, mode: str, **fields: int | str) -> tuple[int, int] | None:
        """``_backing`` for the modes that come with a grant: the fd and the grant's number."""
        got = self._backing(view_fd, mode, **fields)
        if got is None:
            return None
        fd, grant = got
        if grant is None:
            os.close(fd)
            raise VfdError(ErrorCode.INTERNAL, f"mountd granted a {mode} without a grant number")
        return fd, grant

    def open_read(self, view_fd: int) -> int | None:
        """The backing file of ``view_fd`` opened for reading, or None when mountd offers no
        direct path (older mountd, control socket away): read through the view then."""
        got = self._backing(view_fd, "read")
        return None if got is None else got[0]

    def open_dir(self, view_fd: int) -> int | None:
        """The backing directory of ``view_fd`` (a directory open through a view), or None
        when mountd offers no direct path."""
        got = self._backing(view_fd, "dir")
        return None if got is None else got[0]

    def open_tree(
        self, view_fd: int, name: str, reserve_bytes: int, reserve_files: int
    ) -> tuple[int, int] | None:
        """The backing directory of ``view_fd`` (a directory open through ``rw/``) and a
        tree grant to make its new entry ``name``, with that much reserved; None when mountd
        offers no direct path."""
        return self._granted(
            view_fd, "tree", reserve_bytes=reserve_bytes, reserve_files=reserve_files, name=name
        )

    def reserve(self, grant: int, reserve_bytes: int, reserve_files: int) -> None:
        """More room for a tree grant (``quota_exceeded`` when the quota has none)."""
        self._call(
            functools.partial(
                self._client.call,
                "backing_reserve",
                grant=grant,
                reserve_bytes=reserve_bytes,
                reserve_files=reserve_files,
            )
        )

    def open_write(self, view_fd: int, reserve_bytes: int) -> tuple[int, int] | None:
        """The backing file of ``view_fd`` opened for writing and the grant's number, with
        ``reserve_bytes`` of quota reserved (``quota_exceeded`` otherwise); None when mountd
        offers no direct path."""
        return self._granted(view_fd, "write", reserve_bytes=reserve_bytes)

    def settle(self, grant: int) -> dict[str, Any]:
        """Account what was written under ``grant`` and give back the rest."""
        return self._call(functools.partial(self._client.call, "backing_settle", grant=grant))
