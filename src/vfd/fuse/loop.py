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

It needs pyfuse3's internals (``vfd.fuse.libfuse``); without them mountd runs
``pyfuse3.main`` instead.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import struct
from time import perf_counter
from typing import Any

import trio

from vfd.fuse.libfuse import FUSE_BUF_IS_FD, FuseBuf, Internals
from vfd.fuse.ops_files import INLINE_READ, INLINE_WRITE

log = logging.getLogger("vfd.fuse")

YIELD_EVERY = 32
DEFAULT_POLL = 0.00005
"""Seconds to keep polling the device for the next request (``fuse.poll``)."""
FUSE_READ = 15
FUSE_WRITE = 16
FUSE_FSYNC = 20
FUSE_FSYNCDIR = 30
_HEADER = struct.Struct("<II")  # len, opcode
_IO_SIZE = struct.Struct("<I")  # fuse_read_in.size / fuse_write_in.size, after the header
_IO_SIZE_AT = 40 + 16
_VIEW_BYTES = 64


def needs_task(buf: FuseBuf, view: memoryview) -> bool:
    """Whether the request's handler may wait (a worker thread) and so needs its own task.

    ``view`` covers the receive buffer (``buf.mem``), which libfuse allocates once.
    """
    if buf.flags & FUSE_BUF_IS_FD or not buf.mem or buf.size < _HEADER.size:
        return True
    _, opcode = _HEADER.unpack_from(view, 0)
    if opcode in (FUSE_FSYNC, FUSE_FSYNCDIR):
        return True
    if opcode in (FUSE_READ, FUSE_WRITE) and buf.size >= _IO_SIZE_AT + 4:
        (size,) = _IO_SIZE.unpack_from(view, _IO_SIZE_AT)
        return bool(size > (INLINE_READ if opcode == FUSE_READ else INLINE_WRITE))
    return False


class _Tasks:
    """Request tasks started and not yet finished (one loop per process)."""

    running = 0


async def _run_task(coro: Any) -> None:
    try:
        await coro
    except Exception:
        log.exception("request task failed")
    finally:
        _Tasks.running -= 1


def _drive(coro: Any) -> None:
    """Run a handler that must not suspend to its end."""
    try:
        coro.send(None)
    except StopIteration:
        return
    except Exception:
        # a bug between pyfuse3 and a handler (they raise nothing but FUSEError): the
        # request stays unanswered, but the mount lives on
        log.exception("request handler %s failed", coro)
        return
    log.error("handler %s suspended where it must not; request dropped", coro)
    coro.close()


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
                process(session, pbuf)
                coro = take()
                if coro is not None:
                    if spawn:
                        _Tasks.running += 1  # counted from now: it has not started yet
                        nursery.start_soon(_run_task, coro)
                    else:
                        _drive(coro)
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
