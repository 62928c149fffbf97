"""What one connection, and one peer, may hold of the daemon: the HTTP protocol it is served by.

The API socket is open to every local user, so nothing a peer does with its connections may
cost the others their service (``[limits]``, docs/operations.md "Limits"):

- **Request heads** must be complete within ``header_timeout`` seconds of the connection being
  made (or of the first byte of a later request on it); otherwise the connection is closed.
  uvicorn itself only times out idle keep-alive connections (``keepalive_timeout``).
- **Request bodies** may not stall: when nothing arrives for ``body_timeout`` seconds while
  the daemon would take more (its buffer is empty and reading is not paused), the connection
  is closed. The request then sees the client gone (``http.disconnect``), and the transfer
  code releases what it holds, as for a client that went away. The same holds the other
  way: an answer the client stops reading for ``body_timeout`` seconds (the transport's
  buffer stays full) ends with the connection.
- **Connections per peer** — per uid on the unix socket (SO_PEERCRED), per address on TCP —
  are capped at ``peer_connections``; one more is answered ``429 too_many_requests`` and
  closed at once, before anything of it is read.

Refusals and closes are logged per peer, at most once per :data:`LOG_INTERVAL` seconds each,
with the number left unlogged in between.

**Raw bodies and sendfile.** A transfer may move its bytes past h11 (:class:`RawSocket`, in
every request's scope ``state`` under :data:`RAW_KEY`): an upload takes the rest of its
``Content-Length`` body straight from the socket (:meth:`RawSocket.take_body`), read in a
worker thread into a large buffer and written to the file, instead of as one ASGI message per
64 KiB parsed by h11; a download sends its file with ``sendfile`` once its head is out
(:meth:`RawSocket.sendfile`), and h11 is told the bytes' length only (its documented
``send_with_data_passthrough`` for sendfile). The same limits hold there: a body that stalls
for ``body_timeout`` seconds ends the request as a client gone, and so does an answer the
client stops reading. A connection whose body was taken raw is closed after its answer
(``Connection: close``): h11 never saw the body's end, so no next request can follow on it.

A ``Transfer-Encoding: chunked`` body is taken raw too where the route asks for it (an
archive upload, whose client cannot know the length up front), but only while h11 holds none
of it: the client sent ``Expect: 100-continue`` and waits for the ``100 Continue`` that the
first read sends (:class:`ChunkedRawBody` decodes the framing). A body that came without
waiting is read as ASGI messages, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import fcntl
import functools
import json
import logging
import os
import re
import select
import socket
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import h11

from vfd.config import RequestLimits
from vfd.daemon.identity import PEER_KEY, PeerCredProtocol
from vfd.errors import ErrorCode, VfdError

log = logging.getLogger(__name__)

LOG_INTERVAL = 10.0
RAW_KEY = "vfd_raw"
"""Where a request's scope ``state`` holds its connection's :class:`RawSocket`."""
_PIPE_SIZE = 1 << 20
"""Bytes of the pipe a raw body is spliced through (more than the default 64 KiB: fewer calls)."""
_SO_SNDBUFFORCE = 32
"""``SO_SNDBUFFORCE`` (Linux; not in the socket module): a send buffer past ``wmem_max``."""
_POLL_SLICE = 0.5
"""Seconds a raw read or write waits at a time before it looks whether it was aborted."""
_LINE_MAX = 4096
"""Bytes a chunk-size line of a chunked body may have, extensions included, CRLF not."""
_TRAILER_MAX = 16384
"""Bytes the trailer section of a chunked body may have, its closing empty line included."""
_AHEAD = 8192
"""Bytes a chunked body reads at a time for its framing, and the most that comes along with
a chunk's data (read straight into the caller's buffer) to be copied out later."""
_HEX = re.compile(rb"[0-9A-Fa-f]+")


class RateLimitedLog:
    """Warnings about one peer, at most one per ``interval`` seconds per peer and kind; the
    next one says how many were left unlogged."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._quiet: dict[tuple[str, str], int] = {}

    def warning(self, peer: str, kind: str, message: str, *args: Any) -> None:
        key = (peer, kind)
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            self._quiet[key] = self._quiet.get(key, 0) + 1
            return
        if len(self._last) >= 4096:  # forget peers not heard of lately (many TCP addresses)
            for old in [k for k, t in self._last.items() if now - t >= self.interval]:
                del self._last[old]
                self._quiet.pop(old, None)
        self._last[key] = now
        quiet = self._quiet.pop(key, 0)
        suffix = f" ({quiet} more like it not logged)" if quiet else ""
        log.warning(message + suffix, *args)


