"""Several nodes on one PostgreSQL, without docker: the scheduling leadership (an advisory lock
on a connection of its own), the one start of a session however many launches race for it,
and the sessions a stopped node leaves ``scheduled`` going back to the queue."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from multinode import daemon_on, leader_of, pg_database, terminate
from sqlmodel import Session, col, select

from vfd.daemon import launcher, scheduler
from vfd.daemon.leader import Leadership
from vfd.daemon.services.context import Daemon
from vfd.store.db import make_engine, migrate
from vfd.store.models import Agent, ComputeSession, SessionEvent, SessionStatus, User, utcnow

pytestmark = pytest.mark.postgres

KEY = 0x7666_6499


@pytest.fixture(scope="module")
def migrated() -> Iterator[str]:
    """A new PostgreSQL store, migrated; dropped at the end."""
    with pg_database() as url:
        engine = make_engine(url)
        try:
            migrate(engine)
        finally:
            engine.dispose()
        yield url


def holder(url: str) -> str | None:
    found = leader_of(url, KEY)
    return None if found is None else found[0]


def test_multinode_leader_one_at_a_time_and_taken_over(migrated: str) -> None:
    engine = make_engine(migrated)
    a, b = Leadership(engine, KEY, "node-a"), Leadership(engine, KEY, "node-b")
    try:
        assert a.check() and not b.check()
        assert a.check() and not b.check()  # kept, not taken twice
        assert holder(migrated) == "vfd leader node-a"
        with Session(engine) as session:
            assert a.still_held(session) and not b.still_held(session)
        a.close()  # a daemon that stops gives it up at once
        assert holder(migrated) is None
        assert b.check() and not a.check()
        assert holder(migrated) == "vfd leader node-b"
        # the leader's connection cut (as when its machine or the network goes): it stops
        # leading at its next check, and the lock is free for the others
        assert b.backend_pid is not None
        terminate(migrated, b.backend_pid)
        with Session(engine) as session:
            assert not b.still_held(session)
        assert not b.check()
        assert a.check()
        assert not b.check()  # it tries again, as a follower
    finally:
        a.close()
        b.close()
        engine.dispose()


def _user(session: Session) -> User:
    user = User(email=f"u{uuid.uuid4().hex[:8]}@example.org", username="u", uid=20001, gid=20001)
    session.add(user)
    session.flush()
    return user


def _sessions(url: str, node: str, status: SessionStatus, n: int) -> list[uuid.UUID]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            user = _user(session)
            rows = [
                ComputeSession(
                    name=f"s{i}",
                    user_id=user.id,
                    uid=user.uid,
                    gid=user.gid,
                    node=node,
                    image="vfd-test/busybox:latest",
                    status=status,
                )
                for i in range(n)
            ]
            session.add_all(rows)
            session.commit()
            return [row.id for row in rows]
    finally:
        engine.dispose()


def _events(url: str, ids: list[uuid.UUID]) -> list[tuple[uuid.UUID, SessionStatus]]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return [
                (e.session_id, e.status)
                for e in session.exec(
                    select(SessionEvent).where(col(SessionEvent.session_id).in_(ids))
                ).all()
            ]
    finally:
        engine.dispose()


def test_multinode_begin_one_start_however_many_launches_race(
    migrated: str, tmp_path: Path
) -> None:
    """Two daemons of node n1 (two processes' connections) race to begin the same sessions:
    each begins exactly once; a node the session is not placed on never begins it."""
    ids = _sessions(migrated, "n1", SessionStatus.SCHEDULED, 40)
    racers = [daemon_on(migrated, "n1", tmp_path / f"d{i}") for i in range(2)]
    elsewhere = daemon_on(migrated, "n2", tmp_path / "other")
    won: list[list[uuid.UUID]] = [[], [], []]
    barrier = threading.Barrier(3)

    def race(index: int, daemon: Daemon) -> None:
        barrier.wait()
        for session_id in ids:
            if launcher._begin(daemon, session_id):
                won[index].append(session_id)

    threads = [
        threading.Thread(target=race, args=(i, d)) for i, d in enumerate([*racers, elsewhere])
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        for daemon in (*racers, elsewhere):
            daemon.engine.dispose()
    assert won[2] == []
    assert sorted(won[0] + won[1]) == sorted(ids)
    preparing = [i for i, status in _events(migrated, ids) if status is SessionStatus.PREPARING]
    assert sorted(preparing) == sorted(ids)


def test_multinode_stopped_node_sessions_go_back_to_the_queue(
    migrated: str, tmp_path: Path
) -> None:
    """The leader's pass: a node whose heartbeat stopped is dead in the snapshot, and the
    sessions left ``scheduled`` on it go back to ``pending``."""
    leader = daemon_on(migrated, "n-lead", tmp_path / "lead")
    stale = utcnow() - timedelta(seconds=30)
    with leader.session() as session:
        for name, beat in (("n-dead", stale), ("n-lead", utcnow())):
            row = session.get(Agent, name) or Agent(id=name)
            row.cpu, row.memory, row.started_at, row.heartbeat_at = 4.0, 2**30, beat, beat
            session.add(row)
    [stranded] = _sessions(migrated, "n-dead", SessionStatus.SCHEDULED, 1)
    [waiting] = _sessions(migrated, "n-lead", SessionStatus.PENDING, 1)
    leadership = Leadership(leader.engine, KEY + 1, "n-lead")
    try:
        assert leadership.check()
        with leader.session() as session:
            queue = scheduler.read_queue(session, leader)
        agents = {a.id: a for a in queue.groups["default"].agents}
        assert not agents["n-dead"].alive and agents["n-lead"].alive
        assert (stranded, "n-dead") in queue.stranded
        assert waiting in {p.id for p in queue.groups["default"].pending}
        scheduler.write(leader, leadership, queue, scheduler.Outcome())
        with leader.session() as session:
            row = session.get(ComputeSession, stranded)
            assert row is not None and row.status is SessionStatus.PENDING
            assert row.status_reason == "back in the queue: node n-dead stopped before starting it"
        assert _events(migrated, [stranded]) == [(stranded, SessionStatus.PENDING)]
        # a leader that lost its lock writes nothing
        assert leadership.backend_pid is not None
        terminate(migrated, leadership.backend_pid)
        outcome = scheduler.Outcome(place={waiting: ("n-lead", "placed by a test")})
        assert scheduler.write(leader, leadership, queue, outcome) == []
        with leader.session() as session:
            row = session.get(ComputeSession, waiting)
            assert row is not None and row.status is SessionStatus.PENDING
    finally:
        leadership.close()
        with leader.session() as session:
            for name in ("n-dead", "n-lead"):
                gone = session.get(Agent, name)
                if gone is not None:
                    session.delete(gone)
        leader.engine.dispose()
