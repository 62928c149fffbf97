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
This module decides when a request may; :mod:`vfd.daemon.rawio` moves the bytes.

A ``Transfer-Encoding: chunked`` body is taken raw too where the route asks for it (an
archive upload, whose client cannot know the length up front), but only while h11 holds none
of it: the client sent ``Expect: 100-continue`` and waits for the ``100 Continue`` that the
first read sends (:class:`ChunkedRawBody` decodes the framing). A body that came without
waiting is read as ASGI messages, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import h11

from vfd.config import RequestLimits
from vfd.daemon.identity import PEER_KEY, PeerCredProtocol
from vfd.daemon.rawio import (
    ChunkedRawBody,
    ClientGone,
    RawBody,
    in_thread_until_done,
    sendfile_all,
)

log = logging.getLogger(__name__)

LOG_INTERVAL = 10.0
RAW_KEY = "vfd_raw"
"""Where a request's scope ``state`` holds its connection's :class:`RawSocket`."""
_SO_SNDBUFFORCE = 32
"""``SO_SNDBUFFORCE`` (Linux; not in the socket module): a send buffer past ``wmem_max``."""


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
                run, lambda: sendfile_all(out, fd, offset, count, timeout, stop), stop.set
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
