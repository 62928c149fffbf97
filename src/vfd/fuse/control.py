"""The control server: ``vfd.mountctl`` over a unix stream socket, served with trio.

One JSON request per line, answered in order on the same connection. Every request is
checked here (op, field names and types) and every failure is answered as the one JSON error
shape: a ``VfdError`` with its code; a malformed request ``invalid_argument``; anything
unexpected ``internal`` (and logged). A bad request never closes the connection; only a line
longer than ``MAX_LINE`` does.
"""

from __future__ import annotations

import array
import errno
import json
import logging
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import trio

from vfd import safedirs
from vfd.errors import ErrorCode, VfdError
from vfd.mountctl import MAX_LINE, OPS, encode, fail, ok

log = logging.getLogger("vfd.fuse.control")

ACCEPT_FULL = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
"""What ``accept`` fails with when the process or the system has no descriptor or memory to
spare: the connection waits in the backlog, and the listener tries again shortly (as
``trio.serve_listeners`` does), instead of ending the control server and mountd with it."""
ACCEPT_RETRY = 0.1

FIELDS: dict[str, dict[str, tuple[type, bool]]] = {
    "health": {},
    "attach": {"vfid": (str, True), "host": (str, True), "scope": (str, True), "path": (str, True)},
    "detach": {"vfid": (str, True)},
    "set_limits": {
        "host": (str, True),
        "scope": (str, True),
        "max_bytes": (int, True),
        "max_files": (int, True),
    },
    "usage": {"host": (str, True), "scope": (str, True)},
    "rescan": {"host": (str, False), "scope": (str, False)},
    "purge": {"vfid": (str, True), "host": (str, True), "scope": (str, True), "path": (str, True)},
    "clone": {
        "vfid": (str, True),
        "host": (str, True),
        "scope": (str, True),
        "path": (str, True),
        "src_vfid": (str, True),
        "src_host": (str, True),
        "src_scope": (str, True),
        "src_path": (str, True),
    },
    "clone_status": {"vfid": (str, True)},
    "clone_cancel": {"vfid": (str, True)},
    "share": {"vfid": (str, True), "gid": (int, True)},
    "backing_open": {
        "ino": (int, True),
        "mode": (str, True),
        "reserve_bytes": (int, False),
        "reserve_files": (int, False),
        "name": (str, False),
    },
    "backing_reserve": {
        "grant": (int, True),
        "reserve_bytes": (int, False),
        "reserve_files": (int, False),
    },
    "backing_settle": {"grant": (int, True)},
    "sync": {"vfid": (str, True)},
}
CONNECTION_OPS = frozenset({"backing_open", "backing_reserve", "backing_settle"})
"""Ops that act on their connection's state (its grants): they get ``conn=`` too."""
assert set(FIELDS) == set(OPS)


class Connection:
    """What one control connection holds: the direct-transfer grants it took (settled when
    it closes, see ``vfd.fuse.direct``), and the descriptors its next reply carries (owned
    here until sent, closed after)."""

    def __init__(self) -> None:
        self.grants: dict[int, Any] = {}
        self.outgoing: list[int] = []

    def drop_outgoing(self) -> None:
        fds, self.outgoing = self.outgoing, []
        for fd in fds:
            os.close(fd)


class Service(Protocol):
    """What the control server drives: one async method per op, fields as keywords."""

    async def health(self) -> dict[str, Any]: ...
    async def attach(self, *, vfid: str, host: str, scope: str, path: str) -> dict[str, Any]: ...
    async def detach(self, *, vfid: str) -> dict[str, Any]: ...
    async def set_limits(
        self, *, host: str, scope: str, max_bytes: int, max_files: int
    ) -> dict[str, Any]: ...
    async def usage(self, *, host: str, scope: str) -> dict[str, Any]: ...
    async def rescan(
        self, *, host: str | None = None, scope: str | None = None
    ) -> dict[str, Any]: ...
    async def purge(self, *, vfid: str, host: str, scope: str, path: str) -> dict[str, Any]: ...
    async def clone(
        self,
        *,
        vfid: str,
        host: str,
        scope: str,
        path: str,
        src_vfid: str,
        src_host: str,
        src_scope: str,
        src_path: str,
    ) -> dict[str, Any]: ...
    async def clone_status(self, *, vfid: str) -> dict[str, Any]: ...
    async def clone_cancel(self, *, vfid: str) -> dict[str, Any]: ...
    async def share(self, *, vfid: str, gid: int) -> dict[str, Any]: ...
    async def backing_open(
        self,
        *,
        conn: Connection,
        ino: int,
        mode: str,
        reserve_bytes: int = 0,
        reserve_files: int = 0,
        name: str | None = None,
    ) -> dict[str, Any]: ...
    async def backing_reserve(
        self, *, conn: Connection, grant: int, reserve_bytes: int = 0, reserve_files: int = 0
    ) -> dict[str, Any]: ...
    async def backing_settle(self, *, conn: Connection, grant: int) -> dict[str, Any]: ...
    async def sync(self, *, vfid: str) -> dict[str, Any]: ...
    async def connection_closed(self, conn: Connection) -> None:
        """Settle what the connection left (its grants)."""


