"""The request loop's pieces, without a mount: which requests get a task of their own, and
that a request driven inline is answered exactly once whether its handler returns, raises or
suspends (``vfd.fuse.loop``). The device is a pipe: what the loop answers on its own is read
back from it as the kernel would see it."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pyfuse3
import pytest
import trio

from vfd.fuse import loop
from vfd.fuse.libfuse import FUSE_BUF_IS_FD, FuseBuf
from vfd.fuse.ops_files import INLINE_READ, INLINE_WRITE

IN_HEADER = struct.Struct("<IIQQIIII")  # len, opcode, unique, nodeid, uid, gid, pid, padding
OUT_HEADER = struct.Struct("<IiQ")
FUSE_LOOKUP, FUSE_GETATTR = 1, 3


def request(opcode: int, unique: int = 7, io_size: int | None = None) -> tuple[FuseBuf, Any]:
    """A receive buffer holding one request, as libfuse hands it to the loop."""
    mem = ctypes.create_string_buffer(128)
    IN_HEADER.pack_into(mem, 0, 80, opcode, unique, 1, 0, 0, 0, 0)
    size = IN_HEADER.size
    if io_size is not None:  # fuse_read_in / fuse_write_in: fh, offset, size
        struct.pack_into("<QQI", mem, IN_HEADER.size, 1, 0, io_size)
        size += 24
    buf = FuseBuf(size=size, flags=0, mem=ctypes.addressof(mem), fd=-1, pos=0)
    return buf, memoryview(mem).cast("B")  # the view keeps ``mem`` alive


def test_loop_needs_task_only_for_requests_that_wait() -> None:
    """fsync and large reads/writes get a task; metadata and small I/O run inline; a buffer
    the loop cannot read (spliced, or short) gets a task, the safe choice."""
    assert not loop.needs_task(*request(FUSE_LOOKUP))
    assert not loop.needs_task(*request(FUSE_GETATTR))
    assert loop.needs_task(*request(loop.FUSE_FSYNC))
    assert loop.needs_task(*request(loop.FUSE_FSYNCDIR))
    assert not loop.needs_task(*request(loop.FUSE_READ, io_size=INLINE_READ))
    assert loop.needs_task(*request(loop.FUSE_READ, io_size=INLINE_READ + 1))
    assert not loop.needs_task(*request(loop.FUSE_WRITE, io_size=INLINE_WRITE))
    assert loop.needs_task(*request(loop.FUSE_WRITE, io_size=INLINE_WRITE + 1))
    buf, view = request(FUSE_LOOKUP)
    buf.flags = FUSE_BUF_IS_FD
    assert loop.needs_task(buf, view)
    buf, view = request(FUSE_LOOKUP)
    buf.size = 8
    assert loop.needs_task(buf, view)


def test_loop_request_id_is_unique_except_for_forgets() -> None:
    """The id the loop answers with is the header's ``unique``; forgets (which the kernel
    expects no answer to) and unreadable buffers have none."""
    assert loop.request_id(*request(FUSE_LOOKUP, unique=12345)) == 12345
    assert loop.request_id(*request(loop.FUSE_FORGET, unique=5)) == 0
    assert loop.request_id(*request(loop.FUSE_BATCH_FORGET, unique=5)) == 0
    buf, view = request(FUSE_LOOKUP)
    buf.flags = FUSE_BUF_IS_FD
    assert loop.request_id(buf, view) == 0


class Device:
    """A pipe standing in for /dev/fuse, plus the answers pyfuse3's code would send."""

    def __init__(self) -> None:
        self.read_end, self.fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.replies: list[int] = []

    def raw_answers(self) -> list[tuple[int, int, int]]:
        try:
            data = os.read(self.read_end, 4096)
        except BlockingIOError:
            return []
        return [OUT_HEADER.unpack_from(data, i) for i in range(0, len(data), OUT_HEADER.size)]

    def request(self, handler: Callable[[], Awaitable[None]]) -> Any:
        """A request coroutine as pyfuse3 builds one: it answers what the handler returns
        or raises as ``FUSEError``, and lets anything else escape unanswered."""

        async def pyfuse3_request() -> None:
            try:
                await handler()
            except pyfuse3.FUSEError as exc:
                self.replies.append(exc.errno)
            else:
                self.replies.append(0)

        return pyfuse3_request()

    def close(self) -> None:
        os.close(self.read_end)
        os.close(self.fd)


@pytest.fixture
def device() -> Iterator[Device]:
    d = Device()
    yield d
    d.close()


