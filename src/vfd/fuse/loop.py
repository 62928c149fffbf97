"""The request loop: read a request from ``/dev/fuse``, run its handler, repeat.

pyfuse3's own loop (``pyfuse3.main``) spends most of each request in trio: every request
takes a ``trio.Lock``, waits for readability, may start or end a worker task — several
scheduler rounds, which on a busy host cost several times more than the handler itself. This
loop reads with a non-blocking descriptor and runs each handler to completion on the spot:
mountd's handlers for metadata and small I/O never suspend (they are plain syscalls), so
their coroutine finishes on its first ``send``. Only requests that do wait — reads and writes
above the inline sizes and fsync, which use worker threads — get a trio task of their own,
decided from the request header before the handler is made. trio is entered only when the
device has nothing to read, and every ``YIELD_EVERY`` requests so that the control socket,
finished threads and timers are served.

When the device runs dry right after a request, the loop keeps polling it (non-blocking reads)
for up to ``fuse.poll`` seconds before it sleeps. A program working through files sends its
next request a few microseconds after our reply; on a virtual machine, being woken for it costs
more than the request itself (stat: 71.7 -> 46.6 us per call on the 2-core dev machine, creates
315 -> 245 us). The price is at most one poll window of CPU after each burst of requests;
50 us catches the next request as well as 200 us did, and spends a quarter of the CPU where
requests come further apart.

Every request gets exactly one answer. pyfuse3's request coroutines answer it themselves,
but raise without answering when something other than ``FUSEError`` escapes them; then the
loop answers EIO itself, writing the kernel's ``fuse_out_header`` (``linux/fuse.h``) with the
request's ``unique`` to the device (:func:`answer_raw`; a request already answered makes the
kernel refuse it with ENOENT, so it can never answer twice). A handler driven inline that
suspends all the same is not dropped: the loop awaits the rest of it (:func:`finish`), as
``pyfuse3.main`` awaits every handler.

It needs pyfuse3's internals (``vfd.fuse.libfuse``, verified versions only); without them
mountd runs ``pyfuse3.main`` instead.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import struct
import types
from collections.abc import Generator
from time import perf_counter
from typing import Any

import trio

from vfd.fuse.libfuse import FUSE_BUF_IS_FD, FuseBuf, Internals
from vfd.fuse.ops_files import INLINE_READ, INLINE_WRITE

log = logging.getLogger("vfd.fuse")

YIELD_EVERY = 32
DEFAULT_POLL = 0.00005
"""Seconds to keep polling the device for the next request (``fuse.poll``)."""
FUSE_FORGET = 2
FUSE_READ = 15
FUSE_WRITE = 16
FUSE_FSYNC = 20
FUSE_FSYNCDIR = 30
FUSE_BATCH_FORGET = 42
_NO_ANSWER = (FUSE_FORGET, FUSE_BATCH_FORGET)
_HEADER = struct.Struct("<IIQ")  # fuse_in_header: len, opcode, unique
_OUT_HEADER = struct.Struct("<IiQ")  # fuse_out_header: len, error (-errno), unique
_IO_SIZE = struct.Struct("<I")  # fuse_read_in.size / fuse_write_in.size, after the header
_IO_SIZE_AT = 40 + 16
_VIEW_BYTES = 64


def needs_task(buf: FuseBuf, view: memoryview) -> bool:
    """Whether the request's handler may wait (a worker thread) and so needs its own task.

    ``view`` covers the receive buffer (``buf.mem``), which libfuse allocates once.
    """
    if buf.flags & FUSE_BUF_IS_FD or not buf.mem or buf.size < _HEADER.size:
        return True
    _, opcode, _ = _HEADER.unpack_from(view, 0)
    if opcode in (FUSE_FSYNC, FUSE_FSYNCDIR):
        return True
    if opcode in (FUSE_READ, FUSE_WRITE) and buf.size >= _IO_SIZE_AT + 4:
        (size,) = _IO_SIZE.unpack_from(view, _IO_SIZE_AT)
        return bool(size > (INLINE_READ if opcode == FUSE_READ else INLINE_WRITE))
    return False


def request_id(buf: FuseBuf, view: memoryview) -> int:
    """The request's ``unique`` (0 when unknown, or when the kernel expects no answer)."""
    if buf.flags & FUSE_BUF_IS_FD or not buf.mem or buf.size < _HEADER.size:
        return 0
    _, opcode, unique = _HEADER.unpack_from(view, 0)
    return 0 if opcode in _NO_ANSWER else int(unique)


def answer_raw(fd: int, unique: int, err: int) -> None:
    """Answer request ``unique`` with ``-err`` straight on the device, bypassing libfuse
    (whose request object stays allocated: this is for handlers that failed)."""
    if not unique:
        return
    try:
        os.write(fd, _OUT_HEADER.pack(_OUT_HEADER.size, -err, unique))
    except OSError as exc:  # ENOENT: answered already (or interrupted and gone)
        log.debug("answering request %d: %s", unique, exc)


