"""A session's input and output: its logs, commands run in it (exec), an interactive shell.

Logs and exec answer streamed frames (:mod:`vfd.sessions.frames`); the shell is a WebSocket
carrying the TTY's bytes both ways. A client that goes away ends what it started — the read
on docker's stream is abandoned and the stream shut, an exec's process is killed — so no
thread, descriptor or process is left behind.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from vfd.daemon import activity, containers, launcher, output, runtime
from vfd.daemon.errors import error_response
from vfd.daemon.identity import ACT_AS_HEADER, PEER_KEY, VIA_KEY, resolve_caller
from vfd.daemon.routes.deps import Body, CallerDep, DaemonDep, run
from vfd.daemon.runtime import Pool
from vfd.daemon.services import session_state
from vfd.daemon.services.context import Caller, Daemon
from vfd.enums import SessionStatus as S
from vfd.errors import ErrorCode, VfdError
from vfd.sessions import frames
from vfd.sessions.lifecycle import FINAL

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/sessions/{ref}", tags=["sessions"])

FOLLOW_POLL = (0.02, 0.5)
"""Seconds between looks at a followed session that waits for the scheduler: the first,
doubling up to the second (a long wait is followed cheaply)."""
FOLLOW_CLOSE = 0.03
"""Seconds between looks at a followed session about to run (preparing) or to end (its
container exited): moments that last well under a second, followed closely — and at once
when this daemon moves it on (:func:`vfd.daemon.launcher.moved`)."""
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Seen:
    """What the I/O routes need of a session, read in one store call."""

    def __init__(self, row: Any) -> None:
        self.id: uuid.UUID = row.id
        self.status: S = row.status
        self.container_id: str | None = row.container_id
        self.exit_code: int | None = row.exit_code
        self.reason: str | None = row.status_reason
        self.user = f"{row.uid}:{row.gid}"


def _find(daemon: Daemon, caller: Caller, ref: str) -> _Seen:
    with daemon.session() as session:
        return _Seen(session_state.find(session, caller.user, ref))


def _reload(daemon: Daemon, session_id: uuid.UUID) -> _Seen:
    with daemon.session() as session:
        return _Seen(session_state.load(session, session_id))


def _url(daemon: Daemon) -> str:
    return daemon.config.sessions.docker_url


def _end(seen: _Seen) -> bytes:
    return frames.encode_json(
        frames.Kind.END,
        {"status": seen.status.value, "exit_code": seen.exit_code, "reason": seen.reason},
    )


def _error(exc: VfdError) -> bytes:
    body = {"error": {"code": exc.code.value, "message": exc.message, "details": exc.details}}
    return frames.encode_json(frames.Kind.ERROR, body)


def _frames_response(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(body, media_type=frames.MEDIA_TYPE)


async def _pump(stream: containers.Stream) -> AsyncIterator[bytes]:
    """The stream's chunks as frames; the stream is closed however this ends."""
    try:
        while True:
            chunk = await containers.stream_read(stream.read)
            if chunk is None:
                return
            yield frames.encode(frames.Kind(chunk[0]), chunk[1])
    finally:
        stream.close()


# -- logs ---------------------------------------------------------------------------------


@router.get("/logs", response_model=None)
async def logs(
    ref: str,
    daemon: DaemonDep,
    caller: CallerDep,
    follow: Annotated[bool, Query(description="go on until the session is final")] = False,
) -> StreamingResponse:
    """The session's output as frames, then END ``{status, exit_code, reason}``."""
    seen = await run(_find, daemon, caller, ref)
    return _frames_response(_logs(daemon, seen, follow))


async def _logs(daemon: Daemon, seen: _Seen, follow: bool) -> AsyncIterator[bytes]:
    live = runtime.current()
    try:
        delay = FOLLOW_POLL[0]
        while follow and seen.status in (S.PENDING, S.SCHEDULED, S.PREPARING):
            await launcher.moved(seen.id, delay)  # not started: wait for its container to run
            cap = FOLLOW_CLOSE if seen.status is S.PREPARING else FOLLOW_POLL[1]
            delay = min(cap, delay * 2)
            seen = await live.run(Pool.STORE, _reload, daemon, seen.id)
        streamed = False
        saved = seen.status in FINAL and await live.run(
            Pool.FILES, output.has_saved, daemon, seen.id
        )
        if seen.container_id is not None and not saved:
            try:
                stream = await containers.stream_read(
                    lambda: containers.open_logs(
                        _url(daemon), str(seen.container_id), follow=follow
                    )
                )
            except VfdError as exc:
                if exc.code is not ErrorCode.SESSION_NOT_RUNNING:  # gone: read what was saved
                    raise
            else:
                streamed = True
                sent = {frames.Kind.STDOUT: 0, frames.Kind.STDERR: 0}
                async for piece in _pump(stream):
                    sent[frames.Kind(piece[0])] += len(piece) - frames.HEADER.size
                    yield piece
                if follow:  # a followed stream ends with the container: end the session now
                    launcher.wake_watcher(seen.id)
        while follow and seen.status not in FINAL:
            # its container ended: the watcher ends the session (and says so when done)
            await launcher.moved(seen.id, FOLLOW_CLOSE)
            seen = await live.run(Pool.STORE, _reload, daemon, seen.id)
        if streamed and follow:
            # docker's followed log stream can drop a last line without a newline: send what
            # a full read of the ended container has past what was streamed
            async for piece in _rest(daemon, seen, sent):
                yield piece
        if not streamed:
            source = output.read_saved(daemon, seen.id)
            while (part := await live.run(Pool.FILES, _next, source)) is not None:
                yield part
        yield _end(seen)
    except VfdError as exc:
        yield _error(exc)


