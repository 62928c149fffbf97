"""The mountd control protocol, and the blocking client the daemon and CLI use.

One JSON object per line over the unix stream socket (``mountd_socket``); a connection may
carry many requests, answered in order::

    -> {"op": "attach", "vfid": "<hex>", "host": "local", "scope": "user:<hex>",
        "path": "/var/lib/vfd/hosts/local/user-<hex>/ab/cd/<rest>"}
    <- {"ok": true, "result": {...}}
    <- {"ok": false, "error": {"code": "vfolder_not_found", "message": "...", "details": {}}}

Operations (``result`` shapes):

============ ================================================ ==================================
op           request fields                                   result
============ ================================================ ==================================
health       -                                                {version, mount_point, folders,
                                                              scopes, pid, inodes, open_files,
                                                              requests, fast_path,
                                                              direct_grants}
attach       vfid, host, scope, path                          {vfid, rw, ro} (view paths)
detach       vfid                                             {vfid}
set_limits   host, scope, max_bytes, max_files                {host, scope, max_bytes, max_files,
                                                              used_bytes, used_files}
usage        host, scope                                      same as set_limits
rescan       host (optional), scope (optional)                {scopes: [{host, scope,
                                                              before: {bytes, files},
                                                              after: {bytes, files}}]}
purge        vfid, host, scope, path                          {vfid, freed_bytes, freed_files}
clone        vfid, host, scope, path (the new folder),        a clone job: {vfid, src_vfid,
             src_vfid, src_host, src_scope, src_path          state, total_bytes, total_files,
                                                              done_bytes, done_files, methods,
                                                              error, started_at, finished_at}
clone_status vfid                                             the clone job
clone_cancel vfid                                             the clone job, once it stopped
share        vfid, gid                                        {vfid, gid, changed}
backing_open ino, mode (``read``/``write``/``dir``/``tree``),  {size} / {grant, reserved,
             reserve_bytes, reserve_files, name (tree)        reserved_files}; one fd
                                                              (SCM_RIGHTS)
backing_     grant, reserve_bytes, reserve_files (a tree)     {reserved, reserved_files}
reserve
backing_     grant                                            {size, grown} (a file),
settle                                                        {bytes, files} (a tree)
sync         vfid                                             {vfid}
============ ================================================ ==================================

``attach`` of a folder already attached is a no-op; ``detach`` of an unknown folder answers
``vfolder_not_found``. ``purge`` needs a detached folder: it removes the backing tree and
subtracts its usage from the scope.

``clone`` counts the source, refuses with ``quota_exceeded`` when the new folder's scope
cannot hold it, and starts copying into the new folder's empty, detached directory in the
background; ``state`` is ``running``, ``done``, ``failed`` or ``cancelled`` (``error`` says
why). Jobs live in mountd's memory: ``clone_status`` of an unknown job (mountd restarted)
answers ``not_found``. ``attach`` and ``purge`` of a folder whose clone runs answer
``invalid_status``.

``backing_open`` and ``backing_settle`` are the direct data path of transfers
(docs/transfers.md): ``ino`` is the FUSE inode number (the ``st_ino`` of a descriptor the
caller holds open through a view). mountd refuses an inode it does not know or that nobody
holds open through the mount (``path_not_found``), anything but a regular file
(``not_a_regular_file``), and ``write`` through ``ro/`` (``read_only``); it answers with the
backing file reopened ``O_RDONLY`` or ``O_WRONLY``, passed with ``SCM_RIGHTS`` on the reply
line. ``write`` first reserves ``reserve_bytes`` of the folder's quota (``quota_exceeded``,
nothing reserved) and answers a ``grant`` number; ``backing_settle`` accounts the file's real
size change, gives back the rest of the reservation and drops the kernel's caches of the
inode in both views. ``dir`` opens a directory the kernel knows (``not_a_directory``
otherwise), for an archive the daemon writes by walking below it as the user. ``tree`` (rw/
only) opens a directory with a grant to make one new entry ``name`` below it (``path_exists``
if it is there), reserving ``reserve_bytes`` and ``reserve_files`` (more with
``backing_reserve``); settling it counts that entry's tree as a rescan would, charges
exactly that, applies the folder's group-sharing rule to it, and drops the kernel's cached
entry of the name. Grants belong to their connection: mountd settles those still open when
it closes. ``sync`` writes everything of the file system holding an attached folder to disk
(``syncfs``): one call after many uploads made with ``durable=false``.

A ``mountd_unavailable`` error carries ``not_running: true`` only when it proves that no mountd
runs: the socket file is missing or ``connect()`` was refused. A timeout or a connection lost
in mid-call proves nothing (mountd may be busy or hung, and still serving the mount).
"""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

