"""Where a chosen session goes, and what every session left waiting is told.

Best fit: of the alive agents of the group with room for the session and reaching its storage
hosts, the one left with the least free dominant resource (the larger of its free cpu and free
memory shares after the placement), ties to the smallest agent id, so a round's outcome
depends on the snapshot alone. Filling the fullest agent that still fits keeps whole agents
free for large sessions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from vfd.plugins.types import CPU_SLACK, Agent, PendingSession, Placement, Verdict
from vfd.scheduling.predicates import AGENT_PREDICATES, USER_PREDICATES, Predicate
from vfd.scheduling.state import RoundState


def user_verdicts(session: PendingSession, state: RoundState) -> list[Verdict]:
    """The verdicts of :data:`~vfd.scheduling.predicates.USER_PREDICATES`."""
    return [p(session, None, state) for p in USER_PREDICATES]


def first_failing(session: PendingSession, state: RoundState) -> Verdict | None:
    """The first of the user predicates ``session`` fails now, or None."""
    for p in USER_PREDICATES:
        verdict = p(session, None, state)
        if not verdict.ok:
            return verdict
    return None


def best_fit(session: PendingSession, state: RoundState) -> Agent | None:
    """The agent ``session`` goes to by best fit, or None when it fits on none now."""
    request = session.request
    if not state.might_fit(request):
        return None
    hosts = session.storage_hosts
    best: Agent | None = None
    best_score = 0.0
    for agent in state.alive:
        free = state.free[agent.id]
        if request.cpu > free.cpu + CPU_SLACK or request.memory > free.memory:
            continue
        reach = agent.storage_hosts
        if hosts and reach is not None and not all(h in reach for h in hosts):
            continue
        cpu_left = (free.cpu - request.cpu) / agent.cpu if agent.cpu > 0 else 0.0
        memory_left = (free.memory - request.memory) / agent.memory if agent.memory > 0 else 0.0
        score = max(cpu_left, memory_left)
        if best is None or score < best_score:
            best, best_score = agent, score
    return best


def fits_when_empty(session: PendingSession, state: RoundState) -> bool:
    """Whether ``session`` would fit on some alive agent of the group with nothing running
    there (it can start once room is freed; one that cannot never will)."""
    request = session.request
    hosts = session.storage_hosts
    for agent in state.alive:
        reach = agent.storage_hosts
        if hosts and reach is not None and not all(h in reach for h in hosts):
            continue
        if request.fits_in(agent.capacity):
            return True
    return False


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
    cache: dict[tuple[float, int, tuple[str, ...]], list[Verdict]] = {}
    out: dict[uuid.UUID, tuple[Verdict, ...]] = {}
    for session in waiting:
        key = (session.cpu, session.memory, session.storage_hosts)
        agent_side = cache.get(key)
        if agent_side is None:
            agent_side = cache[key] = [p(session, None, state) for p in predicates]
        verdicts = user_verdicts(session, state) + agent_side
        own = queue.get(session.id)
        if own is not None:
            verdicts.append(own)
        out[session.id] = tuple(verdicts)
    return out
