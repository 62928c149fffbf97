"""A session's activity as the idle reaper (:mod:`vfd.daemon.reaper`) counts it: the exec and
shell connections open through this daemon, and the ``last_activity_at`` stamp each one moves
when it opens and when it closes.

A session with a connection open is never idle, whatever its stamp and its cpu say: a shell
someone sits at uses no cpu.
"""

from __future__ import annotations

import collections
import contextlib
import uuid
from collections.abc import AsyncIterator

import anyio

from vfd.daemon import runtime
from vfd.daemon.runtime import Pool
from vfd.daemon.services import session_state
from vfd.daemon.services.context import Daemon

_connected: collections.Counter[uuid.UUID] = collections.Counter()
"""Exec and shell connections open now through this daemon, by session."""


def connected(session_id: uuid.UUID) -> bool:
    """Whether a command (``vfd session exec``) or a shell runs in the session now through
    this daemon."""
    return _connected[session_id] > 0


def touch(daemon: Daemon, session_id: uuid.UUID) -> None:
    """Stamp the session's last activity now (blocking: a store write)."""
    with daemon.session() as session:
        session_state.touch(session, session_id)


@contextlib.asynccontextmanager
async def connection(daemon: Daemon, session_id: uuid.UUID) -> AsyncIterator[None]:
    """Count an exec or shell connection as the session's activity: stamped when it opens
    and when it closes, and :func:`connected` in between."""
    live = runtime.current()
    await live.run(Pool.STORE, touch, daemon, session_id)
    _connected[session_id] += 1
    try:
        yield
    finally:
        _connected[session_id] -= 1
        if _connected[session_id] <= 0:
            del _connected[session_id]
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await live.run(Pool.STORE, touch, daemon, session_id)
