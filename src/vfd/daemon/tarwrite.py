"""The tar stream of a download with ``archive=true`` (docs/transfers.md "Directories"),
written without :mod:`tarfile`'s per-member objects.

A member whose fields fit a plain ustar header (an ASCII name of at most 100 bytes, an ASCII
link target of at most 100, a size under 8 GiB, ids and mtime in their octal fields) gets one
built from a template — the very bytes :mod:`tarfile` writes for it in its default (pax)
format; any other member gets :mod:`tarfile`'s own header (pax records for long or non-ASCII
names, large sizes and ids). Data and headers are gathered into large writes on the output
descriptor (a pipe). The walk: directory descriptors opened ``O_NOFOLLOW`` relative to
their parent, links archived as links, FIFOs, sockets and devices never opened (listed in
``skipped``), entries swapped or unreadable meanwhile left out.
"""

from __future__ import annotations

import os
import stat
import tarfile

from vfd.daemon.userfs import (
    FolderFS,
    acting_as,
    open_regular,
    os_error,
    special_type,
    split_path,
)
from vfd.errors import ErrorCode, VfdError

BLOCK = 512
FLUSH = 1 << 20
"""Bytes gathered before a write to the output."""
_TEMPLATE = bytearray(BLOCK)
_TEMPLATE[257:265] = b"ustar\x0000"
_MAX_SIZE = 8**11
_MAX_ID = 8**7
_BLANK_SUM = 8 * ord(" ")


class _Out:
    """Bytes gathered for the output descriptor, written ``FLUSH`` at a time."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()

    def add(self, data: bytes | bytearray | memoryview) -> None:
        self.buf += data
        if len(self.buf) >= FLUSH:
            self.flush()

    def flush(self) -> None:
        with memoryview(self.buf) as whole:
            view = whole
            while view:
                view = view[os.write(self.fd, view) :]
            del view
        self.buf = bytearray()


def header(name: str, st: os.stat_result, kind: bytes, size: int = 0, link: str = "") -> bytes:
    """The header of one member, as :mod:`tarfile` writes it (pax format, UTF-8)."""
    mode = stat.S_IMODE(st.st_mode)
    mtime = int(st.st_mtime)
    raw_name = name.encode("ascii", "replace") if name.isascii() else b""
    raw_link = link.encode("ascii") if link.isascii() else b""
    if (
        not raw_name
        or len(raw_name) > 100
        or len(raw_link) != len(link)
        or len(raw_link) > 100
        or not 0 <= size < _MAX_SIZE
        or not 0 <= st.st_uid < _MAX_ID
        or not 0 <= st.st_gid < _MAX_ID
        or not 0 <= mtime < _MAX_SIZE
    ):
        return _tarfile_header(name, st, kind, size, link)
    h = bytearray(_TEMPLATE)
    h[0 : len(raw_name)] = raw_name
    h[100:108] = b"%07o\x00" % mode
    h[108:116] = b"%07o\x00" % st.st_uid
    h[116:124] = b"%07o\x00" % st.st_gid
    h[124:136] = b"%011o\x00" % size
    h[136:148] = b"%011o\x00" % mtime
    h[156:157] = kind
    h[157 : 157 + len(raw_link)] = raw_link
    checksum = sum(h) + _BLANK_SUM  # the checksum field counts as eight spaces
    h[148:156] = b"%06o\x00 " % checksum
    return bytes(h)


def _tarfile_header(name: str, st: os.stat_result, kind: bytes, size: int, link: str) -> bytes:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    info.type = kind
    info.size = size
    info.linkname = link
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


def write_tar(
    fs: FolderFS,
    path: str,
    out_fd: int,
    skipped: list[str] | None = None,
    *,
    backing: int | None = None,
) -> None:
    """Stream ``path`` of ``fs`` (a directory or a file) as a tar archive into ``out_fd``.

    An entry swapped for a link during the walk is skipped, never followed; each FIFO,
    socket or device left out is added to ``skipped`` as ``"<archive name> (<what it is>)"``.
    ``backing`` is the directory ``path`` in the backing tree (from mountd, once the daemon
    opened it through the view): the walk then runs below it, as the user (so permissions
    apply as through the view), without a FUSE request per entry. It is not closed here.
    Without it the walk goes through the view, as the user.
    """
    skipped = [] if skipped is None else skipped
    parts = split_path(path)
    base = parts[-1] if parts else "folder"
    if backing is not None:
        with acting_as(fs.ident):
            write_tree(backing, base, out_fd, skipped)
        return
    with fs._session() as root_fd:
        top = fs._walk(root_fd, parts[:-1], path) if parts else os.dup(root_fd)
        try:
            dfd = None
            if parts:
                st = os.stat(parts[-1], dir_fd=top, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):  # one member, in the directory above it
                    out = _Out(out_fd)
                    _entry(out, top, parts[-1], base, st, skipped)
                    _end(out)
                    return
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                dfd = os.open(parts[-1], flags, dir_fd=top)
            else:
                dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=top)
        except OSError as exc:
            raise os_error(exc, path) from None
        finally:
            os.close(top)
        try:
            write_tree(dfd, base, out_fd, skipped)
        finally:
            os.close(dfd)


def write_tree(dfd: int, arcname: str, out_fd: int, skipped: list[str]) -> None:
    """The tar stream of the directory ``dfd`` (archived as ``arcname``) into ``out_fd``,
    with the end-of-archive blocks, as whoever calls it. ``dfd`` is not closed."""
    out = _Out(out_fd)
    _dir(out, dfd, arcname, skipped)
    _end(out)


def _end(out: _Out) -> None:
    out.add(bytes(2 * BLOCK))
    out.flush()


def _dir(out: _Out, dfd: int, arcname: str, skipped: list[str]) -> None:
    out.add(header(arcname + "/", os.fstat(dfd), tarfile.DIRTYPE))
    for name in sorted(os.listdir(dfd)):
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        child = f"{arcname}/{name}"
        if stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
            except OSError:
                continue  # swapped or unreadable: skipped
            try:
                _dir(out, sub, child, skipped)
            finally:
                os.close(sub)
        else:
            _entry(out, dfd, name, child, st, skipped)


def _entry(
    out: _Out, dfd: int, name: str, arcname: str, st: os.stat_result, skipped: list[str]
) -> None:
    kind = special_type(st.st_mode)
    if kind is not None:
        skipped.append(f"{arcname} ({kind})")
    elif stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(name, dir_fd=dfd)
        except OSError:
            return  # swapped or gone meanwhile: skipped
        out.add(header(arcname, st, tarfile.SYMTYPE, link=target))
    elif stat.S_ISREG(st.st_mode):
        try:
            fd = open_regular(name, dfd, os.O_RDONLY, arcname)
        except VfdError as exc:
            if exc.code is ErrorCode.NOT_A_REGULAR_FILE:  # swapped for one meanwhile
                skipped.append(f"{arcname} (not a regular file)")
            return  # swapped for a link or unreadable: skipped
        try:
            _file(out, fd, arcname)
        finally:
            os.close(fd)


def _file(out: _Out, fd: int, arcname: str) -> None:
    st = os.fstat(fd)
    size = st.st_size
    out.add(header(arcname, st, tarfile.REGTYPE, size))
    left = size
    while left:
        data = os.read(fd, min(left, FLUSH))
        if not data:  # as tarfile: a file that shrank while it was read ends the stream
            raise OSError(f"{arcname} shrank while it was archived ({size - left} of {size})")
        out.add(data)
        left -= len(data)
    pad = -size % BLOCK
    if pad:
        out.add(bytes(pad))
