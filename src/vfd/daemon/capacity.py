"""This node's capacity for sessions: what it has, what its sessions hold, and whether a request
could ever fit.

The totals are ``[sessions] cpu`` and ``memory`` when set, else the machine's: the CPUs this
process may run on (``sched_getaffinity``, which honours a cpuset) and ``MemTotal`` of
``/proc/meminfo``. A session holds its cpu and memory from the moment the scheduler places it
(``scheduled``) until its container is gone (``terminating`` ends); a session asking no
memory limit (``memory = 0``) holds no memory.
"""

from __future__ import annotations

import functools
import os

from sqlalchemy import func
from sqlmodel import Session, col, select

from vfd.config import Config
from vfd.daemon.services.session_state import node_name
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.types import Capacity
from vfd.store.models import ComputeSession, SessionStatus

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


def check_fits(config: Config, cpu: float, memory: int) -> None:
    """Refuse (``exceeds_capacity``, naming the resource) a request larger than this node's
    whole capacity: it could never be placed, so it is not queued."""
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


def used(session: Session, node: str) -> tuple[float, int]:
    """The cpu and memory held by ``node``'s sessions (read in ``session``)."""
    row = session.exec(
        select(
            func.coalesce(func.sum(ComputeSession.cpu), 0.0),
            func.coalesce(func.sum(ComputeSession.memory), 0),
        )
        .where(ComputeSession.node == node)
        .where(col(ComputeSession.status).in_(list(HOLDING)))
    ).one()
    return float(row[0]), int(row[1])


def of_node(session: Session, config: Config) -> Capacity:
    """This node's capacity as a scheduler sees it (its sessions read in ``session``)."""
    node = node_name(config)
    used_cpu, used_memory = used(session, node)
    return Capacity(
        node=node,
        cpu=total_cpu(config),
        memory=total_memory(config),
        used_cpu=used_cpu,
        used_memory=used_memory,
    )
