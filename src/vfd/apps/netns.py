"""Connections made inside another network namespace (a session container's).

The daemon reaches a service of a session's container from inside the container's own network
namespace, at its loopback address: nothing is published on the host, a service bound to the
container's ``127.0.0.1`` is reached as well as one bound to every address, and the port it
listens on needs no route from the host.

A socket belongs to the namespace it was made in, whichever thread later uses it. So a
throwaway thread enters the namespace (``setns``), makes the socket, and goes back; the
socket is then connected from the event loop. A thread of a pool is never used: one left in
the container's namespace (a failed return) would make every later socket of its pool there.
It needs ``CAP_SYS_ADMIN`` (the daemon runs as root).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import socket
import threading

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def open_namespace(path: str) -> int:
    """A descriptor of the network namespace at ``path`` (``/proc/PID/ns/net``, or a file
    docker keeps for it); OSError when there is none."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _socket_in(namespace: int, family: int) -> socket.socket:
    """A TCP socket of ``namespace``; called in a thread of its own."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(namespace)
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            try:
                _setns(home)
            except OSError:  # this thread ends now: nothing else runs in it
                log.exception("cannot return a thread to the daemon's network namespace")
    finally:
        os.close(home)


async def socket_in(namespace: int, family: int = socket.AF_INET) -> socket.socket:
    """A new, non-blocking TCP socket of network namespace ``namespace`` (a descriptor)."""
    loop = asyncio.get_running_loop()
    made: asyncio.Future[socket.socket] = loop.create_future()

    def deliver(sock: socket.socket | None, exc: BaseException | None) -> None:
        if made.done():  # its caller went away
            if sock is not None:
                sock.close()
        elif exc is not None:
            made.set_exception(exc)
        else:
            assert sock is not None
            made.set_result(sock)

    def work() -> None:
        try:
            sock = _socket_in(namespace, family)
        except BaseException as exc:  # handed to the caller
            loop.call_soon_threadsafe(deliver, None, exc)
        else:
            try:
                loop.call_soon_threadsafe(deliver, sock, None)
            except RuntimeError:  # the loop is closed
                sock.close()

    threading.Thread(target=work, name="vfd-netns", daemon=True).start()
    sock = await made
    sock.setblocking(False)
    return sock


async def connect(namespace: int, host: str, port: int) -> socket.socket:
    """A TCP connection to ``host:port`` as seen from inside ``namespace``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = await socket_in(namespace, family)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock
