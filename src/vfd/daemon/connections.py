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
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import h11

from vfd.config import RequestLimits
from vfd.daemon.identity import PEER_KEY, PeerCredProtocol

log = logging.getLogger(__name__)

LOG_INTERVAL = 10.0


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
        super().data_received(data)
        self._reset_body_timer()
        self._watch()

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
