"""A tar archive of local files, built while it is sent: the request body of a directory
upload (``PUT .../upload-archive``, docs/transfers.md).

Its length is known before a byte is sent (the headers' sizes follow from the names, the
data's from the sizes planned), so it travels under a ``Content-Length``: the daemon then
knows a body cut short from a whole one. Headers are GNU tar (``ustar`` fields, names longer
than 100 bytes in a ``././@LongLink`` member), owners 0 (the daemon ignores them). Small
files are read into the buffer that gathers the headers, so that one ``send`` carries many
files; larger ones go from the file to the socket with ``sendfile``. A file whose size is no
longer the one planned stops the body (:class:`SourceChanged`) before any of its bytes are
sent: the daemon sees the body end early and keeps nothing of the archive.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Callable
from zlib import adler32

from vfd.cli.client import SizedBody

BLOCK = 512
GATHER = 1 << 20
"""Bytes gathered (headers and small files) before a ``send``."""
SMALL = 64 << 10
"""Files up to this size are read into the gathered bytes; larger ones are ``sendfile``d."""
_SENDFILE_SLICE = 8 << 20
_MAX_SIZE = 8**11 - 1  # what the 11 octal digits of a size field hold


class Member:
    """One entry of the archive: a directory (``source`` None) or a regular file. (Made once
    per file; not a dataclass: importing ``dataclasses`` costs a command milliseconds.)"""

    __slots__ = ("mode", "mtime", "name", "size", "source")

    def __init__(
        self, name: bytes, source: bytes | None, size: int = 0, mode: int = 0o644, mtime: int = 0
    ) -> None:
        self.name = name
        self.source = source
        self.size = size
        self.mode = mode
        self.mtime = mtime

    def __repr__(self) -> str:
        return f"Member({self.name!r}, {self.source!r}, {self.size}, {self.mode:#o}, {self.mtime})"


class SourceChanged(Exception):
    """A file's size is not the one planned (it changed since): the body stopped before any
    of its bytes."""

    def __init__(self, source: bytes, planned: int, size: int) -> None:
        super().__init__(f"{os.fsdecode(source)} has {size} bytes, not {planned}")
        self.source = source
        self.planned = planned
        self.size = size


class SourceUnreadable(Exception):
    """A file could not be opened or read (``.error``); kept apart from the connection's
    failures, which are the daemon's."""

    def __init__(self, source: bytes, error: OSError) -> None:
        super().__init__(str(error))
        self.source = source
        self.error = error


def _padding(size: int) -> int:
    return -size % BLOCK


_MAGIC = b"ustar  \0"
_MAGIC_SUM = sum(_MAGIC)
_IDS = b"0000000\x000000000\0"  # uid and gid 0


def _block(name: bytes, kind: bytes, size: int, mode: int, mtime: int) -> bytes:
    if size > _MAX_SIZE:
        raise ValueError(f"a member of {size} bytes does not fit a tar header")
    if len(name) > 100:
        raise ValueError("a name of more than 100 bytes goes in a long-name member")
    fields = b"%s%07o\0%s%011o\0%011o\0" % (name.ljust(100, b"\0"), mode, _IDS, size, max(mtime, 0))
    tail = kind + bytes(100) + _MAGIC  # type, link name, magic and version
    # the sum of the bytes, the checksum field's counted as spaces; ``fields`` (148 bytes)
    # sum to less than 65521, so the low half of their Adler-32 is their sum, made in C
    check = (adler32(fields) & 0xFFFF) - 1 + kind[0] + _MAGIC_SUM + 8 * 32
    return fields + b"%06o\0 " % check + tail + bytes(BLOCK - 265)


