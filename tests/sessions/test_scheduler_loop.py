"""The scheduler loop on one node (SQLite, always the leader): each resource group is placed by
its own scheduler, the verdicts of the sessions left waiting are stored whole, a group with no
node keeps its sessions waiting, and a faulty scheduler's placements are not trusted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from multinode import daemon_on
from sessionapi import destroy, post, start, wait_verdict
from sessionnode import IMAGE, SessionNode
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from vfd.daemon import scheduler
from vfd.daemon.leader import Leadership
from vfd.daemon.services.context import Daemon
from vfd.plugins.types import Agent, Decision, PendingSession, Placement, Verdict
from vfd.store.db import make_engine, migrate
from vfd.store.models import Agent as AgentRow
from vfd.store.models import (
    ComputeSession,
    ResourceGroup,
    ResourcePolicy,
    SessionStatus,
    User,
    utcnow,
)

NODE_CONFIG = """
[sessions]
cpu = 2
"""

SLEEP = ["sleep", "1000"]


@pytest.fixture
def email(node: SessionNode, image: str) -> str:
    out: str = node.user()["email"]
    return out


def verdicts_of(node: SessionNode, email: str, ref: str, timeout: float = 30) -> dict[str, Any]:
    """The pending session ``ref`` once the scheduler has stored its verdicts."""
    return wait_verdict(node, email, ref, field="verdicts", timeout=timeout)


def placed_by(session: dict[str, Any]) -> str:
    return next(e["reason"] for e in session["events"] if e["status"] == "scheduled")


def test_scheduler_loop_each_group_placed_by_its_scheduler(node: SessionNode, email: str) -> None:
    full = start(node, email, SLEEP, name="full", cpu=2)
    node.wait_status(full["id"], {"running"}, as_=email)
    assert placed_by(node.session(full["id"], email)) == (
        f"placed on {node.node_name} by scheduler fifo"
    )
    older, middle, newest = (start(node, email, SLEEP, name=n, cpu=1) for n in ("o", "m", "n"))
    for ref in (older, middle, newest):
        verdicts_of(node, email, ref["id"])
    node.cli.ok("admin", "resource-group", "update", "default", "--scheduler", "lifo")
    try:
        destroy(node, email, "full")
        for ref in (newest, middle):  # newest first: these two fill the freed 2 cpu
            started = node.wait_status(ref["id"], {"running"}, as_=email)
            assert placed_by(started) == f"placed on {node.node_name} by scheduler lifo"
            assert started["verdict"] is None and started["node"] == node.node_name
        left = node.session(older["id"], email)
        assert left["status"] == "pending"
        names = [v["name"] for v in left["verdicts"]]
        assert "fits_agent" in names
        failing = [v for v in left["verdicts"] if not v["ok"]]
        assert failing and left["verdict"] == failing[0]["reason"]
        assert all(set(v) == {"name", "ok", "reason"} for v in left["verdicts"])
    finally:
        node.cli.ok("admin", "resource-group", "update", "default", "--scheduler", "fifo")
    for ref in ("o", "m", "n"):
        destroy(node, email, ref)
    for ref in (full, older, middle, newest):
        node.wait_status(ref["id"], {"terminated", "cancelled"}, as_=email)


def test_scheduler_loop_a_group_without_nodes_waits(node: SessionNode, email: str) -> None:
    node.cli.ok("admin", "resource-group", "create", "nowhere", "--scheduler", "fifo")
    try:
        answer = post(node, email, image=IMAGE, command=SLEEP, name="lost", group="nowhere")
        assert answer.status_code == 201, answer.text
        seen = verdicts_of(node, email, "lost")
        fits = next(v for v in seen["verdicts"] if v["name"] == "fits_agent")
        assert not fits["ok"] and seen["verdict"] == fits["reason"]
        assert seen["group"] == "nowhere"
        assert destroy(node, email, "lost")["status"] == "cancelled"
    finally:
        node.cli.ok("admin", "resource-group", "delete", "nowhere")


def _pending(name: str, cpu: float) -> PendingSession:
    return PendingSession(
        id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        name=name,
        created_at=datetime.now(UTC),
        cpu=cpu,
        memory=0,
    )


def _agent(name: str, cpu: float, used: float, alive: bool = True) -> Agent:
    return Agent(
        id=name, group="g", cpu=cpu, memory=2**30, used_cpu=used, used_memory=0, alive=alive
    )


def test_scheduler_loop_a_faulty_schedulers_placements_are_checked() -> None:
    ok, over, dead, stray, told = (
        _pending(n, c) for n, c in (("ok", 1), ("over", 2), ("dead", 1), ("stray", 1), ("told", 1))
    )
    group = scheduler.GroupQueue(
        "g", "faulty", [ok, over, dead, told], [_agent("a", 2, 0), _agent("b", 4, 0, alive=False)]
    )
    decision = Decision(
        place=(
            Placement(ok.id, "a"),
            Placement(ok.id, "a"),  # twice
            Placement(over.id, "a"),  # 1 cpu left on a
            Placement(dead.id, "b"),  # b's heartbeat stopped
            Placement(stray.id, "a"),  # not pending in the group
        ),
        waiting={told.id: (Verdict("queue", True, "second"), Verdict("fits_agent", False, "no"))},
    )
    outcome = scheduler.Outcome()
    scheduler.checked_placements(decision, group, "faulty", outcome)
    assert outcome.place == {ok.id: ("a", "placed on a by scheduler faulty")}
    for refused in (over, dead):
        first = outcome.verdicts[refused.id][0]
        assert first["name"] == "scheduler" and not first["ok"]
        assert "no alive node of group g with room for it" in first["reason"]
    assert scheduler.first_failing(outcome.verdicts[told.id]) == "no"
    assert stray.id not in outcome.verdicts


def test_scheduler_loop_sqlite_always_leads(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'vfd.db'}")
    try:
        alone = Leadership(engine, 0x76666401, "solo")
        assert alone.check() and alone.backend_pid is None
        with Session(engine) as session:
            assert alone.still_held(session)
        alone.close()
        assert alone.check()
    finally:
        engine.dispose()


def _store_with(daemon: Daemon, pending: int) -> list[uuid.UUID]:
    """Three groups with a node each, five users (two under a policy), ``pending`` sessions
    spread over the groups, and one running session per group."""
    now = utcnow()
    with daemon.session() as session:
        session.add(ResourcePolicy(name=f"p{uuid.uuid4().hex[:6]}", max_sessions=3))
        session.flush()
        policy = session.exec(select(ResourcePolicy)).first()
        assert policy is not None
        users = [
            User(
                email=f"u{uuid.uuid4().hex[:8]}@example.org",
                username="u",
                uid=20000 + i,
                gid=20000 + i,
                resource_policy=policy.name if i < 2 else None,
            )
            for i in range(5)
        ]
        session.add_all(users)
        for name in ("g1", "g2"):
            if session.get(ResourceGroup, name) is None:
                session.add(ResourceGroup(name=name, scheduler="fifo"))
        session.flush()
        for i, group in enumerate(("default", "g1", "g2")):
            node = f"n{i}"
            session.add(
                AgentRow(
                    id=node, group=group, cpu=4, memory=2**32, started_at=now, heartbeat_at=now
                )
            )
            session.add(_row(users[i], node, group, SessionStatus.RUNNING, 0))
        rows = [
            _row(users[i % 5], "n0", ("default", "g1", "g2")[i % 3], SessionStatus.PENDING, i)
            for i in range(pending)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def _row(user: User, node: str, group: str, status: SessionStatus, i: int) -> ComputeSession:
    return ComputeSession(
        name=f"s{i}",
        user_id=user.id,
        uid=user.uid,
        gid=user.gid,
        node=node,
        group=group,
        image="vfd-test/busybox:latest",
        status=status,
        cpu=1.0,
    )


class _Statements:
    """Counts the statements an engine sends."""

    def __init__(self, engine: Engine) -> None:
        self.n = 0
        self.engine = engine

    def __enter__(self) -> _Statements:
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, *args: Any) -> None:
        self.n += 1


def _one_pass(daemon: Daemon, leadership: Leadership) -> tuple[int, int, int]:
    """(statements read, statements written, sessions placed) of one leader pass with fifo."""
    fifo = daemon.plugins.scheduler("fifo")
    with _Statements(daemon.engine) as reads, daemon.session() as session:
        queue = scheduler.read_queue(session, daemon)
    outcome = scheduler.Outcome()
    for group in queue.groups.values():
        decision = fifo.decide(scheduler.snapshot(queue, group, {}))
        scheduler.checked_placements(decision, group, "fifo", outcome)
    with _Statements(daemon.engine) as writes:
        placed = scheduler.write(daemon, leadership, queue, outcome)
    return reads.n, writes.n, len(placed)


def test_scheduler_loop_a_pass_reads_and_writes_in_a_few_statements(tmp_path: Path) -> None:
    """The statements of a pass do not grow with the number of pending sessions."""
    counts = []
    for n in (30, 300):
        url = f"sqlite:///{tmp_path / str(n) / 'vfd.db'}"
        daemon = daemon_on(url, "n0", tmp_path / str(n))
        try:
            migrate(daemon.engine)
            ids = _store_with(daemon, n)
            leadership = Leadership(daemon.engine, 1, "n0")
            reads, writes, placed = _one_pass(daemon, leadership)
            assert placed == 9  # three free cpu on each of three nodes
            with daemon.session() as session:
                told = session.exec(
                    select(ComputeSession).where(col(ComputeSession.id).in_(ids))
                ).all()
                waiting = [r for r in told if r.status is SessionStatus.PENDING]
                assert len(waiting) == n - 9
                assert all(r.scheduler_verdicts and r.scheduler_verdict for r in waiting)
            # a second pass with nothing new writes nothing but what changed
            again_reads, again_writes, again_placed = _one_pass(daemon, leadership)
            assert again_placed == 0 and again_reads == reads
            counts.append((reads, writes, again_writes))
        finally:
            daemon.engine.dispose()
    assert counts[0] == counts[1], counts
    reads, writes, _ = counts[0]
    assert reads <= 8 and writes <= 12, counts


def test_scheduler_loop_a_groups_failing_scheduler_is_told_and_others_go_on(
    node: SessionNode, email: str
) -> None:
    """A group whose scheduler is gone (its plugin uninstalled since) keeps its sessions
    waiting with the reason; the other groups are placed as usual; the failure is logged
    once, not every pass."""
    node.cli.ok("admin", "resource-group", "create", "orphan")
    engine = make_engine(node.config.database_url)
    try:
        with Session(engine) as session:
            group = session.get(ResourceGroup, "orphan")
            assert group is not None
            group.scheduler = "gone"
            session.add(group)
            session.commit()
        answer = post(node, email, image=IMAGE, command=SLEEP, name="stuck", group="orphan")
        assert answer.status_code == 201, answer.text
        told = verdicts_of(node, email, "stuck")["verdict"]
        assert "scheduler gone of group orphan failed" in told
        assert "no plugin registers a scheduler named 'gone'" in told
        fine = start(node, email, SLEEP, name="fine", cpu=1)
        node.wait_status(fine["id"], {"running"}, as_=email)
        second = post(node, email, image=IMAGE, command=SLEEP, name="stuck2", group="orphan")
        assert second.status_code == 201, second.text
        assert verdicts_of(node, email, "stuck2")["verdict"] == told
        assert node.log.read_text().count("scheduler pass failed") == 1
        for ref in ("stuck", "stuck2"):
            assert destroy(node, email, ref)["status"] == "cancelled"
        destroy(node, email, "fine")
        node.wait_status(fine["id"], {"terminated"}, as_=email)
    finally:
        engine.dispose()
        node.cli.ok("admin", "resource-group", "delete", "orphan")
