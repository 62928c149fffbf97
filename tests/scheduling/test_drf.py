"""The ``drf`` scheduler: dominant resource fairness by progressive filling."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from snapshots import GiB, agent, names, session, snapshot, user

from vfd.errors import ErrorCode, VfdError
from vfd.plugins.builtin import drf
from vfd.plugins.builtin.drf import DrfScheduler
from vfd.plugins.types import Decision, Resources, Snapshot, UserLimits, Verdict


def owners(snap: Snapshot, decision: Decision) -> Counter[uuid.UUID]:
    by_id = {s.id: s for s in snap.pending}
    return Counter(by_id[p.session_id].user_id for p in decision.place)


def test_drf_paper_example() -> None:
    """Ghodsi et al. 2011, section 4: <9 cpu, 18 GB>, A's tasks <1, 4 GB>, B's <3, 1 GB>:
    A gets 3 tasks and B 2, both with a dominant share of 2/3."""
    pending = [session(i, "A", 1, 4 * GiB) for i in range(0, 20, 2)]
    pending += [session(i, "B", 3, 1 * GiB) for i in range(1, 20, 2)]
    snap = snapshot(pending, [agent("n1", 9, 18 * GiB)])
    decision = DrfScheduler().decide(snap)
    assert owners(snap, decision) == {user("A"): 3, user("B"): 2}
    assert names(snap, [p.session_id for p in decision.place]) == ["s0", "s1", "s2", "s3", "s4"]
    assert len(decision.waiting) == 15
    first_a = decision.waiting[session(6, "A", 1, 4 * GiB).id]
    assert [v.name for v in first_a] == [
        "group_allowed",
        "image_allowed",
        "within_concurrency",
        "within_policy",
        "folders_reachable",
        "fits_agent",
        "queue",
    ]
    # a tie at 2/3: B's next session was asked for first and would fit once room is freed,
    # so the round ends there (backfill off: the default)
    assert first_a[-1].reason == (
        "next of its user (dominant share 0.667, memory); waiting for session s5, whose user "
        "goes first, to fit"
    )
    assert not first_a[-2].ok
    later_a = decision.waiting[session(8, "A", 1, 4 * GiB).id]
    assert later_a[-1].reason == (
        "behind session s6 of the same user (each user's sessions start oldest first)"
    )


def test_drf_paper_example_order_independent() -> None:
    """B asking first changes nothing."""
    pending = [session(i, "B", 3, 1 * GiB) for i in range(0, 20, 2)]
    pending += [session(i, "A", 1, 4 * GiB) for i in range(1, 20, 2)]
    snap = snapshot(pending, [agent("n1", 9, 18 * GiB)])
    assert owners(snap, DrfScheduler().decide(snap)) == {user("A"): 3, user("B"): 2}


def test_drf_counts_what_users_already_hold() -> None:
    """The share comes from the user's running sessions in the group: A already holds half
    the cpu, so B's sessions go first until B holds as much."""
    pending = [session(i, "A", 1, GiB) for i in range(4)]
    pending += [session(i, "B", 1, GiB) for i in range(4, 10)]
    snap = snapshot(
        pending,
        [agent("n1", 10, 100 * GiB, used_cpu=4, used_memory=4 * GiB)],
        allocations={"A": Resources(4, 4 * GiB)},
    )
    decision = DrfScheduler().decide(snap)
    # 6 cpu free: B gets 4 (reaching A's 4); at the tie A's next session is the older: A, then B
    got = owners(snap, decision)
    assert got[user("B")] == 5 and got[user("A")] == 1
    assert names(snap, [p.session_id for p in decision.place])[:4] == ["s4", "s5", "s6", "s7"]


def test_drf_ties_go_to_earliest_submit() -> None:
    pending = [session(1, "B", 1, GiB), session(0, "A", 1, GiB), session(2, "C", 1, GiB)]
    snap = snapshot(pending, [agent("n1", 2, 10 * GiB)])
    decision = DrfScheduler().decide(snap)
    assert names(snap, [p.session_id for p in decision.place]) == ["s0", "s1"]


def test_drf_skips_a_user_whose_next_session_fits_nowhere() -> None:
    """A's big session fits nowhere: A is skipped; B fills the rest (A's later small one waits
    behind A's big one)."""
    pending = [session(0, "A", 8, GiB), session(1, "A", 1, GiB)]
    pending += [session(i, "B", 1, GiB) for i in range(2, 6)]
    snap = snapshot(pending, [agent("n1", 4, 10 * GiB)])
    decision = DrfScheduler().decide(snap)
    assert names(snap, [p.session_id for p in decision.place]) == ["s2", "s3", "s4", "s5"]
    assert decision.waiting[pending[1].id][-1].reason == (
        "behind session s0 of the same user (each user's sessions start oldest first)"
    )


