"""Accelerator slots in the scheduling library and the built-in schedulers: the verdicts that
say why a request does not fit, the fragmentation guard and topology through a round, whole
devices and shares kept apart, max_slots, drf's dominant share over slots, and best fit
across nodes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from snapshots import GiB, agent, names, session, snapshot

from vfd.plugins.builtin.drf import DrfScheduler
from vfd.plugins.builtin.fifo import QueueScheduler
from vfd.plugins.types import Allotment, Resources, SlotUnit, UserLimits, Verdict
from vfd.scheduling.placement import best_fit, fits_when_empty, try_place
from vfd.scheduling.predicates import check, fits_agent, within_policy
from vfd.scheduling.state import RoundState, dominant_share

SHARES = "cuda.shares"
DEVICE = "cuda.device"


def unit(slot: str, device: str, capacity: float = 1.0, used: float = 0.0, **more: Any) -> SlotUnit:
    return SlotUnit(slot=slot, device=device, capacity=capacity, used=used, **more)


def shares(n: int, *used: float, prefix: str = "GPU-") -> tuple[SlotUnit, ...]:
    """``n`` devices of 1.0 share each, the first ones with ``used`` held."""
    held = list(used) + [0.0] * (n - len(used))
    return tuple(unit(SHARES, f"{prefix}{i}", 1.0, held[i]) for i in range(n))


def asking(n: int, owner: str, slots: Mapping[str, float], cpu: float = 1) -> Any:
    return session(n, owner, cpu, GiB, slots=slots)


def allocation(state: RoundState, s: Any) -> list[tuple[str, float]]:
    return [(a.device, a.amount) for a in state.allotted[s.id]]


def test_slots_fits_agent_says_why_not_per_agent() -> None:
    split = agent("n1", 8, 32 * GiB, units=shares(2, 0.6, 0.6))
    whole = agent("n2", 8, 32 * GiB, units=(unit(DEVICE, "GPU-x"),))
    bare = agent("n3", 8, 32 * GiB)
    s = asking(0, "A", {SHARES: 0.5})
    state = RoundState(snapshot([s], [split, whole, bare]))
    assert fits_agent(s, split, state) == Verdict(
        "fits_agent",
        False,
        "agent n1: 0.5 cuda.shares asked, 0.8 free but split over devices (at most 0.4 on one)",
    )
    assert fits_agent(s, whole, state).reason == (
        "agent n2: 0.5 cuda.shares asked, it offers cuda.device only"
    )
    assert fits_agent(s, bare, state).reason == (
        "agent n3: 0.5 cuda.shares asked, it has no such devices"
    )
    assert fits_agent(s, None, state) == Verdict(
        "fits_agent",
        False,
        "no agent of group default has room for it (agent n1: 0.5 cuda.shares asked, 0.8 free "
        "but split over devices (at most 0.4 on one); agent n2: 0.5 cuda.shares asked, it "
        "offers cuda.device only; agent n3: 0.5 cuda.shares asked, it has no such devices)",
    )
    small = asking(1, "A", {SHARES: 0.4})
    assert fits_agent(small, None, state) == Verdict(
        "fits_agent", True, "fits on 1 agent(s), e.g. n1"
    )
    fitting, _ = check(small, state.snapshot, state)
    assert [a.id for a in fitting] == ["n1"]


def test_slots_fits_agent_names_cpu_and_devices_together_and_counts_more_agents() -> None:
    nodes = [agent(f"n{i}", 2, 8 * GiB, units=shares(1, 1.0)) for i in range(5)]
    s = asking(0, "A", {SHARES: 0.5}, cpu=4)
    state = RoundState(snapshot([s], nodes))
    reason = fits_agent(s, None, state).reason
    assert reason.startswith(
        "no agent of group default has room for it (agent n0: 4 cpu asked, 2 free; "
        "0.5 cuda.shares asked, 0 free; agent n1: "
    ), reason
    assert reason.endswith("; 2 more agent(s) short too)"), reason


def test_slots_too_large_for_a_node_in_all() -> None:
    s = asking(0, "A", {DEVICE: 3})
    n1 = agent("n1", 8, 32 * GiB, units=(unit(DEVICE, "a"), unit(DEVICE, "b", used=1)))
    state = RoundState(snapshot([s], [n1]))
    assert fits_agent(s, n1, state).reason == "agent n1: 3 cuda.device asked, it has 2 in all"
    assert not fits_when_empty(s, state)
    two = asking(1, "A", {DEVICE: 2})
    assert fits_agent(two, n1, state).reason == "agent n1: 2 cuda.device asked, 1 free"
    assert fits_when_empty(two, state)  # once b is given back


def test_slots_fragmentation_guard_through_a_round() -> None:
    """A small request goes on the partly used device, on the partly used node: the empty
    device (and node) stays whole for a large request."""
    n1 = agent("n1", 16, 64 * GiB, units=shares(2, 0.3))
    n2 = agent("n2", 16, 64 * GiB, units=shares(2, prefix="H-"))
    small, large, whole = (
        asking(0, "A", {SHARES: 0.5}),
        asking(1, "B", {SHARES: 1.0}),
        asking(2, "C", {SHARES: 2.0}),
    )
    snap = snapshot([small, large, whole], [n1, n2])
    state = RoundState(snap)
    assert try_place(small, state) is not None
    assert state.placed[small.id] == "n1" and allocation(state, small) == [("GPU-0", 0.5)]
    assert try_place(large, state) is not None
    assert state.placed[large.id] == "n1" and allocation(state, large) == [("GPU-1", 1.0)]
    assert try_place(whole, state) is not None
    assert state.placed[whole.id] == "n2"
    assert allocation(state, whole) == [("H-0", 1.0), ("H-1", 1.0)]
    assert state.free["n2"].slots[SHARES] == 0.0
    # the same through fifo
    decision = QueueScheduler().decide(snap)
    assert [(names(snap, [p.session_id])[0], p.agent) for p in decision.place] == [
        ("s0", "n1"),
        ("s1", "n1"),
        ("s2", "n2"),
    ]


def test_slots_topology_whole_devices_close_together() -> None:
    """Two whole devices go on a pair on one switch, not across NUMA nodes."""
    near = {"G0": {"G1": 10}, "G1": {"G0": 10}, "G2": {"G3": 10}, "G3": {"G2": 10}}
    n1 = agent(
        "n1",
        32,
        128 * GiB,
        units=tuple(
            unit(DEVICE, d, used=1 if d == "G0" else 0, numa=0 if d < "G2" else 1, near=near[d])
            for d in ("G0", "G1", "G2", "G3")
        ),
    )
    first, second = asking(0, "A", {DEVICE: 2}), asking(1, "B", {DEVICE: 1})
    state = RoundState(snapshot([first, second], [n1]))
    assert try_place(first, state) is not None
    assert allocation(state, first) == [("G2", 1.0), ("G3", 1.0)]  # not G1 with G2
    assert try_place(second, state) is not None
    assert allocation(state, second) == [("G1", 1.0)]
    third = asking(2, "C", {DEVICE: 1})
    assert best_fit(third, state) is None
    assert fits_agent(third, None, state).reason.endswith("1 cuda.device asked, 0 free)")


def test_slots_shares_never_land_on_whole_device_nodes() -> None:
    whole = agent("a-whole", 64, 256 * GiB, units=(unit(DEVICE, "W0"), unit(DEVICE, "W1")))
    frac = agent("b-frac", 4, 16 * GiB, units=shares(1))
    s_shares = asking(0, "A", {SHARES: 0.3})
    s_device = asking(1, "B", {DEVICE: 1})
    plain = session(2, "C", 1, GiB)
    snap = snapshot([s_shares, s_device, plain], [whole, frac])
    decision = QueueScheduler().decide(snap)
    placed = {names(snap, [p.session_id])[0]: p.agent for p in decision.place}
    assert placed == {"s0": "b-frac", "s1": "a-whole", "s2": "b-frac"}
    # with only the whole-device node, the shares request waits and says why
    only = snapshot([s_shares], [whole])
    waits = QueueScheduler().decide(only)
    assert not waits.place
    fits = next(v for v in waits.waiting[s_shares.id] if v.name == "fits_agent")
    assert "0.3 cuda.shares asked, it offers cuda.device only" in fits.reason


def test_slots_unfit_request_does_not_block_a_smaller_one() -> None:
    """The round's memo of requests fitting nowhere tells requests apart by their slots."""
    n1 = agent("n1", 8, 32 * GiB, units=shares(1, 0.7))
    big, small = asking(0, "A", {SHARES: 0.5}), asking(1, "A", {SHARES: 0.3})
    state = RoundState(snapshot([big, small], [n1]))
    assert best_fit(big, state) is None
    assert best_fit(small, state) is not None
    plain = session(2, "A", 1, GiB)
    assert best_fit(plain, state) is not None