class ConnectionGuard:
    """The open connections of each peer of one server, against ``peer_connections``."""

    def __init__(self, limits: RequestLimits) -> None:
        self.limits = limits
        self.open: dict[str, int] = {}
        self.log = RateLimitedLog()

    def admit(self, peer: str) -> bool:
        """Count a new connection of ``peer``; False (nothing counted) when it has too many."""
        count = self.open.get(peer, 0)
        if count >= self.limits.peer_connections:
            return False
        self.open[peer] = count + 1
        return True

    def release(self, peer: str) -> None:
        count = self.open.get(peer, 0) - 1
        if count > 0:
            self.open[peer] = count
        else:
            self.open.pop(peer, None)

    def refusal(self, peer: str) -> bytes:
        """The whole answer to a connection over the cap: 429, then the connection closes."""
        limit = self.limits.peer_connections
        body = json.dumps(
            {
                "error": {
                    "code": "too_many_requests",
                    "message": f"{peer} has {limit} connections open to the daemon, the most "
                    "one peer may have; close some and retry",
                    "details": {"limit": limit, "retry_after": self.limits.retry_after},
                }
            }
        ).encode()
        head = (
            "HTTP/1.1 429 Too Many Requests\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            f"retry-after: {self.limits.retry_after}\r\n"
            "connection: close\r\n\r\n"
        )
        return head.encode() + body


