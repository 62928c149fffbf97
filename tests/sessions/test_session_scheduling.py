"""The scheduler loop with the fifo scheduler on a node of 2 cpus: sessions start in order
while they fit, the others wait with the reason stored, and start when capacity comes free."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import uuid
from datetime import datetime
from typing import Any

import pytest
from filenode import wait_until
from runtimekit import daemon_pid
from sessionapi import destroy, refused, start, wait_verdict
from sessionnode import SessionNode, start_node, stop_node
from sqlmodel import Session

from vfd.daemon import scheduler
from vfd.daemon.services import session_state
from vfd.store.db import make_engine
from vfd.store.models import SessionStatus

NODE_CONFIG = """
[sessions]
cpu = 2
"""

SLEEP = ["sleep", "1000"]


def full_and_queued(
    node: SessionNode, email: str, full: str, queued: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Session ``full`` running on all 2 cpus, and session ``queued`` (1 cpu) waiting for
    them with the scheduler's verdict stored."""
    running = start(node, email, SLEEP, name=full, cpu=2)
    node.wait_status(running["id"], {"running"}, as_=email)
    waiting = start(node, email, SLEEP, name=queued, cpu=1)
    wait_verdict(node, email, waiting["id"])
    return running, waiting


@pytest.fixture
def email(node: SessionNode, image: str) -> str:
    out: str = node.user()["email"]
    return out


def test_session_scheduling_third_waits_for_capacity_then_starts(
    node: SessionNode, email: str
) -> None:
    a, b, c = (start(node, email, SLEEP, name=name, cpu=1) for name in ("a", "b", "c"))
    for ref in (a, b):
        node.wait_status(ref["id"], {"running"}, as_=email)
    waiting = wait_verdict(node, email, c["id"])
    assert node.node_name in waiting["verdict"]
    assert "has 1 cpu free (most free: 0 cpu on" in waiting["verdict"]
    assert node.session(c["id"], email)["status"] == "pending"
    destroy(node, email, "a")
    running = node.wait_status(c["id"], {"running"}, as_=email)
    assert running["verdict"] is None
    assert [e["status"] for e in running["events"]][:2] == ["pending", "scheduled"]
    for ref in ("b", "c"):
        destroy(node, email, ref)
    for ref in (a, b, c):
        node.wait_status(ref["id"], {"terminated"}, as_=email)


def test_session_scheduling_no_overtaking_in_fifo(node: SessionNode, email: str) -> None:
    big = start(node, email, SLEEP, name="big", cpu=1.5)
    node.wait_status(big["id"], {"running"}, as_=email)
    head = start(node, email, SLEEP, name="head", cpu=1)
    small = start(node, email, SLEEP, name="small", cpu=0.5)  # would fit, but comes after head
    assert (
        "no agent of group default has 1 cpu free"
        in wait_verdict(node, email, head["id"])["verdict"]
    )
    assert "waiting behind session head" in wait_verdict(node, email, small["id"])["verdict"]
    destroy(node, email, "big")
    for ref in (head, small):
        node.wait_status(ref["id"], {"running"}, as_=email)
    for ref in ("head", "small"):
        destroy(node, email, ref)
    for ref in (big, head, small):
        node.wait_status(ref["id"], {"terminated"}, as_=email)


def test_session_scheduling_destroy_pending_cancels_with_events_in_order(
    node: SessionNode, email: str
) -> None:
    full, queued = full_and_queued(node, email, "full", "queued")
    gone = destroy(node, email, "queued")
    assert gone["status"] == "cancelled"
    assert gone["status_reason"].startswith("destroyed by ")
    assert gone["verdict"] is None and gone["terminated_at"] is not None
    assert gone["started_at"] is None and gone["container_id"] is None
    shown = node.session(queued["id"], email)
    events = shown["events"]
    assert [(e["status"], e["reason"]) for e in events] == [
        ("pending", "requested"),
        ("cancelled", gone["status_reason"]),
    ]
    times = [datetime.fromisoformat(e["at"]) for e in events]
    assert times == sorted(times) and times[0].tzinfo is not None
    assert datetime.fromisoformat(shown["terminated_at"]) == times[-1]
    again = destroy(node, email, queued["id"])  # harmless
    assert again["status"] == "cancelled" and len(node.session(queued["id"], email)["events"]) == 2
    with node.http(email) as http:  # its name is free again
        assert http.get("/v1/sessions/queued").status_code == 404
    destroy(node, email, "full")
    node.wait_status(full["id"], {"terminated"}, as_=email)