def test_slots_within_policy_max_slots() -> None:
    s = asking(0, "A", {DEVICE: 2})
    nodes = [agent("n1", 8, 32 * GiB, units=(unit(DEVICE, "a"), unit(DEVICE, "b")))]
    limits = {"A": UserLimits(max_slots={DEVICE: 2})}
    ok = RoundState(snapshot([s], nodes, limits=limits))
    assert within_policy(s, None, ok) == Verdict(
        "within_policy", True, "within the user's cpu, memory and slot limits"
    )
    held = {"A": Resources(1, GiB, {DEVICE: 1})}
    over = RoundState(snapshot([s], nodes, allocations=held, limits=limits))
    assert within_policy(s, None, over) == Verdict(
        "within_policy",
        False,
        "user's sessions would hold 3 cuda.device with this one, policy allows 2",
    )
    other = {"A": UserLimits(max_slots={SHARES: 0.5})}
    assert within_policy(s, None, RoundState(snapshot([s], nodes, limits=other))).ok
    # fifo: the session its policy holds back does not hold the line
    behind = session(1, "B", 1, GiB)
    snap = snapshot([s, behind], nodes, allocations=held, limits=limits)
    decision = QueueScheduler().decide(snap)
    assert names(snap, [p.session_id for p in decision.place]) == ["s1"]