class GuardedProtocol(PeerCredProtocol):
    """:class:`~vfd.daemon.identity.PeerCredProtocol` with the per-connection limits of this
    module. Made per server by :func:`protocol_class`, which binds its :class:`ConnectionGuard`."""

    guard: ConnectionGuard

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._bare_head: object = None
        self.app_state = {**self.app_state, RAW_KEY: RawSocket(self)}
        peer = self.app_state.get(PEER_KEY)
        if peer is not None:
            self.peer = f"uid {peer.uid}"
        else:
            self.peer = f"address {self.client[0]}" if self.client else "an unknown peer"
        self._admitted = self.guard.admit(self.peer)
        if not self._admitted:
            self.guard.log.warning(
                self.peer,
                "cap",
                "refused a connection of %s: it has %d open, the most one peer may have "
                "([limits] peer_connections)",
                self.peer,
                self.guard.limits.peer_connections,
            )
            transport.write(self.guard.refusal(self.peer))
            transport.close()
            return
        self._watch()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        """Hand the connection to the WebSocket protocol: this protocol's timers stop for
        good, and the peer's connection slot is released when the WebSocket's connection is
        lost (this protocol hears nothing more of it)."""
        self._upgraded = True
        self._cancel_timers()
        super().handle_websocket_upgrade(event)
        ws = self.transport.get_protocol()
        if ws is self or not getattr(self, "_admitted", False):
            return
        self._admitted = False
        guard, peer, lost = self.guard, self.peer, ws.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            guard.release(peer)
            lost(exc)

        ws.connection_lost = connection_lost  # type: ignore[method-assign]

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if getattr(self, "_admitted", False):
            self._admitted = False
            self.guard.release(self.peer)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        # a request head that ends these bytes exactly: nothing of its body has come yet
        ended = self.cycle is not cycle and data.endswith((b"\n\r\n", b"\n\n"))
        self._bare_head = self.cycle if ended else None
        self._reset_body_timer()
        self._watch()

    def holds_no_body(self, cycle: Any) -> bool:
        """Whether none of the chunked body of ``cycle``'s request has reached h11: the bytes
        that completed its head ended with its empty line and none came since, the client
        waits for ``100 Continue`` (h11 saw no data of it), and h11 holds no bytes unparsed.
        The first is needed too: h11 takes in a chunk-size line that came alone without a
        sign of it in the others."""
        return (
            self._bare_head is cycle
            and self.conn.they_are_waiting_for_100_continue
            and not self.conn.trailing_data[0]
        )

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None and not self.transport.is_closing():
            self._write_timer = self.loop.call_later(
                self.guard.limits.body_timeout, self._write_late
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    # -- the timers ------------------------------------------------------------------------

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._write_timer = None

    def _between_requests(self) -> bool:
        return self.conn.their_state is h11.IDLE and (
            self.cycle is None or self.cycle.response_complete
        )

    def _watch(self) -> None:
        """Arm or cancel the timers for what the connection waits for now."""
        if self.transport.is_closing() or getattr(self, "_upgraded", False):
            self._cancel_timers()
            return
        limits = self.guard.limits
        waiting_head = self._between_requests() and (
            self.cycle is None or bool(self.conn.trailing_data[0])
        )
        if waiting_head:
            if self._head_timer is None:  # from the first byte, not the last: no slow drip
                self._head_timer = self.loop.call_later(limits.header_timeout, self._head_late)
        elif self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self.conn.their_state is h11.SEND_BODY:
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(limits.body_timeout, self._body_late)
        elif self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _reset_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._between_requests():
            return
        self.guard.log.warning(
            self.peer,
            "head",
            "closed a connection of %s: no complete request head in %gs ([limits] header_timeout)",
            self.peer,
            self.guard.limits.header_timeout,
        )
        self.transport.close()

    def _body_late(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        cycle = self.cycle
        if cycle is not None and (
            cycle.body or self.flow.read_paused or cycle.waiting_for_100_continue
        ):
            # the daemon has not taken what came, or has not asked for it: not a stall
            self._watch()
            return
        self.guard.log.warning(
            self.peer,
            "body",
            "closed a connection of %s: its request body stalled for %gs ([limits] body_timeout)",
            self.peer,
            self.guard.limits.body_timeout,
        )
        self.transport.close()

    def _write_late(self) -> None:
        self._write_timer = None
        if self.transport.is_closing():
            return
        self.guard.log.warning(
            self.peer,
            "read",
            "closed a connection of %s: it read nothing of its answer for %gs "
            "([limits] body_timeout)",
            self.peer,
            self.guard.limits.body_timeout,
        )
        self.transport.abort()  # close() would wait for the unread answer to drain


def protocol_class(limits: RequestLimits) -> type[GuardedProtocol]:
    """The protocol class of one server: its connections share one :class:`ConnectionGuard`."""
    return type("VfdProtocol", (GuardedProtocol,), {"guard": ConnectionGuard(limits)})


# -- raw bodies and sendfile ---------------------------------------------------------------


class ClientGone(Exception):
    """The client of a raw transfer closed or reset its connection, stopped sending its body
    or reading its answer for ``body_timeout`` seconds (``stalled``), or the transfer was
    aborted."""

    def __init__(self, message: str, *, stalled: bool = False) -> None:
        super().__init__(message)
        self.stalled = stalled


class _Span:
    """What h11 is handed for bytes sent with ``sendfile``: their length only."""

    def __init__(self, n: int) -> None:
        self._n = n

    def __len__(self) -> int:
        return self._n


class RawSocket:
    """One connection's socket, for the request in progress on it to move its body or its
    answer's bytes directly (see the module's docstring). Everything that touches the socket
    from a worker thread works on a duplicate of its descriptor, closed by its owner."""

    def __init__(self, protocol: GuardedProtocol) -> None:
        self._protocol = protocol

    def _cycle(self, scope: MutableMapping[str, Any]) -> Any:
        p = self._protocol
        cycle = p.cycle
        if cycle is None or cycle.scope is not scope or p.transport.is_closing():
            return None
        return cycle

    def take_body(
        self, scope: MutableMapping[str, Any], *, chunked: bool = False
    ) -> RawBody | None:
        """The rest of the body of the request ``scope`` (which has read none of it), read
        straight from the socket while it is still on its way: a ``Content-Length`` body as a
        :class:`RawBody`; with ``chunked``, a ``Transfer-Encoding: chunked`` one as a
        :class:`ChunkedRawBody`, only while none of it has come (the client waits for
        ``100 Continue``). None otherwise: read it as ASGI messages. The connection closes
        after the answer."""
        p = self._protocol
        cycle = self._cycle(scope)
        if cycle is None or p.conn.their_state is not h11.SEND_BODY or not cycle.more_body:
            return None
        length = None
        coded = False  # h11 admits no transfer coding but chunked
        for name, value in scope["headers"]:
            if name == b"transfer-encoding":
                coded = True
            elif name == b"content-length":
                length = int(value)
        if coded:
            if not chunked or length is not None or not p.holds_no_body(cycle):
                return None
        elif length is None:
            return None
        head = bytes(cycle.body)
        cycle.body = bytearray()
        p.flow.pause_reading()
        cycle.keep_alive = False  # h11 never sees this body end: nothing may follow it
        scope["headers"] = [*scope["headers"], (b"connection", b"close")]
        proceed = b""
        if cycle.waiting_for_100_continue:
            event = h11.InformationalResponse(status_code=100, headers=[], reason="Continue")
            proceed = p.conn.send(event) or b""
            cycle.waiting_for_100_continue = False
        sock = p.transport.get_extra_info("socket")
        fd = os.dup(sock.fileno())
        timeout = p.guard.limits.body_timeout

        def stalled() -> None:
            p.guard.log.warning(
                p.peer,
                "body",
                "closed a connection of %s: its request body stalled for %gs "
                "([limits] body_timeout)",
                p.peer,
                timeout,
            )

        if length is None:
            return ChunkedRawBody(fd, proceed, timeout, stalled)
        return RawBody(fd, head, length - len(head), proceed, timeout, stalled)

    def widen(self, scope: MutableMapping[str, Any], nbytes: int) -> None:
        """Let the answer to ``scope`` run up to ``nbytes`` ahead of the client (the socket's
        send buffer and the transport's, each): a stream made as it is sent (an archive)
        goes on while the client is busy with what came before, instead of taking turns."""
        cycle = self._cycle(scope)
        if cycle is None:
            return
        transport = self._protocol.transport
        sock = transport.get_extra_info("socket")
        with contextlib.suppress(OSError):  # SO_SNDBUFFORCE: root passes wmem_max
            sock.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, nbytes)
        transport.set_write_buffer_limits(high=nbytes)

    async def sendfile(
        self,
        scope: MutableMapping[str, Any],
        run: Callable[[Callable[[], int]], Any],
        fd: int,
        offset: int,
        count: int,
    ) -> bool:
        """Send ``count`` bytes of ``fd`` from ``offset`` as (the rest of) the body of the
        answer to ``scope``, whose head is sent, with ``sendfile`` in a worker thread
        (``run(call)`` awaits ``call`` there). False, with nothing sent, when the connection
        cannot take it now (the head still waits in the transport's buffer); raises
        :class:`ClientGone` (the connection aborted) when the client goes away or stops
        reading for ``body_timeout`` seconds."""
        p = self._protocol
        cycle = self._cycle(scope)
        if cycle is None or not cycle.response_started or cycle.response_complete:
            return False
        if p.transport.get_write_buffer_size() or count <= 0:
            return False
        p.conn.send_with_data_passthrough(h11.Data(data=_Span(count)))  # type: ignore[arg-type]
        sock = p.transport.get_extra_info("socket")
        out = os.dup(sock.fileno())
        stop = threading.Event()
        timeout = p.guard.limits.body_timeout
        try:
            await in_thread_until_done(
                run, lambda: _sendfile_all(out, fd, offset, count, timeout, stop), stop.set
            )
        except BaseException as exc:
            if isinstance(exc, ClientGone) and exc.stalled:
                p.guard.log.warning(
                    p.peer,
                    "read",
                    "closed a connection of %s: it read nothing of its answer for %gs "
                    "([limits] body_timeout)",
                    p.peer,
                    timeout,
                )
            p.transport.abort()
            raise
        finally:
            os.close(out)
        return True


async def in_thread_until_done(
    run: Callable[[Callable[[], Any]], Any], call: Callable[[], Any], abort: Callable[[], None]
) -> Any:
    """``await run(call)`` (``call`` in a worker thread), returning only once the thread is
    done: when the caller is cancelled meanwhile, ``abort()`` makes ``call`` end soon, and
    the cancellation goes on after it has."""
    job = asyncio.ensure_future(run(call))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        abort()
        while not job.done():
            try:
                await asyncio.shield(job)
            except asyncio.CancelledError:
                continue
            except BaseException:
                break
        if not job.cancelled():
            job.exception()  # retrieved: the cancellation is what the caller sees
        raise


class RawBody:
    """The rest of a request body, read straight from the connection's socket by a worker
    thread: first what had arrived before it was taken (``head``), then the socket, until
    ``remaining`` more bytes are in. :meth:`close` closes its descriptor (a duplicate)."""

    def __init__(
        self,
        fd: int,
        head: bytes,
        remaining: int,
        proceed: bytes,
        timeout: float,
        on_stall: Callable[[], None] | None = None,
    ) -> None:
        self._fd = fd
        self._head = memoryview(head)
        self._length = len(head) + remaining
        self._remaining = remaining
        self._proceed = proceed  # a ``100 Continue`` to send before the first read
        self._timeout = timeout
        self._on_stall = on_stall
        self._stop = threading.Event()

    @property
    def length(self) -> int:
        """The whole body's bytes (what was taken)."""
        return self._length

    def abort(self) -> None:
        """Make the read in progress (and every later one) fail with :class:`ClientGone`."""
        self._stop.set()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def readinto(self, buf: memoryview) -> int:
        """Fill ``buf`` (as far as the body goes); the bytes read, 0 at the body's end.
        Blocking (a worker thread); raises :class:`ClientGone`."""
        return self._stalls_told(lambda: self._readinto(buf))

    def _socket_read(self, read: Callable[[], int], *, wait: bool) -> int:
        """``read()``, one call that takes bytes from the socket: how many (never 0 unless
        none were there and not ``wait``; with ``wait``, until some come, at most the body
        timeout). :class:`ClientGone` when the client closed or reset the connection."""
        while True:
            try:
                n = read()
            except BlockingIOError:
                if not wait:
                    return 0
                _wait(self._fd, select.POLLIN, self._timeout, self._stop, "send its body")
                continue
            except OSError as exc:
                raise ClientGone(f"the client went away: {exc.strerror}") from None
            if n == 0:
                raise ClientGone("the client went away before its body ended")
            return n

    def _stalls_told(self, call: Callable[[], int]) -> int:
        """``call()``; a stall it ends with is told (``on_stall``) before it propagates."""
        try:
            return call()
        except ClientGone as exc:
            if exc.stalled and self._on_stall is not None:
                self._on_stall()
            raise

    def _readinto(self, buf: memoryview) -> int:
        done = 0
        if self._head:
            done = min(len(buf), len(self._head))
            buf[:done] = self._head[:done]
            self._head = self._head[done:]
        if self._proceed:
            _send_all(self._fd, self._proceed, self._timeout, self._stop)
            self._proceed = b""
        while done < len(buf) and self._remaining:
            piece = buf[done : done + min(len(buf) - done, self._remaining)]
            # with a part in hand, it is returned now: the rest comes with the next call
            n = self._socket_read(functools.partial(os.readv, self._fd, [piece]), wait=not done)
            if not n:
                break
            done += n
            self._remaining -= n
        return done

    def splice_to(self, fd: int, pos: int) -> int:
        """Move the whole body into the file ``fd`` at ``pos`` through a pipe (``splice``:
        the pages the client sent go to the file without a copy through this process); the
        bytes written, every one of them in the file when :class:`ClientGone` is raised.
        Blocking (a worker thread); an ``OSError`` of the file's side propagates."""
        return self._stalls_told(lambda: self._splice_to(fd, pos))

    def _splice_to(self, fd: int, pos: int) -> int:
        start = pos
        while self._head:
            n = os.pwrite(fd, self._head, pos)
            self._head = self._head[n:]
            pos += n
        if self._proceed:
            _send_all(self._fd, self._proceed, self._timeout, self._stop)
            self._proceed = b""
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):  # a larger pipe where the system allows it
                fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
            while self._remaining:
                if self._stop.is_set():
                    raise ClientGone("the transfer was aborted")
                n = self._socket_read(
                    functools.partial(
                        os.splice,
                        self._fd,
                        w,
                        min(self._remaining, _PIPE_SIZE),
                        flags=os.SPLICE_F_MOVE,
                    ),
                    wait=True,
                )
                self._remaining -= n
                while n:  # the pipe is emptied into the file before more is taken
                    m = os.splice(r, fd, n, offset_dst=pos, flags=os.SPLICE_F_MOVE)
                    pos += m
                    n -= m
        finally:
            os.close(r)
            os.close(w)
        return pos - start


