"""The ``fifo`` and ``lifo`` schedulers: order, best fit, and the head-of-line limit."""

from __future__ import annotations

from typing import Any

import pytest
from snapshots import GiB, agent, names, session, snapshot

from vfd.errors import ErrorCode, VfdError
from vfd.plugins.builtin import fifo, lifo
from vfd.plugins.builtin.fifo import QueueScheduler
from vfd.plugins.types import Decision, Snapshot, UserLimits


def placed(snap: Snapshot, decision: Decision) -> list[str]:
    return names(snap, [p.session_id for p in decision.place])


def queue_reason(decision: Decision, snap: Snapshot, name: str) -> str:
    [s] = [s for s in snap.pending if s.name == name]
    verdicts = decision.waiting[s.id]
    assert verdicts[-1].name == "queue"
    return verdicts[-1].reason


def test_fifo_starts_oldest_first() -> None:
    pending = [session(i, "A" if i % 2 else "B", 1, GiB) for i in range(6)]
    snap = snapshot(reversed(pending), [agent("n1", 4, 16 * GiB)])
    decision = QueueScheduler().decide(snap)
    assert placed(snap, decision) == ["s0", "s1", "s2", "s3"]
    assert set(names(snap, decision.waiting)) == {"s4", "s5"}


def test_lifo_starts_newest_first() -> None:
    pending = [session(i, "A", 1, GiB) for i in range(6)]
    snap = snapshot(pending, [agent("n1", 4, 16 * GiB)])
    decision = QueueScheduler(newest_first=True).decide(snap)
    assert placed(snap, decision) == ["s5", "s4", "s3", "s2"]


def test_fifo_ties_by_id() -> None:
    first, second = session(0, "A", 1, GiB), session(0, "B", 1, GiB)
    second = type(second)(**{**second.__dict__, "id": second.id.__class__(int=0)})
    snap = snapshot([first, second], [agent("n1", 1, 16 * GiB)])
    decision = QueueScheduler().decide(snap)
    assert [p.session_id for p in decision.place] == [second.id]


def test_fifo_places_by_best_fit() -> None:
    """Each session goes to the agent it leaves fullest; ties to the smallest id."""
    snap = snapshot(
        [session(0, "A", 2, GiB), session(1, "A", 4, 4 * GiB), session(2, "A", 1, GiB)],
        [
            agent("big", 16, 64 * GiB),
            agent("small", 4, 8 * GiB, used_cpu=1),
            agent("twin", 4, 8 * GiB, used_cpu=1),
        ],
    )
    decision = QueueScheduler().decide(snap)
    # s0: small and twin would be left with 7/8 of their memory, big with more: small wins
    # the tie with twin. s1 (4 cpu) fits only big. s2: small is left with 6/8, twin 7/8.
    by_name = dict(zip(placed(snap, decision), [p.agent for p in decision.place], strict=True))
    assert by_name == {"s0": "small", "s1": "big", "s2": "small"}


def test_fifo_head_of_line_holds_then_others_are_tried() -> None:
    """A head that fits nowhere holds the line for hol_rounds rounds (counted in the memo),
    then the sessions behind it start where they fit."""
    pending = [session(0, "A", 1, GiB), session(1, "A", 8, GiB), session(2, "B", 1, GiB)]
    nodes = [agent("n1", 4, 16 * GiB)]
    scheduler = QueueScheduler(hol_rounds=2)
    memo: dict[str, Any] = {}
    snap = snapshot(pending, nodes, memo=memo)
    decision = scheduler.decide(snap)
    assert placed(snap, decision) == ["s0"]
    assert (
        queue_reason(decision, snap, "s2")
        == "waiting behind session s1 (first in line, round 1 of 2)"
    )
    assert queue_reason(decision, snap, "s1") == (
        "first in line (round 1 of 2): the sessions behind it wait until it fits"
    )
    head = {v.name: v for v in decision.waiting[pending[1].id]}
    assert head["fits_agent"].reason == (
        "no agent of group default has 8 cpu and 1 GiB memory free "
        "(most free: 3 cpu on n1, 15 GiB on n1)"
    )
    # next round: s0 runs now
    rest = pending[1:]
    busy = [agent("n1", 4, 16 * GiB, used_cpu=1, used_memory=GiB)]
    snap = snapshot(rest, busy, memo=decision.memo)
    decision = scheduler.decide(snap)
    assert decision.place == ()
    assert (
        queue_reason(decision, snap, "s2")
        == "waiting behind session s1 (first in line, round 2 of 2)"
    )
    snap = snapshot(rest, busy, memo=decision.memo)
    decision = scheduler.decide(snap)
    assert placed(snap, decision) == ["s2"]
    assert decision.memo == {"head": str(pending[1].id), "rounds": 3}
    assert queue_reason(decision, snap, "s1") == (
        "first in line for 3 rounds (holds the line for 2): the sessions behind it are tried"
    )


