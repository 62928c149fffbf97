"""The upload and download protocols of the file API, between HTTP bodies and a folder view.

**Uploads** are resumable and atomic: the body is appended to ``.vfd-upload-<key>.part``
beside the destination (see :mod:`vfd.daemon.userfs`) and the part file is renamed over the
destination once ``size`` bytes are stored. Everything that can refuse an upload without its
data — a bad offset, a destination that is a directory, or one that exists without
``overwrite`` — is checked before a byte of the body is read, so a refused upload neither
costs the transfer nor leaves a part file. A refusal while or after the body is read (past
the quota, a body longer than ``size``, the destination made by someone else meanwhile)
removes the part file; a body that ends early keeps what was stored for a resume.

**Downloads** carry a strong validator: an ``ETag`` made of the file's device, inode, size,
mtime and ctime, and ``Last-Modified``. A Range request with ``If-Range`` gets the range only
while the file is that version, and the whole file (200) otherwise, so a resumed download
never splices two versions. A ``Range`` in another unit or malformed is ignored (200), a
range past the end is ``416`` (``Content-Range: bytes */<size>``), and several ranges are
served as one when they overlap or touch, and ignored otherwise (no multipart answers), as
RFC 9110 allows. ``If-Match`` (412 when the file changed) and ``If-None-Match``
(304 when it did not) are honoured too. Directories (and files, on request) travel as a tar
stream written by a worker thread into a pipe.

**The direct data path** (docs/transfers.md). The file is opened through the view as the
user, exactly as before, so permissions, read-only views and containment are decided there;
then mountd hands over the backing file of that inode on the transfer's own control
connection (:class:`~vfd.daemon.mountlink.TransferLink`), and the bytes move with large
``pread``/``pwritev`` calls on it. An upload first reserves its remaining size of the quota
(``507 quota_exceeded`` before a byte of the body is stored) and settles the grant once the
body ended (mountd accounts the real size, gives back the rest, and drops the kernel's
caches of the file); the part file is then renamed through the view. Without a direct path
(an older mountd) the bytes go through the view as before. Reads run one chunk ahead of the
client; writes keep one chunk in flight while the next arrives.

**Durability.** Unless the request says ``durable=false``, an upload is answered after what
it stored is on disk: ``fsync`` of the file, and once renamed, of its directory.

Unlike the other services these are coroutines: they consume or produce a body while it
travels, with every blocking step (open, read, write, close) in a worker thread.

**Descriptors.** Every fd a transfer opens is closed on every path: success, refusal,
failure, a client that goes away mid-body, a cancelled request. Opens and closes are shielded
from cancellation: a request cancelled while its open still runs in a thread closes the fd
when the open returns, and a close, once started, finishes. A download's source is closed by
its owner (the route's response) however the exchange ends, after any read still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import hashlib
import io
import logging
import os
import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from typing import Any, BinaryIO, Protocol, TypeVar

from vfd import wirenames
from vfd.daemon import runtime, tarwrite
from vfd.daemon.mountlink import TransferLink
from vfd.daemon.rawio import RawBody, in_thread_until_done
from vfd.daemon.runtime import Pool
from vfd.daemon.userfs import (
    Budget,
    FolderFS,
    Unpacked,
    os_error,
    part_name,
    place_unpacked,
    unpack_tar,
    unpack_tar_backing,
)
from vfd.errors import ErrorCode, VfdError

log = logging.getLogger(__name__)

CHUNK = 4 << 20
"""Bytes per read of a download, and the most an upload's write holds (made of the pieces
of the body as they came, with one ``pwritev``)."""
DIRECT_MIN = 1 << 20
"""Transfers of fewer bytes go through the view: for them the two calls to mountd that the
direct path costs take longer than the FUSE requests they save."""
MIN_WRITE = 1 << 20
"""An upload's write starts with this many bytes when no write is in flight."""
_IOV_MAX = 512
"""At most this many body pieces per write (below the system's ``IOV_MAX``)."""
T = TypeVar("T")

