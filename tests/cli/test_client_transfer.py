"""The CLI client's bulk paths against a real unix socket server: bodies sent from a file
with ``sendfile`` (``FileBody``) and answers written into a file (``Response.copy_to``:
``splice``, or a reused buffer where splicing is refused, or the chunked path), with every fd
(pipes included) released on every path."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import vfd.cli.client as client_module
from vfd.cli.client import FileBody, LocalWriteError, SourceShrank, VfdClient
from vfd.errors import ErrorCode, VfdError

MiB = 1 << 20


def fds() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:
            continue
    return sorted(out)


def fds_back(before: list[str]) -> None:
    """Wait (a little) until this process holds the fds it held ``before``: the test server's
    thread closes its end of a connection once it sees the client's end closed."""
    deadline = time.monotonic() + 5
    while (now := fds()) != before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert now == before


def _head(conn: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _answer_with(body: bytes, *, cut: int | None = None, chunked: bool = False) -> Callable:
    """Answer each request with ``body`` (``Content-Length``, or chunked); with ``cut``, send
    only that many bytes of it and close."""

    def handler(conn: socket.socket) -> None:
        while True:
            head, _ = _head(conn)
            if not head:
                return
            if chunked:
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for i in range(0, len(body), 300_000):
                    piece = body[i : i + 300_000]
                    conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                conn.sendall(b"0\r\n\r\n")
                continue
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            if cut is not None:
                conn.sendall(body[:cut])
                return
            conn.sendall(body)

    return handler


@pytest.mark.parametrize("way", ["splice", "buffer", "chunked"])
def test_client_copy_to_writes_the_body_into_a_file(
    sock_path: Path, serve: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    body = os.urandom(5 * MiB + 123)
    serve(_answer_with(body, chunked=way == "chunked"))
    spliced: list[int] = []
    real = client_module._splice_into

    def spy(sock: socket.socket, fd: int, count: int, advance: object) -> int:
        moved = 0 if way == "buffer" else real(sock, fd, count, advance)  # type: ignore[arg-type]
        spliced.append(moved)
        return moved

    monkeypatch.setattr(client_module, "_splice_into", spy)
    before = fds()
    with VfdClient(sock_path, timeout=10) as client:
        for round_ in range(2):  # the same connection carries the next request
            out = tmp_path / f"out{round_}"
            seen: list[int] = []
            with open(out, "wb") as f, client.stream("GET", "/dl") as response:
                assert response.copy_to(f.fileno(), seen.append) == len(body)
            assert out.read_bytes() == body
            assert sum(seen) == len(body)
            assert max(seen) <= 1 * MiB  # progress comes in pieces
    if way == "splice":
        assert spliced and all(s > 0 for s in spliced)
    elif way == "chunked":
        assert spliced == []
    fds_back(before)


def test_client_copy_to_body_cut_short(sock_path: Path, serve: Callable, tmp_path: Path) -> None:
    body = os.urandom(3 * MiB)
    serve(_answer_with(body, cut=MiB + 5))
    before = fds()
    with VfdClient(sock_path, timeout=10) as client, open(tmp_path / "out", "wb") as f:
        with pytest.raises(VfdError) as err, client.stream("GET", "/dl") as response:
            response.copy_to(f.fileno())
        assert err.value.code is ErrorCode.DAEMON_UNAVAILABLE
        assert "short of its Content-Length" in err.value.message
    assert (tmp_path / "out").stat().st_size == MiB + 5
    fds_back(before)


def test_client_copy_to_a_failed_local_write_is_not_the_daemons(
    sock_path: Path, serve: Callable
) -> None:
    serve(_answer_with(os.urandom(2 * MiB)))
    before = fds()
    with VfdClient(sock_path, timeout=10) as client, open("/dev/full", "wb") as full:
        with pytest.raises(LocalWriteError) as err, client.stream("GET", "/dl") as response:
            response.copy_to(full.fileno())
        assert err.value.error.errno == 28  # ENOSPC
        assert client._connection is None  # cut mid-body: not reused
    fds_back(before)


def test_client_copy_to_times_out_when_the_body_stalls(
    sock_path: Path, serve: Callable, tmp_path: Path
) -> None:
    def stall(conn: socket.socket) -> None:
        _head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        time.sleep(2)

    serve(stall)
    with (
        VfdClient(sock_path, timeout=0.3) as client,
        open(tmp_path / "out", "wb") as f,
        pytest.raises(VfdError) as err,
        client.stream("GET", "/dl") as response,
    ):
        response.copy_to(f.fileno())
    assert err.value.code is ErrorCode.DAEMON_UNAVAILABLE
    assert "did not answer within" in err.value.message


def _receive_upload(got: list[bytes]) -> Callable:
    def handler(conn: socket.socket) -> None:
        while True:
            head, body = _head(conn)
            if not head:
                return
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(body) < length:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    return
                body += chunk
            got.append(head + b"\r\n\r\n" + body)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    return handler


def test_client_file_body_sent_with_a_content_length(
    sock_path: Path, serve: Callable, tmp_path: Path
) -> None:
    data = os.urandom(20 * MiB + 7)
    src = tmp_path / "src"
    src.write_bytes(data)
    got: list[bytes] = []
    serve(_receive_upload(got))
    seen: list[int] = []
    with VfdClient(sock_path, timeout=10) as client, open(src, "rb") as f:
        assert (
            client.send("PUT", "/up", content=FileBody(f, 1000, len(data) - 1000, seen.append))
            == {}
        )
        assert client.send("PUT", "/up", content=FileBody(f, 0, 0)) == {}  # an empty body
    head, _, body = got[0].partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % (len(data) - 1000) in head
    assert b"chunked" not in head.lower()
    assert body == data[1000:]
    assert sum(seen) == len(data) - 1000 and len(seen) >= 2
    assert got[1].endswith(b"Content-Length: 0\r\n\r\n")


def test_client_file_body_of_a_file_that_shrank(
    sock_path: Path, serve: Callable, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(3 * MiB))
    got: list[bytes] = []
    serve(_receive_upload(got))
    before = fds()
    with VfdClient(sock_path, timeout=10) as client, open(src, "rb") as f:
        os.truncate(src, MiB)
        with pytest.raises(SourceShrank) as err:
            client.send("PUT", "/up", content=FileBody(f, 0, 3 * MiB))
        assert (err.value.sent, err.value.length) == (MiB, 3 * MiB)
        assert client._connection is None  # the request was cut: its connection is gone
    fds_back(before)
