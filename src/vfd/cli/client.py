"""The CLI's HTTP client: JSON over the daemon's unix socket.

This module is the ONE place where what comes back from the wire becomes a ``VfdError``:

    connect fails (no socket, refused, denied) -> DAEMON_UNAVAILABLE "vfd daemon is not
                                                  running (...)" / "cannot reach ..."
    no answer within the timeout                -> DAEMON_UNAVAILABLE "... did not answer
                                                  within ..." (a change sent: "... may
                                                  still complete", ``details.may_complete``)
    the connection lost or the answer broken    -> DAEMON_UNAVAILABLE "lost the vfd daemon ..."
    a body in an encoding not asked for         -> INTERNAL "the daemon's answer to ... is
                                                  unreadable"
    an HTTP error with the JSON shape           -> VfdError.from_json(body)
    an HTTP error without it                    -> INTERNAL "daemon answered HTTP <status>: ..."
    a success that is not a JSON object         -> INTERNAL "daemon sent a reply that is not
                                                  JSON ..."
    session output (frames): an ERROR frame -> its VfdError; a stream cut before its END
                             frame -> DAEMON_UNAVAILABLE; bytes that are not frames -> INTERNAL

HTTP/1.1 is spoken by the small client below over an ``AF_UNIX`` socket (one kept-alive
connection per client): bodies with a ``Content-Length``, chunked or up to the connection's
end, read as they arrive; uploads chunked as they are produced, or, from a file
(:class:`FileBody`), handed to the kernel with ``sendfile`` under a ``Content-Length``.
Downloads into a file (:meth:`Response.copy_to`) are moved by the kernel from the socket to the
file through a pipe (``splice``) when the body has a ``Content-Length``, else received into
one reused buffer and written in large writes: no copy of the bytes in Python.

Not ``http.client``: it imports ``ssl`` (loading libssl and libcrypto) and the ``email``
parser, which cost every ``vfd`` command more than its request takes (an HTTP library with
async back-ends, more still). Commands never see a transport exception. Text that cannot travel
(an argument whose bytes are not UTF-8, given by Python as lone surrogates) is refused before
anything is sent: INVALID_NAME in a folder name, INVALID_ARGUMENT elsewhere; file paths inside
folders are sent in the ``_b64`` form of :mod:`vfd.wirenames` by the commands."""

from __future__ import annotations

import contextlib
import enum
import errno
import json as json_module
import os
import select
import socket
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, overload
from urllib.parse import quote, urlencode

from vfd import wirenames
from vfd.errors import ErrorCode, VfdError

if TYPE_CHECKING:
    from vfd.sessions.frames import Kind

ACT_AS_HEADER = "X-Vfd-Act-As"
DEFAULT_TIMEOUT = 60.0


def segment(value: str) -> str:
    """``value`` quoted as one URL path segment (names may hold spaces, ``%``, ``?``, dots).

    The server routes on the decoded path, so a ``/`` can never travel inside a segment, and
    ``.``/``..`` would be collapsed by URL normalisation: dots are always percent-encoded.
    """
    if not wirenames.is_text(value):
        raise VfdError(
            ErrorCode.INVALID_NAME,
            f"'{wirenames.escaped(value)}' cannot name anything: it is not UTF-8 text",
            name=value,
        )
    if "/" in value:
        raise VfdError(
            ErrorCode.INVALID_NAME, f"{value!r} cannot name anything: it contains '/'", name=value
        )
    return quote(value, safe="").replace(".", "%2E")


def folder_path(name: str) -> str:
    """The API path of folder ``name``."""
    return f"/v1/vfolders/{segment(name)}"


def _daemon_down(socket: Path, why: str) -> VfdError:
    # A socket we may not open means a running daemon we are not allowed to use.
    words = "cannot reach the vfd daemon" if "permission" in why else "vfd daemon is not running"
    return VfdError(
        ErrorCode.DAEMON_UNAVAILABLE, f"{words} (socket {socket}: {why})", socket=str(socket)
    )


class _Default(enum.Enum):
    """The client's own timeout (a ``timeout`` argument left out)."""

    TIMEOUT = enum.auto()


