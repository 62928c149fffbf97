"""Where a chosen session goes, and what every session left waiting is told.

Best fit: of the alive agents of the group with room for the session and reaching its storage
hosts, the one left with the least free dominant resource (the larger of its free cpu and free
memory shares after the placement), ties to the smallest agent id, so a round's outcome
depends on the snapshot alone. Filling the fullest agent that still fits keeps whole agents
free for large sessions.

A session asking accelerator slots goes only where :func:`vfd.scheduling.slots.allot_all`
finds devices for them: of the agents with room, the one left with the least free share of
the slots asked (a partly used agent before an empty one, as a partly used device before an
empty one on an agent), then by cpu and memory as above. A session asking none is placed as
before, without looking at devices.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping

from vfd.plugins.types import CPU_SLACK, Agent, PendingSession, Placement, SlotUnit, Verdict
from vfd.scheduling import slots
from vfd.scheduling.predicates import AGENT_PREDICATES, UNLIMITED, USER_PREDICATES, Predicate
from vfd.scheduling.state import RoundState, UnfitKey, slots_key, unfit_key


def user_verdicts(session: PendingSession, state: RoundState) -> list[Verdict]:
    """The verdicts of :data:`~vfd.scheduling.predicates.USER_PREDICATES`."""
    return [p(session, None, state) for p in USER_PREDICATES]


def first_failing(session: PendingSession, state: RoundState) -> Verdict | None:
    """The first of the user predicates ``session`` fails now, or None."""
    if session.user_id not in state.snapshot.limits:
        return None  # no limits: every user predicate holds
    for p in USER_PREDICATES:
        verdict = p(session, None, state)
        if not verdict.ok:
            return verdict
    return None


def best_fit(session: PendingSession, state: RoundState) -> Agent | None:
    """The agent ``session`` goes to by best fit, or None when it fits on none now."""
    if session.slots:
        return _best_fit_slots(session, state)
    cpu, memory, hosts = session.cpu, session.memory, session.storage_hosts
    key: UnfitKey = (cpu, memory, hosts, ())
    if key in state.unfit:
        return None
    best = -1
    best_score = math.inf
    slack = -CPU_SLACK
    # the hot loop of every round: plain lists, no attribute lookups
    for i, free_cpu, free_memory, per_cpu, per_memory in zip(
        range(len(state.alive)),
        state.free_cpu,
        state.free_memory,
        state.per_cpu,
        state.per_memory,
        strict=True,
    ):
        left_cpu = free_cpu - cpu
        if left_cpu < slack:
            continue
        left_memory = free_memory - memory
        if left_memory < 0:
            continue
        score = left_cpu * per_cpu
        if left_memory * per_memory > score:
            score = left_memory * per_memory
        if score < best_score:
            if hosts and not reaches(state.alive[i], hosts):
                continue
            best, best_score = i, score
    if best < 0:
        state.unfit.add(key)
        return None
    return state.alive[best]


def _best_fit_slots(session: PendingSession, state: RoundState) -> Agent | None:
    """:func:`best_fit` of a session asking slots: only agents whose devices take them; the
    one left with the least free share of the slots asked (devices are the scarce part),
    then with the least free dominant share of cpu and memory."""
    key = unfit_key(session)
    if key in state.unfit:
        return None
    cpu, memory, hosts = session.cpu, session.memory, session.storage_hosts
    best = -1
    best_score = (math.inf, math.inf)
    for i, a in enumerate(state.alive):
        units = state.units.get(a.id)
        if units is None:
            continue  # no devices: no slot fits
        left_cpu = state.free_cpu[i] - cpu
        left_memory = state.free_memory[i] - memory
        if left_cpu < -CPU_SLACK or left_memory < 0:
            continue
        score = (
            max(_left_share(slot, amount, units) for slot, amount in session.slots.items()),
            max(left_cpu * state.per_cpu[i], left_memory * state.per_memory[i]),
        )
        if score >= best_score or (hosts and not reaches(a, hosts)):
            continue
        if slots.allot_all(session.slots, units) is None:
            continue
        best, best_score = i, score
    if best < 0:
        state.unfit.add(key)
        return None
    return state.alive[best]


def _left_share(slot: str, amount: float, units: tuple[SlotUnit, ...]) -> float:
    """The share of ``slot``'s devices of an agent free after ``amount`` more is held."""
    total = free = 0.0
    for u in units:
        if u.slot == slot:
            total += u.capacity
            free += u.free
    return (free - amount) / total if total > 0 else 0.0


def reaches(agent: Agent, hosts: tuple[str, ...]) -> bool:
    """Whether ``agent`` reaches every storage host of ``hosts``."""
    reach = agent.storage_hosts
    return reach is None or all(h in reach for h in hosts)


def fits_when_empty(session: PendingSession, state: RoundState) -> bool:
    """Whether ``session`` would fit on some alive agent of the group with nothing running
    there (it can start once room is freed; one that cannot never will)."""
    request = session.request
    return any(
        request.fits_in(a.capacity)
        and reaches(a, session.storage_hosts)
        and (not session.slots or slots.allot_all(session.slots, _emptied(a.units)) is not None)
        for a in state.alive
    )


def _emptied(units: tuple[SlotUnit, ...]) -> tuple[SlotUnit, ...]:
    """``units`` with nothing held."""
    return tuple(
        SlotUnit(slot=u.slot, device=u.device, capacity=u.capacity, numa=u.numa, near=u.near)
        for u in units
    )


def try_place(session: PendingSession, state: RoundState) -> Agent | None:
    """Place ``session`` by best fit when it passes every predicate now; the agent, or None
    (it waits)."""
    if first_failing(session, state) is not None:
        return None
    agent = best_fit(session, state)
    if agent is not None:
        state.place(session, agent.id)
    return agent


def placements(state: RoundState) -> tuple[Placement, ...]:
    """The round's placements, in the order they were made."""
    return tuple(Placement(sid, agent) for sid, agent in state.placed.items())


def waiting_verdicts(
    waiting: Iterable[PendingSession],
    state: RoundState,
    queue: Mapping[uuid.UUID, Verdict],
    predicates: tuple[Predicate, ...] = AGENT_PREDICATES,
) -> dict[uuid.UUID, tuple[Verdict, ...]]:
    """Every waiting session's verdicts at the end of the round: the user predicates, the
    agent ones (computed once per distinct request and storage hosts: the round is over, so
    they depend on nothing else), then the scheduler's own from ``queue`` when it has one."""
    cache: dict[UnfitKey, tuple[Verdict, ...]] = {}
    shared: dict[tuple[int, int], tuple[Verdict, ...]] = {}
    out: dict[uuid.UUID, tuple[Verdict, ...]] = {}
    limits = state.snapshot.limits
    for session in waiting:
        key = (
            session.cpu,
            session.memory,
            session.storage_hosts,
            slots_key(session.slots),
        )
        agent_side = cache.get(key)
        if agent_side is None:
            agent_side = cache[key] = tuple(p(session, None, state) for p in predicates)
        own = queue.get(session.id)
        if session.user_id in limits:
            verdicts = (*user_verdicts(session, state), *agent_side)
            out[session.id] = verdicts if own is None else (*verdicts, own)
            continue
        # users without limits: one tuple per distinct (agent verdicts, queue verdict), shared
        # (a long queue says the same of many sessions; fewer objects, less garbage collection)
        ids = (id(agent_side), id(own))
        found = shared.get(ids)
        if found is None:
            found = (*UNLIMITED, *agent_side) if own is None else (*UNLIMITED, *agent_side, own)
            shared[ids] = found
        out[session.id] = found
    return out
