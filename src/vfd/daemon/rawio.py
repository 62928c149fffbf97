"""Bytes moved straight between a connection's socket and files by a worker thread, past
uvicorn and h11 (the "raw bodies and sendfile" of :mod:`vfd.daemon.connections`, which
decides when a request may): a request body read from the socket (:class:`RawBody`, with a
``Content-Length``; :class:`ChunkedRawBody`, chunked, its framing decoded here), an answer's
bytes sent from a file (:func:`sendfile_all`). Every wait is bounded by ``body_timeout`` and
looks every half second whether the transfer was aborted; a client that goes away, stalls or
is cut off raises :class:`ClientGone`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import fcntl
import functools
import os
import re
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from vfd.errors import ErrorCode, VfdError

_PIPE_SIZE = 1 << 20
"""Bytes of the pipe a raw body is spliced through (more than the default 64 KiB: fewer calls)."""
_POLL_SLICE = 0.5
"""Seconds a raw read or write waits at a time before it looks whether it was aborted."""
_LINE_MAX = 4096
"""Bytes a chunk-size line of a chunked body may have, extensions included, CRLF not."""
_TRAILER_MAX = 16384
"""Bytes the trailer section of a chunked body may have, its closing empty line included."""
_AHEAD = 8192
"""Bytes a chunked body reads at a time for its framing, and the most that comes along with
a chunk's data (read straight into the caller's buffer) to be copied out later."""
_HEX = re.compile(rb"[0-9A-Fa-f]+")


class ClientGone(Exception):
    """The client of a raw transfer closed or reset its connection, stopped sending its body
    or reading its answer for ``body_timeout`` seconds (``stalled``), or the transfer was
    aborted."""

    def __init__(self, message: str, *, stalled: bool = False) -> None:
        super().__init__(message)
        self.stalled = stalled


async def in_thread_until_done(
    run: Callable[[Callable[[], Any]], Any], call: Callable[[], Any], abort: Callable[[], None]
) -> Any:
    """``await run(call)`` (``call`` in a worker thread), returning only once the thread is
    done: when the caller is cancelled meanwhile, ``abort()`` makes ``call`` end soon, and
    the cancellation goes on after it has."""
    job = asyncio.ensure_future(run(call))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        abort()
        while not job.done():
            try:
                await asyncio.shield(job)
            except asyncio.CancelledError:
                continue
            except BaseException:
                break
        if not job.cancelled():
            job.exception()  # retrieved: the cancellation is what the caller sees
        raise


class RawBody:
    """The rest of a request body, read straight from the connection's socket by a worker
    thread: first what had arrived before it was taken (``head``), then the socket, until
    ``remaining`` more bytes are in. :meth:`close` closes its descriptor (a duplicate)."""

    def __init__(
        self,
        fd: int,
        head: bytes,
        remaining: int,
        proceed: bytes,
        timeout: float,
        on_stall: Callable[[], None] | None = None,
    ) -> None:
        self._fd = fd
        self._head = memoryview(head)
        self._length = len(head) + remaining
        self._remaining = remaining
        self._proceed = proceed  # a ``100 Continue`` to send before the first read
        self._timeout = timeout
        self._on_stall = on_stall
        self._stop = threading.Event()

    @property
    def length(self) -> int:
        """The whole body's bytes (what was taken)."""
        return self._length

    def abort(self) -> None:
        """Make the read in progress (and every later one) fail with :class:`ClientGone`."""
        self._stop.set()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def readinto(self, buf: memoryview) -> int:
        """Fill ``buf`` (as far as the body goes); the bytes read, 0 at the body's end.
        Blocking (a worker thread); raises :class:`ClientGone`."""
        return self._stalls_told(lambda: self._readinto(buf))

    def _socket_read(self, read: Callable[[], int], *, wait: bool) -> int:
        """``read()``, one call that takes bytes from the socket: how many (never 0 unless
        none were there and not ``wait``; with ``wait``, until some come, at most the body
        timeout). :class:`ClientGone` when the client closed or reset the connection."""
        while True:
            try:
                n = read()
            except BlockingIOError:
                if not wait:
                    return 0
                wait_ready(self._fd, select.POLLIN, self._timeout, self._stop, "send its body")
                continue
            except OSError as exc:
                raise ClientGone(f"the client went away: {exc.strerror}") from None
            if n == 0:
                raise ClientGone("the client went away before its body ended")
            return n

    def _stalls_told(self, call: Callable[[], int]) -> int:
        """``call()``; a stall it ends with is told (``on_stall``) before it propagates."""
        try:
            return call()
        except ClientGone as exc:
            if exc.stalled and self._on_stall is not None:
                self._on_stall()
            raise

    def _readinto(self, buf: memoryview) -> int:
        done = 0
        if self._head:
            done = min(len(buf), len(self._head))
            buf[:done] = self._head[:done]
            self._head = self._head[done:]
        if self._proceed:
            send_all(self._fd, self._proceed, self._timeout, self._stop)
            self._proceed = b""
        while done < len(buf) and self._remaining:
            piece = buf[done : done + min(len(buf) - done, self._remaining)]
            # with a part in hand, it is returned now: the rest comes with the next call
            n = self._socket_read(functools.partial(os.readv, self._fd, [piece]), wait=not done)
            if not n:
                break
            done += n
            self._remaining -= n
        return done

    def splice_to(self, fd: int, pos: int) -> int:
        """Move the whole body into the file ``fd`` at ``pos`` through a pipe (``splice``:
        the pages the client sent go to the file without a copy through this process); the
        bytes written, every one of them in the file when :class:`ClientGone` is raised.
        Blocking (a worker thread); an ``OSError`` of the file's side propagates."""
        return self._stalls_told(lambda: self._splice_to(fd, pos))

    def _splice_to(self, fd: int, pos: int) -> int:
        start = pos
        while self._head:
            n = os.pwrite(fd, self._head, pos)
            self._head = self._head[n:]
            pos += n
        if self._proceed:
            send_all(self._fd, self._proceed, self._timeout, self._stop)
            self._proceed = b""
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):  # a larger pipe where the system allows it
                fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
            while self._remaining:
                if self._stop.is_set():
                    raise ClientGone("the transfer was aborted")
                n = self._socket_read(
                    functools.partial(
                        os.splice,
                        self._fd,
                        w,
                        min(self._remaining, _PIPE_SIZE),
                        flags=os.SPLICE_F_MOVE,
                    ),
                    wait=True,
                )
                self._remaining -= n
                while n:  # the pipe is emptied into the file before more is taken
                    m = os.splice(r, fd, n, offset_dst=pos, flags=os.SPLICE_F_MOVE)
                    pos += m
                    n -= m
        finally:
            os.close(r)
            os.close(w)
        return pos - start


