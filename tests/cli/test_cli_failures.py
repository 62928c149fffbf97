"""The ``vfd`` process never prints a traceback: whatever the daemon (or something posing as
it) answers, and whatever bytes the arguments hold, it ends with ``error: <message> [<code>]``
and a non-zero exit status.

A small server on a unix socket plays the daemon and misbehaves in one way per case (HTML
500s, bad JSON, JSON of the wrong shape, a reset or closed connection, broken HTTP, broken
compression, a truncated or garbage archive); the real daemon answers the cases about
arguments that are not UTF-8.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import struct
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from vfdcli import run_vfd

Handler = Callable[[socket.socket, bytes], None]

ERROR_LINE = re.compile(r"^error: .+ \[[a-z_]+\]\n$", re.DOTALL)


def _read_request(conn: socket.socket) -> bytes:
    """The request's head and body (read whole, so that closing does not reset)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length: *(\d+)", head)
    want = int(m.group(1)) if m else 0
    while len(body) < want:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


def _reply(status: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join([*head, "Connection: close", "", ""])).encode() + body


def _json(status: str, value: Any) -> bytes:
    return _reply(status, json.dumps(value).encode(), "Content-Type: application/json")


def _tar() -> bytes:
    """A tar of ``d/`` holding ``d/a.txt`` and a larger ``d/b.bin``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        top = tarfile.TarInfo("d")
        top.type = tarfile.DIRTYPE
        top.mode = 0o755
        tar.addfile(top)
        for name, data in (("d/a.txt", b"a" * 10), ("d/b.bin", os.urandom(100_000))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _send(raw: bytes) -> Handler:
    return lambda conn, head: conn.sendall(raw)


def _reset(conn: socket.socket, head: bytes) -> None:
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"vfold')
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _close(conn: socket.socket, head: bytes) -> None:
    conn.shutdown(socket.SHUT_RDWR)


TAR = _tar()

MODES: dict[str, Handler] = {
    "html-500": _send(
        _reply(
            "500 Internal Server Error", b"<html><h1>Oops</h1></html>", "Content-Type: text/html"
        )
    ),
    "empty-502": _send(_reply("502 Bad Gateway", b"")),
    "bad-json": _send(_reply("200 OK", b'{"vfolders": [', "Content-Type: application/json")),
    "json-list": _send(_json("200 OK", [1, 2])),
    "wrong-shape": _send(_json("200 OK", {"unexpected": True, "type": 3, "entries": "x"})),
    "error-not-shape": _send(_json("400 Bad Request", {"error": "boom"})),
    "unknown-code": _send(
        _json("418 I'm a teapot", {"error": {"code": "brew", "message": 5, "details": [1]}})
    ),
    "not-utf8-json": _send(_reply("200 OK", b'{"vfolders": [{"name": "\xff"}]}')),
    "closed": _close,
    "reset": _reset,
    "not-http": _send(b"\x00\xffthis is not HTTP\r\n\r\n"),
    "bad-status": _send(b"HTTP/1.1 abc OK\r\n\r\n"),
    "short-body": _send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}"),
    "bad-gzip": _send(_reply("200 OK", b"\x1f\x8bnot gzip at all", "Content-Encoding: gzip")),
    "bad-chunks": _send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n"),
}

EXPECTED = {  # what the error line says (its code, or its words)
    "html-500": "HTTP 500: <html><h1>Oops</h1></html> [internal]",
    "empty-502": "HTTP 502: (empty body) [internal]",
    "bad-json": "not JSON",
    "json-list": "not JSON",
    "wrong-shape": "unexpected shape",
    "error-not-shape": 'HTTP 400: {"error": "boom"} [internal]',
    "unknown-code": "unknown error code 'brew'",
    "not-utf8-json": "not JSON",
    "closed": "[daemon_unavailable]",
    "reset": "[daemon_unavailable]",
    "not-http": "[daemon_unavailable]",
    "bad-status": "[daemon_unavailable]",
    "short-body": "[daemon_unavailable]",
    "bad-gzip": "unreadable",
    "bad-chunks": "[daemon_unavailable]",
}

WELL_FORMED_200 = {"bad-json", "json-list", "wrong-shape", "not-utf8-json"}

ARCHIVE_MODES: dict[str, Handler] = {
    "tar-garbage": _send(_reply("200 OK", os.urandom(5000))),
    "tar-truncated": _send(_reply("200 OK", TAR[:3000])),
    "tar-cut-connection": _send(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(TAR) + TAR[:3000]
    ),
}


class FakeDaemon:
    """Answers every request on a unix socket with the handler of ``mode``; a download's
    listing (``/files``) is answered properly, so that the download itself meets it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handler: Handler = MODES["closed"]
        self.listing: dict[str, Any] = {}
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            with conn, contextlib.suppress(OSError):
                head = _read_request(conn)
                if not head:
                    continue  # the CLI's probe: a bare connect
                if b"/files?" in head.split(b"\r\n", 1)[0] and self.listing:
                    conn.sendall(_json("200 OK", self.listing))
                else:
                    self.handler(conn, head)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(10)


@pytest.fixture
def fake() -> Iterator[tuple[FakeDaemon, dict[str, str]]]:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        server = FakeDaemon(Path(tmp) / "api.sock")
        env = {"VFD_STATE_DIR": tmp, "VFD_API_SOCKET": str(server.path)}
        try:
            yield server, env
        finally:
            server.close()


def fails_cleanly(proc: Any) -> None:
    """Exit status 1, one ``error: ... [code]`` line, no traceback, nothing on stdout."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert ERROR_LINE.match(proc.stderr), proc.stderr
    assert proc.stdout == "", proc.stdout


FILE_LISTING = {
    "path": "x.bin",
    "type": "file",
    "entries": [
        {"name": "x.bin", "type": "file", "size": 3, "mode": "0644", "uid": 0, "gid": 0,
         "mtime": 0.0}
    ],
}  # fmt: skip
DIR_LISTING = {"path": "d", "type": "dir", "entries": []}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_cli_failures_print_no_traceback(
    mode: str, fake: tuple[FakeDaemon, dict[str, str]], vfd_bin: Path, tmp_path: Path
) -> None:
    server, env = fake
    server.handler = MODES[mode]
    ls = run_vfd(vfd_bin, "vfolder", "ls", "f", "sub", env=env)
    fails_cleanly(ls)
    assert EXPECTED[mode] in ls.stderr, ls.stderr
    json_out = run_vfd(vfd_bin, "vfolder", "list", "--json", env=env)
    assert "Traceback" not in json_out.stderr
    if json_out.returncode != 0 or mode not in WELL_FORMED_200:  # `list` tolerates a shape
        assert json_out.returncode == 1 and json.loads(json_out.stdout)["error"]["code"]
    # a download meets the failure after its listing: a directory's fails and leaves
    # nothing in --dest; a file's keeps only its part file to resume from (or, when the
    # answer is a well-formed 200, takes that body as the file)
    for listing, path in ((FILE_LISTING, "x.bin"), (DIR_LISTING, "d")):
        server.listing = listing
        dest = tmp_path / f"dest-{path}"
        dest.mkdir()
        proc = run_vfd(vfd_bin, "vfolder", "download", "f", path, "-d", str(dest), env=env)
        server.listing = {}
        if path == "x.bin" and proc.returncode == 0:
            assert mode in WELL_FORMED_200 and "Traceback" not in proc.stderr
            continue
        fails_cleanly(proc)
        assert [p.name for p in dest.iterdir() if ".vfd-part" not in p.name] == []


@pytest.mark.parametrize("mode", sorted(ARCHIVE_MODES))
def test_cli_failures_broken_archive_leaves_no_tree(
    mode: str, fake: tuple[FakeDaemon, dict[str, str]], vfd_bin: Path, tmp_path: Path
) -> None:
    server, env = fake
    server.handler = ARCHIVE_MODES[mode]
    server.listing = DIR_LISTING
    dest = tmp_path / "dest"
    dest.mkdir()
    fails_cleanly(run_vfd(vfd_bin, "vfolder", "download", "f", "d", "-d", str(dest), env=env))
    assert list(dest.iterdir()) == []


def test_cli_failures_whole_archive_is_renamed_into_place(
    fake: tuple[FakeDaemon, dict[str, str]], vfd_bin: Path, tmp_path: Path
) -> None:
    """The same server with the whole archive: the tree appears (the cases above fail for
    what they break, not for the staging)."""
    server, env = fake
    server.handler = _send(_reply("200 OK", TAR))
    server.listing = DIR_LISTING
    proc = run_vfd(vfd_bin, "vfolder", "download", "f", "d", "-d", str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert (tmp_path / "d" / "a.txt").read_bytes() == b"a" * 10
    assert (tmp_path / "d" / "b.bin").stat().st_size == 100_000
    # a directory download never merges into one that exists
    again = run_vfd(vfd_bin, "vfolder", "download", "f", "d", "-d", str(tmp_path), env=env)
    fails_cleanly(again)
    assert again.stderr.rstrip().endswith("[path_exists]")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("vfolder", "create", "\udcff"), "invalid_argument"),
        (("vfolder", "info", "bad\udcfe"), "invalid_name"),
        (("vfolder", "ls", "bad\udcfe", "x"), "invalid_name"),
        (("--as", "\udcff@example.org", "vfolder", "list"), "invalid_argument"),
        (("--as", "\u00fc@example.org", "vfolder", "list"), "invalid_argument"),
        (("admin", "user", "create", "u\udcff@example.org"), "invalid_argument"),
    ],
)
def test_cli_failures_arguments_not_utf8(
    args: tuple[str, ...], code: str, vfd_daemon: Any, vfd_bin: Path
) -> None:
    proc = run_vfd(vfd_bin, *args, env=vfd_daemon.env)
    fails_cleanly(proc)
    assert proc.stderr.rstrip().endswith(f"[{code}]"), proc.stderr
    assert "\\x" in proc.stderr or "\u00fc" in proc.stderr  # the bad bytes are shown escaped
