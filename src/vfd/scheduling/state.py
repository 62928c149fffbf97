"""The in-round view of a resource group: what is free where, and what each user holds, as a
round places sessions one after another.

Built from a :class:`~vfd.plugins.types.Snapshot` and never handed back: a scheduler returns
a :class:`~vfd.plugins.types.Decision`, and the loop applies it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from vfd.plugins.types import (
    NO_SLOTS,
    Agent,
    Allotment,
    PendingSession,
    Resources,
    SlotUnit,
    Snapshot,
    UserLimits,
)
from vfd.scheduling import slots

NO_LIMITS = UserLimits()

UnfitKey = tuple[float, int, tuple[str, ...], tuple[tuple[str, float], ...]]
"""What :attr:`RoundState.unfit` remembers of a request: cpu, memory, storage hosts, slots."""


def shares(used: Resources, total: Resources) -> dict[str, float]:
    """``used``'s share of ``total`` of each resource: ``cpu``, ``memory`` and each slot
    ``used`` holds (0 for a resource the group has none of)."""
    out = {
        "cpu": used.cpu / total.cpu if total.cpu > 0 else 0.0,
        "memory": used.memory / total.memory if total.memory > 0 else 0.0,
    }
    for name, amount in used.slots.items():
        whole = total.slots.get(name, 0.0)
        out[name] = amount / whole if whole > 0 else 0.0
    return out


def dominant_share(used: Resources, total: Resources) -> float:
    """The largest of ``used``'s shares of ``total`` over cpu, memory and each accelerator
    slot (0 for a resource the group has none of)."""
    cpu = used.cpu / total.cpu if total.cpu > 0 else 0.0
    memory = used.memory / total.memory if total.memory > 0 else 0.0
    share = max(cpu, memory)
    for name, amount in used.slots.items():
        whole = total.slots.get(name, 0.0)
        if whole > 0 and amount / whole > share:
            share = amount / whole
    return share


def slots_key(asked: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """``asked`` as a hashable key (() for none)."""
    return tuple(sorted(asked.items())) if asked else ()


def unfit_key(session: PendingSession) -> UnfitKey:
    return (session.cpu, session.memory, session.storage_hosts, slots_key(session.slots))


def _slot_total(agents: tuple[Agent, ...]) -> Mapping[str, float]:
    out: dict[str, float] = {}
    for a in agents:
        for u in a.units:
            out[u.slot] = out.get(u.slot, 0.0) + u.capacity
    return out or NO_SLOTS


class RoundState:
    """What a round has left to give, updated by :meth:`place`.

    ``agents`` are the snapshot's agents of the group scheduled, sorted by id (the order that
    breaks placement ties); only alive ones take sessions.
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.group = snapshot.group
        self.agents: tuple[Agent, ...] = tuple(
            sorted((a for a in snapshot.agents if a.group == snapshot.group), key=lambda a: a.id)
        )
        self.alive: tuple[Agent, ...] = tuple(a for a in self.agents if a.alive)
        self.free: dict[str, Resources] = {a.id: a.free for a in self.alive}
        self.allocations: dict[uuid.UUID, Resources] = dict(snapshot.allocations)
        self.running: dict[uuid.UUID, int] = dict(snapshot.running)
        self.total = Resources(
            sum(a.cpu for a in self.alive),
            sum(a.memory for a in self.alive),
            _slot_total(self.alive),
        )
        """The alive agents' capacity (cpu, memory, each slot's devices): what dominant
        shares are shares of."""
        self.units: dict[str, tuple[SlotUnit, ...]] = {a.id: a.units for a in self.alive if a.units}
        """Each alive agent's accelerator devices with what is held of them (what this round
        placed included); an agent without devices is missing."""
        self.placed: dict[uuid.UUID, str] = {}
        """Session id -> agent id, in placement order."""
        self.allotted: dict[uuid.UUID, tuple[Allotment, ...]] = {}
        """Session id -> the devices it was given (sessions asking slots only)."""
        self.unfit: set[UnfitKey] = set()
        """Requests (cpu, memory, storage hosts, slots) found to fit on no agent this round:
        free resources only shrink within a round, so they fit nowhere for the rest of it."""
        self._index = {a.id: i for i, a in enumerate(self.alive)}
        self.free_cpu = [a.cpu - a.used_cpu for a in self.alive]
        self.free_memory = [a.memory - a.used_memory for a in self.alive]
        """Free resources of each alive agent, by position in :attr:`alive` (what best fit
        reads; :attr:`free` says the same by agent id)."""
        self.per_cpu = [1 / a.cpu if a.cpu > 0 else 0.0 for a in self.alive]
        self.per_memory = [1 / a.memory if a.memory > 0 else 0.0 for a in self.alive]
        """1 / each alive agent's capacity (0 for none): what turns free resources into
        shares."""

    def limits(self, user: uuid.UUID) -> UserLimits:
        return self.snapshot.limits.get(user, NO_LIMITS)

    def allocation(self, user: uuid.UUID) -> Resources:
        return self.allocations.get(user, Resources())

    def share(self, user: uuid.UUID) -> float:
        """``user``'s dominant share of the group now."""
        return dominant_share(self.allocation(user), self.total)

    def allot(self, session: PendingSession, agent: str) -> tuple[Allotment, ...] | None:
        """Where ``session``'s slots would go on ``agent``'s devices now (``()`` when it
        asks none), or None when they do not fit there."""
        if not session.slots:
            return ()
        return slots.allot_all(session.slots, self.units.get(agent, ()))

    def place(self, session: PendingSession, agent: str) -> tuple[Allotment, ...]:
        """Record ``session`` started on ``agent``: its resources leave the agent's free
        ones (its slots the devices :func:`vfd.scheduling.slots.allot_all` chooses) and join
        its owner's allocation. The devices it was given (``()`` for a session asking no
        slots, or when they do not fit there: a placement the daemon drops)."""
        request = session.request
        allotments: tuple[Allotment, ...] = ()
        if session.slots:
            allotments = self.allot(session, agent) or ()
            if allotments:
                self.units[agent] = slots.take(self.units[agent], allotments)
                self.allotted[session.id] = allotments
        self.free[agent] = self.free[agent] - request
        i = self._index[agent]
        self.free_cpu[i] -= request.cpu
        self.free_memory[i] -= request.memory
        self.allocations[session.user_id] = self.allocation(session.user_id) + request
        self.running[session.user_id] = self.running.get(session.user_id, 0) + 1
        self.placed[session.id] = agent
        return allotments