def test_fifo_hol_zero_never_holds() -> None:
    pending = [session(0, "A", 8, GiB), session(1, "B", 1, GiB)]
    snap = snapshot(pending, [agent("n1", 4, 16 * GiB)])
    assert placed(snap, QueueScheduler(hol_rounds=0).decide(snap)) == ["s1"]


def test_fifo_new_head_counts_from_one() -> None:
    pending = [session(0, "A", 8, GiB), session(1, "B", 1, GiB)]
    snap = snapshot(pending, [agent("n1", 4, 16 * GiB)], memo={"head": "other", "rounds": 7})
    decision = QueueScheduler(hol_rounds=1).decide(snap)
    assert decision.place == ()
    assert decision.memo == {"head": str(pending[0].id), "rounds": 1}


def test_fifo_policy_blocked_session_does_not_hold_the_line() -> None:
    pending = [session(0, "A", 1, GiB), session(1, "B", 1, GiB)]
    snap = snapshot(
        pending,
        [agent("n1", 4, 16 * GiB)],
        running={"A": 1},
        limits={"A": UserLimits(max_sessions=1)},
    )
    decision = QueueScheduler().decide(snap)
    assert placed(snap, decision) == ["s1"]
    assert queue_reason(decision, snap, "s0") == (
        "held back by its own policy, it does not hold the line"
    )
    assert decision.memo == {}


def test_lifo_head_of_line() -> None:
    pending = [session(0, "A", 1, GiB), session(1, "B", 8, GiB)]
    snap = snapshot(pending, [agent("n1", 4, 16 * GiB)])
    decision = QueueScheduler(newest_first=True).decide(snap)
    assert decision.place == ()
    assert (
        queue_reason(decision, snap, "s0")
        == "waiting behind session s1 (first in line, round 1 of 3)"
    )


def test_queue_options_checked() -> None:
    for module in (fifo, lifo):
        [spec] = module.vfd_register_schedulers()
        assert spec.factory({"hol_rounds": 5}).hol_rounds == 5  # type: ignore[attr-defined]
        assert spec.factory({}).hol_rounds == 3  # type: ignore[attr-defined]
        for bad in ({"hol_rounds": -1}, {"hol_rounds": "3"}, {"hol_rounds": True}, {"x": 1}):
            with pytest.raises(VfdError) as caught:
                spec.factory(bad)
            assert caught.value.code is ErrorCode.CONFIG_INVALID
            assert f"scheduler {spec.name}:" in caught.value.message


def test_fifo_past_the_limit_the_others_are_tried_and_told() -> None:
    pending = [session(0, "A", 8, GiB), session(1, "B", 1, GiB), session(2, "C", 6, GiB)]
    snap = snapshot(
        pending, [agent("n1", 4, 16 * GiB)], memo={"head": str(pending[0].id), "rounds": 3}
    )
    decision = QueueScheduler(hol_rounds=3).decide(snap)
    assert placed(snap, decision) == ["s1"]
    assert queue_reason(decision, snap, "s2") == (
        "tried past session s0 (first in line for 4 rounds, oldest first)"
    )
    assert decision.memo == {"head": str(pending[0].id), "rounds": 4}
