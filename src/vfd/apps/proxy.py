"""The daemon's proxy in front of one service app: a TCP listener that lets through only the
holders of the app's token, and forwards their HTTP (and WebSocket) traffic to the service.

Each proxied app has a listener of its own (a port from ``[apps] ports``), so each app is an
origin of its own in a browser: the service's absolute links, cookies and scripts work as if
it were served directly, and one app's pages cannot read another's.

The token arrives in the URL's ``vfd_token`` query parameter, then in an HttpOnly, SameSite
cookie the proxy sets (``vfd_app_<id>``), or in an ``X-Vfd-App-Token`` header. A browser
navigation carrying it in the URL is answered with a redirect to the same URL without it
(the cookie set), so it does not stay in the address bar or leak in a ``Referer``; any other
request carrying it is forwarded with the parameter removed. Neither the token nor the
proxy's cookie ever reaches the service. A request without a token is answered ``401``, one
with a wrong token ``403``, and its connection closed; nothing of it is forwarded.

HTTP/1.x on both sides is parsed by h11: each request of a keep-alive connection is checked
and forwarded on one connection to the service, bodies streamed both ways. A request that
upgrades the connection (a WebSocket) is answered by the service; after its ``101`` the two
connections are spliced byte for byte until one side closes.

What reaches the service is for the caller to say (:data:`Connector`): the daemon connects
inside the session container's network namespace (:mod:`vfd.apps.netns`), so a service bound
to the container's loopback is reached and no port is published anywhere.

Client connections are bounded per address, and time out while they send a request head,
stall a body or sit idle between requests; :meth:`AppProxy.close` ends every one of them and
the listener, leaving no descriptor behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus

import h11

log = logging.getLogger(__name__)

TOKEN_PARAM = "vfd_token"
TOKEN_HEADER = b"x-vfd-app-token"
COOKIE_PREFIX = "vfd_app_"
READ_SIZE = 65536
HEAD_MAX = 64 * 1024
"""The largest request or response head (bytes) the proxy reads."""

Connector = Callable[[], Awaitable[socket.socket]]
"""Makes a connected socket to the service (raises OSError when it does not answer)."""


@dataclass(frozen=True)
class ProxyLimits:
    """What one client may take of an app's proxy (from ``[limits]``)."""

    header_timeout: float = 30.0
    """Seconds a client may take to send a request head."""
    body_timeout: float = 60.0
    """Seconds a request body may stall, or a client may not read what it is sent."""
    keepalive_timeout: float = 5.0
    """Seconds an idle connection is kept between requests."""
    peer_connections: int = 256
    """Open connections per client address; more are answered ``429`` and closed."""
    connect_timeout: float = 10.0
    """Seconds to reach the service."""


class _Closed(Exception):
    """The client or the service went away, or broke the protocol: close the connection."""


