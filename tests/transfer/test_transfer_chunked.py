"""Chunked archive uploads read straight from the socket (daemon/connections.py "Raw bodies
and sendfile"): a ``Transfer-Encoding: chunked`` body whose client waits for
``100 Continue`` is decoded from the socket in the unpacking thread; one that came without
waiting goes through h11 as before. Malformed framing is a 400 that leaves nothing behind.

Which path a body took shows in the answer: a body taken raw closes its connection after the
answer (``connection: close``, h11 never saw its end); one read through h11 keeps it open for
the next request.
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
import time
from collections.abc import Iterator
from itertools import cycle
from typing import Any
from urllib.parse import urlencode

import pytest
from filenode import Node, running_node
from test_files_transfer import daemon_pid
from test_transfer_direct import fd_targets, wait_for

KiB, MiB = 1 << 10, 1 << 20
BODY_TIMEOUT = 3.0
SIZES = [1, 2, 7, 511, 4099, 65537, MiB + 13]
"""Chunk sizes, in turn: single bytes, odd sizes, one past a megabyte."""


@pytest.fixture(scope="module")
def node(database_url: str) -> Iterator[Node]:
    extra = f"\n[limits]\nbody_timeout = {BODY_TIMEOUT}\n"
    yield from running_node(database_url, prefix="vfd-chunked-", extra=extra)


def tree() -> list[tuple[str, bytes]]:
    return [
        ("t/a.txt", b"a"),
        *[(f"t/d{i % 3}/f{i}.bin", os.urandom(i * 997)) for i in range(12)],
        ("t/big.bin", os.urandom(3 * MiB + 5)),
        ("t/z.txt", b"the last member"),
    ]


def tar_of(files: list[tuple[str, bytes]], *, ended: bool = True) -> bytes:
    """A tar of ``files``; without ``ended``, no end-of-archive blocks (the archive ends
    where the body does): what follows is read as the next member's header."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o640, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
        members_end = tar.offset
    return out.getvalue() if ended else out.getvalue()[:members_end]


def chunked(body: bytes, sizes: list[int] = SIZES) -> Iterator[bytes]:
    """``body``'s chunks on the wire, one piece per send: the sizes in turn, every third
    chunk (from the second) with extensions and its size line split in two sends."""
    pos = 0
    for i, size in enumerate(cycle(sizes)):
        data = body[pos : pos + size]
        if not data:
            return
        pos += len(data)
        if i % 3 == 1:
            line = b"%X;ext=1;name=value\r\n" % len(data)
            yield line[:1]
            yield line[1:]
        else:
            yield b"%x\r\n" % len(data)
        yield data + b"\r\n"


def archive_url(folder: dict[str, Any], key: str) -> str:
    return f"/v1/vfolders/{folder['name']}/upload-archive?{urlencode({'key': key})}"


