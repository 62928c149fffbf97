"""A reader of tar streams (archive uploads in the daemon, directory downloads in the CLI):
the members' headers, then their data.

``tarfile`` spends tens of microseconds of Python per member (a ``TarInfo`` with every field
decoded, a file object per member's data, checksums summed twice); an upload of many small
files pays that per file. This reader decodes only what an upload uses (name, type, size,
mode, mtime, link target), from the formats in use: ustar (with its name prefix), GNU (long
names and link targets in ``././@LongLink`` members, base-256 numbers) and pax (extended and
global headers: ``path``, ``linkpath``, ``size``, ``mtime``).

Stricter than ``tarfile`` where that matters for an upload: a header whose checksum is wrong
anywhere in the stream is an error (``tarfile`` ends the archive there, silently), and so is a
stream that ends inside a header or a member's data. The archive ends at a zero block, or
where the stream ends between members (as with ``tarfile``). Names are decoded as UTF-8 with
``surrogateescape``: bytes that are not UTF-8 come back as the same bytes in file names.
"""

from __future__ import annotations

import struct
from typing import BinaryIO
from zlib import adler32

BLOCK = 512
_ZERO = bytes(BLOCK)
_SIGNED = struct.Struct("148b8x356b")
_CHECKED = struct.Struct("124x12s12x8sB")
"""A header's size, checksum and type flag (the fields every member's reading needs)."""
_EXTENDED = frozenset(b"LKxg")
"""Type flags of the headers that extend the next member's (GNU long names, pax)."""

REGULAR = frozenset(b"07\0")
"""Type flags of regular files (``0``, contiguous ``7``, and the old NUL)."""
DIRECTORY = ord("5")
SYMLINK = ord("2")
HARDLINK = ord("1")

_KINDS = {
    HARDLINK: "a hard link",
    ord("3"): "a device",
    ord("4"): "a device",
    ord("6"): "a FIFO",
    ord("S"): "a sparse file",
}


_NO_DATA = frozenset(b"123456")
_NO_PAX: dict[str, bytes] = {}
"""The extended header fields of a member that has none (shared: never written to)."""


class TarError(Exception):
    """The stream is not a tar archive we can read (the message says where and why)."""


class Member:
    """One member's header: ``kind`` is the type flag's byte value (see the constants). (Not
    a dataclass: the CLI reads archives too, and ``dataclasses`` costs a command
    milliseconds to import.)"""

    __slots__ = ("kind", "linkname", "mode", "mtime", "name", "size")

    def __init__(
        self, name: str, kind: int, size: int, mode: int, mtime: int, linkname: str
    ) -> None:
        self.name = name
        self.kind = kind
        self.size = size
        self.mode = mode
        self.mtime = mtime
        self.linkname = linkname

    def __repr__(self) -> str:
        return f"Member({self.name!r}, {chr(self.kind)!r}, {self.size} bytes)"

    def isreg(self) -> bool:
        return self.kind in REGULAR

    def what(self) -> str:
        """What the member is, in words (for one that is not unpacked)."""
        return _KINDS.get(self.kind, f"an entry of type {chr(self.kind)!r}")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _field(raw: bytes) -> bytes:
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]


def _number(raw: bytes, what: str) -> int:
    if raw[0] & 0x80:  # GNU base-256: big-endian, 0xff first for a negative number
        value = int.from_bytes(raw[1:], "big")
        return value - (1 << (8 * len(raw) - 8)) if raw[0] == 0xFF else value
    digits = raw.partition(b"\0")[0]  # octal digits up to a NUL (``int`` skips the spaces)
    try:
        return int(digits, 8)
    except ValueError:
        if not digits.strip(b" "):  # an empty field
            return 0
        raise TarError(f"a header's {what} is not a number: {raw!r}") from None


def _checksum(block: bytes) -> int:
    """The sum of the header's bytes with its checksum field taken as spaces (the unsigned
    sum). Each half's sum (at most 256 * 255) is the low half of its Adler-32, exactly: the
    same sum as ``sum(block)``, in C (a header per member: ``sum`` costs microseconds)."""
    whole = (adler32(block[:256]) & 0xFFFF) + (adler32(block[256:]) & 0xFFFF) - 2
    return whole - sum(block[148:156]) + 8 * 32


def _pax(data: bytes, into: dict[str, bytes]) -> None:
    """The records (``"<length> <key>=<value>\\n"``) of a pax header into ``into``."""
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        if space < 0:
            raise TarError("a pax header record has no length")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarError("a pax header record's length is not a number") from None
        end = pos + length
        if length <= 0 or end > len(data) or data[end - 1] != 0x0A:
            raise TarError("a pax header record is cut short")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise TarError("a pax header record has no '='")
        into[key.decode("utf-8", "surrogateescape")] = value
        pos = end