class _Next(enum.Enum):
    """What a chunked body reads next."""

    DATA = "data"  # the rest of the current chunk's data
    DATA_END = "data end"  # the CRLF after a chunk's data
    SIZE = "size"  # a chunk-size line (its extensions ignored)
    TRAILER = "trailer"  # the trailer section after the last chunk, up to its empty line
    END = "end"  # nothing: the body is complete


class ChunkedRawBody(RawBody):
    """A ``Transfer-Encoding: chunked`` request body (RFC 9112 section 7.1) read straight
    from the connection's socket by a worker thread, decoded: :meth:`readinto` gives the
    chunks' data. A chunk's data is read into the caller's buffer, and what follows it
    comes along into a small read-ahead buffer in the same call, where the framing is
    parsed; a malformed one raises ``VfdError(INVALID_ARGUMENT)``. Its length is known only
    at its end, so it is not for :attr:`length` or :meth:`splice_to`."""

    def __init__(
        self,
        fd: int,
        proceed: bytes,
        timeout: float,
        on_stall: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(fd, b"", 0, proceed, timeout, on_stall)
        self._next = _Next.SIZE
        self._left = 0  # bytes of the current chunk's data not yet read
        self._ahead = bytearray(_TRAILER_MAX + _AHEAD)
        self._view = memoryview(self._ahead)
        self._lo = self._hi = 0  # the bytes read ahead, not yet taken: _ahead[_lo:_hi]

    @property
    def length(self) -> int:
        raise TypeError("a chunked body's length is known only at its end")

    def splice_to(self, fd: int, pos: int) -> int:
        raise TypeError("a chunked body is read with readinto (its framing is decoded)")

    def _readinto(self, buf: memoryview) -> int:
        if self._stop.is_set():
            raise ClientGone("the transfer was aborted")
        if self._proceed:
            send_all(self._fd, self._proceed, self._timeout, self._stop)
            self._proceed = b""
        done = 0
        while done < len(buf) and self._next is not _Next.END:
            # with a part in hand, it is returned rather than waited on for more
            if self._next is _Next.DATA:
                n = self._data(buf[done:], wait=not done)
                if not n:
                    break
                done += n
            elif not self._frame() and not self._fill(wait=not done):
                break
        return done

    def _data(self, out: memoryview, *, wait: bool) -> int:
        """Read some of the current chunk's data into ``out``: the bytes read."""
        want = min(len(out), self._left)
        if self._lo < self._hi:
            n = min(want, self._hi - self._lo)
            out[:n] = self._view[self._lo : self._lo + n]
            self._lo += n
        else:
            self._lo = self._hi = 0
            pieces = [out[:want]]
            if want == self._left:  # what follows the chunk comes along, in the read-ahead
                pieces.append(self._view[:_AHEAD])
            n = self._socket_read(functools.partial(os.readv, self._fd, pieces), wait=wait)
            if n > want:
                self._hi = n - want
                n = want
        self._left -= n
        if not self._left:
            self._next = _Next.DATA_END
        return n

    def _fill(self, *, wait: bool) -> int:
        """Read more of the socket into the read-ahead buffer: the bytes read."""
        if self._lo == self._hi:
            self._lo = self._hi = 0
        elif len(self._ahead) - self._hi < _AHEAD:
            kept = self._hi - self._lo
            self._ahead[:kept] = self._ahead[self._lo : self._hi]
            self._lo, self._hi = 0, kept
        room = self._view[self._hi : self._hi + _AHEAD]
        n = self._socket_read(functools.partial(os.readv, self._fd, [room]), wait=wait)
        self._hi += n
        return n

    def _frame(self) -> bool:
        """Take the next piece of framing from the read-ahead buffer; False when it is not
        all there yet."""
        ahead, lo, hi = self._ahead, self._lo, self._hi
        if self._next is _Next.DATA_END:
            if hi - lo < 2:
                return False
            if ahead[lo : lo + 2] != b"\r\n":
                raise _malformed("a chunk's data is not followed by CRLF")
            self._lo += 2
            self._next = _Next.SIZE
        elif self._next is _Next.SIZE:
            eol = ahead.find(b"\n", lo, min(hi, lo + _LINE_MAX + 2))
            if eol < 0:
                if hi - lo >= _LINE_MAX + 2:
                    raise _malformed(f"a chunk-size line is longer than {_LINE_MAX} bytes")
                return False
            if eol == lo or ahead[eol - 1] != ord("\r"):
                raise _malformed("a chunk-size line does not end with CRLF")
            size = _chunk_size(bytes(ahead[lo : eol - 1]))
            self._lo = eol + 1
            self._left = size
            self._next = _Next.DATA if size else _Next.TRAILER
        else:  # the trailer section: field lines, ignored, up to an empty line
            if ahead.startswith(b"\r\n", lo, hi):
                end = lo + 2
            else:
                found = ahead.find(b"\r\n\r\n", lo, hi)
                end = found + 4 if found >= 0 else -1
            if end < 0 or end - lo > _TRAILER_MAX:
                if end >= 0 or hi - lo >= _TRAILER_MAX:
                    raise _malformed(f"its trailer section is longer than {_TRAILER_MAX} bytes")
                return False
            self._lo = end
            self._next = _Next.END
        return True


def _chunk_size(line: bytes) -> int:
    """The chunk-size of a chunk-size line (without its CRLF), its extensions ignored."""
    digits = line.split(b";", 1)[0].rstrip(b" \t")
    if not digits:
        raise _malformed("a chunk-size is empty")
    if not _HEX.fullmatch(digits):
        shown = digits[:40].decode("ascii", "backslashreplace")
        raise _malformed(f"a chunk-size is not hexadecimal: '{shown}'")
    if len(digits) > 16:
        raise _malformed(f"a chunk-size has {len(digits)} hex digits, more than 16")
    return int(digits, 16)


def _malformed(why: str) -> VfdError:
    return VfdError(
        ErrorCode.INVALID_ARGUMENT, f"the request body's chunked encoding is malformed: {why}"
    )


def wait_ready(fd: int, event: int, timeout: float, stop: threading.Event, what: str) -> None:
    """Wait until ``fd`` is ready for ``event``, at most ``timeout`` seconds."""
    poller = select.poll()
    poller.register(fd, event | select.POLLERR | select.POLLHUP)
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClientGone(
                f"the client did not {what} for {timeout:g}s ([limits] body_timeout)", stalled=True
            )
        if poller.poll(min(left, _POLL_SLICE) * 1000):
            return
    raise ClientGone("the transfer was aborted")


def send_all(fd: int, data: bytes, timeout: float, stop: threading.Event) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            wait_ready(fd, select.POLLOUT, timeout, stop, "read its answer")
            continue
        except OSError as exc:
            raise ClientGone(f"the client went away: {exc.strerror}") from None
        view = view[n:]


def sendfile_all(
    out: int, fd: int, offset: int, count: int, timeout: float, stop: threading.Event
) -> int:
    """``count`` bytes of ``fd`` from ``offset`` into the socket ``out``; ``ClientGone``
    when the client stops reading for ``timeout`` seconds or goes away."""
    sent = 0
    while sent < count:
        if stop.is_set():
            raise ClientGone("the transfer was aborted")
        try:
            n = os.sendfile(out, fd, offset + sent, count - sent)
        except BlockingIOError:
            wait_ready(out, select.POLLOUT, timeout, stop, "read its answer")
            continue
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                raise ClientGone(f"the client went away: {exc.strerror}") from None
            raise
        if n == 0:  # the file is shorter than it was: the answer cannot be completed
            raise OSError(errno.EIO, f"the file ended {count - sent} bytes early")
        sent += n
    return sent