def test_drf_passes_over_a_session_its_policy_forbids() -> None:
    pending = [session(0, "A", 1, GiB, image="bad:1"), session(1, "A", 1, GiB, image="ok:1")]
    snap = snapshot(
        pending, [agent("n1", 4, 10 * GiB)], limits={"A": UserLimits(allowed_images=("ok:*",))}
    )
    decision = DrfScheduler().decide(snap)
    assert names(snap, [p.session_id for p in decision.place]) == ["s1"]
    verdicts = {v.name: v for v in decision.waiting[pending[0].id]}
    assert not verdicts["image_allowed"].ok
    assert verdicts["queue"].reason == "passed over: its user's policy does not allow it"


def test_drf_stops_a_user_at_their_concurrency_limit() -> None:
    pending = [session(i, "A", 1, GiB) for i in range(3)]
    snap = snapshot(
        pending,
        [agent("n1", 8, 10 * GiB)],
        running={"A": 1},
        limits={"A": UserLimits(max_sessions=2)},
    )
    decision = DrfScheduler().decide(snap)
    assert names(snap, [p.session_id for p in decision.place]) == ["s0"]
    verdicts = {v.name: v for v in decision.waiting[pending[1].id]}
    assert verdicts["within_concurrency"].reason == "user has 2 live sessions, policy allows 2"


def test_drf_dead_agents_take_nothing() -> None:
    snap = snapshot([session(0, "A", 1, GiB)], [agent("n1", 8, 10 * GiB, alive=False)])
    decision = DrfScheduler().decide(snap)
    assert decision.place == ()
    verdicts = {v.name: v for v in decision.waiting[snap.pending[0].id]}
    assert verdicts["fits_agent"].reason == "no alive agent in group default"


def test_drf_backfill_trades_strategy_proofness_for_use() -> None:
    """With backfill on (the default) a user skipped for lack of room lets the others go on,
    and that can be gamed: A asking for 1 cpu instead of 0.5 makes C's session not fit and
    gets A a second session. With backfill off the round ends at C, and lying gains nothing
    (the property test checks it in general)."""
    nodes = [agent("n1", 2, GiB)]

    def a_started(cpu: float, backfill: bool) -> int:
        pending = [
            session(0, "A", cpu, GiB // 4),
            session(1, "C", 1.5, GiB // 4),
            session(2, "A", cpu, GiB // 4),
        ]
        snap = snapshot(pending, nodes)
        decision = DrfScheduler(backfill=backfill).decide(snap)
        return owners(snap, decision)[user("A")]

    assert a_started(0.5, backfill=True) == 1
    assert a_started(1.0, backfill=True) == 2
    assert a_started(0.5, backfill=False) == 1
    assert a_started(1.0, backfill=False) == 1


def test_drf_backfill_off_holds_the_round() -> None:
    pending = [session(0, "A", 3, GiB), session(1, "B", 3, GiB), session(2, "C", 1, GiB)]
    snap = snapshot(pending, [agent("n1", 4, 8 * GiB)])
    decision = DrfScheduler(backfill=False).decide(snap)
    assert names(snap, [p.session_id for p in decision.place]) == ["s0"]
    assert decision.waiting[pending[1].id][-1].reason == (
        "next of its user (dominant share 0.000, cpu); the round ends until it fits (backfill off)"
    )
    assert decision.waiting[pending[2].id][-1] == Verdict(
        "queue",
        False,
        "next of its user (dominant share 0.000, cpu); waiting for session s1, whose user "
        "goes first, to fit",
    )
    # a session that fits on no agent even when empty does not hold the round
    pending = [session(0, "A", 3, GiB), session(1, "B", 9, GiB), session(2, "C", 1, GiB)]
    snap = snapshot(pending, [agent("n1", 4, 8 * GiB)])
    decision = DrfScheduler(backfill=False).decide(snap)
    assert names(snap, [p.session_id for p in decision.place]) == ["s0", "s2"]


def test_drf_options_checked() -> None:
    [spec] = drf.vfd_register_schedulers()
    assert spec.factory({}).backfill is False  # type: ignore[attr-defined]
    assert spec.factory({"backfill": True}).backfill is True  # type: ignore[attr-defined]
    for bad, message in (
        ({"backfill": "no"}, "scheduler drf: backfill must be true or false, not 'no'"),
        ({"hol_rounds": 1}, "scheduler drf: unknown options hol_rounds (known: backfill)"),
    ):
        with pytest.raises(VfdError) as caught:
            spec.factory(bad)
        assert caught.value.code is ErrorCode.CONFIG_INVALID
        assert caught.value.message == message
