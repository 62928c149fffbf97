"""The app proxy (``vfd.apps.proxy``) in front of a real HTTP server, over real TCP: the token
in the URL, then a cookie; refusals before anything is forwarded; bodies both ways,
keep-alive, WebSockets; timeouts, the per-address cap, and nothing left open once it closes.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import websockets.sync.client
import websockets.sync.server

from vfd.apps.proxy import AppProxy, ProxyLimits, bind_listener

TOKEN = "s3cret-Token_value"
TOUCHED: list[float] = []
"""When the proxy under test said its app was used."""


class _Seen(http.server.BaseHTTPRequestHandler):
    """Answers what it was sent: its path, headers and the digest of its body."""

    protocol_version = "HTTP/1.1"
    requests: list[dict[str, Any]] = []
    connections = 0

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()

    def _answer(self) -> None:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._chunked()
        else:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
        seen = {
            "method": self.command,
            "path": self.path,
            "cookie": self.headers.get("cookie"),
            "token_header": self.headers.get("x-vfd-app-token"),
            "size": len(body),
            "sha": hashlib.sha256(body).hexdigest(),
        }
        type(self).requests.append(seen)
        out = json.dumps(seen).encode()
        self.send_response(200)
        if self.path.startswith("/sets-cookies"):
            self.send_header("set-cookie", "vfd_session=planted; Path=/")
            self.send_header("set-cookie", "own=kept; Path=/")
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def _chunked(self) -> bytes:
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b""):
                    pass
                return body
            body += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Loop:
    """An asyncio loop in a thread, running the proxy under test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def upstream() -> Iterator[tuple[str, int]]:
    _Seen.requests = []
    _Seen.connections = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Seen)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ("127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _connector(address: tuple[str, int]) -> Callable[[], Any]:
    async def connect() -> socket.socket:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        return sock

    return connect


class Proxied:
    def __init__(self, loop: Loop, proxy: AppProxy) -> None:
        self.loop = loop
        self.proxy = proxy
        self.base = f"http://127.0.0.1:{proxy.port}"

    def close(self) -> None:
        self.loop.call(self.proxy.close())


def _start(address: tuple[str, int], limits: ProxyLimits | None = None) -> tuple[Loop, Proxied]:
    loop = Loop()
    listener = bind_listener("127.0.0.1", [0])
    proxy = AppProxy(
        listener=listener,
        token=TOKEN,
        key="abcd1234",
        connect=_connector(address),
        limits=limits or ProxyLimits(),
        describe="service web",
        touched=lambda: TOUCHED.append(time.monotonic()),
    )
    loop.call(proxy.start())
    return loop, Proxied(loop, proxy)


@pytest.fixture
def proxied(upstream: tuple[str, int]) -> Iterator[Proxied]:
    loop, proxied = _start(upstream)
    try:
        yield proxied
    finally:
        proxied.close()
        loop.close()


def test_proxy_refuses_without_token(proxied: Proxied) -> None:
    TOUCHED.clear()
    answer = httpx.get(f"{proxied.base}/x")
    assert answer.status_code == 401
    assert "needs its token" in answer.text
    assert answer.headers["connection"] == "close"
    assert _Seen.requests == []  # nothing reached the service
    assert TOUCHED == []  # a refused request is no use of the app
    httpx.get(f"{proxied.base}/x", params={"vfd_token": TOKEN})
    assert len(TOUCHED) == 1


def test_proxy_refuses_wrong_token(proxied: Proxied) -> None:
    for answer in (
        httpx.get(f"{proxied.base}/x", params={"vfd_token": "wrong"}),
        httpx.get(f"{proxied.base}/x", cookies={"vfd_app_abcd1234": "wrong"}),
        httpx.get(f"{proxied.base}/x", headers={"x-vfd-app-token": TOKEN[:-1]}),
        # another app's cookie is no token of this one
        httpx.get(f"{proxied.base}/x", cookies={"vfd_app_other": TOKEN}),
    ):
        assert answer.status_code in (401, 403), answer.text
    assert httpx.get(f"{proxied.base}/x", params={"vfd_token": "x"}).status_code == 403
    assert _Seen.requests == []


def test_proxy_token_in_url_then_cookie(proxied: Proxied) -> None:
    with httpx.Client(base_url=proxied.base) as client:
        first = client.get("/dir/page?a=1&vfd_token=" + TOKEN + "&b=two%20x")
        assert first.status_code == 200, first.text
        assert first.json()["path"] == "/dir/page?a=1&b=two%20x"  # the token removed
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"vfd_app_abcd1234={TOKEN};")
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        # the cookie alone lets the next request through, and never reaches the service
        client.cookies.set("other", "kept")
        client.cookies.set("vfd_session", "the-console-session")  # no vfd cookie is forwarded
        client.cookies.set("vfd_app_other", "another-apps-token")
        second = client.get("/next")
        assert second.status_code == 200
        assert second.json()["path"] == "/next"
        assert second.json()["cookie"] == "other=kept"
        # a service cannot set vfd's cookies (they would reach every port of the host)
        planted = client.get("/sets-cookies")
        assert planted.headers.get_list("set-cookie") == ["own=kept; Path=/"]
    header = httpx.get(f"{proxied.base}/h", headers={"x-vfd-app-token": TOKEN})
    assert header.status_code == 200
    assert header.json()["token_header"] is None


