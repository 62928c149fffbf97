"""Blocking file work under the server's event loop, cancel-safe.

A request may be cancelled (its client went away) while a worker thread still uses a
descriptor of it. :func:`settle` waits for that thread before the cancellation goes on, so a
descriptor is closed only once no thread uses it — never while a read could land on a number
the kernel has given to something else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from vfd.daemon.tarwrite import write_tree
from vfd.daemon.userfs import os_error

T = TypeVar("T")
CHUNK = 1 << 20


async def settle(
    fn: Callable[..., T], *args: object, cleanup: Callable[[T], object] | None = None
) -> T:
    """``fn(*args)`` in a worker thread. When cancelled, the thread is waited for first, and
    what it returned (a descriptor it opened) is given to ``cleanup``."""
    fut = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        with anyio.CancelScope(shield=True), contextlib.suppress(BaseException):
            result = await fut
            if cleanup is not None:
                cleanup(result)
        raise


def write_all(fd: int, data: bytes | bytearray, path: str) -> None:
    """Write all of ``data``; a failure (the quota, above all) as the VfdError of ``path``."""
    try:
        with memoryview(data) as view:
            while view:
                view = view[os.write(fd, view) :]
    except OSError as exc:
        raise os_error(exc, path) from None


class Held:
    """Descriptors a response owns until it is done with them (closed once, on every path:
    also when the response never started its body, its client gone before)."""

    def __init__(self, *fds: int) -> None:
        self.fds = list(fds)

    def close(self) -> None:
        while self.fds:
            os.close(self.fds.pop())


class OwnedStream(StreamingResponse):
    """A streamed answer whose body's descriptors are released when it ends, however."""

    def __init__(self, chunks: AsyncGenerator[bytes, None], held: Held, **kwargs: Any) -> None:
        super().__init__(chunks, **kwargs)
        self.chunks = chunks
        self.held = held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.chunks.aclose()
            self.held.close()


async def file_chunks(held: Held, size: int) -> AsyncGenerator[bytes, None]:
    """The first ``size`` bytes of the open file ``held.fds[0]`` (the length its answer
    announced: a file growing meanwhile is cut there, one shrinking ends the answer short)."""
    fd = held.fds[0]
    left = size
    try:
        while left > 0:
            data = await settle(os.read, fd, min(CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data
    finally:
        held.close()


async def tar_chunks(held: Held, arcname: str) -> AsyncGenerator[bytes, None]:
    """The tar stream of the open directory ``held.fds[0]``, written by a thread into a
    pipe; a reader gone away ends the writer with ``EPIPE``."""
    dfd = held.fds[0]
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    skipped: list[str] = []

    def produce() -> None:
        try:
            write_tree(dfd, arcname, wfd, skipped)
        except OSError:
            pass  # the reader went away (EPIPE), or the tree broke: the stream just ends short
        finally:
            os.close(wfd)

    writer = threading.Thread(target=produce, name="files-tar", daemon=True)
    try:
        writer.start()
    except BaseException:
        os.close(wfd)
        os.close(rfd)
        raise
    try:
        while True:
            data = await settle(os.read, rfd, CHUNK)
            if not data:
                return
            yield data
    finally:
        os.close(rfd)
        with anyio.CancelScope(shield=True):
            await asyncio.to_thread(writer.join)
        held.close()
