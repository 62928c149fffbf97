"""Properties of the built-in schedulers over random snapshots (hypothesis)."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from snapshots import GiB, agent, session, snapshot, user

from vfd.plugins.builtin.drf import DrfScheduler
from vfd.plugins.builtin.fifo import QueueScheduler
from vfd.plugins.types import (
    Agent,
    Decision,
    PendingSession,
    Resources,
    Scheduler,
    SlotUnit,
    Snapshot,
)
from vfd.scheduling import slots as slot_math
from vfd.scheduling.state import dominant_share

SCHEDULERS: dict[str, Scheduler] = {
    "fifo": QueueScheduler(),
    "fifo-0": QueueScheduler(hol_rounds=0),
    "lifo": QueueScheduler(newest_first=True),
    "drf": DrfScheduler(),
}
USERS = "ABCD"

cpus = st.integers(1, 16).map(lambda n: n / 2)  # 0.5 .. 8
memories = st.integers(1, 64).map(lambda n: n * GiB // 4)  # 256 MiB .. 16 GiB


@st.composite
def agents(draw: st.DrawFn, alive: bool = False) -> list[Agent]:
    out = []
    for i in range(draw(st.integers(1, 4))):
        cpu = draw(st.integers(1, 32))
        memory = draw(st.integers(1, 64)) * GiB
        out.append(
            agent(
                f"n{i}",
                cpu,
                memory,
                used_cpu=draw(st.integers(0, cpu)) / 2,
                used_memory=draw(st.integers(0, memory // GiB)) * GiB // 2,
                alive=alive or draw(st.booleans() | st.just(True)),
                group=draw(st.sampled_from(["default", "default", "default", "other"])),
            )
        )
    return out


@st.composite
def demands(draw: st.DrawFn) -> dict[str, tuple[Resources, int]]:
    """Each user's task (one size per user) and how many they ask for."""
    users = draw(st.lists(st.sampled_from(USERS), min_size=1, max_size=4, unique=True))
    return {u: (Resources(draw(cpus), draw(memories)), draw(st.integers(1, 12))) for u in users}


@st.composite
def pendings(draw: st.DrawFn, demand: dict[str, tuple[Resources, int]]) -> list[PendingSession]:
    owners = [u for u, (_, count) in demand.items() for _ in range(count)]
    order = draw(st.permutations(owners))
    return [session(n, u, demand[u][0].cpu, demand[u][0].memory) for n, u in enumerate(order)]


def used_after(snap: Snapshot, decision: Decision) -> dict[str, Resources]:
    by_id = {s.id: s for s in snap.pending}
    used = {a.id: Resources(a.used_cpu, a.used_memory) for a in snap.agents}
    for p in decision.place:
        used[p.agent] = used[p.agent] + by_id[p.session_id].request
    return used


@settings(max_examples=150, deadline=None, database=None)
@given(data=st.data(), name=st.sampled_from(sorted(SCHEDULERS)))
def test_schedulers_never_place_over_capacity(data: st.DataObject, name: str) -> None:
    nodes = data.draw(agents())
    pending = data.draw(pendings(data.draw(demands())))
    snap = snapshot(pending, nodes)
    decision = SCHEDULERS[name].decide(snap)
    ids = [p.session_id for p in decision.place]
    assert len(ids) == len(set(ids))
    assert set(ids) | set(decision.waiting) == {s.id for s in pending}
    assert not set(ids) & set(decision.waiting)
    by_agent = {a.id: a for a in nodes}
    used = used_after(snap, decision)
    for p in decision.place:
        target = by_agent[p.agent]
        assert target.alive and target.group == "default"
    for a in nodes:
        if any(p.agent == a.id for p in decision.place):
            assert used[a.id].fits_in(a.capacity), (a, used[a.id])
    for verdicts in decision.waiting.values():
        assert verdicts[-1].name == "queue"
        assert not all(v.ok for v in verdicts)  # something says why it waits


def shares(snap: Snapshot, decision: Decision, total: Resources) -> dict[uuid.UUID, float]:
    by_id = {s.id: s for s in snap.pending}
    held: dict[uuid.UUID, Resources] = defaultdict(Resources)
    for p in decision.place:
        s = by_id[p.session_id]
        held[s.user_id] = held[s.user_id] + s.request
    return {u: dominant_share(r, total) for u, r in held.items()}


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.data())
def test_drf_equal_dominant_shares_within_one_task(data: st.DataObject) -> None:
    """Whenever user u is left waiting while v got a session, v held no more than u before
    v's last session, unless u's next session would not have fit where v's went even with
    v's session given back (then u had been skipped for lack of room, not for its share)."""
    nodes = data.draw(agents(alive=True))
    pending = data.draw(pendings(data.draw(demands())))
    nodes = [replace(a, used_cpu=0, used_memory=0, group="default") for a in nodes]
    snap = snapshot(pending, nodes)
    decision = DrfScheduler().decide(snap)
    total = Resources(sum(a.cpu for a in nodes), sum(a.memory for a in nodes))
    share = shares(snap, decision, total)
    by_id = {s.id: s for s in pending}
    used = used_after(snap, decision)
    last: dict[uuid.UUID, tuple[PendingSession, str]] = {}
    for p in decision.place:
        last[by_id[p.session_id].user_id] = (by_id[p.session_id], p.agent)
    next_waiting: dict[uuid.UUID, PendingSession] = {}
    for s in sorted(pending, key=lambda s: (s.created_at, s.id)):
        if s.id in decision.waiting:
            next_waiting.setdefault(s.user_id, s)
    caps = {a.id: a.capacity for a in nodes}
    for u, waiting in next_waiting.items():
        for v, (task, where) in last.items():
            if v == u:
                continue
            room = caps[where] - used[where] + task.request
            if not waiting.request.fits_in(room):
                continue
            before = share[v] - dominant_share(task.request, total)
            assert before <= share.get(u, 0.0) + 1e-9, (u, v, share)