def _failed(exc: BaseException, coro: Any, fd: int, unique: int) -> None:
    if isinstance(exc, trio.Cancelled):
        log.info("request %d cancelled (mountd is stopping); answering EINTR", unique)
        answer_raw(fd, unique, errno.EINTR)
    else:
        log.error("request handler %s failed; answering EIO", coro, exc_info=exc)
        answer_raw(fd, unique, errno.EIO)


class _Tasks:
    """Request tasks started and not yet finished (one loop per process)."""

    running = 0


async def _run_task(coro: Any, fd: int, unique: int) -> None:
    try:
        await coro
    except BaseException as exc:
        _failed(exc, coro, fd, unique)
        if not isinstance(exc, Exception):
            raise
    finally:
        _Tasks.running -= 1


DONE: Any = object()
"""What :func:`drive` returns when the handler ran to its end."""


def drive(coro: Any, fd: int, unique: int) -> Any:
    """Run a handler inline, without trio: :data:`DONE` when it finished (answered, or its
    failure answered here), else what it yielded to trio when it suspended — the caller
    must then ``await finish(coro, that, fd, unique)`` before anything else."""
    try:
        return coro.send(None)
    except StopIteration:
        return DONE
    except BaseException as exc:
        _failed(exc, coro, fd, unique)
        if not isinstance(exc, Exception):
            raise
        return DONE


@types.coroutine
def _resume(coro: Any, first: Any) -> Generator[Any, Any, None]:
    """The rest of ``coro`` (which yielded ``first``), run as part of the awaiting task."""
    message = first
    while True:
        try:
            sent = yield message
        except BaseException as exc:
            try:
                message = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                message = coro.send(sent)
            except StopIteration:
                return


async def finish(coro: Any, first: Any, fd: int, unique: int) -> None:
    """Await the rest of a handler that suspended while :func:`drive` ran it.

    It started in the loop's task (trio will wake that task for it), so the loop itself
    waits: slower than a task of its own, but the request is answered.
    """
    log.warning("handler %s suspended while run inline; the request loop waits for it", coro)
    try:
        await _resume(coro, first)
    except BaseException as exc:
        _failed(exc, coro, fd, unique)
        if not isinstance(exc, Exception):
            raise


async def serve_requests(internals: Internals, poll: float = DEFAULT_POLL) -> None:
    """Serve the session until it ends (unmounted) or the caller is cancelled.

    ``poll``: seconds to poll an empty device after a request before sleeping (0: sleep at
    once). No polling while a request task runs: its worker thread needs the CPU.
    """
    lib = internals.lib
    session = internals.session
    fd = lib.fuse_session_fd(session)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    buf = FuseBuf()
    pbuf = ctypes.byref(buf)
    receive, process = lib.fuse_session_receive_buf, internals.process_buf
    take = internals.retval_taker()
    view = memoryview(b"")
    mem = None
    try:
        async with trio.open_nursery() as nursery:
            served = 0
            hot = False  # a request was served since the loop last slept
            while not lib.fuse_session_exited(session):
                res = receive(session, pbuf)
                if res == -errno.EAGAIN and hot and poll > 0 and not _Tasks.running:
                    deadline = perf_counter() + poll
                    while res == -errno.EAGAIN and perf_counter() < deadline:
                        res = receive(session, pbuf)
                if res == -errno.EAGAIN:
                    served = 0
                    hot = False
                    await trio.lowlevel.wait_readable(fd)
                    continue
                if res == -errno.EINTR:
                    continue
                if res <= 0:
                    if res < 0:
                        raise OSError(-res, f"reading /dev/fuse: {os.strerror(-res)}")
                    break  # unmounted
                if buf.mem and buf.mem != mem:  # (re)allocated by libfuse: view it anew
                    mem = buf.mem
                    view = memoryview((ctypes.c_char * _VIEW_BYTES).from_address(mem)).cast("B")
                spawn = needs_task(buf, view)
                unique = request_id(buf, view)
                try:
                    process(session, pbuf)
                except Exception:  # an error a callback left set
                    log.exception("processing request %d failed", unique)
                    if (coro := take()) is None:  # and nothing left to answer it
                        answer_raw(fd, unique, errno.EIO)
                else:
                    coro = take()
                if coro is not None:
                    if spawn:
                        _Tasks.running += 1  # counted from now: it has not started yet
                        nursery.start_soon(_run_task, coro, fd, unique)
                    else:
                        suspended = drive(coro, fd, unique)
                        if suspended is not DONE:
                            await finish(coro, suspended, fd, unique)
                served += 1
                hot = True
                if served >= YIELD_EVERY:
                    served = 0
                    await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
    finally:
        if buf.mem:
            ctypes.CDLL(None).free(ctypes.c_void_p(buf.mem))
            buf.mem = None
