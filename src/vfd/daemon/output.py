"""A session's output kept after its container: saved when the container ends, as frames
(``vfd.sessions.frames``) in ``<scratch_dir>/<session id hex>/output``, so that
``vfd session logs`` works after the container is removed (``--rm``) or the daemon restarted.

Only the last :data:`MAX_SAVED` bytes are kept; a first ``STDERR`` frame then says how much
was cut.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import uuid
from collections.abc import Iterator

from vfd.daemon import containers, runtime, workdir
from vfd.daemon.runtime import Pool
from vfd.daemon.services.context import Daemon
from vfd.errors import VfdError
from vfd.sessions import frames

log = logging.getLogger(__name__)

MAX_SAVED = 4 << 20
CUT_NOTE = b"[vfd: the first "
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


async def save_output(daemon: Daemon, session_id: uuid.UUID, container_id: str) -> None:
    """Copy the ended container's output to the session's output file (best effort: a
    failure is logged; the session ends anyway)."""
    try:
        stream = await containers.stream_read(
            lambda: containers.open_logs(
                daemon.config.sessions.docker_url, container_id, follow=False
            )
        )
    except VfdError as exc:
        log.warning("cannot read the output of session %s: %s", session_id, exc)
        return
    try:
        kept: collections.deque[tuple[int, bytes]] = collections.deque()
        size = 0
        cut = 0
        while True:
            chunk = await containers.stream_read(stream.read)
            if chunk is None:
                break
            kept.append(chunk)
            size += len(chunk[1])
            while size > MAX_SAVED and kept:
                kind, data = kept.popleft()
                over = size - MAX_SAVED
                if len(data) > over:
                    kept.appendleft((kind, data[over:]))
                    size -= over
                    cut += over
                else:
                    size -= len(data)
                    cut += len(data)
    finally:
        stream.close()
    await runtime.current().run(Pool.FILES, _write, daemon, session_id, list(kept), cut)


def _write(daemon: Daemon, session_id: uuid.UUID, kept: list[tuple[int, bytes]], cut: int) -> None:
    """Write the file whole, then rename it into place: a reader sees all of it or none."""
    parent = workdir.open_session_dir(daemon.config, session_id, create=True)
    try:
        partial = workdir.OUTPUT + ".partial"
        fd = os.open(partial, _FILE_FLAGS, 0o600, dir_fd=parent)
        with os.fdopen(fd, "wb") as out:
            if cut:
                note = CUT_NOTE + f"{cut} bytes of this session's output were not kept]\n".encode()
                out.write(frames.encode(frames.Kind.STDERR, note))
            for kind, data in kept:
                out.write(frames.encode(frames.Kind(kind), data))
        os.rename(partial, workdir.OUTPUT, src_dir_fd=parent, dst_dir_fd=parent)
    finally:
        os.close(parent)


def read_saved(daemon: Daemon, session_id: uuid.UUID) -> Iterator[bytes]:
    """The saved frames, in pieces (nothing when no output was saved). Blocking."""
    try:
        parent = workdir.open_session_dir(daemon.config, session_id, create=False)
    except FileNotFoundError:
        return
    try:
        try:
            fd = os.open(workdir.OUTPUT, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except FileNotFoundError:
            return
    finally:
        os.close(parent)
    with os.fdopen(fd, "rb") as src, contextlib.suppress(OSError):
        while piece := src.read(1 << 16):
            yield piece


def has_saved(daemon: Daemon, session_id: uuid.UUID) -> bool:
    """Whether the session's output was saved (its container ended under this daemon's
    watch). Blocking, but a single stat of a root-owned path."""
    return workdir.output_path(daemon.config, session_id).is_file()
