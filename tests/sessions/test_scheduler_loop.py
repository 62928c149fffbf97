"""The scheduler loop on one node (SQLite, always the leader): each resource group is placed by
its own scheduler, the verdicts of the sessions left waiting are stored whole, a group with no
node keeps its sessions waiting, and a faulty scheduler's placements are not trusted."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sessionapi import destroy, post, start
from sessionnode import IMAGE, SessionNode
from sqlmodel import Session

from vfd.daemon import scheduler
from vfd.daemon.leader import Leadership
from vfd.plugins.types import Agent, Decision, PendingSession, Placement, Verdict
from vfd.store.db import make_engine

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
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = node.session(ref, email)
        if seen["verdicts"]:
            assert seen["status"] == "pending", seen
            return seen
        time.sleep(0.1)
    pytest.fail(f"no verdicts on session {ref} within {timeout}s: {seen}")


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
