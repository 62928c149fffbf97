"""Revision 0005 on a store that already holds policies, sessions and hosts: the old rows get
the neutral values (no limits, group ``default``, no lifetime, shared storage), and the
``default`` resource group exists. Run on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine

from vfd.store.db import alembic_config, make_engine


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _upgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_migrations_scheduling_keeps_old_rows_unlimited(engine: Engine) -> None:
    _upgrade(engine, "0004")
    now = datetime.now(UTC)
    user_id, session_id = uuid.uuid4(), uuid.uuid4()
    meta = sa.MetaData()
    meta.reflect(engine)
    # reflected SQLite tables see the uuid columns as CHAR(32): give them the stored form
    uid_of = (lambda u: u.hex) if engine.dialect.name == "sqlite" else (lambda u: u)
    with engine.begin() as conn:
        conn.execute(
            meta.tables["resourcepolicy"].insert(),
            {
                "name": "old",
                "max_vfolder_count": 3,
                "max_quota_scope_size": 0,
                "allowed_hosts": [],
                "created_at": now,
            },
        )
        conn.execute(
            meta.tables["user"].insert(),
            {
                "id": uid_of(user_id),
                "email": "old@example.org",
                "username": "old",
                "uid": 5000,
                "gid": 5000,
                "role": "user",
                "status": "active",
                "host_account": False,
                "resource_policy": "old",
                "created_at": now,
            },
        )
        conn.execute(
            meta.tables["storagehost"].insert(), {"name": "local", "path": "/x", "created_at": now}
        )
        conn.execute(
            meta.tables["session"].insert(),
            {
                "id": uid_of(session_id),
                "name": "s",
                "user_id": uid_of(user_id),
                "uid": 5000,
                "gid": 5000,
                "node": "n1",
                "image": "busybox",
                "command": [],
                "env": {},
                "cpu": 1.0,
                "memory": 0,
                "auto_remove": False,
                "status": "running",
                "status_changed_at": now,
                "created_at": now,
            },
        )
    _upgrade(engine, "head")
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        policy = conn.execute(sa.select(meta.tables["resourcepolicy"])).mappings().one()
        session = conn.execute(sa.select(meta.tables["session"])).mappings().one()
        host = conn.execute(sa.select(meta.tables["storagehost"])).mappings().one()
        groups = conn.execute(sa.select(meta.tables["resourcegroup"])).mappings().all()
    assert policy["max_sessions"] == 0 and policy["max_session_cpu"] == 0
    assert policy["max_session_memory"] == 0 and policy["idle_timeout"] == 0
    assert policy["max_lifetime"] == 0
    assert policy["allowed_images"] == [] and policy["allowed_groups"] == []
    assert session["group"] == "default" and session["lifetime"] is None
    assert session["last_activity_at"] is None and session["scheduler_verdicts"] == []
    assert host["node"] is None
    assert [(g["name"], g["scheduler"]) for g in groups] == [("default", "")]
