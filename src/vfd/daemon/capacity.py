"""Capacity for sessions: what this node has, what the sessions of every node hold, and whether
a request could ever fit.

The totals are ``[sessions] cpu`` and ``memory`` when set, else the machine's: the CPUs this
process may run on (``sched_getaffinity``, which honours a cpuset) and ``MemTotal`` of
``/proc/meminfo``. A session holds its cpu and memory from the moment the scheduler places it
(``scheduled``) until its container is gone (``terminating`` ends); a session asking no
memory limit (``memory = 0``) holds no memory. Storage-only sessions hold nothing and are not
counted. A session asking accelerator slots holds, in the same statuses, the devices of its
``allocation`` (set when it is placed).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NoReturn

from sqlalchemy import func, select
from sqlmodel import Session, col

from vfd.config import Config
from vfd.daemon.services.session_state import node_name
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.types import NO_SLOTS, Allotment, Resources, SlotUnit
from vfd.scheduling import slots as slot_math
from vfd.store.models import Agent as AgentRow
from vfd.store.models import ComputeSession, SessionKind, SessionStatus

HOLDING = frozenset(
    {
        SessionStatus.SCHEDULED,
        SessionStatus.PREPARING,
        SessionStatus.RUNNING,
        SessionStatus.TERMINATING,
    }
)
"""The statuses whose sessions hold their cpu and memory on their node."""

MiB = 2**20


@functools.cache
def _machine_memory() -> int:
    """``MemTotal`` of ``/proc/meminfo``, in bytes (0 when it cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def total_cpu(config: Config) -> float:
    """CPUs sessions may use on this node: ``[sessions] cpu``, else the CPUs this process
    may run on."""
    if config.sessions.cpu > 0:
        return config.sessions.cpu
    return float(len(os.sched_getaffinity(0)))


def total_memory(config: Config) -> int:
    """Bytes sessions may use on this node: ``[sessions] memory``, else the machine's."""
    if config.sessions.memory > 0:
        return config.sessions.memory
    return _machine_memory()


def check_fits(
    session: Session,
    config: Config,
    group: str,
    cpu: float,
    memory: int,
    slots: Mapping[str, float] = NO_SLOTS,
) -> None:
    """Refuse (``exceeds_capacity``, naming the resource) a request that no node of resource
    group ``group`` could hold even empty: it could never be placed, so it is not queued. A
    group with no node yet takes it (it waits, and its verdict says why). Accelerator
    ``slots`` must go on some node's devices, all free (:func:`vfd.scheduling.slots.allot`:
    a node offering another slot, or too few devices, cannot hold it); this node's devices
    are those of its row (written as it registers)."""
    here = node_name(config)
    others = list(
        session.scalars(
            select(AgentRow).where(col(AgentRow.group) == group, col(AgentRow.id) != here)
        )
    )
    # the other nodes with the cpu and memory: for them, the devices are what may be short
    roomy = [a for a in others if cpu <= a.cpu + 1e-9 and memory <= a.memory]
    if any(_slots_fit(slots, a) is None for a in roomy):
        return  # another node of the group can hold it whole
    mine = session.get(AgentRow, here)
    if (mine.group if mine is not None else config.sessions.group) == group:
        _check_node(config, cpu, memory)
        if not slots or mine is None or _slots_fit(slots, mine) is None:
            return
        _refuse_slots(slots, [mine, *roomy], group)
    if not others:
        return
    if slots and roomy:
        _refuse_slots(slots, roomy, group)
    largest = max(others, key=lambda a: (a.cpu, a.memory))
    short = "cpu" if cpu > largest.cpu + 1e-9 else "memory"
    raise VfdError(
        ErrorCode.EXCEEDS_CAPACITY,
        f"{cpu:g} cpu and {memory / MiB:.0f} MiB memory asked, but no node of group {group} has "
        f"that much for sessions (the largest: {largest.id}, {largest.cpu:g} cpu and "
        f"{largest.memory / MiB:.0f} MiB)",
        resource=short,
        asked=cpu if short == "cpu" else memory,
        capacity=largest.cpu if short == "cpu" else largest.memory,
        node=largest.id,
        group=group,
    )


def _slots_fit(slots: Mapping[str, float], row: AgentRow) -> str | None:
    """None when ``row``'s devices, all free, take ``slots``; else the first slot that they
    do not."""
    if not slots:
        return None
    units = slot_math.units_from_json(row.accelerators)
    for name, amount in sorted(slots.items()):
        if slot_math.allot(name, amount, units) is None:
            return name
    return None


def _refuse_slots(slots: Mapping[str, float], rows: list[AgentRow], group: str) -> NoReturn:
    """Refuse ``slots``, which no node of ``rows`` (those with the cpu and memory asked)
    could hold even with all its devices free: the slot named, with the node offering most
    of it."""
    name = min(bad for bad in (_slots_fit(slots, r) for r in rows) if bad is not None)
    amount = slots[name]

    def offered(row: AgentRow) -> float:
        units = slot_math.units_from_json(row.accelerators)
        return sum(u.capacity for u in units if u.slot == name)

    best = max(rows, key=lambda r: (offered(r), r.id))
    have = offered(best)
    if have <= 0:
        message = f"{amount:g} {name} asked, but no node of group {group} offers {name}"
    else:
        units = slot_math.units_from_json(best.accelerators)
        why = slot_math.why_not(name, amount, units)
        message = (
            f"{amount:g} {name} asked, but no node of group {group} could hold it even with "
            f"all its devices free (node {best.id}: {why.split(' asked, ', 1)[-1]})"
        )
    raise VfdError(
        ErrorCode.EXCEEDS_CAPACITY,
        message,
        resource=name,
        asked=amount,
        capacity=have,
        node=best.id,
        group=group,
    )


def _check_node(config: Config, cpu: float, memory: int) -> None:
    """Refuse a request larger than this node's whole capacity, or than its machine."""
    node = node_name(config)
    have_cpu = total_cpu(config)
    if cpu > have_cpu + 1e-9:
        raise VfdError(
            ErrorCode.EXCEEDS_CAPACITY,
            f"{cpu:g} cpu asked, but node {node} has {have_cpu:g} cpu for sessions in all",
            resource="cpu",
            asked=cpu,
            capacity=have_cpu,
            node=node,
        )
    machine = os.cpu_count() or 1
    if cpu > machine + 1e-9:
        # [sessions] cpu may overcommit the node, but one container cannot have more cpus
        # than the machine has (docker refuses it)
        raise VfdError(
            ErrorCode.EXCEEDS_CAPACITY,
            f"{cpu:g} cpu asked, but the machine of node {node} has {machine} cpus: one "
            "session cannot have more",
            resource="cpu",
            asked=cpu,
            capacity=float(machine),
            node=node,
        )
    have_memory = total_memory(config)
    if memory > have_memory:
        raise VfdError(
            ErrorCode.EXCEEDS_CAPACITY,
            f"{memory / MiB:.0f} MiB memory asked, but node {node} has "
            f"{have_memory / MiB:.0f} MiB for sessions in all",
            resource="memory",
            asked=memory,
            capacity=have_memory,
            node=node,
        )


@dataclass(frozen=True)
class Held:
    """What the sessions holding resources (:data:`HOLDING`) hold, read in one query."""

    by_node: Mapping[str, Resources]
    """Per node: the sum over its sessions, whatever their group."""
    by_user: Mapping[tuple[uuid.UUID, str], Resources]
    """Per (user, resource group): the sum over that user's sessions in the group."""
    count: Mapping[uuid.UUID, int]
    """Per user: the number of its sessions, in every group."""
    devices: Mapping[str, tuple[Allotment, ...]] = field(default_factory=dict)
    """Per node: the allotments of its sessions' allocations (the devices they hold)."""

    def units(self, node: str, units: tuple[SlotUnit, ...]) -> tuple[SlotUnit, ...]:
        """``node``'s devices ``units`` with what its sessions hold of them."""
        held = self.devices.get(node)
        return slot_math.take(units, held) if held else units


def held(session: Session) -> Held:
    """What every node, and every user in every group, holds now (read in ``session``): one
    query, and one more for the sessions that hold devices."""
    rows = session.execute(
        select(
            col(ComputeSession.node),
            col(ComputeSession.user_id),
            col(ComputeSession.group),
            func.coalesce(func.sum(ComputeSession.cpu), 0.0),
            func.coalesce(func.sum(ComputeSession.memory), 0),
            func.count(),
        )
        .where(col(ComputeSession.status).in_(list(HOLDING)))
        .where(col(ComputeSession.kind) == SessionKind.COMPUTE)
        .group_by(col(ComputeSession.node), col(ComputeSession.user_id), col(ComputeSession.group))
    ).all()
    by_node: dict[str, Resources] = {}
    by_user: dict[tuple[uuid.UUID, str], Resources] = {}
    count: dict[uuid.UUID, int] = {}
    for node, user_id, group, cpu, memory, n in rows:
        amount = Resources(float(cpu), int(memory))
        by_node[node] = by_node.get(node, Resources()) + amount
        by_user[user_id, group] = by_user.get((user_id, group), Resources()) + amount
        count[user_id] = count.get(user_id, 0) + int(n)
    devices: dict[str, list[Allotment]] = {}
    for node, user_id, group, allocation in session.execute(
        select(
            col(ComputeSession.node),
            col(ComputeSession.user_id),
            col(ComputeSession.group),
            col(ComputeSession.allocation),
        )
        .where(col(ComputeSession.status).in_(list(HOLDING)))
        .where(col(ComputeSession.kind) == SessionKind.COMPUTE)
        .where(col(ComputeSession.allocation).is_not(None))
    ).all():
        allotments = slot_math.allotments_from_json(allocation)
        if not allotments:
            continue
        devices.setdefault(node, []).extend(allotments)
        amount = Resources(slots=_sums(allotments))
        by_node[node] = by_node.get(node, Resources()) + amount
        by_user[user_id, group] = by_user.get((user_id, group), Resources()) + amount
    return Held(by_node, by_user, count, {k: tuple(v) for k, v in devices.items()})


def held_devices(session: Session, node: str | None = None) -> dict[str, list[Allotment]]:
    """Per node (only ``node`` when given): the allotments of its sessions that hold
    resources (:data:`HOLDING`), what ``vfd admin node list`` and ``vfd status`` take from
    each node's devices."""
    query = (
        select(col(ComputeSession.node), col(ComputeSession.allocation))
        .where(col(ComputeSession.status).in_(list(HOLDING)))
        .where(col(ComputeSession.allocation).is_not(None))
    )
    if node is not None:
        query = query.where(col(ComputeSession.node) == node)
    out: dict[str, list[Allotment]] = {}
    for where, allocation in session.execute(query).all():
        out.setdefault(where, []).extend(slot_math.allotments_from_json(allocation))
    return out


def _sums(allotments: tuple[Allotment, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for a in allotments:
        out[a.slot] = out.get(a.slot, 0.0) + a.amount
    return out