def test_loop_drive_handler_that_returns_is_answered_once(device: Device) -> None:
    async def handler() -> None:
        pass

    assert loop.drive(device.request(handler), device.fd, 9) is loop.DONE
    assert device.replies == [0]
    assert device.raw_answers() == []


def test_loop_drive_handler_raising_fuse_error_is_answered_once(device: Device) -> None:
    async def handler() -> None:
        raise pyfuse3.FUSEError(errno.ENOENT)

    assert loop.drive(device.request(handler), device.fd, 9) is loop.DONE
    assert device.replies == [errno.ENOENT]
    assert device.raw_answers() == []


def test_loop_drive_handler_raising_anything_else_is_answered_eio_once(
    device: Device, caplog: pytest.LogCaptureFixture
) -> None:
    """What escapes pyfuse3's request coroutine unanswered is answered EIO on the device."""

    async def handler() -> None:
        raise RuntimeError("bug")

    assert loop.drive(device.request(handler), device.fd, 9) is loop.DONE
    assert device.replies == []
    assert device.raw_answers() == [(16, -errno.EIO, 9)]
    assert "failed; answering EIO" in caplog.text


def test_loop_drive_forget_that_raises_sends_no_answer(device: Device) -> None:
    async def handler() -> None:
        raise RuntimeError("bug")

    assert loop.drive(device.request(handler), device.fd, 0) is loop.DONE
    assert device.raw_answers() == []


@pytest.mark.trio
async def test_loop_drive_handler_that_suspends_is_finished_and_answered_once(
    device: Device,
) -> None:
    """A handler that waits after all (a checkpoint, a worker thread) is carried on by the
    loop's task, which trio wakes for it, and answers its request itself."""
    steps: list[str] = []

    async def handler() -> None:
        await trio.lowlevel.checkpoint()
        steps.append(await trio.to_thread.run_sync(lambda: "thread"))
        await trio.lowlevel.checkpoint()

    coro = device.request(handler)
    suspended = loop.drive(coro, device.fd, 9)
    assert suspended is not loop.DONE
    assert device.replies == []
    await loop.finish(coro, suspended, device.fd, 9)
    assert steps == ["thread"]
    assert device.replies == [0]
    assert device.raw_answers() == []


@pytest.mark.trio
async def test_loop_drive_handler_that_suspends_then_raises_is_answered_eio_once(
    device: Device,
) -> None:
    async def handler() -> None:
        await trio.to_thread.run_sync(lambda: None)
        raise RuntimeError("bug after waiting")

    coro = device.request(handler)
    suspended = loop.drive(coro, device.fd, 9)
    assert suspended is not loop.DONE
    await loop.finish(coro, suspended, device.fd, 9)
    assert device.replies == []
    assert device.raw_answers() == [(16, -errno.EIO, 9)]


@pytest.mark.trio
async def test_loop_suspended_handler_cancelled_is_answered_eintr(device: Device) -> None:
    """When mountd stops while a handler waits, its request is answered, not abandoned."""

    async def handler() -> None:
        await trio.sleep_forever()

    coro = device.request(handler)
    suspended = loop.drive(coro, device.fd, 9)
    with trio.CancelScope() as scope:
        scope.cancel()
        await loop.finish(coro, suspended, device.fd, 9)
    assert scope.cancelled_caught
    assert device.replies == []
    assert device.raw_answers() == [(16, -errno.EINTR, 9)]


@pytest.mark.trio
async def test_loop_request_task_that_raises_is_answered_eio_once(device: Device) -> None:
    async def handler() -> None:
        await trio.lowlevel.checkpoint()
        raise RuntimeError("bug in a task")

    async def ok() -> None:
        await trio.lowlevel.checkpoint()

    loop._Tasks.running = 2
    await loop._run_task(device.request(handler), device.fd, 11)
    await loop._run_task(device.request(ok), device.fd, 12)
    assert loop._Tasks.running == 0
    assert device.replies == [0]
    assert device.raw_answers() == [(16, -errno.EIO, 11)]


def test_loop_answer_raw_to_an_answered_request_is_harmless() -> None:
    """The kernel refuses an answer to a request it no longer has (ENOENT): answering twice
    cannot happen. Here the "device" refuses every write."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    os.close(read_end)  # writes now fail (EPIPE): the answer is dropped, nothing raises
    try:
        loop.answer_raw(write_end, 3, errno.EIO)
    finally:
        os.close(write_end)