@settings(max_examples=200, deadline=None, database=None)
@given(
    data=st.data(),
    cpu_factor=st.integers(1, 4),
    memory_factor=st.integers(1, 4),
)
def test_drf_inflating_requests_never_pays(
    data: st.DataObject, cpu_factor: int, memory_factor: int
) -> None:
    """With backfill off, a user asking for more than their sessions need never gets more
    sessions started (the useful allocation: sessions times what each needs)."""
    nodes = [
        replace(a, used_cpu=0, used_memory=0, group="default", alive=True)
        for a in data.draw(agents())
    ]
    demand = data.draw(demands())
    liar = data.draw(st.sampled_from(sorted(demand)))
    pending = data.draw(pendings(demand))
    honest = snapshot(pending, nodes)
    inflated = snapshot(
        [
            replace(s, cpu=s.cpu * cpu_factor, memory=s.memory * memory_factor)
            if s.user_id == user(liar)
            else s
            for s in pending
        ],
        nodes,
    )

    def started(snap: Snapshot) -> int:
        by_id = {s.id: s for s in snap.pending}
        decision = DrfScheduler(backfill=False).decide(snap)
        counts = Counter(by_id[p.session_id].user_id for p in decision.place)
        return counts[user(liar)]

    assert started(inflated) <= started(honest)


SLOT_KINDS = ("cuda.device", "cuda.shares")


@st.composite
def gpu_agents(draw: st.DrawFn) -> list[Agent]:
    """Agents of the group each offering whole devices or shares (some partly held)."""
    out = []
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(SLOT_KINDS))
        units = []
        for d in range(draw(st.integers(0, 4))):
            if kind == "cuda.device":
                units.append(SlotUnit(kind, f"n{i}-{d}", 1.0, used=float(draw(st.booleans()))))
            else:
                worth = draw(st.integers(5, 10)) / 10
                held = draw(st.integers(0, round(worth * 10))) / 10
                units.append(SlotUnit(kind, f"n{i}-{d}", worth, used=held, numa=d % 2))
        out.append(agent(f"n{i}", 64, 256 * GiB, alive=True, units=tuple(units)))
    return out


@st.composite
def gpu_pendings(draw: st.DrawFn) -> list[PendingSession]:
    out = []
    for n in range(draw(st.integers(1, 16))):
        kind = draw(st.sampled_from((*SLOT_KINDS, None)))
        if kind == "cuda.device":
            slots: dict[str, float] = {kind: float(draw(st.integers(1, 3)))}
        elif kind == "cuda.shares":
            slots = {kind: draw(st.integers(1, 25)) / 10}
        else:
            slots = {}
        out.append(session(n, draw(st.sampled_from(USERS)), 1, GiB, slots=slots))
    return out


@settings(max_examples=150, deadline=None, database=None)
@given(data=st.data(), name=st.sampled_from(sorted(SCHEDULERS)))
def test_schedulers_never_place_slots_past_the_devices(data: st.DataObject, name: str) -> None:
    """Every placement of a session asking slots goes on devices of its slot with room, as the
    loop replays it (slots.allot_all in placement order); no device is held past its worth;
    and a session waiting with devices that would take it now is not told it does not fit."""
    nodes = data.draw(gpu_agents())
    pending = data.draw(gpu_pendings())
    snap = snapshot(pending, nodes)
    decision = SCHEDULERS[name].decide(snap)
    by_id = {s.id: s for s in snap.pending}
    units = {a.id: a.units for a in nodes}
    for p in decision.place:
        asked = by_id[p.session_id].slots
        got = slot_math.allot_all(asked, units[p.agent])
        assert got is not None, (asked, units[p.agent])
        assert {a.slot for a in got} <= set(asked)
        assert sum(a.amount for a in got) == pytest.approx(sum(asked.values()))
        units[p.agent] = slot_math.take(units[p.agent], got)
    for held in units.values():
        for u in held:
            assert u.used <= u.capacity + 1e-9, u
    for session_id, verdicts in decision.waiting.items():
        s = by_id[session_id]
        fits = next(v for v in verdicts if v.name == "fits_agent")
        if s.slots and not fits.ok:
            room = any(slot_math.allot_all(s.slots, u) is not None for u in units.values())
            assert not room, (s.slots, fits.reason)