_DROP_PART = frozenset(
    {ErrorCode.QUOTA_EXCEEDED, ErrorCode.INVALID_ARGUMENT, ErrorCode.PATH_EXISTS}
)
"""Refusals after the body began that make the part file useless: it is removed."""


# -- threads and descriptors ---------------------------------------------------------------


async def _in_thread(call: Callable[[], T]) -> T:
    """The one hop of this module's blocking calls into a worker thread (the files pool)."""
    return await runtime.current().run(Pool.FILES, call)


def _close_after(job: asyncio.Future[Any], close: Callable[[Any], object]) -> None:
    """When ``job`` (an open) has finished, close what it opened, in a worker thread."""

    def done(job: asyncio.Future[Any]) -> None:
        if not job.cancelled() and job.exception() is None:
            job.get_loop().run_in_executor(None, close, job.result())

    job.add_done_callback(done)


async def _bounded(call: Callable[[], T], close: Callable[[T], object] | None = None) -> T:
    """``call()`` in a worker thread, waited for at most ``[workers] mountd_wait`` seconds
    (then ``503 mountd_unavailable``; the call goes on, and what it returns late is closed
    with ``close``). For the calls that begin or end a transfer; reads, writes and closes
    between them are awaited to their end, so that no descriptor is closed under them."""
    live = runtime.current()
    return await live.call_until(Pool.FILES, live.limits.mountd_wait, call, late=close)


async def _opened(call: Callable[[], T], close: Callable[[T], object]) -> T:
    """``call()`` (which opens something) in a worker thread. If the caller is cancelled
    meanwhile, or the open outlasts ``[workers] mountd_wait``, the thread still finishes and
    what it opened is closed with ``close``."""
    job = asyncio.ensure_future(_bounded(call, close))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        _close_after(job, close)
        raise


async def _in_transfer_thread(call: Callable[[], T], abort: Callable[[], None]) -> T:
    """``call()`` in a thread of the transfer pool for as long as it runs (a whole raw body,
    a whole ``sendfile``); a cancelled caller aborts it and waits for the thread's end."""

    def run(fn: Callable[[], T]) -> Any:
        return runtime.current().run(Pool.TRANSFER, fn)

    result: T = await in_thread_until_done(run, call, abort)
    return result


def in_transfer_pool(call: Callable[[], T]) -> Any:
    """The awaitable of ``call()`` in a thread of the transfer pool (for the routes)."""
    return runtime.current().run(Pool.TRANSFER, call)


async def _close(fd: int) -> None:
    """Close ``fd`` in a worker thread (a close on the mount waits for mountd's flush); the
    close finishes even when the caller is cancelled while it runs."""
    await asyncio.shield(_in_thread(functools.partial(os.close, fd)))