def _bad(message: str, **details: Any) -> VfdError:
    return VfdError(ErrorCode.INVALID_ARGUMENT, message, **details)


def parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """The op and its checked fields, or ``VfdError(INVALID_ARGUMENT)`` saying what is wrong."""
    try:
        req = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"request is not JSON: {exc}") from None
    if not isinstance(req, dict):
        raise _bad("request must be a JSON object")
    op = req.pop("op", None)
    if op not in FIELDS:
        raise _bad(f"unknown op {op!r}; known: {', '.join(OPS)}", op=str(op))
    spec = FIELDS[op]
    unknown = sorted(set(req) - set(spec))
    if unknown:
        raise _bad(f"{op}: unknown field(s) {', '.join(unknown)}", op=op, fields=unknown)
    fields: dict[str, Any] = {}
    for name, (kind, required) in spec.items():
        value = req.get(name)
        if value is None:
            if required:
                raise _bad(f"{op}: missing field {name!r}", op=op, field=name)
            continue
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise _bad(f"{op}: {name} must be a non-negative integer", op=op, field=name)
        if kind is str and not isinstance(value, str):
            raise _bad(f"{op}: {name} must be a string", op=op, field=name)
        fields[name] = value
    return op, fields


async def answer(service: Service, line: bytes, conn: Connection | None = None) -> dict[str, Any]:
    """The reply object for one request line. A reply that carries descriptors leaves them
    in ``conn.outgoing``; a failed request leaves none there."""
    conn = conn if conn is not None else Connection()
    try:
        op, fields = parse_request(line)
        if op in CONNECTION_OPS:
            fields["conn"] = conn
        method: Callable[..., Awaitable[dict[str, Any]]] = getattr(service, op)
        return ok(await method(**fields))
    except VfdError as exc:
        conn.drop_outgoing()
        return fail(exc)
    except Exception as exc:
        conn.drop_outgoing()
        log.exception("control request failed: %r", line[:200])
        return fail(VfdError(ErrorCode.INTERNAL, f"mountd failed: {exc}"))


async def _send_reply(stream: trio.SocketStream, data: bytes, conn: Connection) -> None:
    """Send one reply line, with ``conn.outgoing``'s descriptors on its first byte; they are
    closed here whatever happens (the peer holds its own copies once sent)."""
    if not conn.outgoing:
        await stream.send_all(data)
        return
    try:
        fds = array.array("i", conn.outgoing)
        sent = await stream.socket.sendmsg(
            [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())]
        )
    except OSError as exc:
        raise trio.BrokenResourceError(str(exc)) from exc
    finally:
        conn.drop_outgoing()
    if sent < len(data):
        await stream.send_all(data[sent:])


async def _serve_connection(service: Service, stream: trio.SocketStream) -> None:
    conn = Connection()
    try:
        await _serve_lines(service, stream, conn)
    finally:
        conn.drop_outgoing()
        with trio.CancelScope(shield=True):
            await service.connection_closed(conn)


async def _serve_lines(service: Service, stream: trio.SocketStream, conn: Connection) -> None:
    buf = b""
    async with stream:
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                if line.strip():
                    reply = await answer(service, line, conn)
                    try:
                        await _send_reply(stream, encode(reply), conn)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
            if len(buf) > MAX_LINE:
                err = _bad(f"request longer than {MAX_LINE} bytes")
                try:
                    await stream.send_all(encode(fail(err)))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                return


async def serve_control(
    service: Service,
    path: Path,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``service`` on the unix socket ``path`` (mode 0600) until cancelled."""
    safedirs.ensure_socket_dir(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    # bound in a private directory, given its mode, then renamed into place: whatever the
    # umask (mountd serves with 0), nobody can reach it with another mode, and changing the
    # process-wide umask would race with the FUSE handlers creating files
    private = Path(tempfile.mkdtemp(prefix=".mountd-", dir=path.parent))
    staged = private / "s"
    try:
        await sock.bind(str(staged))
        os.chmod(staged, 0o600)
        os.rename(staged, path)
    except BaseException:
        sock.close()
        staged.unlink(missing_ok=True)
        raise
    finally:
        private.rmdir()
    sock.listen(64)
    listener = trio.SocketListener(sock)
    try:
        async with trio.open_nursery() as nursery:
            task_status.started()
            async with listener:
                full = False
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as exc:
                        if exc.errno not in ACCEPT_FULL:
                            raise
                        if not full:  # once per spell
                            log.warning(
                                "control socket: cannot accept a connection (%s); "
                                "trying again every %.1f s",
                                os.strerror(exc.errno or 0),
                                ACCEPT_RETRY,
                            )
                        full = True
                        await trio.sleep(ACCEPT_RETRY)
                        continue
                    full = False
                    nursery.start_soon(_serve_connection, service, stream)
    finally:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