def test_proxy_navigation_redirects_without_token(proxied: Proxied) -> None:
    answer = httpx.get(
        f"{proxied.base}/app/?vfd_token={TOKEN}&tab=2",
        headers={"sec-fetch-mode": "navigate"},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/app/?tab=2"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert f"vfd_app_abcd1234={TOKEN}" in answer.headers["set-cookie"]
    assert _Seen.requests == []
    # a path a browser would read as another host is forwarded, never redirected to
    for path in ("//elsewhere.example/x", "/\\elsewhere.example/x"):
        with socket.create_connection(("127.0.0.1", proxied.proxy.port)) as raw:
            raw.sendall(
                f"GET {path}?vfd_token={TOKEN} HTTP/1.1\r\nhost: x\r\n"
                "sec-fetch-mode: navigate\r\nconnection: close\r\n\r\n".encode()
            )
            head = raw.recv(65536).split(b"\r\n")[0]
        assert head == b"HTTP/1.1 200 OK", head
    assert [r["path"].endswith("elsewhere.example/x") for r in _Seen.requests] == [True, True]


def test_proxy_bodies_and_keepalive(proxied: Proxied) -> None:
    data = os.urandom(3 * 2**20 + 17)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    with httpx.Client(base_url=proxied.base, params={"vfd_token": TOKEN}) as client:
        sized = client.put("/up", content=data)
        assert sized.json()["sha"] == hashlib.sha256(data).hexdigest()
        chunked = client.post("/up2", content=chunks())  # sent chunked, forwarded chunked
        assert chunked.json()["sha"] == hashlib.sha256(data).hexdigest()
        for i in range(20):
            got = client.get(f"/n{i}")
            assert got.json()["path"] == f"/n{i}"
    # the client kept its connection, and the proxy its own to the service: one served all
    assert len(_Seen.requests) == 22
    assert _Seen.connections == 1


def test_proxy_service_down_is_502(upstream: tuple[str, int]) -> None:
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    address = spare.getsockname()
    spare.close()  # nothing listens there now
    loop, proxied = _start(address)
    try:
        answer = httpx.get(f"{proxied.base}/", params={"vfd_token": TOKEN})
        assert answer.status_code == 502
        assert "service web does not answer" in answer.text
    finally:
        proxied.close()
        loop.close()


def test_proxy_websocket(upstream: tuple[str, int]) -> None:
    def echo(ws: websockets.sync.server.ServerConnection) -> None:
        for message in ws:
            ws.send(f"echo:{message}")

    with websockets.sync.server.serve(echo, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        loop, proxied = _start(server.socket.getsockname())
        try:
            url = f"ws://127.0.0.1:{proxied.proxy.port}/ws?vfd_token={TOKEN}"
            TOUCHED.clear()
            with websockets.sync.client.connect(url) as ws:
                for i in range(5):
                    ws.send(f"m{i}")
                    assert ws.recv(timeout=10) == f"echo:m{i}"
            assert len(TOUCHED) > 5  # the upgrade, then each message both ways: in use
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                websockets.sync.client.connect(f"ws://127.0.0.1:{proxied.proxy.port}/ws")
            assert refused.value.response.status_code == 401
        finally:
            proxied.close()
            loop.close()
            server.shutdown()


def test_proxy_times_out_silent_clients_and_caps_peers(upstream: tuple[str, int]) -> None:
    limits = ProxyLimits(header_timeout=0.3, peer_connections=2)
    loop, proxied = _start(upstream, limits)
    try:
        silent = [socket.create_connection(("127.0.0.1", proxied.proxy.port)) for _ in range(2)]
        deadline = time.monotonic() + 5
        while proxied.proxy.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        third = socket.create_connection(("127.0.0.1", proxied.proxy.port))
        third.settimeout(5)
        assert third.recv(100).startswith(b"HTTP/1.1 429")
        third.close()
        for sock in silent:  # closed by the proxy after header_timeout, having sent nothing
            sock.settimeout(5)
            assert sock.recv(100) == b""
            sock.close()
    finally:
        proxied.close()
        loop.close()


def test_proxy_close_releases_everything(upstream: tuple[str, int]) -> None:
    before = _fds()
    loop, proxied = _start(upstream)
    port = proxied.proxy.port
    clients = [httpx.Client(base_url=proxied.base, params={"vfd_token": TOKEN}) for _ in range(3)]
    for client in clients:
        assert client.get("/keep").status_code == 200  # each holds a kept-alive connection
    assert proxied.proxy.connections == 3
    proxied.close()
    assert proxied.proxy.connections == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    for client in clients:
        client.close()
    loop.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = _fds() - before
        if not left:
            break
        time.sleep(0.05)
    assert not left, {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in left if fd.isdigit()}