class _Next(enum.Enum):
    """What a chunked body reads next."""

    DATA = "data"  # the rest of the current chunk's data
    DATA_END = "data end"  # the CRLF after a chunk's data
    SIZE = "size"  # a chunk-size line (its extensions ignored)
    TRAILER = "trailer"  # the trailer section after the last chunk, up to its empty line
    END = "end"  # nothing: the body is complete


class ChunkedRawBody(RawBody):
    """A ``Transfer-Encoding: chunked`` request body (RFC 9112 section 7.1) read straight
    from the connection's socket by a worker thread, decoded: :meth:`readinto` gives the
    chunks' data. A chunk's data is read into the caller's buffer, and what follows it
    comes along into a small read-ahead buffer in the same call, where the framing is
    parsed; a malformed one raises ``VfdError(INVALID_ARGUMENT)``. Its length is known only
    at its end, so it is not for :attr:`length` or :meth:`splice_to`."""

    def __init__(
        self,
        fd: int,
        proceed: bytes,
        timeout: float,
        on_stall: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(fd, b"", 0, proceed, timeout, on_stall)
        self._next = _Next.SIZE
        self._left = 0  # bytes of the current chunk's data not yet read
        self._ahead = bytearray(_TRAILER_MAX + _AHEAD)
        self._view = memoryview(self._ahead)
        self._lo = self._hi = 0  # the bytes read ahead, not yet taken: _ahead[_lo:_hi]

    @property
    def length(self) -> int:
        raise TypeError("a chunked body's length is known only at its end")

    def splice_to(self, fd: int, pos: int) -> int:
        raise TypeError("a chunked body is read with readinto (its framing is decoded)")

    def _readinto(self, buf: memoryview) -> int:
        if self._stop.is_set():
            raise ClientGone("the transfer was aborted")
        if self._proceed:
            _send_all(self._fd, self._proceed, self._timeout, self._stop)
            self._proceed = b""
        done = 0
        while done < len(buf) and self._next is not _Next.END:
            # with a part in hand, it is returned rather than waited on for more
            if self._next is _Next.DATA:
                n = self._data(buf[done:], wait=not done)
                if not n:
                    break
                done += n
            elif not self._frame() and not self._fill(wait=not done):
                break
        return done

    def _data(self, out: memoryview, *, wait: bool) -> int:
        """Read some of the current chunk's data into ``out``: the bytes read."""
        want = min(len(out), self._left)
        if self._lo < self._hi:
            n = min(want, self._hi - self._lo)
            out[:n] = self._view[self._lo : self._lo + n]
            self._lo += n
        else:
            self._lo = self._hi = 0
            pieces = [out[:want]]
            if want == self._left:  # what follows the chunk comes along, in the read-ahead
                pieces.append(self._view[:_AHEAD])
            n = self._socket_read(functools.partial(os.readv, self._fd, pieces), wait=wait)
            if n > want:
                self._hi = n - want
                n = want
        self._left -= n
        if not self._left:
            self._next = _Next.DATA_END
        return n

    def _fill(self, *, wait: bool) -> int:
        """Read more of the socket into the read-ahead buffer: the bytes read."""
        if self._lo == self._hi:
            self._lo = self._hi = 0
        elif len(self._ahead) - self._hi < _AHEAD:
            kept = self._hi - self._lo
            self._ahead[:kept] = self._ahead[self._lo : self._hi]
            self._lo, self._hi = 0, kept
        room = self._view[self._hi : self._hi + _AHEAD]
        n = self._socket_read(functools.partial(os.readv, self._fd, [room]), wait=wait)
        self._hi += n
        return n

    def _frame(self) -> bool:
        """Take the next piece of framing from the read-ahead buffer; False when it is not
        all there yet."""
        ahead, lo, hi = self._ahead, self._lo, self._hi
        if self._next is _Next.DATA_END:
            if hi - lo < 2:
                return False
            if ahead[lo : lo + 2] != b"\r\n":
                raise _malformed("a chunk's data is not followed by CRLF")
            self._lo += 2
            self._next = _Next.SIZE
        elif self._next is _Next.SIZE:
            eol = ahead.find(b"\n", lo, min(hi, lo + _LINE_MAX + 2))
            if eol < 0:
                if hi - lo >= _LINE_MAX + 2:
                    raise _malformed(f"a chunk-size line is longer than {_LINE_MAX} bytes")
                return False
            if eol == lo or ahead[eol - 1] != ord("\r"):
                raise _malformed("a chunk-size line does not end with CRLF")
            size = _chunk_size(bytes(ahead[lo : eol - 1]))
            self._lo = eol + 1
            self._left = size
            self._next = _Next.DATA if size else _Next.TRAILER
        else:  # the trailer section: field lines, ignored, up to an empty line
            if ahead.startswith(b"\r\n", lo, hi):
                end = lo + 2
            else:
                found = ahead.find(b"\r\n\r\n", lo, hi)
                end = found + 4 if found >= 0 else -1
            if end < 0 or end - lo > _TRAILER_MAX:
                if end >= 0 or hi - lo >= _TRAILER_MAX:
                    raise _malformed(f"its trailer section is longer than {_TRAILER_MAX} bytes")
                return False
            self._lo = end
            self._next = _Next.END
        return True


def _chunk_size(line: bytes) -> int:
    """The chunk-size of a chunk-size line (without its CRLF), its extensions ignored."""
    digits = line.split(b";", 1)[0].rstrip(b" \t")
    if not digits:
        raise _malformed("a chunk-size is empty")
    if not _HEX.fullmatch(digits):
        shown = digits[:40].decode("ascii", "backslashreplace")
        raise _malformed(f"a chunk-size is not hexadecimal: '{shown}'")
    if len(digits) > 16:
        raise _malformed(f"a chunk-size has {len(digits)} hex digits, more than 16")
    return int(digits, 16)


def _malformed(why: str) -> VfdError:
    return VfdError(
        ErrorCode.INVALID_ARGUMENT, f"the request body's chunked encoding is malformed: {why}"
    )


def _wait(fd: int, event: int, timeout: float, stop: threading.Event, what: str) -> None:
    """Wait until ``fd`` is ready for ``event``, at most ``timeout`` seconds."""
    poller = select.poll()
    poller.register(fd, event | select.POLLERR | select.POLLHUP)
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClientGone(
                f"the client did not {what} for {timeout:g}s ([limits] body_timeout)", stalled=True
            )
        if poller.poll(min(left, _POLL_SLICE) * 1000):
            return
    raise ClientGone("the transfer was aborted")


def _send_all(fd: int, data: bytes, timeout: float, stop: threading.Event) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            _wait(fd, select.POLLOUT, timeout, stop, "read its answer")
            continue
        except OSError as exc:
            raise ClientGone(f"the client went away: {exc.strerror}") from None
        view = view[n:]


def _sendfile_all(
    out: int, fd: int, offset: int, count: int, timeout: float, stop: threading.Event
) -> int:
    """``count`` bytes of ``fd`` from ``offset`` into the socket ``out``; ``ClientGone``
    when the client stops reading for ``timeout`` seconds or goes away."""
    sent = 0
    while sent < count:
        if stop.is_set():
            raise ClientGone("the transfer was aborted")
        try:
            n = os.sendfile(out, fd, offset + sent, count - sent)
        except BlockingIOError:
            _wait(out, select.POLLOUT, timeout, stop, "read its answer")
            continue
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                raise ClientGone(f"the client went away: {exc.strerror}") from None
            raise
        if n == 0:  # the file is shorter than it was: the answer cannot be completed
            raise OSError(errno.EIO, f"the file ended {count - sent} bytes early")
        sent += n
    return sent