def header(member: Member) -> bytes:
    """The header blocks of ``member`` (with a GNU long-name member before it when its name
    does not fit in 100 bytes)."""
    name = member.name + b"/" if member.source is None else member.name
    kind = b"5" if member.source is None else b"0"
    size = 0 if member.source is None else member.size
    head = _block(name[:100], kind, size, member.mode, member.mtime)
    if len(name) <= 100:
        return head
    data = name + b"\0"
    long = _block(b"././@LongLink", b"L", len(data), 0o644, 0)
    return long + data + bytes(_padding(len(data))) + head


def header_length(member: Member) -> int:
    """``len(header(member))``, without building it."""
    length = len(member.name) + (1 if member.source is None else 0)
    if length <= 100:
        return BLOCK
    return 2 * BLOCK + length + 1 + _padding(length + 1)


def archive_length(members: list[Member]) -> int:
    """The bytes of the archive of ``members``: headers, data padded to blocks, the two
    zero blocks that end it."""
    total = 2 * BLOCK
    for m in members:
        total += header_length(m)
        if m.source is not None:
            total += m.size + _padding(m.size)
    return total


class TarBody(SizedBody):
    """The archive of ``members`` as a request body; ``advance(n)`` is called with the
    bytes of file data sent (not headers), in pieces."""

    def __init__(
        self, members: list[Member], advance: Callable[[int], object] | None = None
    ) -> None:
        self.members = members
        self.length = archive_length(members)
        self.advance = advance or (lambda n: None)
        """Called with the bytes of file data sent (headers not counted), now and then."""

    def send(self, sock: socket.socket) -> None:
        out = bytearray()
        sent = 0
        data_bytes = 0  # file data gathered in ``out``, for ``advance``
        for member in self.members:
            out += header(member)
            if member.source is None:
                continue
            size = member.size
            try:
                fd = os.open(member.source, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError as exc:
                raise SourceUnreadable(member.source, exc) from None
            try:
                if size <= SMALL:
                    out += _read(fd, member)
                    data_bytes += size
                else:
                    now = os.fstat(fd).st_size
                    if now != size:
                        raise SourceChanged(member.source, size, now)
                    sock.sendall(out)
                    sent += len(out)
                    out.clear()
                    _sendfile(sock, fd, member, self.advance)
                    sent += size
            finally:
                os.close(fd)
            out += _ZEROS[: -size % BLOCK]
            if len(out) >= GATHER:
                sock.sendall(out)
                sent += len(out)
                out.clear()
                self.advance(data_bytes)
                data_bytes = 0
        out += bytes(2 * BLOCK)
        sock.sendall(out)
        sent += len(out)
        if data_bytes:
            self.advance(data_bytes)
        assert sent == self.length, (sent, self.length)


_ZEROS = bytes(BLOCK)


def _read(fd: int, member: Member) -> bytes:
    """The member's data: all of the file, which must have the size planned (one byte more
    is asked for, so that a file that grew is seen as well as one that shrank)."""
    assert member.source is not None
    want = member.size + 1
    try:
        data = os.read(fd, want)
        while 0 < len(data) < want and (more := os.read(fd, want - len(data))):
            data += more
    except OSError as exc:
        raise SourceUnreadable(member.source, exc) from None
    if len(data) != member.size:
        size = len(data) if len(data) < want else os.fstat(fd).st_size
        raise SourceChanged(member.source, member.size, size)
    return data


def _sendfile(
    sock: socket.socket, fd: int, member: Member, advance: Callable[[int], object]
) -> None:
    """``member.size`` bytes of ``fd`` into the socket (a failure is the connection's)."""
    assert member.source is not None
    done = 0
    out = sock.fileno()
    timeout = sock.gettimeout()
    while done < member.size:
        try:
            n = os.sendfile(out, fd, done, min(_SENDFILE_SLICE, member.size - done))
        except BlockingIOError:  # a socket with a timeout is non-blocking
            if not select.select([], [sock], [], timeout)[1]:
                raise TimeoutError("the daemon took no data within the timeout") from None
            continue
        if n == 0:
            raise SourceChanged(member.source, member.size, done)
        done += n
        advance(n)