class _Reader:
    """An fd read in worker threads, closed once, never under a read still in flight: a
    close that raced a queued read could let it read another file that got the number.
    One read may run ahead of the reader (:meth:`start`)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self._pending: asyncio.Future[bytes] | None = None

    def start(self, fn: Callable[[int], bytes]) -> asyncio.Future[bytes] | None:
        """Begin ``fn(fd)`` in a worker thread (after the read before it was awaited)."""
        if self._fd is None:
            return None
        pending = asyncio.ensure_future(_in_thread(functools.partial(fn, self._fd)))
        pending.add_done_callback(_retrieve)
        self._pending = pending
        return pending

    async def read(self, fn: Callable[[int], bytes]) -> bytes:
        pending = self.start(fn)
        return b"" if pending is None else await asyncio.shield(pending)

    async def aclose(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        pending = self._pending
        if pending is not None and not pending.done():
            loop = pending.get_loop()
            pending.add_done_callback(lambda _read: loop.run_in_executor(None, os.close, fd))
            return
        await _close(fd)


def _retrieve(job: asyncio.Future[Any]) -> None:
    """Mark the outcome of a job seen (a read ahead nobody awaited, once its reader closed)."""
    if not job.cancelled():
        job.exception()


async def _wait_out(job: asyncio.Future[Any]) -> None:
    """Wait until ``job`` (a write in a worker thread) has finished, even when cancelled
    meanwhile (then CancelledError is raised after); its own outcome is dropped."""
    cancelled = False
    while not job.done():
        try:
            await asyncio.shield(job)
        except asyncio.CancelledError:
            cancelled = job.cancelled() or cancelled or not job.done()
        except Exception:
            pass
    if cancelled:
        raise asyncio.CancelledError


# -- uploads -------------------------------------------------------------------------------


def upload_status(fs: FolderFS, path: str, key: str) -> dict[str, Any]:
    """The bytes an upload has stored (where to resume) and the type of what is at ``path``
    now (``existing``: ``None``, ``"file"``, ``"dir"``, ...). Blocking."""
    offset, existing = fs.upload_state(path, key)
    return {"path": path, "key": key, "offset": offset, "existing": existing}


async def receive_upload(
    fs: FolderFS,
    body: AsyncIterable[bytes] | RawBody,
    *,
    path: str,
    key: str,
    size: int,
    offset: int = 0,
    overwrite: bool = False,
    link: TransferLink | None = None,
    durable: bool = True,
) -> dict[str, Any]:
    """Append ``body`` to the upload of ``path`` at ``offset``; once ``size`` bytes are stored
    the file appears under ``path``. Refusals that need no data come before ``body`` is read,
    the quota's too when ``link`` (the transfer's own mountd connection, closed here) gives
    the direct path (for a body of ``DIRECT_MIN`` bytes or more).

    An exception raised by ``body`` (the client went away) propagates after the part file is
    closed; what was written stays for a resume. A :class:`RawBody` (read from the socket in
    one thread of the transfer pool) longer than what is left of ``size`` is refused before
    any of it is read.
    """
    try:
        if offset > size:
            raise VfdError(ErrorCode.INVALID_ARGUMENT, "offset is past size", field="offset")
        if isinstance(body, RawBody) and offset + body.length > size:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT, f"the body is longer than size={size}", field="size"
            )
        fd = await _opened(
            functools.partial(fs.upload_open, path, key, offset, overwrite=overwrite), os.close
        )
        try:
            stored = await _store(fd, link, body, path, offset, size, durable)
            if stored < size:
                return {"path": path, "key": key, "offset": stored, "complete": False}
            entry = await _bounded(
                functools.partial(
                    fs.upload_complete, path, key, size=size, overwrite=overwrite, durable=durable
                )
            )
        except VfdError as exc:
            if exc.code in _DROP_PART:
                await asyncio.shield(_in_thread(functools.partial(fs.upload_abort, path, key)))
            raise
        return {"path": path, "key": key, "offset": stored, "complete": True, "entry": entry}
    finally:
        if link is not None:
            link.close()


async def _store(
    view_fd: int,
    link: TransferLink | None,
    body: AsyncIterable[bytes] | RawBody,
    path: str,
    offset: int,
    size: int,
    durable: bool,
) -> int:
    """Write ``body`` at ``offset`` of the part file open as ``view_fd`` (closed here): to
    its backing file under a grant when ``link`` gives one, through the view otherwise.
    The new size."""
    fd, grant = view_fd, None
    try:
        if link is not None and size - offset >= DIRECT_MIN:
            got = await _opened(
                functools.partial(link.open_write, view_fd, size - offset),
                functools.partial(_drop_grant, link),
            )
            if got is not None:
                fd, grant = got
        if isinstance(body, RawBody):
            stored = offset + await _in_transfer_thread(
                functools.partial(_pump, fd, body, offset, path), body.abort
            )
        else:
            stored = await _append(fd, body, path, offset, size)
        if durable:
            await _in_thread(functools.partial(_fsync, fd, path))
        return stored
    finally:
        if fd != view_fd:
            os.close(fd)  # a descriptor on the backing disk: closing it does not block
        try:
            if grant is not None and link is not None:
                await _settle(link, grant, path)
        finally:
            await _close(view_fd)


def _drop_grant(link: TransferLink, got: tuple[int, int] | None) -> None:
    """What a late ``open_write`` returned: the descriptor closed, the grant settled by
    mountd when the link closes."""
    if got is not None:
        os.close(got[0])
    link.close()


async def _settle(link: TransferLink, grant: int, path: str) -> None:
    """Settle ``grant`` (mountd accounts the real size), even when cancelled meanwhile; a
    link that broke is settled by mountd when it closes."""
    job = asyncio.ensure_future(_in_thread(functools.partial(link.settle, grant)))
    await _wait_out(job)
    exc = job.exception()
    if exc is not None:
        link.close()
        log.warning("settling the upload of %s: %s", wirenames.escaped(path), exc)


def _fsync(fd: int, path: str) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        raise os_error(exc, path) from None


async def _append(fd: int, body: AsyncIterable[bytes], path: str, stored: int, size: int) -> int:
    """Write ``body`` at ``stored``, one write in flight while the next is received: a write
    starts once ``MIN_WRITE`` bytes wait and none is in flight, and waits for the one in
    flight at ``CHUNK`` (so writes grow while the disk is slower than the network). The new
    offset. A body that breaks loses what it had not written yet (less than ``CHUNK``)."""
    pieces: list[bytes] = []
    held = 0
    pos = stored  # where the next write goes
    pending: asyncio.Future[int] | None = None
    try:
        async for piece in body:
            if not piece:
                continue
            if pos + held + len(piece) > size:
                raise VfdError(
                    ErrorCode.INVALID_ARGUMENT, f"the body is longer than size={size}", field="size"
                )
            pieces.append(piece)
            held += len(piece)
            if pending is not None and pending.done():
                stored += pending.result()
                pending = None
            if held >= CHUNK or len(pieces) >= _IOV_MAX or (held >= MIN_WRITE and not pending):
                if pending is not None:
                    stored += await asyncio.shield(pending)
                    pending = None
                pending = asyncio.ensure_future(
                    _in_thread(functools.partial(_write_all, fd, pieces, pos, path))
                )
                pos += held
                pieces, held = [], 0
        if pending is not None:
            stored += await asyncio.shield(pending)
            pending = None
        if pieces:
            stored += await _in_thread(functools.partial(_write_all, fd, pieces, pos, path))
    finally:
        if pending is not None:
            pending.add_done_callback(_retrieve)
            await _wait_out(pending)  # no write may outlive this: the fd is closed next
    return stored


def _pump(fd: int, body: RawBody, pos: int, path: str) -> int:
    """Move ``body`` into ``fd`` at ``pos`` (``splice``) in this (worker) thread; the bytes
    written. A body that breaks leaves all it brought in the file (for a resume)."""
    try:
        return body.splice_to(fd, pos)
    except OSError as exc:
        raise os_error(exc, path) from None


def _write_all(fd: int, pieces: list[bytes] | list[memoryview], pos: int, path: str) -> int:
    """Write ``pieces`` at ``pos``, one ``pwritev`` (more only after a short write)."""
    total = sum(len(p) for p in pieces)
    try:
        done = os.pwritev(fd, pieces, pos)
        if done < total:
            rest = memoryview(b"".join(pieces))[done:]
            while rest:
                n = os.pwrite(fd, rest, pos + done)
                done += n
                rest = rest[n:]
    except OSError as exc:
        raise os_error(exc, path) from None
    return total


# -- archive uploads -----------------------------------------------------------------------


class _BodyFile(io.RawIOBase):
    """A request body as a blocking file, for a worker thread: each read takes the next
    piece from the event loop. :meth:`abort` makes the next read fail."""

    def __init__(self, body: AsyncIterable[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._it = body.__aiter__()
        self._loop = loop
        self._piece = memoryview(b"")
        self._eof = False
        self._aborted = False

    def readable(self) -> bool:
        return True

    def abort(self) -> None:
        self._aborted = True

    async def _next(self) -> bytes | None:
        try:
            return await self._it.__anext__()
        except StopAsyncIteration:
            return None

    def readinto(self, b: Any) -> int:
        while not self._piece and not self._eof:
            if self._aborted:
                raise OSError(errno.ECANCELED, "the upload was cancelled")
            piece = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
            if piece is None:
                self._eof = True
            else:
                self._piece = memoryview(piece)
        n = min(len(b), len(self._piece))
        b[:n] = self._piece[:n]
        self._piece = self._piece[n:]
        return n


class _RawFile(io.RawIOBase):
    """A :class:`RawBody` as a blocking file (for the unpacking thread)."""

    def __init__(self, body: RawBody) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self._body.readinto(memoryview(b).cast("B"))


async def receive_archive(
    fs: FolderFS,
    body: AsyncIterable[bytes] | RawBody,
    *,
    path: str,
    key: str,
    overwrite: bool = False,
    sync: Callable[[], object] | None = None,
    link: TransferLink | None = None,
) -> dict[str, Any]:
    """Unpack the tar ``body`` into the directory ``path``: one request for a whole tree.

    With ``link`` (closed here) and a mountd that offers it, the tree is made in the backing
    tree below the directory opened through the view, as the user, under a tree grant
    asked for in chunks (``Budget``), settled by mountd counting what was made; then its
    top-level entries are renamed into place through the view. Otherwise it is unpacked
    through the view (:func:`~vfd.daemon.userfs.unpack_tar`). ``sync`` (mountd's ``syncfs``
    of the folder) runs once at the end, for a durable answer."""
    raw: _BodyFile | RawBody
    stream: BinaryIO
    unpack: Callable[[Callable[[], Unpacked]], Awaitable[Unpacked]]
    if isinstance(body, RawBody):
        raw = body
        stream = io.BufferedReader(_RawFile(body), CHUNK)
        unpack = functools.partial(_in_transfer_thread, abort=body.abort)
    else:
        raw = _BodyFile(body, asyncio.get_running_loop())
        stream = io.BufferedReader(raw, CHUNK)
        unpack = _in_thread
    try:
        made = None
        if link is not None:
            made = await _unpack_direct(fs, stream, path, key, overwrite, link, unpack, sync)
        if made is None:
            made = await unpack(
                functools.partial(unpack_tar, fs, path, key, stream, overwrite=overwrite)
            )
    except BaseException:
        raw.abort()
        raise
    finally:
        if link is not None:
            link.close()
    if sync is not None:
        await runtime.current().run(Pool.MOUNTD, sync)
    return {
        "path": path,
        **wirenames.list_fields("entries", made.entries),
        "files": made.files,
        "dirs": made.dirs,
        "links": made.links,
        "bytes": made.bytes,
        "skipped": made.skipped or [],
        "durable": sync is not None,
    }


async def _unpack_direct(
    fs: FolderFS,
    stream: BinaryIO,
    path: str,
    key: str,
    overwrite: bool,
    link: TransferLink,
    unpack: Callable[[Callable[[], Unpacked]], Awaitable[Unpacked]],
    sync: Callable[[], object] | None = None,
) -> Unpacked | None:
    """The backing-tree path of :func:`receive_archive` (``unpack`` runs the unpacking in a
    worker thread); None when mountd offers none. With ``sync``, a first ``syncfs`` writes
    the unpacked data to disk while mountd counts it (settling the grant): the one the
    caller makes once the tree is placed then has little more than the renames to write."""
    staging = part_name(key)
    dfd = await _opened(functools.partial(fs.open_dir, path), os.close)
    room = (Budget.CHUNK_BYTES, Budget.CHUNK_FILES)
    try:
        try:
            got = await _opened(
                functools.partial(link.open_tree, dfd, staging, *room),
                functools.partial(_drop_grant, link),
            )
        except VfdError as exc:
            if exc.code is not ErrorCode.QUOTA_EXCEEDED:
                raise
            # less room left than one chunk: the staging directory only, then what each
            # member needs (Budget asks for exactly that when a chunk is refused)
            room = (0, 1)
            got = await _opened(
                functools.partial(link.open_tree, dfd, staging, *room),
                functools.partial(_drop_grant, link),
            )
    finally:
        await _close(dfd)
    if got is None:
        return None
    backing, grant = got
    early: asyncio.Future[object] | None = None
    try:
        budget = Budget(functools.partial(link.reserve, grant), *room)
        made = await unpack(
            functools.partial(unpack_tar_backing, fs, path, key, stream, backing, budget)
        )
        if sync is not None:
            early = asyncio.ensure_future(runtime.current().run(Pool.MOUNTD, sync))
    finally:
        os.close(backing)
        try:
            await _settle(link, grant, path)
        finally:
            if early is not None:
                await _wait_out(early)
                if not early.cancelled():
                    early.exception()  # retrieved: raised below unless the settle failed
    if early is not None:
        early.result()  # a failed sync refuses the upload, as the caller's would
    await _bounded(functools.partial(place_unpacked, fs, path, key, made, overwrite=overwrite))
    return made


# -- downloads -----------------------------------------------------------------------------


class Source(Protocol):
    """What a download answers: a status, its headers, a name for the client, and bytes.

    Whoever sends it must call :meth:`aclose` however the exchange ends.
    """

    status: int
    headers: dict[str, str]
    filename: str
    media_type: str

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


def file_etag(st: os.stat_result) -> str:
    """A strong entity tag of one version of a file (opaque to clients).

    Made of the device, inode, size, mtime and ctime in nanoseconds: a file replaced by a
    rename has another inode; one written in place has a new mtime, and a new ctime even when
    the writer puts the old mtime back. Inode numbers in the views derive from the backing
    inode, so the tag of an unchanged file survives mountd forgetting it.
    """
    ident = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    return '"' + hashlib.blake2b(ident.encode(), digest_size=16).hexdigest() + '"'


_ETAG = re.compile(r'(W/)?("[^"]*")')


def _etag_matches(header: str, etag: str, *, weak: bool) -> bool:
    """Whether an ``If-Match``/``If-None-Match`` list names ``etag`` (``*`` matches)."""
    if header.strip() == "*":
        return True
    return any(tag == etag and (weak or not w) for w, tag in _ETAG.findall(header))


_RANGE_SPEC = re.compile(r"^(\d*)-(\d*)$")
_BIG = 10**19
"""Stands for a position with more digits than any file size has (past 2^63)."""


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= 19 else _BIG


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive for a ``Range`` header, as RFC 9110 §14 asks: None (send the
    whole file, 200) for a unit other than ``bytes``, a malformed header, or several ranges
    that do not merge into one (overlapping or adjacent ranges are served as their union);
    ``416 range_not_satisfiable`` (``details.size``) when no range overlaps the file."""
    unit, eq, specs = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    ranges: list[tuple[int, int]] = []
    parsed = 0
    for spec in specs.split(","):
        spec = spec.strip()
        if not spec:
            continue  # RFC 9110 §5.6.1: empty list elements are ignored
        m = _RANGE_SPEC.match(spec)
        if not m or (not m.group(1) and not m.group(2)):
            return None
        parsed += 1
        if not m.group(1):  # suffix: the last N bytes
            n = _position(m.group(2))
            if n > 0 and size > 0:
                ranges.append((max(size - n, 0), size - 1))
            continue
        start = _position(m.group(1))
        end = _position(m.group(2)) if m.group(2) else _BIG
        if end < start:
            return None  # an invalid range-spec makes the whole header invalid
        if start < size:
            ranges.append((start, min(end, size - 1)))
    if not parsed:
        return None
    if not ranges:
        raise VfdError(
            ErrorCode.RANGE_NOT_SATISFIABLE,
            f"range {header!r} does not fit a file of {size} bytes",
            size=size,
        )
    ranges.sort()
    start, end = ranges[0]
    for s, e in ranges[1:]:
        if s > end + 1:
            return None  # disjoint ranges: served whole rather than as multipart
        end = max(end, e)
    return start, end