def _next(source: Iterator[bytes]) -> bytes | None:
    return next(source, None)


async def _rest(daemon: Daemon, seen: _Seen, sent: dict[frames.Kind, int]) -> AsyncIterator[bytes]:
    """The output of the ended session past ``sent`` bytes of each stream: read from the
    saved output when the watcher has saved it (it does before it removes the container),
    else whole from the container."""
    live = runtime.current()
    chunks: list[tuple[frames.Kind, bytes]] = []
    stream: containers.Stream | None = None
    if not await live.run(Pool.FILES, output.has_saved, daemon, seen.id):
        try:
            stream = await containers.stream_read(
                lambda: containers.open_logs(_url(daemon), str(seen.container_id), follow=False)
            )
        except VfdError as exc:
            if exc.code is not ErrorCode.SESSION_NOT_RUNNING:
                raise
            for _ in range(40):  # removed: the watcher saved the output first, or is writing it
                if await live.run(Pool.FILES, output.has_saved, daemon, seen.id):
                    break
                await anyio.sleep(0.05)
    if stream is None:
        decoder = frames.Decoder()
        source = output.read_saved(daemon, seen.id)
        while (part := await live.run(Pool.FILES, _next, source)) is not None:
            chunks.extend(decoder.feed(part))
        if chunks and chunks[0][1].startswith(output.CUT_NOTE):
            return  # the saved output was cut (it starts with a note): offsets do not hold
    else:
        try:
            while (chunk := await containers.stream_read(stream.read)) is not None:
                chunks.append((frames.Kind(chunk[0]), chunk[1]))
        finally:
            stream.close()
    skip = dict(sent)
    for kind, data in chunks:
        if kind not in skip:
            continue
        if skip[kind] >= len(data):
            skip[kind] -= len(data)
            continue
        yield frames.encode(kind, data[skip[kind] :])
        skip[kind] = 0


# -- exec ---------------------------------------------------------------------------------


class ExecBody(Body):
    command: list[str]
    env: dict[str, str] | None = None
    workdir: str | None = None


def _check_exec(body: ExecBody) -> None:
    if not body.command:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, "command is empty", field="command")
    for key in body.env or {}:
        if not _ENV_KEY.match(key):
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT, f"env: {key!r} is not a variable name", field="env"
            )
    if body.workdir is not None and not body.workdir.startswith("/"):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT, "workdir must be an absolute path", field="workdir"
        )


def _running(seen: _Seen) -> str:
    if seen.status is not S.RUNNING or seen.container_id is None:
        raise VfdError(
            ErrorCode.SESSION_NOT_RUNNING,
            f"the session is {seen.status.value}, not running",
            status=seen.status.value,
        )
    return seen.container_id


@router.post("/exec", response_model=None)
async def exec_(
    ref: str, body: ExecBody, daemon: DaemonDep, caller: CallerDep
) -> StreamingResponse:
    """Run a command in the running session, as its uid:gid; frames, then END
    ``{exit_code}``."""
    _check_exec(body)
    seen = await run(_find, daemon, caller, ref)
    container_id = _running(seen)
    started = await containers.stream_read(
        lambda: containers.exec_open(
            _url(daemon),
            container_id,
            body.command,
            user=seen.user,
            env=body.env or {},
            workdir=body.workdir,
            tty=False,
        )
    )
    return _frames_response(_exec_output(daemon, seen.id, started))


async def _exec_output(
    daemon: Daemon, session_id: uuid.UUID, started: containers.Exec
) -> AsyncIterator[bytes]:
    done = False
    try:
        async with activity.connection(daemon, session_id):
            async for piece in _pump(started.stream):
                yield piece
        done = True
        code = await _exit_code(daemon, started.id)
        yield frames.encode_json(frames.Kind.END, {"exit_code": code})
    except VfdError as exc:
        yield _error(exc)
    finally:
        if not done:
            await _kill_exec(daemon, started.id)