USE_CLIENT_DEFAULT = _Default.TIMEOUT
Timeout = float | None | _Default


class ProtocolError(Exception):
    """The daemon's answer is not HTTP/1.1 as it must be: a bad status line, header or chunk,
    or a connection that ended where the answer had not."""


class IncompleteBody(ProtocolError):
    """The connection ended before the body did (short of its ``Content-Length``, or of the
    last chunk)."""


_MAX_LINE = 65536
_MAX_HEADERS = 100
_BLOCK = 65536
_SENDFILE_SLICE = 8 << 20
"""Bytes handed to one ``sendfile`` call (progress is reported between them)."""
COPY_BUFFER = 1 << 20
"""The buffer a download is received into before each write."""


class SizedBody:
    """A request body of a known ``length``, sent under a ``Content-Length`` by its own
    :meth:`send` (which writes exactly ``length`` bytes, or raises: the request is then cut
    short and its connection closed)."""

    length: int

    def send(self, sock: socket.socket) -> None:
        raise NotImplementedError


class FileBody(SizedBody):
    """A request body of ``length`` bytes of an open file from ``offset``, sent by the kernel
    (``sendfile``, no copy through Python) with a ``Content-Length``. ``advance(n)`` is called
    after each piece. A file that ends before ``length`` raises :class:`SourceShrank`."""

    def __init__(
        self,
        file: IO[bytes],
        offset: int,
        length: int,
        advance: Callable[[int], object] | None = None,
    ) -> None:
        self.file = file
        self.offset = offset
        self.length = length
        self.advance = advance

    def send(self, sock: socket.socket) -> None:
        _send_file(sock, self)


class SourceShrank(Exception):
    """The file of a :class:`FileBody` ended before its length (it shrank while it was sent);
    the request was cut short and its connection closed."""

    def __init__(self, file: IO[bytes], sent: int, length: int) -> None:
        super().__init__(
            f"{getattr(file, 'name', 'the file')} ended after {sent} of {length} bytes"
        )
        self.file = file
        self.sent = sent
        self.length = length


class LocalWriteError(Exception):
    """Writing a downloaded body into a local file failed (``.error`` is the ``OSError``):
    kept apart from the connection's failures, which are the daemon's."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class Headers:
    """A response's header fields, looked up by name in any case; a repeated field gives its
    first value (as ``email.message.Message.get``)."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields
        self._first: dict[str, str] = {}
        for name, value in fields:
            self._first.setdefault(name.lower(), value)

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        return self._first.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.fields if key.lower() == wanted]


class _Connection:
    """One HTTP/1.1 connection on a connected stream socket, with its read buffer.

    Every blocking call waits at most the socket's timeout (``TimeoutError``); an end of the
    stream where more was due raises :class:`ProtocolError`.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = sock
        self._buffer = b""

    def settimeout(self, timeout: float | None) -> None:
        if self.sock is not None:
            self.sock.settimeout(timeout)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def reusable(self) -> bool:
        """Open, nothing left unread, nothing readable: a closed or talking peer is not
        reused."""
        if self.sock is None or self._buffer:
            return False
        readable, _, _ = select.select([self.sock], [], [], 0)
        return not readable

    def _live(self) -> socket.socket:
        if self.sock is None:
            raise ProtocolError("the connection is closed")
        return self.sock

    def send(self, data: bytes) -> None:
        self._live().sendall(data)

    def read_some(self, limit: int) -> bytes:
        """At most ``limit`` bytes, as soon as any are there; ``b""`` at the end of the
        stream."""
        if self._buffer:
            data, self._buffer = self._buffer[:limit], self._buffer[limit:]
            return data
        return self._live().recv(limit)

    def take_buffered(self, limit: int) -> bytes:
        """The bytes already read from the socket (past what was parsed), at most ``limit``."""
        data, self._buffer = self._buffer[:limit], self._buffer[limit:]
        return data

    def read_into(self, view: memoryview) -> int:
        """Fill ``view`` with what arrives (buffered bytes first), waiting until it is full or
        the stream ends; how many bytes were put in (0: the stream had ended)."""
        filled = 0
        if self._buffer:
            filled = min(len(view), len(self._buffer))
            view[:filled] = self._buffer[:filled]
            self._buffer = self._buffer[filled:]
        sock = self._live()
        while filled < len(view):
            n = sock.recv_into(view[filled:])
            if not n:
                break
            filled += n
        return filled

    def readline(self) -> bytes:
        """One line with its ending; what is left when the stream ends first (maybe
        ``b""``)."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
                return line
            if len(self._buffer) > _MAX_LINE:
                raise ProtocolError(f"a line of the answer is longer than {_MAX_LINE} bytes")
            data = self._live().recv(_BLOCK)
            if not data:
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += data


def _send_request(
    connection: _Connection,
    method: str,
    target: str,
    headers: dict[str, str],
    body: Iterable[bytes] | bytes | SizedBody | None,
) -> None:
    """Write one request: a ``bytes`` body with its ``Content-Length``, an iterable (or a
    file, read in blocks) chunked as it comes."""
    lines = [f"{method} {target} HTTP/1.1", "Host: vfd", "Accept-Encoding: identity"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if isinstance(body, bytes | bytearray | memoryview):
        lines.append(f"Content-Length: {len(body)}")
    elif isinstance(body, SizedBody):
        lines.append(f"Content-Length: {body.length}")
    elif body is not None:
        lines.append("Transfer-Encoding: chunked")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    if body is None:
        connection.send(head)
    elif isinstance(body, bytes | bytearray | memoryview):
        connection.send(head + bytes(body) if len(body) <= _BLOCK else head)
        if len(body) > _BLOCK:
            connection.send(bytes(body))
    elif isinstance(body, SizedBody):
        connection.send(head)
        body.send(connection._live())
    else:
        connection.send(head)
        for piece in _pieces(body):
            if piece:
                connection.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
        connection.send(b"0\r\n\r\n")


def _send_file(sock: socket.socket, body: FileBody) -> None:
    sent = 0
    while sent < body.length:
        piece = min(_SENDFILE_SLICE, body.length - sent)
        n = sock.sendfile(body.file, body.offset + sent, piece)
        if n == 0:
            raise SourceShrank(body.file, sent, body.length)
        sent += n
        if body.advance is not None:
            body.advance(n)


def _pieces(body: Iterable[bytes] | IO[bytes]) -> Iterator[bytes]:
    read = getattr(body, "read", None)
    if read is None:
        yield from body
        return
    while block := read(_BLOCK):
        yield block


def _read_head(connection: _Connection) -> tuple[int, str, Headers]:
    """The status, HTTP version and headers of the next final answer (``1xx`` interim
    answers are skipped)."""
    while True:
        line = connection.readline()
        if not line:
            raise ProtocolError("the daemon closed the connection without answering")
        version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, _ = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.1 status line: {line[:80]!r}")
        headers = _read_fields(connection)
        status = int(code)
        if not 100 <= status < 200 or status == 101:
            return status, version, headers


def _read_fields(connection: _Connection) -> Headers:
    """Header (or trailer) fields up to the empty line; folded lines continue a value."""
    fields: list[tuple[str, str]] = []
    while True:
        line = connection.readline()
        if not line.endswith(b"\n"):
            raise ProtocolError("the answer ended inside its headers")
        if line in (b"\r\n", b"\n"):
            return Headers(fields)
        text = line.decode("latin-1").rstrip("\r\n")
        if text[0] in " \t":  # obsolete line folding: the previous value goes on
            if not fields:
                raise ProtocolError(f"a folded header line comes first: {text[:80]!r}")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {text.strip()}")
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip():
            raise ProtocolError(f"not a header line: {text[:80]!r}")
        fields.append((name, value.strip()))
        if len(fields) > _MAX_HEADERS:
            raise ProtocolError(f"the answer has more than {_MAX_HEADERS} headers")


class Response:
    """One answer of the daemon: status, headers, and the body, whole or as it arrives.

    Made once the status line and headers are read; the body is read from the connection
    when asked for (``Content-Length``, chunked, or up to the connection's end).
    """

    def __init__(self, connection: _Connection, method: str) -> None:
        self._connection = connection
        self.status_code, version, self.headers = _read_head(connection)
        self._content: bytes | None = None
        self._done = False
        tokens = {
            token.strip().lower()
            for value in self.headers.get_all("connection")
            for token in value.split(",")
        }
        self._closes = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
        coding = self.headers.get("transfer-encoding", "").lower()
        self._chunked = "chunked" in coding
        self._length: int | None = None  # bytes of the body still due; None: unknown
        if method == "HEAD" or self.status_code in (204, 304):
            self._chunked, self._length = False, 0
        elif not self._chunked:
            length = self.headers.get("content-length")
            if length is None:
                self._closes = True  # the body is what comes until the connection ends
            elif length.strip().isdigit():
                self._length = int(length)
            else:
                raise ProtocolError(f"the answer's Content-Length is not a number: {length!r}")

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """The body as it arrives, in pieces of at most ``chunk_size`` bytes; a body cut
        short raises :class:`IncompleteBody`."""
        if self._done:
            return
        size = chunk_size or _BLOCK
        if self._chunked:
            yield from self._chunks(size)
        elif self._length is None:
            while data := self._connection.read_some(size):
                yield data
        else:
            while self._length:
                data = self._connection.read_some(min(size, self._length))
                if not data:
                    raise IncompleteBody(
                        f"the answer ended {self._length} bytes short of its Content-Length"
                    )
                self._length -= len(data)
                yield data
        self._done = True
        if self._closes:
            self._connection.close()

    def _chunks(self, size: int) -> Iterator[bytes]:
        connection = self._connection
        while True:
            line = connection.readline()
            if not line.endswith(b"\n"):
                raise IncompleteBody("the answer ended before its last chunk")
            digits = line.split(b";", 1)[0].strip()  # a chunk extension is ignored
            if not digits or digits.strip(b"0123456789abcdefABCDEF"):
                raise ProtocolError(f"not a chunk size: {line[:80]!r}")
            left = int(digits, 16)
            if left == 0:
                _read_fields(connection)  # trailer fields, if any: not used
                return
            while left:
                data = connection.read_some(min(size, left))
                if not data:
                    raise IncompleteBody("the answer ended inside a chunk")
                left -= len(data)
                yield data
            if connection.readline() not in (b"\r\n", b"\n"):
                raise ProtocolError("a chunk of the answer is longer than its size")

    def copy_to(
        self,
        fd: int,
        advance: Callable[[int], object] | None = None,
        buffer: bytearray | None = None,
    ) -> int:
        """Write the body into file descriptor ``fd`` as it arrives; the bytes written. A body
        with a ``Content-Length`` is spliced from the socket into ``fd``, or where that is
        refused received straight into ``buffer`` (``COPY_BUFFER`` bytes when not given) and
        written from it when full; others go through :meth:`iter_bytes`.
        ``advance(n)`` is called after each write. A failed write raises
        :class:`LocalWriteError`; a body cut short :class:`IncompleteBody`."""
        if self._chunked or self._length is None or self._done:
            total = 0
            for data in self.iter_bytes(COPY_BUFFER):
                _write_all(fd, memoryview(data))
                total += len(data)
                if advance is not None:
                    advance(len(data))
            return total
        connection = self._connection
        total = 0
        early = connection.take_buffered(self._length)
        if early:
            _write_all(fd, memoryview(early))
            self._length -= len(early)
            total += len(early)
            if advance is not None:
                advance(len(early))
        if self._length:
            moved = _splice_into(connection._live(), fd, self._length, advance)
            self._length -= moved
            total += moved
        buf = buffer if buffer is not None else bytearray(COPY_BUFFER if self._length else 0)
        view = memoryview(buf)
        while self._length:
            filled = connection.read_into(view[: min(len(view), self._length)])
            if not filled:
                raise IncompleteBody(
                    f"the answer ended {self._length} bytes short of its Content-Length"
                )
            self._length -= filled
            _write_all(fd, view[:filled])
            total += filled
            if advance is not None:
                advance(filled)
        self._done = True
        if self._closes:
            connection.close()
        return total

    def read(self) -> bytes:
        if self._content is None:
            self._content = b"".join(self.iter_bytes())
        return self._content

    @property
    def text(self) -> str:
        return self.read().decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json_module.loads(self.read())

    @property
    def complete(self) -> bool:
        """Whether the whole body was read (the connection may carry the next request)."""
        return self._done

    def close(self) -> None:
        """Stop reading: a body left unread makes the connection useless, so it is closed."""
        if not self._done:
            self._connection.close()


def _splice_into(
    sock: socket.socket, fd: int, count: int, advance: Callable[[int], object] | None
) -> int:
    """Move up to ``count`` bytes from ``sock`` into ``fd`` through a pipe (``splice``: the
    kernel copies them once, from the socket's buffers into the file's pages); how many were
    moved. Fewer than ``count`` (maybe 0) only where splicing is refused (a file or socket
    that does not support it): the caller moves the rest otherwise. The end of the stream
    raises :class:`IncompleteBody`, a failed write :class:`LocalWriteError`, no data within
    the socket's timeout ``TimeoutError``."""
    import fcntl  # only for downloads

    try:
        r, w = os.pipe2(os.O_CLOEXEC)
    except OSError:
        return 0
    moved = 0
    try:
        with contextlib.suppress(OSError):  # beyond the pipe size limit: the default size
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, COPY_BUFFER)
        while moved < count:
            try:
                n = os.splice(sock.fileno(), w, min(count - moved, COPY_BUFFER))
            except BlockingIOError:  # a socket with a timeout is non-blocking
                readable, _, _ = select.select([sock], [], [], sock.gettimeout())
                if not readable:
                    raise TimeoutError("no data within the timeout") from None
                continue
            except OSError as exc:
                if moved == 0 and exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    return 0  # no splicing from this socket
                raise
            if n == 0:
                raise IncompleteBody(
                    f"the answer ended {count - moved} bytes short of its Content-Length"
                )
            out = 0
            while out < n:
                try:
                    out += os.splice(r, fd, n - out)
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise LocalWriteError(exc) from None
                    # no splicing into this file: what is in the pipe goes by plain writes
                    while out < n:
                        data = os.read(r, n - out)
                        _write_all(fd, memoryview(data))
                        out += len(data)
                    moved += n
                    if advance is not None:
                        advance(n)
                    return moved
            moved += n
            if advance is not None:
                advance(n)
        return moved
    finally:
        os.close(r)
        os.close(w)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        try:
            n = os.write(fd, view)
        except OSError as exc:
            raise LocalWriteError(exc) from None
        view = view[n:]


