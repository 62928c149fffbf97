"""Which node a storage host is on (``storagehost.node``), as each node's daemon records it
at start from its ``[hosts]``: its own storage is its node's, ``shared = true`` storage is
every node's; a node-local name two nodes both use stays the first one's."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from vfd.config import Config, load_config
from vfd.daemon.services.hosts import sync_hosts
from vfd.store.db import make_engine, migrate, session_scope
from vfd.store.models import StorageHost

NAMES = ("nodisk", "nfs")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    with session_scope(engine) as session:  # a shared database: start from no hosts
        for row in session.exec(select(StorageHost).where(col(StorageHost.name).in_(NAMES))):
            session.delete(row)
    yield engine
    engine.dispose()


def _node(tmp_path: Path, name: str, hosts: str) -> Config:
    state = tmp_path / name
    state.mkdir()
    (state / "vfd.toml").write_text(f"default_host = 'nodisk'\n[hosts]\n{hosts}")
    cfg = load_config(state_dir=state, env={})
    return dataclasses.replace(cfg, sessions=dataclasses.replace(cfg.sessions, node=name))


def _nodes(engine: Engine) -> dict[str, str | None]:
    with session_scope(engine) as session:
        rows = session.exec(select(StorageHost).where(col(StorageHost.name).in_(NAMES)))
        return {row.name: row.node for row in rows}


def test_storage_host_nodes_own_and_shared(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hosts = "nodisk = '/srv/nodisk'\nnfs = { path = '/mnt/nfs', shared = true }\n"
    a = _node(tmp_path, "node-a", hosts)
    b = _node(tmp_path, "node-b", hosts)
    sync_hosts(engine, a)
    assert _nodes(engine) == {"nodisk": "node-a", "nfs": None}
    with caplog.at_level(logging.WARNING):
        sync_hosts(engine, b)  # node-b names its own disk like node-a's: node-a keeps it
    assert _nodes(engine) == {"nodisk": "node-a", "nfs": None}
    assert "storage host nodisk is node node-a's own storage" in caplog.text
    # a host once shared and now a node's own (or once unowned, as before nodes were kept)
    # is claimed by that node; marked shared again, it is every node's
    c = _node(tmp_path, "node-c", "nodisk = '/srv/nodisk'\nnfs = '/mnt/nfs'\n")
    sync_hosts(engine, c)
    assert _nodes(engine) == {"nodisk": "node-a", "nfs": "node-c"}
    sync_hosts(engine, a)
    assert _nodes(engine) == {"nodisk": "node-a", "nfs": None}