class TarReader:
    """The members of the tar ``stream`` in order (:meth:`next`); after each, its data
    must be read (:meth:`read`, :meth:`readinto`) or skipped (:meth:`skip`) before the next."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._left = 0  # data of the current member not read yet
        self._pad = 0
        self._globals: dict[str, bytes] = {}
        self._count = 0
        self.ended = False

    def _exact(self, n: int, what: str) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            raise TarError(f"the archive ends inside {what}")
        return data

    def next(self) -> Member | None:
        """The next member's header, or None at the end of the archive."""
        if self._left or self._pad:
            self.skip()
        extra: dict[str, bytes] = {}
        long_name = long_link = None
        read = self._stream.read
        while True:
            block = read(BLOCK)
            if len(block) != BLOCK or block == _ZERO:
                self._end(block, extra, long_name, long_link)
                return None
            size_f, chk, kind = _CHECKED.unpack_from(block)
            try:  # the usual octal forms, at C speed; any other goes to ``_number``
                stored = int(chk.partition(b"\0")[0], 8)
                size = int(size_f.partition(b"\0")[0], 8)
            except ValueError:
                stored, size = _number(chk, "checksum"), -1
            if stored != _checksum(block) and stored != sum(_SIGNED.unpack(block)) + 256:
                raise TarError(f"a header's checksum is wrong (member {self._count + 1})")
            if size < 0:  # (checked after the checksum, as a header is read in order)
                size = _number(size_f, "size")
            self._count += 1
            if kind in _EXTENDED:
                data = self._exact(size, "an extended header")
                self._exact(-size % BLOCK, "an extended header")
                if kind == ord("L"):
                    long_name = _field(data)
                elif kind == ord("K"):
                    long_link = _field(data)
                else:
                    _pax(data, extra if kind == ord("x") else self._globals)
                continue
            pax = {**self._globals, **extra} if self._globals or extra else _NO_PAX
            return self._member(block, kind, size, pax, long_name, long_link)

    def _end(
        self,
        block: bytes,
        extra: dict[str, bytes],
        long_name: bytes | None,
        long_link: bytes | None,
    ) -> None:
        """The archive ends at ``block`` (nothing, or a zero block); refused where it may not."""
        if block and len(block) != BLOCK:
            raise TarError("the archive ends inside a header")
        if self._count == 0 and not extra and (long_name is None or block):
            raise TarError("the archive is empty")
        if not block and (extra or long_name is not None or long_link is not None):
            raise TarError("the archive ends after an extended header")
        self.ended = True

    def _member(
        self,
        block: bytes,
        kind: int,
        size: int,
        pax: dict[str, bytes],
        long_name: bytes | None,
        long_link: bytes | None,
    ) -> Member:
        if "path" in pax:
            name = _text(pax["path"])
        else:
            raw = long_name if long_name is not None else _field(block[0:100])
            if long_name is None and block[257:265] == b"ustar\x0000":
                prefix = _field(block[345:500])
                if prefix:
                    raw = prefix + b"/" + raw
            name = _text(raw)
        if "linkpath" in pax:
            link = _text(pax["linkpath"])
        elif long_link is not None:
            link = _text(long_link)
        else:  # (most members have none: no decoding then)
            link = _text(_field(block[157:257])) if block[157] else ""
        if "size" in pax:
            size = _pax_int(pax["size"], "size")
        try:  # the usual octal forms, at C speed; any other goes to ``_number``
            mtime = int(block[136:148].partition(b"\0")[0], 8)
            mode = int(block[100:108].partition(b"\0")[0], 8)
        except ValueError:
            mtime = _number(block[136:148], "mtime")
            mode = _number(block[100:108], "mode")
        if "mtime" in pax:
            mtime = _pax_int(pax["mtime"].split(b".")[0], "mtime")
        if size < 0:
            raise TarError(f"member {name!r} has a negative size")
        if kind == DIRECTORY:
            name = name.rstrip("/")
        data = 0 if kind in _NO_DATA else size  # as tarfile: only these sizes are ignored
        self._left, self._pad = data, -data % BLOCK
        return Member(name, kind, size, mode, mtime, link)

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of the current member's data (``b""`` once all were read)."""
        n = min(n, self._left)
        if not n:
            return b""
        data = self._exact(n, "a member's data")
        self._left -= n
        return data

    def data(self) -> bytes:
        """All of the current member's data at once, and past its padding (one read: for a
        member whose data is small enough to hold)."""
        n, pad = self._left, self._pad
        chunk = self._stream.read(n + pad)
        if len(chunk) != n + pad:
            raise TarError("the archive ends inside a member's data")
        self._left = self._pad = 0
        return chunk[:n] if pad else chunk

    def readinto(self, view: memoryview) -> int:
        """Fill ``view`` (or what is left of the data, if less); how many bytes."""
        n = min(len(view), self._left)
        if not n:
            return 0
        got = self._stream.readinto(view[:n])  # type: ignore[attr-defined]
        if got != n:
            raise TarError("the archive ends inside a member's data")
        self._left -= n
        return n

    def skip(self) -> None:
        """Pass over what is left of the current member's data and its padding."""
        while self._left:
            self.read(min(self._left, 1 << 20))
        if self._pad:
            self._exact(self._pad, "a member's padding")
            self._pad = 0

    def end_data(self) -> None:
        """The current member's data was read whole: pass over its padding."""
        if self._left:
            raise TarError("a member's data was not read whole")
        if self._pad:
            self._exact(self._pad, "a member's padding")
            self._pad = 0


def _pax_int(raw: bytes, what: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise TarError(f"a pax header's {what} is not a number: {raw!r}") from None