class FileSource:
    """Bytes ``start``..``end`` of an open file (nothing when ``status`` is 304)."""

    media_type = "application/octet-stream"

    def __init__(
        self,
        fd: int | None,
        status: int,
        start: int,
        end: int,
        headers: dict[str, str],
        name: str,
        *,
        direct: bool = False,
    ) -> None:
        self._reader = _Reader(fd) if fd is not None else None
        self.status, self.headers, self.filename = status, headers, name
        self._start, self._end = start, end
        self._direct = fd if direct else None

    def span(self) -> tuple[int, int, int] | None:
        """``(fd, offset, count)`` of the bytes to send, for ``sendfile`` instead of
        :meth:`chunks`, when they come from the backing file (the direct path); the fd
        stays this source's (closed by :meth:`aclose`)."""
        if self._direct is None or self._end < self._start:
            return None
        return self._direct, self._start, self._end - self._start + 1

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._reader is None:
            return
        pos = self._start
        pending = self._read_at(pos)
        while pending is not None:
            data = await asyncio.shield(pending)
            if not data:
                break
            pos += len(data)
            pending = self._read_at(pos)  # the next chunk is read while this one is sent
            yield data

    def _read_at(self, pos: int) -> asyncio.Future[bytes] | None:
        if self._reader is None or pos > self._end:
            return None
        return self._reader.start(
            functools.partial(_pread, n=min(CHUNK, self._end - pos + 1), pos=pos)
        )

    async def aclose(self) -> None:
        if self._reader is not None:
            await self._reader.aclose()


