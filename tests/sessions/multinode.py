"""Helpers of the tests of several nodes on one PostgreSQL: a database of their own, and who
holds the scheduling leadership as PostgreSQL shows it."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from vfd.config import load_config
from vfd.daemon.leader import lock_parts
from vfd.daemon.mountlink import MountdLink
from vfd.daemon.services.context import Daemon
from vfd.store.db import make_engine

PG_ENV = "VFD_TEST_PG_DSN"


def admin_dsn() -> str:
    """The PostgreSQL superuser DSN of the tests; skips (fails under CI) without one."""
    dsn = os.environ.get(PG_ENV, "")
    if not dsn:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set but CI is: the PostgreSQL tests must run in CI")
        pytest.skip(f"PostgreSQL tests skipped: set {PG_ENV} (. scripts/start-postgres.sh)")
    return make_url(dsn).set(drivername="postgresql").render_as_string(hide_password=False)


def plain(url: str) -> str:
    """``url`` as libpq reads it (no SQLAlchemy driver name)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped (with FORCE) at the end."""
    admin = admin_dsn()
    name = f"vfdt_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def leader_of(url: str, key: int) -> tuple[str, int] | None:
    """(``application_name``, backend pid) of the connection holding advisory lock ``key`` in
    ``url``'s database, or None."""
    classid, objid = lock_parts(key)
    with psycopg.connect(plain(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT a.application_name, a.pid FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s "
            "AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())",
            (classid, objid),
        ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def terminate(url: str, pid: int) -> None:
    """End PostgreSQL backend ``pid`` (as a cut connection would), and wait until it is gone
    with its locks: ``pg_terminate_backend`` only signals it, and a check made before it
    exits still finds its advisory lock held."""
    with psycopg.connect(plain(url), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 30
        while True:
            left = conn.execute(
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE pid = %s)"
                " + (SELECT count(*) FROM pg_locks WHERE pid = %s)",
                (pid, pid),
            ).fetchone()
            if left is None or not left[0]:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"PostgreSQL backend {pid} is still there after 30 s")
            time.sleep(0.02)


def daemon_on(url: str, node: str, directory: Path) -> Daemon:
    """A daemon's shared state (store, config naming ``node``), as ``vfd daemon`` builds it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vfd.toml").write_text(
        f'database_url = {json.dumps(url)}\n[sessions]\nnode = "{node}"\nheartbeat_interval = 1\n'
    )
    config = load_config(state_dir=directory, env={})
    return Daemon(config=config, engine=make_engine(url), mountd=MountdLink(directory / "m.sock"))
