"""Scheduling leadership: which daemon places sessions when several nodes share one store.

On SQLite there is one node, and it always leads. On PostgreSQL the leader is the daemon that
holds the session-level advisory lock ``pg_try_advisory_lock([sessions] leader_lock)`` — the
database's own mutual exclusion, not an election of vfd's. The lock is taken on a connection
of its own (not one of the engine's pool, which would hand it to other work and end the lock
with a recycle), kept open while this daemon runs:

- a follower tries the lock once per scheduler pass (every ``[sessions] schedule_interval``);
- the leader checks its connection once per pass (``SELECT 1``); when the connection is gone,
  so is the lock (PostgreSQL drops a session's advisory locks with the session), and this
  daemon stops placing until it wins the lock again;
- a daemon that stops closes the connection, so the next follower takes over at its next try.

A leader that dies without closing the socket (its machine lost, the network cut) is noticed
by the server through TCP keepalives: the connection asks for ``tcp_keepalives_*`` and
``tcp_user_timeout`` of :data:`SERVER_DEAD_AFTER` seconds in all, after which PostgreSQL ends
that backend and the lock is free.

:meth:`Leadership.still_held` lets the leader's placement transaction check, in the same
transaction as its writes, that the lock is still held by its backend (``pg_locks``): a
leader whose connection died in the middle of a pass writes nothing.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool
from sqlmodel import Session

log = logging.getLogger(__name__)

KEEPALIVE_IDLE = 5
KEEPALIVE_INTERVAL = 2
KEEPALIVE_COUNT = 3
SERVER_DEAD_AFTER = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT
"""Seconds after which the server drops the connection of a leader that went silent."""
CONNECT_TIMEOUT = 5


def lock_parts(key: int) -> tuple[int, int]:
    """The (``classid``, ``objid``) ``pg_locks`` shows for the bigint advisory lock ``key``."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


class Leadership:
    """Whether this daemon is the scheduling leader (see the module's docstring).

    :meth:`check` blocks on the store: call it in a worker thread. Not for concurrent use
    from several threads (one scheduler loop owns it); :meth:`close` may come from any.
    """

    def __init__(self, engine: Engine, key: int, node: str) -> None:
        self.key = key
        self.node = node
        self.single = engine.dialect.name != "postgresql"
        """A store only this node uses (SQLite): always the leader."""
        self._url = engine.url
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self.leading = self.single

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL backend holding the lock for this daemon, while it leads."""
        return self._pid if self.leading else None

    def check(self) -> bool:
        """Whether this daemon leads now: the lock kept, or just won. Never raises: a store
        that cannot be reached means not leading (logged when that changes)."""
        if self.single:
            return True
        with self._lock:
            was = self.leading
            try:
                self.leading = self._check()
            except Exception as exc:
                self._drop()
                self.leading = False
                if was:
                    log.warning("lost the scheduling leadership (%s: %s)", type(exc).__name__, exc)
                else:
                    log.debug("cannot try the scheduling leadership: %s", exc)
                return False
            if self.leading and not was:
                log.info(
                    "node %s is the scheduling leader now (advisory lock %#x, backend %s)",
                    self.node,
                    self.key,
                    self._pid,
                )
            elif was and not self.leading:
                log.warning("node %s is no longer the scheduling leader", self.node)
            return self.leading

    def _check(self) -> bool:
        conn = self._connection()
        if self.leading:
            conn.execute(text("SELECT 1"))
            return True
        won = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar()
        return bool(won)

    def _connection(self) -> Connection:
        if self._conn is None:
            if self._engine is None:
                self._engine = create_engine(
                    self._url,
                    poolclass=NullPool,
                    connect_args={
                        "application_name": f"vfd leader {self.node}"[:63],
                        "connect_timeout": CONNECT_TIMEOUT,
                        "keepalives": 1,
                        "keepalives_idle": KEEPALIVE_IDLE,
                        "keepalives_interval": KEEPALIVE_INTERVAL,
                        "keepalives_count": KEEPALIVE_COUNT,
                        "tcp_user_timeout": SERVER_DEAD_AFTER * 1000,
                    },
                )
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                # the server's side of the keepalives: it drops a silent leader's backend
                for name, value in (
                    ("tcp_keepalives_idle", KEEPALIVE_IDLE),
                    ("tcp_keepalives_interval", KEEPALIVE_INTERVAL),
                    ("tcp_keepalives_count", KEEPALIVE_COUNT),
                    ("tcp_user_timeout", SERVER_DEAD_AFTER * 1000),
                ):
                    try:
                        conn.execute(text(f"SET {name} = {int(value)}"))
                    except DBAPIError as exc:  # an older server without it: keep the default
                        log.debug("leader connection: SET %s refused: %s", name, exc)
                self._pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def still_held(self, session: Session) -> bool:
        """In ``session``'s transaction: whether this daemon's backend still holds the lock
        (always True on SQLite)."""
        if self.single:
            return True
        pid = self.backend_pid
        if pid is None:
            return False
        classid, objid = lock_parts(self.key)
        held = session.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = :pid AND classid = :classid AND objid = :objid AND objsubid = 1"
            ),
            {"pid": pid, "classid": classid, "objid": objid},
        ).scalar_one()
        return bool(held)

    def _drop(self) -> None:
        conn, self._conn, self._pid = self._conn, None, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception:
                log.debug("closing the leader connection failed", exc_info=True)

    def close(self) -> None:
        """Give the leadership up (the connection closed: the lock is free at once)."""
        if self.single:
            return
        # a check in flight takes milliseconds; a hung one must not hold the daemon's exit
        # (the process ending closes the socket anyway)
        if not self._lock.acquire(timeout=CONNECT_TIMEOUT):
            return
        try:
            if self.leading:
                log.info("node %s gives the scheduling leadership up", self.node)
            self._drop()
            self.leading = False
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
        finally:
            self._lock.release()
