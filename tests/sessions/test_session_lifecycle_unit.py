"""The session status machine (``vfd.sessions.lifecycle``) and the one function that moves a
stored session (``session_state.transition``), on a real SQLite store; no docker needed."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from vfd.daemon.services import session_state
from vfd.enums import SessionStatus as S
from vfd.errors import ErrorCode, VfdError
from vfd.sessions.lifecycle import FINAL, LIVE, TRANSITIONS, WAITING, check_transition
from vfd.store.db import make_engine, migrate
from vfd.store.models import ComputeSession, SessionEvent, User

ALLOWED = {
    (S.PENDING, S.SCHEDULED),
    (S.PENDING, S.CANCELLED),
    (S.PENDING, S.ERROR),
    (S.SCHEDULED, S.PREPARING),
    (S.SCHEDULED, S.PENDING),
    (S.SCHEDULED, S.CANCELLED),
    (S.SCHEDULED, S.ERROR),
    (S.PREPARING, S.RUNNING),
    (S.PREPARING, S.CANCELLED),
    (S.PREPARING, S.ERROR),
    (S.RUNNING, S.TERMINATING),
    (S.RUNNING, S.TERMINATED),
    (S.RUNNING, S.ERROR),
    (S.TERMINATING, S.TERMINATED),
    (S.TERMINATING, S.ERROR),
}


def test_lifecycle_allows_exactly_the_documented_transitions() -> None:
    for old, new in itertools.product(S, S):
        if (old, new) in ALLOWED:
            check_transition(old, new)
        else:
            with pytest.raises(VfdError) as caught:
                check_transition(old, new, name="s1")
            assert caught.value.code is ErrorCode.INVALID_STATUS
            assert caught.value.details == {"status": old.value, "wanted": new.value}
            assert "'s1'" in caught.value.message


def test_lifecycle_final_statuses_have_no_way_out() -> None:
    assert {S.TERMINATED, S.CANCELLED, S.ERROR} == FINAL
    for status in FINAL:
        assert TRANSITIONS[status] == frozenset()
    assert set(S) - FINAL == LIVE
    assert WAITING <= LIVE


def test_lifecycle_every_live_status_can_fail_and_every_status_is_reachable() -> None:
    for status in LIVE:
        assert S.ERROR in TRANSITIONS[status], status
    reached = {S.PENDING}
    frontier = [S.PENDING]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    assert reached == set(S)


def test_lifecycle_cancelled_only_before_the_container_runs() -> None:
    can_cancel = {old for old, new in ALLOWED if new is S.CANCELLED}
    assert can_cancel == {S.PENDING, S.SCHEDULED, S.PREPARING}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'vfd.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def _stored(engine: Engine) -> ComputeSession:
    with Session(engine) as session:
        user = User(email="lc@example.org", username="lc", uid=31000, gid=31000)
        session.add(user)
        session.flush()
        row = ComputeSession(
            name="lc", user_id=user.id, uid=31000, gid=31000, node="n1", image="img"
        )
        session.add(row)
        session_state.record_created(session, row)
        session.commit()
        session.refresh(row)
        return row


def test_lifecycle_transition_records_each_event_with_time_reason_and_plugin(
    engine: Engine,
) -> None:
    row = _stored(engine)
    steps = [
        (S.SCHEDULED, "placed", None),
        (S.PREPARING, None, None),
        (S.RUNNING, None, None),
        (S.TERMINATING, "destroyed by a@b", None),
        (S.TERMINATED, "exited with code 0", None),
    ]
    for status, reason, plugin in steps:
        with Session(engine) as session:
            current = session_state.load(session, row.id)
            session_state.transition(session, current, status, reason, plugin=plugin)
            session.commit()
    with Session(engine) as session:
        current = session_state.load(session, row.id)
        assert current.status is S.TERMINATED
        assert current.started_at is not None and current.terminated_at is not None
        assert current.status_reason == "exited with code 0"
        events = session.exec(
            select(SessionEvent)
            .where(SessionEvent.session_id == row.id)
            .order_by(col(SessionEvent.at), col(SessionEvent.id))
        ).all()
        assert [e.status for e in events] == [S.PENDING, *[s for s, _, _ in steps]]
        assert events[0].reason == "requested"
        assert [e.at for e in events] == sorted(e.at for e in events)
        shown = session_state.session_json(session, current, events=True)
        assert [e["status"] for e in shown["events"]] == [e.status.value for e in events]


def test_lifecycle_transition_refused_leaves_the_session_as_it_was(engine: Engine) -> None:
    row = _stored(engine)
    with Session(engine) as session:
        current = session_state.load(session, row.id)
        with pytest.raises(VfdError) as caught:
            session_state.transition(session, current, S.RUNNING, "skipping ahead")
        assert caught.value.code is ErrorCode.INVALID_STATUS
        session.rollback()
    with Session(engine) as session:
        current = session_state.load(session, row.id)
        assert current.status is S.PENDING
        count = len(
            session.exec(select(SessionEvent).where(SessionEvent.session_id == row.id)).all()
        )
        assert count == 1


def test_lifecycle_veto_is_attributed_to_its_plugin(engine: Engine) -> None:
    row = _stored(engine)
    with Session(engine) as session:
        current = session_state.load(session, row.id)
        session_state.transition(session, current, S.SCHEDULED, "placed")
        session_state.transition(session, current, S.PREPARING)
        session_state.transition(session, current, S.CANCELLED, "image denied", plugin="deny")
        session.commit()
    with Session(engine) as session:
        current = session_state.load(session, row.id)
        shown = session_state.session_json(session, current, events=True)
        assert shown["status"] == "cancelled"
        assert (shown["status_reason"], shown["status_plugin"]) == ("image denied", "deny")
        assert shown["events"][-1]["plugin"] == "deny"
        assert shown["started_at"] is None and shown["terminated_at"] is not None


def test_lifecycle_transition_is_a_compare_and_set_on_the_stored_status(engine: Engine) -> None:
    """Two writers that read the same status: the second one's move is refused, not applied
    over the first (a destroy cancelling a session the launcher is starting, say)."""
    row = _stored(engine)
    with Session(engine) as first, Session(engine) as second:
        mine = session_state.load(first, row.id)
        theirs = session_state.load(second, row.id)
        assert mine.status is theirs.status is S.PENDING
        session_state.transition(first, mine, S.CANCELLED, "destroyed")
        first.commit()
        with pytest.raises(VfdError) as caught:
            session_state.transition(second, theirs, S.SCHEDULED, "placed")
        assert caught.value.code is ErrorCode.INVALID_STATUS
        assert caught.value.details["status"] == "cancelled"
        second.rollback()
    with Session(engine) as session:
        current = session_state.load(session, row.id)
        assert current.status is S.CANCELLED
        events = session.exec(select(SessionEvent).where(SessionEvent.session_id == row.id)).all()
        assert [e.status for e in events] == [S.PENDING, S.CANCELLED]