def _pread(fd: int, *, n: int, pos: int) -> bytes:
    return os.pread(fd, n, pos)


def _read_chunk(fd: int) -> bytes:
    return os.read(fd, CHUNK)


async def open_download(
    fs: FolderFS,
    path: str,
    *,
    range_header: str | None = None,
    if_range: str | None = None,
    if_match: str | None = None,
    if_none_match: str | None = None,
    link: TransferLink | None = None,
) -> FileSource:
    """The file at ``path`` as the request's conditions ask (RFC 9110 §13.2.2 order):
    ``If-Match`` not naming this version is 412 precondition_failed; ``If-None-Match`` naming
    it is a 304; a ``Range`` is honoured (206) unless ``If-Range`` names another version (or
    is a date), in which case the whole file is sent (200). The bytes are read from the
    backing file when ``link`` (closed here) gives the direct path; the validators always
    come from the file as opened through the view."""
    try:
        return await _open_download(fs, path, range_header, if_range, if_match, if_none_match, link)
    finally:
        if link is not None:
            link.close()


async def _open_download(
    fs: FolderFS,
    path: str,
    range_header: str | None,
    if_range: str | None,
    if_match: str | None,
    if_none_match: str | None,
    link: TransferLink | None,
) -> FileSource:
    fd, st = await _opened(
        functools.partial(fs.open_file, path), lambda opened: os.close(opened[0])
    )
    try:  # no await inside: the fd is closed exactly once below
        etag = file_etag(st)
        size = st.st_size
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Last-Modified": formatdate(st.st_mtime, usegmt=True),
        }
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if if_match is not None and not _etag_matches(if_match, etag, weak=False):
            raise VfdError(
                ErrorCode.PRECONDITION_FAILED,
                f"{path} is not the version asked for (it changed)",
                path=path,
                etag=etag,
            )
        start, end, status = 0, size - 1, 200
        if if_none_match is not None and _etag_matches(if_none_match, etag, weak=True):
            status = 304
        elif range_header and (if_range is None or if_range.strip() == etag):
            wanted = parse_range(range_header, size)
            if wanted is not None:
                start, end = wanted
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if status != 304:
            headers["Content-Length"] = str(end - start + 1)
    except BaseException:
        await _close(fd)
        raise
    if status == 304 or link is None or end - start + 1 < DIRECT_MIN:
        if status == 304:
            await _close(fd)
            return FileSource(None, 304, 0, -1, headers, name)
        return FileSource(fd, status, start, end, headers, name)
    try:
        backing = await _opened(functools.partial(link.open_read, fd), _close_late_read)
    except BaseException:
        await _close(fd)
        raise
    if backing is None:
        return FileSource(fd, status, start, end, headers, name)
    try:
        await _close(fd)
    except BaseException:
        os.close(backing)
        raise
    return FileSource(backing, status, start, end, headers, name, direct=True)


