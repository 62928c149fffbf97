"""The ``fifo`` scheduler: sessions start in the order they were asked for.

The oldest pending session starts as soon as it fits the node's free cpu and memory; while it
does not fit, nothing behind it starts either (no overtaking), and each waiting session is told
why: the head of the queue the resource it lacks, the others whom they wait behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from vfd.plugins.hookspecs import hookimpl
from vfd.plugins.types import Capacity, Decision, PendingSession, SchedulerSpec


def lacks(session: PendingSession, cpu: float, memory: int) -> str | None:
    """What ``session`` lacks of ``cpu`` and ``memory`` free, or None when it fits."""
    short = []
    if session.cpu > cpu + 1e-9:
        short.append(f"{session.cpu:g} cpu asked, {max(cpu, 0):g} free")
    if session.memory > memory:
        short.append(
            f"{session.memory / 2**20:.0f} MiB memory asked, {max(memory, 0) / 2**20:.0f} MiB free"
        )
    return "; ".join(short) or None


class FifoScheduler:
    def decide(self, pending: Sequence[PendingSession], capacity: Capacity) -> Decision:
        cpu, memory = capacity.free_cpu, capacity.free_memory
        place: list[uuid.UUID] = []
        waiting: dict[uuid.UUID, str] = {}
        head: PendingSession | None = None
        for session in sorted(pending, key=lambda s: (s.created_at, s.id)):
            if head is not None:
                waiting[session.id] = f"waiting behind session {head.name} (first in line)"
                continue
            short = lacks(session, cpu, memory)
            if short is None:
                place.append(session.id)
                cpu -= session.cpu
                memory -= session.memory
            else:
                head = session
                waiting[session.id] = f"first in line; node {capacity.node} lacks: {short}"
        return Decision(place=tuple(place), waiting=waiting)


def _factory(options: Mapping[str, Any]) -> FifoScheduler:
    return FifoScheduler()


@hookimpl
def vfd_register_schedulers() -> list[SchedulerSpec]:
    return [
        SchedulerSpec(
            name="fifo",
            description="first come, first served; no overtaking",
            factory=_factory,
        )
    ]
