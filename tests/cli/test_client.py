"""The CLI's HTTP client: every wire failure becomes a VfdError, at one choke point.

Each case runs the client against a real unix socket: none at all, one nobody listens on, and
small servers that misbehave in one way each (close, stall, answer non-JSON or the error
shape).
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vfd.cli.client import VfdClient, folder_path, segment
from vfd.errors import ErrorCode, VfdError


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _answer(
    status: str, body: bytes, content_type: str, *, read: bool = True
) -> Callable[[socket.socket], None]:
    def handler(conn: socket.socket) -> None:
        if read:
            _read_request(conn)
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        conn.sendall(head.encode() + body)

    return handler


def _error(path: Path, timeout: float = 10.0) -> VfdError:
    with VfdClient(path, timeout=timeout) as client, pytest.raises(VfdError) as caught:
        client.get("/v1/status")
    return caught.value


def test_client_missing_socket_means_daemon_not_running(sock_path: Path) -> None:
    error = _error(sock_path)
    assert error.code is ErrorCode.DAEMON_UNAVAILABLE
    assert error.message == (
        f"vfd daemon is not running (socket {sock_path}: no such file or directory)"
    )
    assert error.details == {"socket": str(sock_path)}


def test_client_socket_without_listener_means_daemon_not_running(sock_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(sock_path))  # a file left by a daemon that died: nobody accepts
        error = _error(sock_path)
    assert error.code is ErrorCode.DAEMON_UNAVAILABLE
    assert error.message.startswith(f"vfd daemon is not running (socket {sock_path}")
    assert "connection refused" in error.message


def test_client_connection_closed_mid_request(sock_path: Path, serve: Callable) -> None:
    serve(lambda conn: (_read_request(conn), conn.shutdown(socket.SHUT_RDWR)))
    error = _error(sock_path)
    assert error.code is ErrorCode.DAEMON_UNAVAILABLE
    assert error.message.startswith("lost the vfd daemon during GET /v1/status")


def test_client_silent_daemon_times_out(sock_path: Path, serve: Callable) -> None:
    answered = threading.Event()

    def stall(conn: socket.socket) -> None:
        if _read_request(conn):
            answered.wait(10)  # reads the request, never answers it

    serve(stall)
    error = _error(sock_path, timeout=0.3)
    answered.set()
    assert error.code is ErrorCode.DAEMON_UNAVAILABLE
    assert "did not answer within 0.3s" in error.message
    assert "may still complete" not in error.message  # a read changes nothing
    assert error.details["may_complete"] is False


def test_client_change_that_times_out_may_still_complete(sock_path: Path, serve: Callable) -> None:
    answered = threading.Event()

    def stall(conn: socket.socket) -> None:
        if _read_request(conn):
            answered.wait(10)

    serve(stall)
    with VfdClient(sock_path, timeout=0.3) as client, pytest.raises(VfdError) as caught:
        client.delete("/v1/vfolders/x")
    answered.set()
    error = caught.value
    assert error.code is ErrorCode.DAEMON_UNAVAILABLE
    assert error.message.endswith(
        f"did not answer within 0.3s (socket {sock_path}); the operation may still complete"
    )
    assert error.details["may_complete"] is True


def test_client_error_shape_becomes_its_code(sock_path: Path, serve: Callable) -> None:
    body = b'{"error": {"code": "vfolder_not_found", "message": "no folder named \'x\'", '
    body += b'"details": {"name": "x"}}}'
    serve(_answer("404 Not Found", body, "application/json"))
    error = _error(sock_path)
    assert error.code is ErrorCode.VFOLDER_NOT_FOUND
    assert error.message == "no folder named 'x'" and error.details == {"name": "x"}


def test_client_error_without_shape_is_internal(sock_path: Path, serve: Callable) -> None:
    serve(_answer("502 Bad Gateway", b"upstream\nexploded", "text/plain"))
    error = _error(sock_path)
    assert error.code is ErrorCode.INTERNAL
    assert error.message == "daemon answered HTTP 502: upstream exploded"


def test_client_success_that_is_not_an_object_is_internal(sock_path: Path, serve: Callable) -> None:
    serve(_answer("200 OK", b"[1, 2]", "application/json"))
    error = _error(sock_path)
    assert error.code is ErrorCode.INTERNAL
    assert "not JSON" in error.message


def test_client_sends_act_as_header(sock_path: Path, serve: Callable) -> None:
    seen: list[bytes] = []
    reply = _answer("200 OK", b"{}", "application/json", read=False)

    def handler(conn: socket.socket) -> None:
        seen.append(_read_request(conn))
        reply(conn)

    serve(handler)
    with VfdClient(sock_path, act_as="someone@example.com") as client:
        assert client.get("/v1/whoami") == {}
    assert b"x-vfd-act-as: someone@example.com" in b"".join(seen).lower()


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("data", "data"),
        ("..", "%2E%2E"),
        (".local", "%2Elocal"),
        ("a b?#%", "a%20b%3F%23%25"),
    ],
)
def test_client_segment_quotes_one_path_segment(name: str, quoted: str) -> None:
    assert segment(name) == quoted
    assert folder_path(name) == f"/v1/vfolders/{quoted}"


def test_client_segment_refuses_a_slash() -> None:
    with pytest.raises(VfdError) as caught:
        segment("../x")
    assert caught.value.code is ErrorCode.INVALID_NAME


def test_client_stream_yields_the_body_as_it_arrives(sock_path: Path, serve: Callable) -> None:
    serve(_answer("200 OK", b"x" * 100_000, "application/octet-stream"))
    with VfdClient(sock_path, timeout=10) as client, client.stream("GET", "/dl") as response:
        assert b"".join(response.iter_bytes(4096)) == b"x" * 100_000


def test_client_stream_error_answer_becomes_its_code(sock_path: Path, serve: Callable) -> None:
    body = b'{"error": {"code": "path_not_found", "message": "no file a/b", "details": {}}}'
    serve(_answer("404 Not Found", body, "application/json"))
    with (
        VfdClient(sock_path, timeout=10) as client,
        pytest.raises(VfdError) as caught,
        client.stream("GET", "/dl"),
    ):
        pytest.fail("an error answer must not reach the body of the block")
    assert caught.value.code is ErrorCode.PATH_NOT_FOUND


def test_client_stream_cut_short_is_daemon_unavailable(sock_path: Path, serve: Callable) -> None:
    def truncated(conn: socket.socket) -> None:
        if _read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"y" * 10)

    serve(truncated)
    with (
        VfdClient(sock_path, timeout=10) as client,
        pytest.raises(VfdError) as caught,
        client.stream("GET", "/dl") as response,
    ):
        b"".join(response.iter_bytes())
    assert caught.value.code is ErrorCode.DAEMON_UNAVAILABLE
    assert caught.value.message.startswith("lost the vfd daemon during GET /dl")


def test_client_send_streams_content_from_an_iterator(sock_path: Path, serve: Callable) -> None:
    received: list[bytes] = []
    reply = _answer("201 Created", b'{"complete": true}', "application/json", read=False)

    def handler(conn: socket.socket) -> None:
        data = _read_request(conn)
        if not data:
            return
        _, _, rest = data.partition(b"\r\n\r\n")
        while not rest.endswith(b"0\r\n\r\n"):  # chunked: until the last chunk
            rest += conn.recv(65536)
        received.append(rest)
        reply(conn)

    serve(handler)
    with VfdClient(sock_path, timeout=10) as client:
        result = client.send("PUT", "/up", content=iter([b"abc", b"def"]), timeout=None)
    assert result == {"complete": True}
    assert b"abc" in received[0] and b"def" in received[0]


def test_client_ctrl_c_mid_request_is_not_reused(sock_path: Path, serve: Callable) -> None:
    """Ctrl-C while a request waits for its answer leaves that connection mid-exchange: the
    next request (``vfd run``'s kill after a second Ctrl-C) goes on a new one instead of
    failing with 'lost the vfd daemon ... Request-sent'."""
    main = threading.main_thread().ident
    assert main is not None
    hold = threading.Event()
    seen: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        request = _read_request(conn)
        if not request:
            return  # the client's probe
        seen.append(request)
        if len(seen) == 1:
            signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C while the client waits
            hold.wait(10)  # and this answer never comes
            return
        _answer("200 OK", b'{"ok": true}', "application/json", read=False)(conn)

    serve(handler)
    serve(handler)  # a second acceptor: the first one holds its connection
    with VfdClient(sock_path, timeout=10) as client:
        with pytest.raises(KeyboardInterrupt):
            client.delete("/v1/sessions/x")
        assert client.delete("/v1/sessions/x") == {"ok": True}
    hold.set()


def test_client_early_answer_to_an_upload_is_its_error(sock_path: Path, serve: Callable) -> None:
    """A daemon refusing an upload answers before the body is read and closes: the client
    reports that answer, not the broken pipe its next write meets."""
    body = b'{"error": {"code": "quota_exceeded", "message": "over quota", "details": {}}}'
    refuse = _answer("507 Insufficient Storage", body, "application/json", read=False)

    def handler(conn: socket.socket) -> None:
        if _read_request(conn):
            refuse(conn)
            conn.shutdown(socket.SHUT_RDWR)

    def chunks() -> Iterator[bytes]:
        for _ in range(4096):  # far more than the socket buffers hold
            yield b"z" * 65536

    serve(handler)
    with VfdClient(sock_path, timeout=10) as client, pytest.raises(VfdError) as caught:
        client.send("PUT", "/up", content=chunks(), timeout=None)
    assert caught.value.code is ErrorCode.QUOTA_EXCEEDED