def head(url: str, who: str, *, expect: bool) -> bytes:
    lines = [
        f"PUT {url} HTTP/1.1",
        "Host: vfd",
        f"X-Vfd-Act-As: {who}",
        "Transfer-Encoding: chunked",
        *(["Expect: 100-continue"] if expect else []),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(node: Node) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(30)
    sock.connect(str(node.config.api_socket))
    return sock


def a_folder_and_its_archive(node: Node) -> tuple[dict[str, Any], bytes, list[str]]:
    """A new user's folder (its owner's email in ``owner_email``), the archive of
    :func:`tree` and the daemon's fds now."""
    alice = node.user()
    folder = {**node.folder(alice), "owner_email": alice["email"]}
    return folder, tar_of(tree()), daemon_fds(node)


def continued(node: Node, folder: dict[str, Any], who: str, key: str) -> socket.socket:
    """A connection with the head of a chunked archive upload sent, its ``100 Continue``
    received: the body goes next."""
    sock = connect(node)
    sock.sendall(head(archive_url(folder, key), who, expect=True))
    assert sock.recv(4096).startswith(b"HTTP/1.1 100 ")
    return sock


def answer(sock: socket.socket) -> tuple[int, bytes, bytes]:
    """The final answer on ``sock`` (any ``100 Continue`` passed over): status, head (in
    lower case), body."""
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            got = sock.recv(65536)
            assert got, data
            data += got
        top, _, data = data.partition(b"\r\n\r\n")
        status = int(top.split(b" ", 2)[1])
        if status >= 200:
            break
    top = top.lower()
    length = int(top.split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(data) < length:
        got = sock.recv(65536)
        assert got, data
        data += got
    return status, top, data[:length]


def closed(sock: socket.socket) -> bool:
    """Whether the daemon closed ``sock`` (after its answer): no descriptor of it is left."""
    return sock.recv(1) == b""


def daemon_fds(node: Node) -> int:
    """The daemon's fds, sockets included (a raw body reads a duplicate of its socket)."""
    return len(fd_targets(daemon_pid(node)))


def leftovers(node: Node, folder: dict[str, Any]) -> list[str]:
    return sorted(p.name for p in node.backing(folder).iterdir())


def assert_tree(node: Node, folder: dict[str, Any], files: list[tuple[str, bytes]]) -> None:
    backing = node.backing(folder)
    assert leftovers(node, folder) == ["t"]
    for name, data in files:
        assert (backing / name).read_bytes() == data, name


def test_chunked_archive_upload_waits_for_100_continue_and_is_read_raw(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    files = tree()
    before = daemon_fds(node)
    with connect(node) as sock:
        sock.sendall(head(archive_url(folder, "chunked-raw-1"), alice["email"], expect=True))
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        for piece in chunked(tar_of(files)):
            sock.sendall(piece)
        sock.sendall(b"0;last\r\nX-Checksum: none\r\nX-Other: 1\r\n\r\n")
        status, top, body = answer(sock)
        assert status == 200, body
        assert b"connection: close" in top  # taken raw: h11 never saw the body's end
        assert closed(sock)
    assert_tree(node, folder, files)
    wait_for("the daemon's fds back", lambda: daemon_fds(node) <= before)


@pytest.mark.parametrize("how", ["no-expect", "sent-at-once", "size-line-with-head"])
def test_chunked_archive_upload_sent_without_waiting_goes_through_h11(node: Node, how: str) -> None:
    """A body that does not wait for ``100 Continue`` reaches h11 first, and is read from it.
    ``size-line-with-head``: the first chunk-size line came with the head, which h11 takes
    in without any event; reading the socket raw would lose it."""
    alice = node.user()
    folder = node.folder(alice)
    files = tree()
    body = tar_of(files)
    pieces = list(chunked(body))
    url = archive_url(folder, f"chunked-h11-{how}")
    with connect(node) as sock:
        if how == "no-expect":
            sock.sendall(head(url, alice["email"], expect=False))
        elif how == "sent-at-once":
            sock.sendall(head(url, alice["email"], expect=True) + b"".join(pieces))
            pieces = []
        else:  # the head and the first chunk-size line (whole), then the rest after the 100
            sock.sendall(head(url, alice["email"], expect=True) + pieces.pop(0))
            assert pieces[0] == body[:1] + b"\r\n"  # the first chunk's data and CRLF
            assert sock.recv(4096).startswith(b"HTTP/1.1 100 ")
        for piece in pieces:
            sock.sendall(piece)
        sock.sendall(b"0\r\n\r\n")
        status, top, answered = answer(sock)
        assert status == 200, answered
        assert b"connection: close" not in top
        # the connection serves the next request: h11 read the whole body
        sock.sendall(
            f"GET /v1/vfolders/{folder['name']}/files HTTP/1.1\r\nHost: vfd\r\n"
            f"X-Vfd-Act-As: {alice['email']}\r\n\r\n".encode()
        )
        status, _, answered = answer(sock)
        assert status == 200 and b'"t"' in answered, answered
    assert_tree(node, folder, files)


FIRST = tar_of([("t/first.bin", os.urandom(200 * KiB))], ended=False)
"""What comes before the malformed framing: a whole member, unpacked before it comes."""
MALFORMED = {
    "non-hex": (b"12G\r\n", "a chunk-size is not hexadecimal: '12G'"),
    "no-crlf-after-data": (b"4\r\ntarsXY", "a chunk's data is not followed by CRLF"),
    "long-size-line": (
        b"1;" + b"e" * 5 * KiB + b"\r\n",
        "a chunk-size line is longer than 4096 bytes",
    ),
    "17-digits": (b"0" * 16 + b"1\r\nx\r\n", "a chunk-size has 17 hex digits, more than 16"),
    "long-trailer": (
        b"0\r\n" + b"X-Pad: " + b"p" * 20 * KiB + b"\r\n\r\n",
        "its trailer section is longer than 16384 bytes",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_chunked_archive_upload_malformed_is_refused_and_leaves_nothing(
    node: Node, case: str
) -> None:
    alice = node.user()
    folder = node.folder(alice)
    bad, why = MALFORMED[case]
    before = daemon_fds(node)
    with continued(node, folder, alice["email"], "chunked-bad-1") as sock:
        sock.sendall(b"%x\r\n%s\r\n" % (len(FIRST), FIRST))
        first = node.backing(folder) / ".vfd-upload-chunked-bad-1.part" / "t" / "first.bin"
        wait_for("a member unpacked", lambda: first.exists() and first.stat().st_size == 200 * KiB)
        sock.sendall(bad)
        status, top, body = answer(sock)
        assert status == 400, body
        assert b'"invalid_argument"' in body
        assert f"the request body's chunked encoding is malformed: {why}".encode() in body
        assert b"connection: close" in top
        assert closed(sock)
    assert leftovers(node, folder) == []  # no staging directory (.vfd-upload-*.part)
    wait_for("the daemon's fds back", lambda: daemon_fds(node) <= before)


def test_chunked_archive_upload_cut_mid_chunk_leaves_nothing(node: Node) -> None:
    folder, body, before = a_folder_and_its_archive(node)
    with continued(node, folder, folder["owner_email"], "chunked-cut-1") as sock:
        sock.sendall(b"%x\r\n%s" % (2 * MiB, body[: MiB + 1000]))
        staging = node.backing(folder) / ".vfd-upload-chunked-cut-1.part"
        wait_for("members unpacked", lambda: staging.exists() and any(staging.rglob("f*.bin")))
    gone = f"archive upload into {folder['name']}: the client went away mid-body"
    wait_for("the upload ended", lambda: gone in node.log.read_text())
    assert leftovers(node, folder) == []
    wait_for("the daemon's fds back", lambda: daemon_fds(node) <= before)


def test_chunked_archive_upload_that_stalls_ends_after_the_body_timeout(node: Node) -> None:
    folder, body, before = a_folder_and_its_archive(node)
    with continued(node, folder, folder["owner_email"], "chunked-stall") as sock:
        start = time.monotonic()
        sock.sendall(b"%x\r\n%s" % (len(body), body[: 100 * KiB]))
        sock.settimeout(BODY_TIMEOUT + 30)
        status, _, answered = answer(sock)
        assert time.monotonic() - start >= BODY_TIMEOUT * 0.9
        assert status == 400 and b"ended early" in answered, answered
        assert closed(sock)
    assert "its request body stalled" in node.log.read_text()
    assert leftovers(node, folder) == []
    wait_for("the daemon's fds back", lambda: daemon_fds(node) <= before)
