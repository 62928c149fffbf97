"""The CLI client's own HTTP/1.1 (``vfd.cli.client``), against a real unix socket server.

Each server writes raw bytes, so the answers can be what no HTTP library would send: chunks
of odd sizes with extensions, folded headers, a body cut short, a close before the answer, a
pause longer than the timeout.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vfd.cli.client import VfdClient
from vfd.errors import ErrorCode, VfdError

Handler = Callable[[socket.socket], None]


def _request(conn: socket.socket) -> bytes:
    """One request's head, and its body when it has a Content-Length or is chunked."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lower = head.lower()
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += conn.recv(65536)
    elif b"transfer-encoding: chunked" in lower:
        while not body.endswith(b"0\r\n\r\n"):
            body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def _raw(*parts: bytes, pause: float = 0.0) -> Handler:
    """Answer every request on the connection with ``parts``, written one by one."""

    def handler(conn: socket.socket) -> None:
        while _request(conn):
            for part in parts:
                conn.sendall(part)
                if pause:
                    time.sleep(pause)

    return handler


def _chunked(*pieces: bytes, extension: bytes = b"") -> bytes:
    out = b"".join(b"%x%s\r\n%s\r\n" % (len(p), extension, p) for p in pieces)
    return out + b"0\r\n\r\n"


def test_client_http_chunked_odd_sizes_and_extensions(sock_path: Path, serve: Callable) -> None:
    body = b'{"a": "' + b"x" * 70_000 + b'"}'
    pieces = [body[:1], body[1:7], body[7:65_543], body[65_543:]]
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    serve(_raw(head + _chunked(*pieces, extension=b' ;name="v"')))
    with VfdClient(sock_path, timeout=10) as client:
        assert client.get("/x") == {"a": "x" * 70_000}
        assert client.get("/x") == {"a": "x" * 70_000}  # the same connection again


def test_client_http_chunk_sizes_in_any_case_with_trailers(
    sock_path: Path, serve: Callable
) -> None:
    answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n"
    answer += b"A\r\n0123456789\r\n00b;x=1\r\nabcdefghijk\r\n0\r\nX-Trailer: t\r\n\r\n"
    serve(_raw(answer))
    with VfdClient(sock_path, timeout=10) as client, client.stream("GET", "/dl") as response:
        assert b"".join(response.iter_bytes(3)) == b"0123456789abcdefghijk"


def test_client_http_chunks_are_yielded_as_they_arrive(sock_path: Path, serve: Callable) -> None:
    release = threading.Event()

    def handler(conn: socket.socket) -> None:
        if _request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            release.wait(10)
            conn.sendall(b"6\r\nsecond\r\n0\r\n\r\n")

    serve(handler)
    with VfdClient(sock_path, timeout=10) as client, client.stream("GET", "/dl") as response:
        pieces = response.iter_bytes()
        assert next(pieces) == b"first"  # before the rest is even sent
        release.set()
        assert b"".join(pieces) == b"second"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"y" * 10,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n",
        b"",
    ],
    ids=["content-length", "inside-a-chunk", "before-last-chunk", "inside-headers", "nothing"],
)
def test_client_http_answer_cut_short_is_daemon_unavailable(
    sock_path: Path, serve: Callable, answer: bytes
) -> None:
    def handler(conn: socket.socket) -> None:
        if _request(conn):
            conn.sendall(answer)
            conn.shutdown(socket.SHUT_RDWR)

    serve(handler)
    for streamed in (False, True):
        with VfdClient(sock_path, timeout=10) as client, pytest.raises(VfdError) as caught:
            if streamed:
                with client.stream("GET", "/dl") as response:
                    b"".join(response.iter_bytes())
            else:
                client.get("/dl")
        assert caught.value.code is ErrorCode.DAEMON_UNAVAILABLE
        assert caught.value.message.startswith("lost the vfd daemon during GET /dl")


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n{}",
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n{}",
    ],
    ids=["chunk-size", "chunk-too-long", "content-length", "status-line", "header-line"],
)
def test_client_http_broken_answer_is_daemon_unavailable(
    sock_path: Path, serve: Callable, answer: bytes
) -> None:
    serve(_raw(answer))
    with VfdClient(sock_path, timeout=10) as client, pytest.raises(VfdError) as caught:
        client.get("/x")
    assert caught.value.code is ErrorCode.DAEMON_UNAVAILABLE
    assert caught.value.message.startswith("lost the vfd daemon during GET /x")


def test_client_http_headers_folded_and_in_any_case(sock_path: Path, serve: Callable) -> None:
    answer = (
        b'HTTP/1.1 206 Partial Content\r\nETAG: "v1"\r\ncontent-RANGE: bytes 2-4/\r\n'
        b"\t 5\r\nX-Twice: first\r\nx-twice: second\r\nContent-Length: 3\r\n\r\nabc"
    )
    serve(_raw(answer))
    with VfdClient(sock_path, timeout=10) as client, client.stream("GET", "/dl") as response:
        assert response.status_code == 206
        assert response.headers.get("etag") == '"v1"'
        assert response.headers.get("Content-Range") == "bytes 2-4/ 5"
        assert response.headers.get("x-twice") == "first"
        assert response.headers.get("missing", "") == ""
        assert "CONTENT-LENGTH" in response.headers
        assert response.read() == b"abc"


def test_client_http_interim_answer_is_skipped(sock_path: Path, serve: Callable) -> None:
    serve(_raw(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"))
    with VfdClient(sock_path, timeout=10) as client:
        assert client.post("/x") == {}


def test_client_http_body_until_close(sock_path: Path, serve: Callable) -> None:
    """An answer without a length: the body is what comes until the daemon closes."""

    def handler(conn: socket.socket) -> None:
        if _request(conn):
            conn.sendall(b'HTTP/1.0 200 OK\r\n\r\n{"a": ')
            conn.sendall(b"1}")

    serve(handler)
    serve(handler)
    with VfdClient(sock_path, timeout=10) as client:
        assert client.get("/x") == {"a": 1}
        assert client.get("/x") == {"a": 1}  # on a new connection


def test_client_http_keeps_the_connection_alive(sock_path: Path, serve: Callable) -> None:
    connections: list[int] = []

    def handler(conn: socket.socket) -> None:
        connections.append(1)
        while _request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    serve(handler)
    with VfdClient(sock_path, timeout=10) as client:
        for _ in range(5):
            assert client.get("/x") == {}
    assert len(connections) == 1


def test_client_http_connection_close_is_not_reused(sock_path: Path, serve: Callable) -> None:
    connections: list[int] = []

    def handler(conn: socket.socket) -> None:
        connections.append(1)
        if _request(conn):  # says close, but leaves the socket open a while
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
            time.sleep(0.5)

    serve(handler)
    serve(handler)
    with VfdClient(sock_path, timeout=10) as client:
        assert client.get("/x") == {}
        assert client.get("/x") == {}
    assert len(connections) == 2


def test_client_http_server_that_closes_after_one_answer(sock_path: Path, serve: Callable) -> None:
    """A kept-alive connection the daemon closed since: the next request opens a new one."""

    def handler(conn: socket.socket) -> None:
        if _request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    serve(handler)
    with VfdClient(sock_path, timeout=10) as client:
        assert client.get("/x") == {}
        deadline = time.monotonic() + 10
        while client._connection is not None and client._connection.reusable():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert client.get("/x") == {}


def test_client_http_slow_answer_within_the_timeout(sock_path: Path, serve: Callable) -> None:
    """The timeout bounds each wait, not the whole answer: a body trickling in is read."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    serve(
        _raw(
            head, b'2\r\n{"\r\n', b"1\r\na\r\n", b'4\r\n": 1\r\n', b"1\r\n}\r\n0\r\n\r\n", pause=0.1
        )
    )
    with VfdClient(sock_path, timeout=0.5) as client:
        assert client.get("/x") == {"a": 1}


def test_client_http_stall_mid_body_times_out(sock_path: Path, serve: Callable) -> None:
    done = threading.Event()

    def handler(conn: socket.socket) -> None:
        if _request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            done.wait(10)

    serve(handler)
    with VfdClient(sock_path, timeout=0.3) as client, pytest.raises(VfdError) as caught:
        client.post("/x", {})
    done.set()
    assert caught.value.code is ErrorCode.DAEMON_UNAVAILABLE
    assert "did not answer within 0.3s" in caught.value.message
    assert caught.value.details["may_complete"] is True


def test_client_http_request_as_sent(sock_path: Path, serve: Callable) -> None:
    seen: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        while request := _request(conn):
            seen.append(request)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    serve(handler)
    with VfdClient(sock_path, act_as="a@example.com", timeout=10) as client:
        client.send("PUT", "/v1/x", params={"path": "a b/é"}, json={"k": "é"})
        client.send("PUT", "/up", content=iter([b"", b"abc", b"de"]), timeout=None)
        client.get("/v1/y")
    put, upload, get = seen
    head, _, body = put.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"PUT /v1/x?path=a%20b%2F%C3%A9 HTTP/1.1"
    assert b"Host: vfd" in lines and b"X-Vfd-Act-As: a@example.com" in lines
    assert b"Content-Type: application/json" in lines
    assert body == '{"k":"é"}'.encode() and f"Content-Length: {len(body)}".encode() in lines
    assert upload.endswith(b"\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in upload
    assert get.startswith(b"GET /v1/y HTTP/1.1\r\n") and b"Content-Length" not in get


def test_client_http_header_value_on_two_lines_is_refused(sock_path: Path) -> None:
    with VfdClient(sock_path, timeout=10) as client, pytest.raises(VfdError) as caught:
        client.send("GET", "/x", headers={"If-Range": "a\r\nX-Evil: 1"})
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
