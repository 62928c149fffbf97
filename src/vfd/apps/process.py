"""App server processes, as the daemon runs them: a port, the start, the end.

:func:`bind` takes the listening socket in the daemon (the user's port when it is free, else
one of ``[apps] ports``), so two launches can never be given one port; :func:`start` runs
``python -m MODULE`` as root with the socket and a :class:`~vfd.apps.confine.ConfineSpec` on
its stdin, and waits until the server says it serves (it confines itself first, see
:mod:`vfd.apps.confine`); :meth:`AppProcess.wait` follows it to its end and says why it
ended; :meth:`AppProcess.stop` ends it (SIGTERM, then SIGKILL) and reaps it. Every process
started is reaped on every path; the daemon stops them all when it stops (:func:`stop_all`),
and they die with it if it is killed (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import random
import signal
import socket
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

from vfd.apps.confine import ConfineSpec
from vfd.errors import ErrorCode, VfdError

log = logging.getLogger(__name__)

LINE_MAX = 64 * 1024
"""The longest report line an app server may write."""


def _listen_on(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def bind(host: str, ports: tuple[int, int], preferred: int | None = None) -> socket.socket:
    """A listening TCP socket on ``host``: at ``preferred`` when it is free, else at a free
    port of the range ``ports`` (tried from a random one on). ``no_free_port`` when none is.
    """
    if preferred is not None:
        with contextlib.suppress(OSError):
            return _listen_on(host, preferred)
    low, high = ports
    count = high - low + 1
    first = random.randrange(count)
    for i in range(count):
        port = low + (first + i) % count
        try:
            return _listen_on(host, port)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise VfdError(
                    ErrorCode.APP_FAILED, f"cannot listen on {host}:{port}: {exc.strerror}"
                ) from None
    raise VfdError(
        ErrorCode.NO_FREE_PORT,
        f"every port of [apps] ports ({low}-{high}) is taken on {host}",
        ports=f"{low}-{high}",
    )


@dataclass
class AppProcess:
    """A started app server."""

    app_id: uuid.UUID
    proc: asyncio.subprocess.Process
    ready: dict[str, Any]
    """What the server said when it began to serve."""
    stopped_reason: str | None = None
    """What the server said before an orderly exit (``{"stopped": ...}``)."""
    asked_to_stop: str | None = None
    """Why the daemon stopped it, when it did."""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when :meth:`wait` has followed it to its end."""
    followed: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait(self) -> str:
        """Follow the server until it exits (reaped); why it ended, for people."""
        out = self.proc.stdout
        assert out is not None
        self.followed = True
        try:
            while True:
                try:
                    line = await out.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    continue  # an overlong line: ignored
                if not line:
                    break
                said = _parse(line)
                if said is not None and isinstance(said.get("stopped"), str):
                    self.stopped_reason = said["stopped"][:500]
            code = await self.proc.wait()
        finally:
            self.done.set()
        if self.asked_to_stop is not None:
            return self.asked_to_stop
        if self.stopped_reason is not None:
            return self.stopped_reason
        if code < 0:
            return f"its server was killed by signal {-code}"
        return f"its server exited with code {code}"

    async def stop(self, reason: str, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns once it is reaped."""
        if self.asked_to_stop is None:
            self.asked_to_stop = reason
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self.followed:
            await self.done.wait()


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


_running: dict[uuid.UUID, AppProcess] = {}


def running(app_id: uuid.UUID) -> AppProcess | None:
    """The process of app ``app_id`` while this daemon runs it."""
    return _running.get(app_id)


async def start(
    app_id: uuid.UUID,
    module: str,
    spec: ConfineSpec,
    sock: socket.socket,
    within: float,
) -> AppProcess:
    """Run ``python -m module`` with ``sock`` and ``spec`` and wait until it serves (at most
    ``within`` seconds). The socket is the server's from then on (closed here). Raises
    ``app_failed`` with what the server said when it does not serve; it is reaped then."""
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            pass_fds=(sock.fileno(),),
            start_new_session=True,
            limit=LINE_MAX,
        )
    finally:
        sock.close()
    app = AppProcess(app_id, proc, {})
    _running[app_id] = app
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(spec.to_json().encode())
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        proc.stdin.close()
        said = await asyncio.wait_for(_first_report(proc.stdout), within)
        if said is None or not isinstance(said.get("ready"), dict):
            error = said.get("error") if said is not None else None
            raise VfdError(
                ErrorCode.APP_FAILED,
                f"app server {module} did not start: "
                + (str(error)[:500] if error else "it exited without saying why"),
                module=module,
            )
        app.ready = said["ready"]
        return app
    except BaseException as exc:
        _running.pop(app_id, None)
        await _kill_and_reap(proc)
        if app.asked_to_stop is not None and isinstance(exc, VfdError | TimeoutError):
            raise VfdError(  # stopped while it started (its session ended): no failure of it
                ErrorCode.SESSION_NOT_RUNNING,
                f"app server {module} was stopped while it started: {app.asked_to_stop}",
                module=module,
                reason=app.asked_to_stop,
            ) from None
        if isinstance(exc, TimeoutError):
            raise VfdError(
                ErrorCode.APP_FAILED,
                f"app server {module} did not say it serves within {within:g} s",
                module=module,
            ) from None
        raise


async def _first_report(out: asyncio.StreamReader) -> dict[str, Any] | None:
    while True:
        line = await out.readline()
        if not line:
            return None
        said = _parse(line)
        if said is not None:
            return said


async def _kill_and_reap(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    # shielded: a cancelled launch still reaps what it started
    await asyncio.shield(proc.wait())


def forget(app_id: uuid.UUID) -> None:
    _running.pop(app_id, None)


async def stop_all(reason: str, grace: float) -> None:
    """Stop every app server this daemon runs (the daemon is stopping)."""
    apps = list(_running.values())
    if apps:
        log.info("stopping %d app server(s): %s", len(apps), reason)
    await asyncio.gather(*(app.stop(reason, grace) for app in apps), return_exceptions=True)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
