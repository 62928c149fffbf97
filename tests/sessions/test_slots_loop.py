"""The scheduler loop with accelerator slots, on a store (SQLite, always the leader): a pass
reads each node's devices less what its sessions hold, stores a placed session's allocation
with its move to ``scheduled``, keeps a request no device can serve waiting with the reason,
gives the devices of an ended session to the next one, and clears the allocation of a session
put back in the queue; ``capacity.check_fits`` refuses slots no node could ever hold."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from multinode import daemon_on
from sqlmodel import col, select

from vfd.daemon import capacity, scheduler
from vfd.daemon.leader import Leadership
from vfd.daemon.services.context import Daemon
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.types import SlotUnit
from vfd.scheduling.slots import unit_json
from vfd.store.db import migrate
from vfd.store.models import Agent as AgentRow
from vfd.store.models import ComputeSession, SessionStatus, User, utcnow

GPU_A = "GPU-00000000-0000-4000-8000-00000000000a"
GPU_B = "GPU-00000000-0000-4000-8000-00000000000b"


def _accelerators(*units: SlotUnit) -> dict[str, Any]:
    return {"cuda": {"status": "2 devices", "devices": [], "units": [unit_json(u) for u in units]}}


SHARES = _accelerators(SlotUnit("cuda.shares", GPU_A, 1.0), SlotUnit("cuda.shares", GPU_B, 1.0))


@pytest.fixture
def daemon(tmp_path: Path) -> Any:
    made = daemon_on(f"sqlite:///{tmp_path / 'vfd.db'}", "n0", tmp_path / "n0")
    migrate(made.engine)
    now = utcnow()
    with made.session() as session:
        session.add(
            AgentRow(
                id="n0",
                group="default",
                cpu=8,
                memory=2**34,
                started_at=now,
                heartbeat_at=now,
                accelerators=SHARES,
            )
        )
    try:
        yield made
    finally:
        made.engine.dispose()


def _user(daemon: Daemon) -> User:
    with daemon.session() as session:
        user = User(
            email=f"u{uuid.uuid4().hex[:8]}@example.org", username="u", uid=20001, gid=20001
        )
        session.add(user)
        session.flush()
        session.expunge(user)
        return user


def _ask(
    daemon: Daemon,
    user: User,
    name: str,
    slots: dict[str, float] | None,
    *,
    status: SessionStatus = SessionStatus.PENDING,
    node: str = "n0",
    allocation: list[dict[str, Any]] | None = None,
) -> uuid.UUID:
    with daemon.session() as session:
        row = ComputeSession(
            name=name,
            user_id=user.id,
            uid=user.uid,
            gid=user.gid,
            node=node,
            group="default",
            image="vfd-test/busybox:latest",
            status=status,
            cpu=1.0,
            slots=slots,
            allocation=allocation,
        )
        session.add(row)
        session.flush()
        return row.id


def _pass(daemon: Daemon) -> list[tuple[uuid.UUID, str]]:
    """One leader pass with fifo; the (session, node) placed."""
    fifo = daemon.plugins.scheduler("fifo")
    with daemon.session() as session:
        queue = scheduler.read_queue(session, daemon)
    outcome = scheduler.Outcome()
    for group in queue.groups.values():
        decision = fifo.decide(scheduler.snapshot(queue, group, {}))
        scheduler.checked_placements(decision, group, "fifo", outcome)
    return scheduler.write(daemon, Leadership(daemon.engine, 1, "n0"), queue, outcome)


def _row(daemon: Daemon, session_id: uuid.UUID) -> ComputeSession:
    with daemon.session() as session:
        row = session.get(ComputeSession, session_id)
        assert row is not None
        session.expunge(row)
        return row


def _held(row: ComputeSession) -> list[tuple[str, str, float]]:
    return [(a["slot"], a["device"], a["amount"]) for a in row.allocation or []]


def test_slots_loop_places_records_and_frees_devices(daemon: Daemon) -> None:
    user = _user(daemon)
    first = _ask(daemon, user, "first", {"cuda.shares": 0.6})
    second = _ask(daemon, user, "second", {"cuda.shares": 0.6})
    third = _ask(daemon, user, "third", {"cuda.shares": 0.5})
    plain = _ask(daemon, user, "plain", None)
    placed = dict(_pass(daemon))
    assert placed == {first: "n0", second: "n0"}
    assert _held(_row(daemon, first)) == [("cuda.shares", GPU_A, 0.6)]
    assert _held(_row(daemon, second)) == [("cuda.shares", GPU_B, 0.6)]
    assert _row(daemon, first).status is SessionStatus.SCHEDULED
    # fifo: the third is the head of the line, the session behind it waits (though it asks
    # no devices)
    assert _row(daemon, plain).scheduler_verdict == (
        "waiting behind session third (first in line, round 1 of 3)"
    )
    waiting = _row(daemon, third)
    assert waiting.status is SessionStatus.PENDING and waiting.allocation is None
    assert waiting.scheduler_verdict == (
        "no agent of group default has room for it (agent n0: 0.5 cuda.shares asked, 0.8 free "
        "but split over devices (at most 0.4 on one))"
    )
    # a second pass sees the devices held by the scheduled sessions: nothing moves
    assert _pass(daemon) == []
    # the first ends: its share goes to the third, on the device it freed
    with daemon.session() as session:
        row = session.get(ComputeSession, first)
        assert row is not None
        row.status = SessionStatus.TERMINATED
        session.add(row)
    assert dict(_pass(daemon)) == {third: "n0", plain: "n0"}
    assert _held(_row(daemon, third)) == [("cuda.shares", GPU_A, 0.5)]
    assert _row(daemon, plain).allocation is None
    # an ended session keeps its allocation as the record of what it ran on
    assert _held(_row(daemon, first)) == [("cuda.shares", GPU_A, 0.6)]


def test_slots_loop_a_session_back_in_the_queue_loses_its_devices(daemon: Daemon) -> None:
    user = _user(daemon)
    long_ago = utcnow() - timedelta(hours=1)
    with daemon.session() as session:
        session.add(
            AgentRow(
                id="n1",
                group="default",
                cpu=8,
                memory=2**34,
                started_at=long_ago,
                heartbeat_at=long_ago,
                accelerators=SHARES,
            )
        )
    held = [{"slot": "cuda.shares", "device": GPU_A, "amount": 1.0}]
    stranded = _ask(
        daemon,
        user,
        "stranded",
        {"cuda.shares": 1.0},
        status=SessionStatus.SCHEDULED,
        node="n1",
        allocation=held,
    )
    _pass(daemon)
    back = _row(daemon, stranded)
    assert back.status is SessionStatus.PENDING
    assert back.allocation is None
    with daemon.session() as session:
        nulls = session.exec(
            select(ComputeSession.id).where(col(ComputeSession.allocation).is_(None))
        ).all()
    assert stranded in nulls  # SQL NULL, not a JSON null
    # the next pass places it on the alive node, with devices of that node
    assert _pass(daemon) == [(stranded, "n0")]
    assert _held(_row(daemon, stranded)) == [("cuda.shares", GPU_A, 1.0)]


def test_slots_loop_drops_a_placement_whose_devices_do_not_fit(daemon: Daemon) -> None:
    """A scheduler placing a session where its slots do not go is not believed."""
    from vfd.plugins.types import Decision, Placement

    user = _user(daemon)
    big = _ask(daemon, user, "big", {"cuda.device": 1})
    with daemon.session() as session:
        queue = scheduler.read_queue(session, daemon)
    group = queue.groups["default"]
    outcome = scheduler.Outcome()
    decision = Decision(place=(Placement(big, "n0"),))
    scheduler.checked_placements(decision, group, "faulty", outcome)
    assert outcome.place == {} and outcome.allocation == {}
    told = outcome.verdicts[big][0]
    assert (
        told["name"] == "scheduler"
        and "no alive node of group default with room" in (told["reason"])
    )


def test_slots_check_fits_refuses_what_no_node_could_hold(daemon: Daemon) -> None:
    def fits(slots: dict[str, float]) -> None:
        with daemon.session() as session:
            capacity.check_fits(session, daemon.config, "default", 0.5, 0, slots=slots)

    fits({"cuda.shares": 1.5})  # two devices of 1 share: fits (it may wait)
    for slots, resource, words in (
        (
            {"cuda.shares": 2.5},
            "cuda.shares",
            "2.5 cuda.shares asked, but no node of group default could hold it even with all "
            "its devices free (node n0: it has 2 in all)",
        ),
        (
            {"cuda.device": 1},
            "cuda.device",
            "1 cuda.device asked, but no node of group default offers cuda.device",
        ),
    ):
        with pytest.raises(VfdError) as refused:
            fits(slots)
        assert refused.value.code is ErrorCode.EXCEEDS_CAPACITY
        assert refused.value.message == words
        assert refused.value.details["resource"] == resource
        assert refused.value.details["node"] == "n0"
    # another node of the group offering whole devices takes the whole-device request
    now = utcnow()
    with daemon.session() as session:
        session.add(
            AgentRow(
                id="n2",
                group="default",
                cpu=4,
                memory=2**32,
                started_at=now,
                heartbeat_at=now,
                accelerators=_accelerators(SlotUnit("cuda.device", "GPU-w", 1.0)),
            )
        )
    fits({"cuda.device": 1})
    with pytest.raises(VfdError) as refused:
        fits({"cuda.device": 2})
    assert refused.value.details["node"] == "n2"
    assert "(node n2: it has 1 in all)" in refused.value.message