from vfd.errors import ErrorCode, VfdError

MAX_LINE = 1 << 20
OPS = (
    "health",
    "attach",
    "detach",
    "set_limits",
    "usage",
    "rescan",
    "purge",
    "clone",
    "clone_status",
    "clone_cancel",
    "share",
    "backing_open",
    "backing_reserve",
    "backing_settle",
    "sync",
)
FD_OPS = frozenset({"backing_open"})
"""Ops whose success reply carries one descriptor (``SCM_RIGHTS``)."""
NOT_RUNNING_ERRNOS = frozenset({errno.ENOENT, errno.ECONNREFUSED})
"""``connect()`` errors that prove nobody listens on the socket path."""


def proves_not_running(exc: VfdError) -> bool:
    """Whether ``exc`` shows that no mountd is running (see the module docstring)."""
    return exc.code is ErrorCode.MOUNTD_UNAVAILABLE and exc.details.get("not_running") is True


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def ok(result: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "result": result}


def fail(exc: VfdError) -> dict[str, Any]:
    return {"ok": False, **exc.to_json()}


class MountdClient:
    """A blocking client; call it from a worker thread in async code.

    Raises ``VfdError(MOUNTD_UNAVAILABLE)`` when mountd does not answer, and the error mountd
    sent otherwise.
    """

    def __init__(self, path: Path, *, timeout: float = 600.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def __enter__(self) -> MountdClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._buf = b""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
            except OSError as exc:
                sock.close()
                raise VfdError(
                    ErrorCode.MOUNTD_UNAVAILABLE,
                    f"mountd does not answer on {self.path}: {exc.strerror or exc}",
                    socket=str(self.path),
                    not_running=exc.errno in NOT_RUNNING_ERRNOS,
                ) from None
            self._sock = sock
        return self._sock

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return its ``result``."""
        result, _ = self._exchange(op, fields, want_fds=False)
        return result

    def call_fd(self, op: str, **fields: Any) -> tuple[dict[str, Any], int]:
        """Send one request whose reply carries a descriptor (``FD_OPS``); its ``result`` and
        the descriptor, which the caller owns (close-on-exec)."""
        result, fds = self._exchange(op, fields, want_fds=True)
        if len(fds) != 1:
            _close_all(fds)
            self.close()
            raise VfdError(
                ErrorCode.INTERNAL, f"mountd answered {op} with {len(fds)} descriptors, not 1"
            )
        return result, fds[0]

    def _exchange(
        self, op: str, fields: dict[str, Any], *, want_fds: bool
    ) -> tuple[dict[str, Any], list[int]]:
        sock = self._connect()
        fds: list[int] = []
        try:
            sock.sendall(encode({"op": op, **fields}))
            while b"\n" not in self._buf:
                if want_fds:
                    chunk, got, _flags, _addr = socket.recv_fds(
                        sock, 65536, 4, socket.MSG_CMSG_CLOEXEC
                    )
                    fds += got
                else:
                    chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("mountd closed the connection")
                self._buf += chunk
                if len(self._buf) > MAX_LINE:
                    raise ValueError("reply too long")
            line, _, self._buf = self._buf.partition(b"\n")
            reply = json.loads(line)
        except (OSError, ValueError) as exc:
            _close_all(fds)
            self.close()
            raise VfdError(
                ErrorCode.MOUNTD_UNAVAILABLE,
                f"lost mountd on {self.path} during {op}: {exc}",
                socket=str(self.path),
                not_running=False,
            ) from None
        if reply.get("ok"):
            result: dict[str, Any] = reply.get("result") or {}
            return result, fds
        _close_all(fds)
        raise VfdError.from_json(reply) or VfdError(ErrorCode.INTERNAL, f"bad reply: {reply!r}")


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