class AppProxy:
    """One app's listener and its client connections.

    ``serve`` accepts until :meth:`close`; ``token`` is the app's secret, ``key`` names its
    cookie (a short id, unique per app on this node)."""

    def __init__(
        self,
        *,
        listener: socket.socket,
        token: str,
        key: str,
        connect: Connector,
        limits: ProxyLimits,
        describe: str = "the service",
        touched: Callable[[], None] | None = None,
    ) -> None:
        self.listener = listener
        self.cookie = f"{COOKIE_PREFIX}{key}"
        self.connect = connect
        self.limits = limits
        self.describe = describe
        self.touched = touched or _nothing
        """Called (on the loop; it must not block) at each request let through and each
        chunk of an upgraded connection: the app is in use."""
        self._digest = hashlib.sha256(token.encode()).digest()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._peers: dict[str, int] = {}
        self._closed = False

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    @property
    def connections(self) -> int:
        """Client connections open now."""
        return len(self._tasks)

    async def start(self) -> None:
        """Start accepting on the listener (returns at once)."""
        self.listener.setblocking(False)
        self._server = await asyncio.start_server(self._client, sock=self.listener, limit=HEAD_MAX)

    async def close(self) -> None:
        """Stop accepting, end every client connection (and its service connection), wait
        until they are gone; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        else:
            self.listener.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    # -- one client connection ------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if self._closed or self._peers.get(address, 0) >= self.limits.peer_connections:
            writer.write(_canned(429, "too many connections from your address; retry later"))
            await _shut(writer)
            return
        self._peers[address] = self._peers.get(address, 0) + 1
        self._tasks.add(task)
        try:
            await _Exchange(self, reader, writer).run()
        except (_Closed, OSError, TimeoutError, h11.ProtocolError):
            pass
        except asyncio.CancelledError:
            pass  # the app stops
        except Exception:
            log.exception("the proxy of %s failed on a connection", self.describe)
        finally:
            self._tasks.discard(task)
            left = self._peers.pop(address) - 1
            if left:
                self._peers[address] = left
            await _shut(writer)

    def authorize(self, request: h11.Request) -> _Verdict:
        """Check ``request``'s token: the request to forward (token and cookie removed) and
        whether to set the cookie; raises :class:`Refused` without a right one."""
        path, sep, query = request.target.partition(b"?")
        kept: list[bytes] = []
        given: list[bytes] = []
        for pair in query.split(b"&") if sep else []:
            key, _, value = pair.partition(b"=")
            if unquote_plus(key.decode("latin-1")) == TOKEN_PARAM:
                given.append(unquote_plus(value.decode("latin-1")).encode("latin-1"))
            else:
                kept.append(pair)
        target = path + (b"?" + b"&".join(kept) if kept else b"")
        headers: list[tuple[bytes, bytes]] = []
        held: list[bytes] = []
        cookie_name = self.cookie.encode()
        for name, value in request.headers:
            if name == TOKEN_HEADER:
                held.append(value)
            elif name == b"cookie":
                others, ours = _split_cookies(value, cookie_name)
                held += ours
                if others:
                    headers.append((name, others))
            else:
                headers.append((name, value))
        if not given and not held:
            raise Refused(
                401,
                "this app needs its token: open the URL `vfd session app` printed "
                f"(its ?{TOKEN_PARAM}=... part)",
            )
        from_url = next((t for t in given if self._matches(t)), None)
        if from_url is None and not any(self._matches(t) for t in held):
            raise Refused(403, "wrong token for this app")
        forward = h11.Request(
            method=request.method,
            target=target or b"/",
            headers=headers,
            http_version=request.http_version,
        )
        navigate = any(n == b"sec-fetch-mode" and v == b"navigate" for n, v in request.headers)
        return _Verdict(
            request=forward,
            token=from_url,
            redirect=from_url is not None
            and navigate
            and request.method in (b"GET", b"HEAD")
            and _local(target),
        )

    def _matches(self, token: bytes) -> bool:
        return hmac.compare_digest(hashlib.sha256(token).digest(), self._digest)

    def set_cookie(self, token: bytes) -> tuple[bytes, bytes]:
        return (
            b"set-cookie",
            self.cookie.encode() + b"=" + token + b"; Path=/; HttpOnly; SameSite=Lax",
        )


class Refused(Exception):
    """A request without the app's token (``401``) or with a wrong one (``403``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class _Verdict:
    request: h11.Request
    """The request to forward: the token parameter and the proxy's cookie removed."""
    token: bytes | None
    """The token, when it came in the URL: answer with the cookie."""
    redirect: bool
    """A browser navigation with the token in the URL: redirect to the URL without it."""


def _local(target: bytes) -> bool:
    """Whether ``target`` is a path of this origin, safe as a ``Location`` (not an absolute
    URL, nor one a browser reads as another host: ``//host``, ``/\\host``)."""
    return target.startswith(b"/") and not target.startswith((b"//", b"/\\"))


def _sets_vfd_cookie(header: tuple[bytes, bytes]) -> bool:
    """Whether a service's answer header sets a ``vfd_*`` cookie: it would land on every port
    of the host (a service could plant a console session of its user's in a visitor's
    browser), so it is not passed on."""
    name, value = header
    return name.lower() == b"set-cookie" and value.lstrip().lower().startswith(b"vfd_")


def _split_cookies(value: bytes, name: bytes) -> tuple[bytes, list[bytes]]:
    """(the Cookie header without vfd's own cookies, the values of cookie ``name``).

    Browsers send a host's cookies to all of its ports: every ``vfd_*`` cookie (this app's,
    other apps', the web console's session) is taken out, so a service never sees them."""
    others: list[bytes] = []
    ours: list[bytes] = []
    for piece in value.split(b";"):
        piece = piece.strip()
        if not piece:
            continue
        key, _, val = piece.partition(b"=")
        if key.strip() == name:
            ours.append(val.strip())
        elif not key.strip().startswith(b"vfd_"):
            others.append(piece)
    return b"; ".join(others), ours