async def _exit_code(daemon: Daemon, exec_id: str) -> int | None:
    """The exec's exit code (docker records it a moment after the output ends)."""
    live = runtime.current()
    with anyio.move_on_after(5):
        while True:
            running, code, _ = await live.run(
                Pool.DOCKER, containers.exec_state, _url(daemon), exec_id
            )
            if not running:
                return code
            await anyio.sleep(0.02)
    return None


async def _kill_exec(daemon: Daemon, exec_id: str) -> None:
    """Kill the process of an exec its client left (docker has no call for it: the daemon
    sees the process by its host pid)."""
    with anyio.CancelScope(shield=True), contextlib.suppress(VfdError, OSError):
        running, _, pid = await runtime.current().run(
            Pool.DOCKER, containers.exec_state, _url(daemon), exec_id
        )
        if running and pid > 0:
            os.kill(pid, signal.SIGKILL)


# -- shell --------------------------------------------------------------------------------

SHELLS = ("/bin/bash", "/bin/sh")


async def _ws_caller(websocket: WebSocket, daemon: Daemon) -> Caller:
    state = websocket.scope.get("state") or {}
    return await runtime.current().run(
        Pool.IDENTITY,
        resolve_caller,
        daemon,
        peer=state.get(PEER_KEY),
        via=state.get(VIA_KEY, "tcp"),
        authorization=websocket.headers.get("authorization"),
        act_as=websocket.headers.get(ACT_AS_HEADER),
    )


@router.websocket("/shell")
async def shell(websocket: WebSocket, ref: str) -> None:
    """An interactive shell in the running session (``/bin/bash``, else ``/bin/sh``), as its
    uid:gid: binary messages carry the TTY's bytes; a text ``{"resize": [cols, rows]}``
    resizes it; closed with 1000 and reason ``{"exit_code": N}`` when the shell exits. A
    refusal (no such session, not running) is an HTTP answer in the error shape."""
    daemon: Daemon = websocket.app.state.daemon
    live = runtime.current()
    try:
        caller = await _ws_caller(websocket, daemon)
        seen = await live.run(Pool.STORE, _find, daemon, caller, ref)
        container_id = _running(seen)
        url = _url(daemon)
        path = SHELLS[-1]
        for candidate in SHELLS:
            if await live.run(Pool.DOCKER, containers.path_exists, url, container_id, candidate):
                path = candidate
                break
        started = await containers.stream_read(
            lambda: containers.exec_open(
                url,
                container_id,
                [path],
                user=seen.user,
                env={"TERM": "xterm"},
                workdir="/home/work",
                tty=True,
            )
        )
    except VfdError as exc:
        await _refuse(websocket, exc)
        return
    await websocket.accept()
    async with activity.connection(daemon, seen.id):
        await _bridge(websocket, daemon, started)


async def _refuse(websocket: WebSocket, exc: VfdError) -> None:
    """Answer the upgrade with the error's HTTP status and JSON body (the error shape), or —
    when the server cannot — close with ``4000 + status`` and the code in the reason."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(exc))
    else:
        await websocket.close(code=4000 + exc.code.http, reason=_reason(exc))


def _reason(exc: VfdError) -> str:
    """A close reason (at most 123 bytes): the error's code and message."""
    text = json.dumps({"code": exc.code.value, "message": exc.message})
    return text.encode()[:123].decode(errors="ignore")


async def _bridge(websocket: WebSocket, daemon: Daemon, started: containers.Exec) -> None:
    exited = False
    try:
        async with anyio.create_task_group() as group:

            async def from_shell() -> None:
                nonlocal exited
                while (chunk := await containers.stream_read(started.stream.read)) is not None:
                    await websocket.send_bytes(chunk[1])
                exited = True
                group.cancel_scope.cancel()

            async def to_shell() -> None:
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        group.cancel_scope.cancel()
                        return
                    if message.get("bytes"):
                        data: bytes = message["bytes"]
                        await containers.stream_read(functools.partial(started.stream.write, data))
                    elif message.get("text"):
                        await _resize(daemon, started.id, message["text"])

            group.start_soon(from_shell)
            group.start_soon(to_shell)
    except (WebSocketDisconnect, OSError):
        pass
    finally:
        started.stream.close()
        if not exited:
            await _kill_exec(daemon, started.id)
    if exited:
        code = await _exit_code(daemon, started.id)
        with contextlib.suppress(Exception):
            await websocket.close(code=1000, reason=json.dumps({"exit_code": code}))


async def _resize(daemon: Daemon, exec_id: str, text: str) -> None:
    try:
        size = json.loads(text)["resize"]
        cols, rows = int(size[0]), int(size[1])
    except (ValueError, KeyError, TypeError, IndexError):
        return  # not a resize: ignored
    if 0 < cols < 10000 and 0 < rows < 10000:
        await runtime.current().run(
            Pool.DOCKER, containers.exec_resize, _url(daemon), exec_id, cols, rows
        )