def _error_from_response(response: Response) -> VfdError:
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    error = VfdError.from_json(body)
    if error is not None:
        wire = str(body["error"].get("code"))
        if error.code is ErrorCode.INTERNAL and wire != ErrorCode.INTERNAL.value:
            return VfdError(  # a newer daemon's code, or no daemon at all
                ErrorCode.INTERNAL,
                f"daemon answered HTTP {response.status_code} with the unknown error code "
                f"{wire!r}: {error.message}",
                status=response.status_code,
            )
        return error
    text = response.text.strip().replace("\n", " ")[:200]
    return VfdError(
        ErrorCode.INTERNAL,
        f"daemon answered HTTP {response.status_code}: {text or '(empty body)'}",
        status=response.status_code,
    )


class VfdClient:
    """A blocking client of the daemon's HTTP API on a unix socket.

    ``act_as`` (an email) is sent as ``X-Vfd-Act-As`` on every request, so that an admin
    performs the request as that user.
    """

    def __init__(
        self, socket: Path, *, act_as: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.socket = socket
        self.timeout = timeout
        self._headers = {ACT_AS_HEADER: act_as} if act_as else {}
        _check_text(headers=self._headers)
        self._connection: _Connection | None = None

    def __enter__(self) -> VfdClient:
        return self

    def clone(self) -> VfdClient:
        """Another client of the same daemon, as the same user, with a connection of its own
        (for requests sent in parallel from other threads)."""
        return VfdClient(self.socket, act_as=self._headers.get(ACT_AS_HEADER), timeout=self.timeout)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def abort(self) -> None:
        """Cut the exchange in progress from another thread: its blocked send or receive
        fails at once (and the client closes its connection, as after any failure)."""
        connection = self._connection
        sock = connection.sock if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _connect(self, timeout: float | None) -> _Connection:
        """The kept-alive connection when it is still usable, else a new one."""
        connection = self._connection
        if connection is not None and connection.reusable():
            connection.settimeout(timeout)
            return connection
        self.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(self.socket))
        except TimeoutError:
            sock.close()
            raise VfdError(
                ErrorCode.DAEMON_UNAVAILABLE,
                f"vfd daemon did not answer within {self.timeout:g}s (socket {self.socket})",
                socket=str(self.socket),
                may_complete=False,
            ) from None
        except OSError as exc:
            sock.close()
            raise _daemon_down(self.socket, (exc.strerror or str(exc)).lower()) from None
        except BaseException:
            sock.close()
            raise
        self._connection = connection = _Connection(sock)
        return connection

    @contextlib.contextmanager
    def _mapped(self, method: str, path: str) -> Iterator[None]:
        """Translate the transport failures of one exchange (including a streamed body)."""
        try:
            yield
        except TimeoutError:
            self.close()
            # a change whose request was sent may go on in the daemon after we stop waiting
            may_complete = method not in ("GET", "HEAD")
            raise VfdError(
                ErrorCode.DAEMON_UNAVAILABLE,
                f"vfd daemon did not answer within {self.timeout:g}s (socket {self.socket})"
                + ("; the operation may still complete" if may_complete else ""),
                socket=str(self.socket),
                may_complete=may_complete,
            ) from None
        except (OSError, ProtocolError) as exc:
            self.close()
            raise VfdError(
                ErrorCode.DAEMON_UNAVAILABLE,
                f"lost the vfd daemon during {method} {path} (socket {self.socket}): "
                f"{_reason(exc)}",
                socket=str(self.socket),
            ) from None
        except BaseException:
            # cut off mid-exchange (Ctrl-C, a source file that shrank, a failed local write):
            # the next request needs a connection of its own
            self.close()
            raise

    @contextlib.contextmanager
    def _exchange(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None,
        json: dict[str, Any] | None,
        content: Iterable[bytes] | bytes | SizedBody | None,
        headers: dict[str, str] | None,
        timeout: Timeout,
    ) -> Iterator[Response]:
        """Send one request and yield its response, with every failure translated; the
        connection is kept for the next request only when this one's body was read."""
        _check_text(params=params, json=json, headers=headers)
        wait = self.timeout if timeout is USE_CLIENT_DEFAULT else timeout
        assert not isinstance(wait, _Default)
        target = path + ("?" + urlencode(params, quote_via=quote) if params else "")
        sent = {"Accept": "*/*", **self._headers, **(headers or {})}
        body: Iterable[bytes] | bytes | SizedBody | None = content
        if json is not None:
            body = json_module.dumps(
                json, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
            sent["Content-Type"] = "application/json"
        elif body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        connection = self._connect(wait)
        with self._mapped(method, path):
            try:
                _send_request(connection, method, target, sent, body)
            except (BrokenPipeError, ConnectionResetError):
                # the daemon may answer before the body is all sent (a refused upload) and
                # close: that answer, when there is one, is what the request got
                try:
                    early: Response | None = Response(connection, method)
                except (OSError, ProtocolError):
                    early = None
                if early is None:
                    raise
                response = early
            else:
                response = Response(connection, method)
            try:
                encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
                if encoding != "identity":  # asked for identity: a body we cannot decode
                    raise VfdError(
                        ErrorCode.INTERNAL,
                        f"the daemon's answer to {method} {path} is unreadable: "
                        f"its content encoding {encoding!r} was not asked for",
                    )
                yield response
            finally:
                if not response.complete:
                    response.close()
                    self.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        content: Iterable[bytes] | bytes | SizedBody | None = None,
        headers: dict[str, str] | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> dict[str, Any]:
        """Send one request (a JSON body, or ``content`` streamed from bytes, an iterator or a
        file, :class:`FileBody`);
        return the JSON object answered, or raise a ``VfdError``. ``timeout=None`` waits as
        long as it takes (large uploads)."""
        with self._exchange(
            method,
            path,
            params=params,
            json=json,
            content=content,
            headers=headers,
            timeout=timeout,
        ) as response:
            response.read()
        if response.is_error:
            raise _error_from_response(response)
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise VfdError(
                ErrorCode.INTERNAL,
                f"daemon sent a reply that is not JSON to {method} {path}: {response.text[:200]!r}",
            )
        return body

    @contextlib.contextmanager
    def stream(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Iterator[Response]:
        """A successful response whose body is read as it arrives (downloads, session
        output); an error answer, or a transport failure while reading, raises a
        ``VfdError``."""
        with self._exchange(
            method,
            path,
            params=params,
            json=json,
            content=None,
            headers=headers,
            timeout=timeout,
        ) as response:
            if response.is_error:
                response.read()
                raise _error_from_response(response)
            yield response

    def frames(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
    ) -> Generator[tuple[Kind, bytes], None, None]:
        """The ``STDOUT``/``STDERR`` frames of a session's output (``vfd.sessions.frames``)
        as they arrive, then the ``END`` frame, last; waits as long as the stream lasts.

        An ``ERROR`` frame raises its ``VfdError``; a stream cut before its ``END`` frame, or
        bytes that are not frames, raise ``DAEMON_UNAVAILABLE``/``INTERNAL``.
        """
        from vfd.sessions.frames import Decoder, Kind

        decoder = Decoder()
        with self.stream(method, path, params=params, json=json, timeout=None) as response:
            for chunk in response.iter_bytes():
                try:
                    frames = list(decoder.feed(chunk))
                except ValueError as exc:
                    raise VfdError(
                        ErrorCode.INTERNAL,
                        f"the daemon's answer to {method} {path} is not session output: {exc}",
                    ) from None
                for kind, payload in frames:
                    if kind is Kind.ERROR:
                        raise _error_from_frame(payload)
                    yield kind, payload
                    if kind is Kind.END:
                        return
        raise VfdError(
            ErrorCode.DAEMON_UNAVAILABLE,
            f"lost the vfd daemon during {method} {path} (socket {self.socket}): "
            "the output ended before its last frame",
            socket=str(self.socket),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send one JSON request; return the JSON object answered, or raise a ``VfdError``."""
        return self.send(method, path, params=params, json=json_body)

    def get(self, path: str, *, params: dict[str, str] | None = None) -> dict[str, Any]:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("POST", path, json_body=body if body is not None else {})

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", path, json_body=body)

    def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", path, json_body=body)

    def delete(self, path: str) -> dict[str, Any]:
        return self.request("DELETE", path)


def _error_from_frame(payload: bytes) -> VfdError:
    """The ``VfdError`` an ``ERROR`` frame carries (the API's error shape)."""
    try:
        body = json_module.loads(payload)
    except ValueError:
        body = None
    error = VfdError.from_json(body)
    if error is None:
        text = payload.decode(errors="replace")[:200]
        return VfdError(ErrorCode.INTERNAL, f"the session's output stream failed: {text}")
    return error


def _check_text(**parts: Any) -> None:
    """Refuse a request whose text cannot travel: a value with lone surrogates (the bytes of
    an argument that are not UTF-8) anywhere, or a header value that is not ASCII."""

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}.{key}")
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, where)
        elif isinstance(value, str):
            if not wirenames.is_text(value):
                why = "it is not UTF-8 text"
            elif where.startswith("headers.") and not value.isascii():
                why = "a header value must be ASCII"
            elif where.startswith("headers.") and ("\r" in value or "\n" in value):
                why = "a header value must be one line"
            else:
                return
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"'{wirenames.escaped(value)}' cannot be sent: {why}",
                field=where.rsplit(".", 1)[-1],
            )

    for where, value in parts.items():
        walk(value, where)


def _reason(exc: BaseException) -> str:
    """The most specific words for a transport failure (the OS error when there is one)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__
