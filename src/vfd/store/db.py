"""Engine set-up, migrations and sessions for the metadata store.

SQLite runs in WAL mode with a busy timeout so the daemon and mountd can share one file;
PostgreSQL is used through psycopg 3 (``postgresql+psycopg://``; plain ``postgresql://`` URLs
are rewritten to it). All calls here block: async callers run them in worker threads.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from vfd import safedirs
from vfd.errors import ErrorCode, VfdError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``. A SQLite file is made (mode 0600) in a directory only root may
    write, so no other user can read the store or swap it."""
    url = normalize_url(url)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) != ":memory:":
            safedirs.ensure_dir(path.parent, safedirs.PRIVATE_DIR_MODE)
            safedirs.ensure_private_file(path)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql+"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    raise VfdError(
        ErrorCode.CONFIG_INVALID,
        f"database_url: unsupported database {url.split(':', 1)[0]!r} "
        "(use sqlite:///PATH or postgresql://USER@HOST/DB)",
        key="database_url",
    )


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent; serialised by the database)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # one migrator at a time when several nodes start together
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7263001)")
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextlib.contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