def _close_late_read(backing: int | None) -> None:
    if backing is not None:
        os.close(backing)


class TarSource:
    """A tar stream of a path, written into a pipe by a thread of the transfer pool and read
    from it.

    Closing it early (the client went away) closes the pipe's read end: the writer fails on
    its next write, closes what it holds and ends.
    """

    status = 200
    media_type = "application/x-tar"

    def __init__(self, fs: FolderFS, path: str, backing: int | None = None) -> None:
        """``backing``: the directory ``path`` in the backing tree (``tarwrite.write_tar``), owned
        (closed) by this source from here on."""
        self.headers: dict[str, str] = {}
        self.filename = (path.rstrip("/").rsplit("/", 1)[-1] or "folder") + ".tar"
        self._failure: list[BaseException] = []
        try:
            rfd, wfd = os.pipe2(os.O_CLOEXEC)
        except BaseException:
            if backing is not None:
                os.close(backing)
            raise
        with contextlib.suppress(OSError):  # the writer runs ahead of the sender (1 MiB)
            fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, 1 << 20)
        self._reader = _Reader(rfd)
        self._started = False
        # a thread of the transfer pool (the request holds its user's slot already)
        self._job = asyncio.ensure_future(
            runtime.current().run(Pool.TRANSFER, self._produce, fs, path, wfd, backing)
        )
        self._job.add_done_callback(functools.partial(self._never_ran, wfd, backing))

    def _never_ran(self, wfd: int, backing: int | None, job: asyncio.Future[None]) -> None:
        """A job that ended before the thread ran it (the daemon stopping): what the thread
        would have closed is closed here."""
        if not job.cancelled():
            job.exception()  # seen: a failure is reported by truncating the stream
        if not self._started:
            os.close(wfd)
            if backing is not None:
                os.close(backing)

    def _produce(self, fs: FolderFS, path: str, wfd: int, backing: int | None) -> None:
        self._started = True
        skipped: list[str] = []
        try:
            try:
                tarwrite.write_tar(fs, path, wfd, skipped, backing=backing)
            finally:
                os.close(wfd)
        except BaseException as exc:  # reported by truncating the stream
            self._failure.append(exc)
        finally:
            if backing is not None:
                os.close(backing)
        if skipped:  # FIFOs, sockets, devices: left out, as unreadable entries are
            more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
            log.info(
                "archive of %s in %s: left out %d FIFOs, sockets or devices: %s%s",
                path or "/",
                fs.root,
                len(skipped),
                ", ".join(skipped[:10]),
                more,
            )

    async def chunks(self) -> AsyncIterator[bytes]:
        while data := await self._reader.read(_read_chunk):
            yield data
        await asyncio.shield(self._job)
        if self._failure:
            raise self._failure[0]

    async def aclose(self) -> None:
        await self._reader.aclose()


async def open_archive(fs: FolderFS, path: str, link: TransferLink | None = None) -> TarSource:
    """A tar stream of ``path``; a path that cannot be read fails here, before any answer,
    and so does a FIFO, socket or device (``not_a_regular_file``: nothing to archive).

    A directory is opened through the view as the user (who must be able to list it), then
    walked in the backing tree below the directory mountd hands over for it, when ``link``
    (closed here) gives the direct path."""
    try:
        entry = await _bounded(functools.partial(fs.stat, path))
        if entry["type"] == "other":
            raise VfdError(
                ErrorCode.NOT_A_REGULAR_FILE,
                f"{path} is a FIFO, socket or device: nothing to archive",
                path=path,
            )
        runtime.current().take_slot(Pool.TRANSFER)  # before any answer: a 429 is whole
        backing = None
        if entry["type"] == "dir" and link is not None:
            dfd = await _opened(functools.partial(fs.open_dir, path), os.close)
            try:
                backing = await _opened(functools.partial(link.open_dir, dfd), _close_late_read)
            finally:
                await _close(dfd)
        return TarSource(fs, path, backing)
    finally:
        if link is not None:
            link.close()
