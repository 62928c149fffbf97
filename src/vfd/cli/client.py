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

HTTP/1.1 is spoken with the standard library's ``http.client`` over an ``AF_UNIX`` socket (one
kept-alive connection per client): importing an HTTP library with its async back-ends would
cost every ``vfd`` command more than its request takes. Commands never see a transport
exception. Text that cannot travel (an argument whose bytes are not UTF-8, given by Python as
lone surrogates) is refused before anything is sent: INVALID_NAME in a folder name,
INVALID_ARGUMENT elsewhere; file paths inside folders are sent in the ``_b64`` form of
:mod:`vfd.wirenames` by the commands.
"""

from __future__ import annotations

import contextlib
import enum
import http.client
import json as json_module
import select
import socket
from collections.abc import Generator, Iterable, Iterator
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
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


class Response:
    """One answer of the daemon: status, headers, and the body, whole or as it arrives."""

    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self._raw = raw
        self.status_code = raw.status
        self.headers: Message = raw.headers
        self._content: bytes | None = None
        self._done = False

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """The body as it arrives, in pieces of at most ``chunk_size`` bytes; a body cut
        short of its ``Content-Length`` raises ``http.client.IncompleteRead``."""
        size = chunk_size or 65536
        while chunk := self._raw.read1(size):
            yield chunk
        if self._raw.length:  # read1 ends quietly where a Content-Length body was cut
            raise http.client.IncompleteRead(b"", self._raw.length)
        self._done = True
        self._raw.close()  # read1 leaves a body read to its length open

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
        self._raw.close()


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


class _UnixConnection(http.client.HTTPConnection):
    """An HTTP/1.1 connection over a unix socket."""

    def __init__(self, path: Path, timeout: float | None) -> None:
        super().__init__("vfd", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(str(self._path))
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def reusable(self) -> bool:
        """Connected, and nothing readable: a closed or talking peer is not reused."""
        if self.sock is None:
            return False
        readable, _, _ = select.select([self.sock], [], [], 0)
        return not readable


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
        self._connection: _UnixConnection | None = None

    def __enter__(self) -> VfdClient:
        return self

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

    def _connect(self, timeout: float | None) -> _UnixConnection:
        """The kept-alive connection when it is still usable, else a new one."""
        connection = self._connection
        if connection is not None and connection.reusable():
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            return connection
        self.close()
        connection = _UnixConnection(self.socket, timeout)
        try:
            connection.connect()
        except TimeoutError:
            raise VfdError(
                ErrorCode.DAEMON_UNAVAILABLE,
                f"vfd daemon did not answer within {self.timeout:g}s (socket {self.socket})",
                socket=str(self.socket),
                may_complete=False,
            ) from None
        except OSError as exc:
            raise _daemon_down(self.socket, (exc.strerror or str(exc)).lower()) from None
        self._connection = connection
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
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise VfdError(
                ErrorCode.DAEMON_UNAVAILABLE,
                f"lost the vfd daemon during {method} {path} (socket {self.socket}): "
                f"{_reason(exc)}",
                socket=str(self.socket),
            ) from None
        except KeyboardInterrupt:
            self.close()  # cut off mid-exchange: the next request needs a connection of its own
            raise

    @contextlib.contextmanager
    def _exchange(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None,
        json: dict[str, Any] | None,
        content: Iterable[bytes] | bytes | None,
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
        body: Iterable[bytes] | bytes | None = content
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
                connection.request(method, target, body=body, headers=sent)
            except (BrokenPipeError, ConnectionResetError):
                # the daemon may answer before the body is all sent (a refused upload) and
                # close: that answer, when there is one, is what the request got
                try:
                    raw = connection.getresponse()
                except (OSError, http.client.HTTPException):
                    raw = None
                if raw is None:
                    raise
            else:
                raw = connection.getresponse()
            response = Response(raw)
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
        content: Iterable[bytes] | bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> dict[str, Any]:
        """Send one request (a JSON body, or ``content`` streamed from bytes or an iterator);
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
