"""The in-round view of a resource group: what is free where, and what each user holds, as a
round places sessions one after another.

Built from a :class:`~vfd.plugins.types.Snapshot` and never handed back: a scheduler returns
a :class:`~vfd.plugins.types.Decision`, and the loop applies it.
"""

from __future__ import annotations

import uuid

from vfd.plugins.types import Agent, PendingSession, Resources, Snapshot, UserLimits

NO_LIMITS = UserLimits()


def dominant_share(used: Resources, total: Resources) -> float:
    """The largest of ``used``'s shares of ``total`` over cpu and memory (0 for a resource
    the group has none of)."""
    cpu = used.cpu / total.cpu if total.cpu > 0 else 0.0
    memory = used.memory / total.memory if total.memory > 0 else 0.0
    return max(cpu, memory)


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
        self.total = Resources(sum(a.cpu for a in self.alive), sum(a.memory for a in self.alive))
        """The alive agents' capacity: what dominant shares are shares of."""
        self.placed: dict[uuid.UUID, str] = {}
        """Session id -> agent id, in placement order."""
        self.unfit: set[tuple[float, int, tuple[str, ...]]] = set()
        """Requests (cpu, memory, storage hosts) found to fit on no agent this round: free
        resources only shrink within a round, so they fit nowhere for the rest of it."""
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

    def place(self, session: PendingSession, agent: str) -> None:
        """Record ``session`` started on ``agent``: its resources leave the agent's free
        ones and join its owner's allocation."""
        request = session.request
        self.free[agent] = self.free[agent] - request
        i = self._index[agent]
        self.free_cpu[i] -= request.cpu
        self.free_memory[i] -= request.memory
        self.allocations[session.user_id] = self.allocation(session.user_id) + request
        self.running[session.user_id] = self.running.get(session.user_id, 0) + 1
        self.placed[session.id] = agent
