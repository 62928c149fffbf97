"""A session request larger than any node of its resource group could hold is refused at
once; one that some node of the group could hold is queued, whichever node it was asked on."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, delete

from vfd.config import Config, load_config
from vfd.daemon import capacity
from vfd.errors import ErrorCode, VfdError
from vfd.store.db import make_engine, migrate, session_scope
from vfd.store.models import Agent, ResourceGroup

GiB = 2**30
NODES = ("fits-here", "fits-big", "fits-small")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    with session_scope(engine) as session:
        session.exec(delete(Agent).where(col(Agent.id).in_(NODES)))  # type: ignore[call-overload]
        for name in ("fits-a", "fits-b", "fits-none"):
            if session.get(ResourceGroup, name) is None:
                session.add(ResourceGroup(name=name))
        session.flush()
        session.add(Agent(id="fits-here", group="fits-a", cpu=2, memory=4 * GiB))
        session.add(Agent(id="fits-big", group="fits-a", cpu=16, memory=64 * GiB))
        session.add(Agent(id="fits-small", group="fits-b", cpu=4, memory=8 * GiB))
    yield engine
    engine.dispose()


def _config(tmp_path: Path) -> Config:
    cfg = load_config(state_dir=tmp_path, env={})
    sessions = dataclasses.replace(cfg.sessions, node="fits-here", cpu=2, memory=4 * GiB)
    return dataclasses.replace(cfg, sessions=sessions)


def _check(engine: Engine, cfg: Config, group: str, cpu: float, memory: int) -> None:
    with session_scope(engine) as session:
        capacity.check_fits(session, cfg, group, cpu, memory)


def test_capacity_fits_any_node_of_the_group(engine: Engine, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    _check(engine, cfg, "fits-a", 1, GiB)  # here
    _check(engine, cfg, "fits-a", 1, 32 * GiB)  # only fits-big has the memory: queued
    _check(engine, cfg, "fits-none", 64, 64 * GiB)  # no node yet: it waits
    with pytest.raises(VfdError) as caught:
        _check(engine, cfg, "fits-a", 1, 128 * GiB)  # more than any node of the group
    # this node is in the group: its own capacity is named, as on one node
    assert caught.value.code is ErrorCode.EXCEEDS_CAPACITY
    assert caught.value.details["resource"] == "memory"
    assert caught.value.details["node"] == "fits-here"
    with pytest.raises(VfdError) as caught:
        _check(engine, cfg, "fits-b", 6, GiB)  # asked here, for a group of other nodes
    assert caught.value.code is ErrorCode.EXCEEDS_CAPACITY
    assert caught.value.details == {
        "resource": "cpu",
        "asked": 6,
        "capacity": 4,
        "node": "fits-small",
        "group": "fits-b",
    }
    assert "no node of group fits-b has that much" in caught.value.message
    _check(engine, cfg, "fits-b", 4, 8 * GiB)  # exactly the small node