def test_session_scheduling_refuses_what_the_node_can_never_hold(
    node: SessionNode, email: str
) -> None:
    with node.http(email) as http:
        answer = http.post("/v1/sessions", json={"image": "vfd-test/busybox:latest", "cpu": 2.5})
        error = refused(answer, 400, "exceeds_capacity")
        details = error["details"]
        assert (details["resource"], details["asked"], details["capacity"]) == ("cpu", 2.5, 2)
        assert "2.5 cpu" in error["message"]
        assert http.get("/v1/sessions", params={"all": "true"}).json() == {"sessions": []}
    whole = start(node, email, SLEEP, name="whole", cpu=2)  # exactly the node's capacity fits
    node.wait_status(whole["id"], {"running"}, as_=email)
    destroy(node, email, "whole")
    node.wait_status(whole["id"], {"terminated"}, as_=email)


def test_session_scheduling_a_failing_scheduler_is_told_and_the_loop_goes_on(image: str) -> None:
    broken = start_node('[sessions]\nscheduler = "nosuch"\n')
    try:
        email = broken.user()["email"]
        first = start(broken, email, SLEEP, name="first", cpu=1)
        told = wait_verdict(broken, email, first["id"])["verdict"]
        assert "nosuch" in told and "no plugin registers a scheduler" in told
        second = start(broken, email, SLEEP, name="second", cpu=1)  # later passes still run
        assert wait_verdict(broken, email, second["id"])["verdict"] == told
        assert broken.log.read_text().count("scheduler pass failed") == 1  # not once a pass
        assert destroy(broken, email, "first")["status"] == "cancelled"
    finally:
        stop_node(broken)


def _left_scheduled(node: SessionNode, session_id: str) -> None:
    """Place a pending session as the scheduler does, without launching it: what a daemon
    that stopped right after placing it leaves in the store."""
    engine = make_engine(node.config.database_url)
    try:
        with Session(engine) as session:
            row = session_state.load(session, uuid.UUID(session_id))
            session_state.transition(session, row, SessionStatus.SCHEDULED, "placed by a test")
            session.commit()
    finally:
        engine.dispose()


def _restarted(node: SessionNode, old: int) -> int:
    def new_pid() -> int | None:
        try:
            pid = daemon_pid(node)
        except OSError:
            return None
        return pid if pid != old else None

    pid: int = wait_until("the daemon restarted by vfd up", new_pid, 60)
    return pid


def test_session_scheduling_sessions_left_scheduled_are_launched_at_start(
    node: SessionNode, email: str
) -> None:
    full, queued = full_and_queued(node, email, "full2", "queued2")
    _left_scheduled(node, queued["id"])
    old = daemon_pid(node)
    os.kill(old, signal.SIGKILL)
    _restarted(node, old)
    running = node.wait_status(queued["id"], {"running"}, as_=email)
    statuses = [e["status"] for e in running["events"]]
    assert statuses == ["pending", "scheduled", "preparing", "running"]
    for ref in ("full2", "queued2"):
        destroy(node, email, ref)
    for ref in (full, queued):
        node.wait_status(ref["id"], {"terminated"}, as_=email)


def test_session_scheduling_wake_works_from_the_loop_and_from_worker_threads() -> None:
    async def woken() -> None:
        event = asyncio.Event()
        scheduler._wakers.add(asyncio.get_running_loop(), event)
        try:
            scheduler.wake()
            assert event.is_set()
            event.clear()
            thread = threading.Thread(target=scheduler.wake)
            thread.start()
            thread.join()
            await asyncio.wait_for(event.wait(), 10)
        finally:
            scheduler._wakers.remove(event)

    asyncio.run(woken())
    scheduler.wake()  # no loop serves: nothing to do, no error