def test_slots_dominant_share_counts_slots() -> None:
    total = Resources(100, 100 * GiB, {DEVICE: 4})
    assert dominant_share(Resources(10, GiB, {DEVICE: 2}), total) == 0.5
    assert dominant_share(Resources(10, GiB), total) == 0.1
    assert dominant_share(Resources(10, GiB, {SHARES: 1}), total) == 0.1  # none in the group


def test_slots_drf_shares_devices_between_users() -> None:
    """GPU-heavy A and cpu-heavy B on one node: A's dominant resource is its devices, so B is
    not starved by A's small cpu use."""
    n1 = agent("n1", 16, 64 * GiB, units=tuple(unit(DEVICE, f"G{i}") for i in range(4)))
    a_sessions = [asking(i, "A", {DEVICE: 1}, cpu=1) for i in range(4)]
    b_sessions = [session(10 + i, "B", 4, GiB) for i in range(4)]
    snap = snapshot([*a_sessions, *b_sessions], [n1])
    decision = DrfScheduler(backfill=True).decide(snap)
    placed = names(snap, [p.session_id for p in decision.place])
    # each of A's sessions is 1/4 of the devices, each of B's 1/4 of the cpu: they alternate
    # (counting cpu and memory alone, A's would be 1/16 each and A would go four times in a
    # row); B's fourth does not fit in the 1 cpu left
    assert placed == ["s0", "s10", "s1", "s11", "s2", "s12", "s3"], placed
    waiting = decision.waiting[b_sessions[3].id]
    queue = next(v for v in waiting if v.name == "queue")
    assert "dominant share 0.750, cpu" in queue.reason, queue
    a_held = RoundState(snap)
    for s in a_sessions[:3]:
        a_held.place(s, "n1")
    assert a_held.share(a_sessions[0].user_id) == 0.75
    # a user held back by the devices is told its share in devices
    more = [asking(i, "A", {DEVICE: 1}) for i in range(5)]
    snap = snapshot(more, [n1])
    decision = DrfScheduler().decide(snap)
    assert len(decision.place) == 4
    queue = next(v for v in decision.waiting[more[4].id] if v.name == "queue")
    assert "dominant share 1.000, cuda.device" in queue.reason, queue
    # a user whose next session needs more devices than any node has is skipped, the round
    # goes on (it would never fit)
    huge = asking(20, "C", {DEVICE: 5})
    snap = snapshot([huge, b_sessions[0]], [n1])
    decision = DrfScheduler().decide(snap)
    assert names(snap, [p.session_id for p in decision.place]) == ["s10"]


def test_slots_place_returns_the_allotments() -> None:
    n1 = agent("n1", 8, 32 * GiB, units=shares(2))
    s, plain = asking(0, "A", {SHARES: 1.5}), session(1, "A", 1, GiB)
    state = RoundState(snapshot([s, plain], [n1]))
    assert state.total.slots == {SHARES: 2.0}
    got = state.place(s, "n1")
    assert got == (Allotment(SHARES, "GPU-0", 1.0), Allotment(SHARES, "GPU-1", 0.5))
    assert state.allocation(s.user_id).slots == {SHARES: 1.5}
    assert state.place(plain, "n1") == ()
    assert [u.used for u in state.units["n1"]] == [1.0, 0.5]
