"""Telling mountd about folder and quota changes.

The store is the truth: mountd reloads every folder and quota scope from it when it starts, so
a change it misses while it is down is not lost. Hence every call here except ``purge`` logs a
warning and carries on when mountd does not answer. ``purge`` removes the backing directory:
directly when mountd is provably not running (no socket file, or ``connect()`` refused), and
never behind the back of a mountd that may still serve the folder — a timeout or a connection
lost in mid-call fails the purge with ``mountd_unavailable``, leaving the data (and its usage)
in place for a retry.

All methods block; they run in the service's worker thread.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vfd.errors import ErrorCode, VfdError
from vfd.folders import layout
from vfd.mountctl import MountdClient, proves_not_running

log = logging.getLogger(__name__)

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

    def clone_cancel(self, vfid: str) -> dict[str, Any]:
        """Stop a clone job; the job once its copy stopped."""
        return self._call("clone_cancel", vfid=vfid)