def _canned(status: int, text: str) -> bytes:
    body = (text + "\n").encode()
    reason = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests"}.get(status, "")
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\ncache-control: no-store\r\n\r\n"
    ).encode() + body


async def _shut(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


class _Peer:
    """One side's stream and its h11 state."""

    def __init__(
        self,
        role: type[h11.CLIENT] | type[h11.SERVER],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        send_timeout: float,
    ) -> None:
        self.conn = h11.Connection(role, max_incomplete_event_size=HEAD_MAX)
        self.reader = reader
        self.writer = writer
        self.send_timeout = send_timeout

    async def next(self, within: float | None) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                read = self.reader.read(READ_SIZE)
                data = await (read if within is None else asyncio.wait_for(read, within))
                self.conn.receive_data(data)
                continue
            return event  # type: ignore[return-value]

    async def send(self, *events: h11.Event) -> None:
        for event in events:
            data = self.conn.send(event)
            if data:
                self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), self.send_timeout)


class _Exchange:
    """The requests of one client connection, forwarded to one service connection."""

    def __init__(
        self, proxy: AppProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.limits = proxy.limits
        self.client = _Peer(h11.SERVER, reader, writer, proxy.limits.body_timeout)
        self.upstream: _Peer | None = None

    async def run(self) -> None:
        try:
            await self._serve()
        finally:
            if self.upstream is not None:
                await _shut(self.upstream.writer)

    async def _serve(self) -> None:
        wait = self.limits.header_timeout
        while True:
            try:
                event = await self.client.next(wait)
            except h11.RemoteProtocolError as exc:
                await self._plain(400, f"bad request: {exc}")
                return
            if not isinstance(event, h11.Request):
                return  # closed (or timed out) between requests
            try:
                verdict = self.proxy.authorize(event)
            except Refused as refused:
                await self._plain(refused.status, refused.message)
                return
            self.proxy.touched()
            if verdict.redirect:
                await self._drain_request()
                location = verdict.request.target
                await self.client.send(
                    h11.Response(
                        status_code=303,
                        headers=[
                            (b"location", location),
                            self.proxy.set_cookie(verdict.token or b""),
                            (b"cache-control", b"no-store"),
                            (b"referrer-policy", b"no-referrer"),
                            (b"content-length", b"0"),
                        ],
                    ),
                    h11.EndOfMessage(),
                )
            elif await self._forward(verdict):
                return  # switched protocols: spliced until closed
            if not self._next_cycle():
                return
            wait = self.limits.keepalive_timeout

    def _next_cycle(self) -> bool:
        """Ready the client (and the service) connection for the next request; False when the
        client connection must close."""
        client = self.client.conn
        if client.our_state is not h11.DONE or client.their_state is not h11.DONE:
            return False
        client.start_next_cycle()
        upstream = self.upstream
        if upstream is not None:
            if upstream.conn.our_state is h11.DONE and upstream.conn.their_state is h11.DONE:
                upstream.conn.start_next_cycle()
            else:
                self.upstream = None
                asyncio.get_running_loop().create_task(_shut(upstream.writer))
        return True

    async def _plain(self, status: int, text: str) -> None:
        """Answer ``status`` with ``text`` and close (nothing forwarded)."""
        body = (text + "\n").encode()
        with contextlib.suppress(h11.LocalProtocolError, OSError, TimeoutError):
            await self.client.send(
                h11.Response(
                    status_code=status,
                    headers=[
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                        (b"cache-control", b"no-store"),
                        (b"connection", b"close"),
                    ],
                ),
                h11.Data(data=body),
                h11.EndOfMessage(),
            )

    async def _drain_request(self) -> None:
        while True:
            event = await self.client.next(self.limits.body_timeout)
            if isinstance(event, h11.EndOfMessage):
                return
            if not isinstance(event, h11.Data):
                raise _Closed()

    async def _open(self) -> _Peer:
        sock = await asyncio.wait_for(self.proxy.connect(), self.limits.connect_timeout)
        try:
            reader, writer = await asyncio.open_connection(sock=sock, limit=HEAD_MAX)
        except BaseException:
            sock.close()
            raise
        return _Peer(h11.CLIENT, reader, writer, self.limits.body_timeout)

    async def _forward(self, verdict: _Verdict) -> bool:
        """Forward one request and its answer; True when the connection switched protocols
        (and has been spliced to its end)."""
        if self.upstream is None:
            try:
                self.upstream = await self._open()
            except (OSError, TimeoutError) as exc:
                await self._drain_quietly()
                await self._plain(
                    502, f"{self.proxy.describe} does not answer ({_why(exc)}); is it running?"
                )
                raise _Closed() from None
        upstream = self.upstream
        try:
            await upstream.send(verdict.request)
        except (OSError, TimeoutError, h11.LocalProtocolError) as exc:
            await self._plain(502, f"{self.proxy.describe} went away ({_why(exc)})")
            raise _Closed() from None
        body = asyncio.get_running_loop().create_task(self._pump_body(upstream))
        try:
            return await self._answer(upstream, verdict, body)
        finally:
            if not body.done():
                body.cancel()
                with contextlib.suppress(BaseException):
                    await body

    async def _drain_quietly(self) -> None:
        with contextlib.suppress(Exception):
            if self.client.conn.their_state is h11.SEND_BODY:
                await asyncio.wait_for(self._drain_request(), 1.0)

    async def _pump_body(self, upstream: _Peer) -> None:
        """The client's request body to the service, as it comes."""
        while True:
            event = await self.client.next(self.limits.body_timeout)
            if isinstance(event, h11.Data):
                await upstream.send(event)
            elif isinstance(event, h11.EndOfMessage):
                await upstream.send(h11.EndOfMessage())
                return
            else:
                raise _Closed()

    async def _answer(self, upstream: _Peer, verdict: _Verdict, body: asyncio.Task[None]) -> bool:
        started = False
        try:
            while True:
                event = await self._service_event(upstream, body)
                if isinstance(event, h11.InformationalResponse):
                    if event.status_code == 101:
                        await body  # the upgrade request is whole (it has no body)
                        await self.client.send(
                            h11.InformationalResponse(
                                status_code=101, headers=list(event.headers), reason=event.reason
                            )
                        )
                        await self._splice(upstream)
                        return True
                    await self.client.send(event)
                    continue
                if not isinstance(event, h11.Response):
                    raise _Closed()
                headers = [h for h in event.headers if not _sets_vfd_cookie(h)]
                if verdict.token is not None:
                    headers.append(self.proxy.set_cookie(verdict.token))
                await self.client.send(
                    h11.Response(
                        status_code=event.status_code,
                        headers=headers,
                        reason=event.reason,
                    )
                )
                started = True
                break
            while True:
                event = await self._service_event(upstream, body)
                if isinstance(event, h11.Data):
                    await self.client.send(event)
                elif isinstance(event, h11.EndOfMessage):
                    await self.client.send(h11.EndOfMessage())
                    break
                else:
                    raise _Closed()
        except (OSError, h11.RemoteProtocolError) as exc:
            if not started:
                await self._plain(502, f"{self.proxy.describe} went away ({_why(exc)})")
            raise _Closed() from None
        if not body.done():
            # the service answered without reading the whole body: this connection is done
            raise _Closed()
        await body
        return False

    async def _service_event(
        self, upstream: _Peer, body: asyncio.Task[None]
    ) -> h11.Event | type[h11.PAUSED]:
        """The service's next event; a failed body pump (the client gone) ends the
        exchange."""
        if body.done() and body.exception() is not None:
            raise _Closed()
        return await upstream.next(None)

    async def _splice(self, upstream: _Peer) -> None:
        """Copy bytes both ways after a protocol switch until either side closes."""
        client_rest, _ = self.client.conn.trailing_data
        upstream_rest, _ = upstream.conn.trailing_data
        if client_rest:
            upstream.writer.write(client_rest)
        if upstream_rest:
            self.client.writer.write(upstream_rest)

        async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    return
                self.proxy.touched()
                writer.write(data)
                await writer.drain()

        tasks = [
            asyncio.get_running_loop().create_task(copy(self.client.reader, upstream.writer)),
            asyncio.get_running_loop().create_task(copy(upstream.reader, self.client.writer)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _nothing() -> None:
    pass


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or exc.__class__.__name__


def bind_listener(host: str, ports: Iterable[int]) -> socket.socket:
    """A listening TCP socket on ``host`` and the first port of ``ports`` free to bind;
    OSError(EADDRINUSE) when none is."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for port in ports:
        try:
            return socket.create_server((host, port), family=family, backlog=128)
        except OSError as exc:
            last = exc
    raise last or OSError(98, "no port to bind")
