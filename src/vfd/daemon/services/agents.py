"""Nodes as the store knows them: each daemon registers its node as an agent and heartbeats.

At start a daemon upserts its row (``agent.id`` = the node's name, ``[sessions] node`` or the
host name): capacity, address, version and start time are refreshed; the resource group is
``[sessions] group`` only when the row is new (an administrator's ``vfd admin node
set-group`` is kept across restarts). Then it stamps ``heartbeat_at`` every ``[sessions]
heartbeat_interval`` seconds — while its container runtime answers: a node whose docker is
down stops heartbeating (logged once), so that it goes dead and the leader gives its sessions
to others. A node whose last heartbeat is older than :data:`DEAD_AFTER` intervals is dead: the
scheduler gives it nothing new.

What a node holds is not stored: it is the sum of its sessions that hold resources
(``vfd.daemon.capacity``). Its accelerator devices are: the row's ``accelerators`` is what the
daemon's accelerator plugins found when it started (``Plugins.agent_accelerators``), written
at registration and with each heartbeat; the free part of each slot is its capacity less the
``allocation`` of the node's sessions that hold resources.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

import vfd
from vfd.daemon import capacity, containers, runtime
from vfd.daemon.runtime import Pool
from vfd.daemon.services import audit
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.resource_groups import find_group
from vfd.daemon.services.session_state import node_name
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.types import Allotment
from vfd.scheduling.slots import SCALE, q
from vfd.store.models import Agent, ComputeSession, ResourceGroup, SessionKind, utcnow

log = logging.getLogger(__name__)

DEAD_AFTER = 3
"""Heartbeat intervals of silence after which a node is dead."""


def aware(value: datetime) -> datetime:
    """``value`` with its zone (SQLite hands naive UTC datetimes back)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def is_alive(agent: Agent, interval: float, now: datetime | None = None) -> bool:
    """Whether ``agent`` heartbeat within :data:`DEAD_AFTER` intervals of ``now``."""
    now = now or utcnow()
    return (now - aware(agent.heartbeat_at)).total_seconds() <= DEAD_AFTER * interval


def register(daemon: Daemon) -> Agent:
    """Upsert this node's agent row (see the module's docstring); the row."""
    config = daemon.config
    node = node_name(config)
    now = utcnow()
    with daemon.session() as session:
        row = session.get(Agent, node)
        if row is None:
            group = config.sessions.group
            if session.get(ResourceGroup, group) is None:
                log.warning("resource group %r of [sessions] group made", group)
                session.add(ResourceGroup(name=group))
                session.flush()
            row = Agent(id=node, group=group)
        row.address = str(config.api_socket)[:256]
        row.cpu = capacity.total_cpu(config)
        row.memory = capacity.total_memory(config)
        row.version = vfd.__version__[:64]
        row.started_at = now
        row.heartbeat_at = now
        row.accelerators = daemon.plugins.agent_accelerators()
        session.add(row)
        session.flush()
        session.expunge(row)
        return row


def heartbeat(daemon: Daemon) -> None:
    """Stamp this node's heartbeat (registering it again if its row has gone)."""
    node = node_name(daemon.config)
    with daemon.session() as session:
        row = session.get(Agent, node)
        if row is not None:
            row.heartbeat_at = utcnow()
            accelerators = daemon.plugins.agent_accelerators()
            if row.accelerators != accelerators:
                row.accelerators = accelerators
            session.add(row)
            return
    register(daemon)


async def serve(daemon: Daemon) -> None:
    """Register this node, then heartbeat until cancelled (a background task of the daemon).
    A failed heartbeat is logged and tried again at the next interval."""
    live = runtime.current()
    interval = daemon.config.sessions.heartbeat_interval
    await live.run(Pool.STORE, register, daemon)
    failing = False
    runtime_down: str | None = None
    while True:
        await asyncio.sleep(interval)
        reason = await containers.available(daemon)
        if reason != runtime_down:
            if reason is not None:
                log.warning("not heartbeating while sessions cannot run here: %s", reason)
            else:
                log.info("sessions can run here again: heartbeating")
            runtime_down = reason
        if reason is not None:
            continue
        try:
            await live.run(Pool.STORE, heartbeat, daemon)
            failing = False
        except Exception:
            if not failing:
                log.exception("the heartbeat of this node failed")
            failing = True


def _held(session: Session) -> dict[str, tuple[float, int, int]]:
    """Per node: the cpu, memory and number of its sessions that hold resources."""
    rows = session.exec(
        select(
            ComputeSession.node,
            func.coalesce(func.sum(ComputeSession.cpu), 0.0),
            func.coalesce(func.sum(ComputeSession.memory), 0),
            func.count(),
        )
        .where(col(ComputeSession.status).in_(list(capacity.HOLDING)))
        .where(col(ComputeSession.kind) == SessionKind.COMPUTE)
        .group_by(col(ComputeSession.node))
    ).all()
    return {node: (float(cpu), int(mem), int(n)) for node, cpu, mem, n in rows}


def accelerators_json(raw: Any, held: list[Allotment]) -> dict[str, Any] | None:
    """A node's accelerators for people: ``{NAME: {"status", "devices", "slots": {SLOT:
    {"capacity", "free"}}}}`` from its row's ``accelerators`` and what its sessions hold;
    None when the node has no accelerator plugin."""
    if not isinstance(raw, dict):
        return None
    used: dict[tuple[str, str], int] = {}
    for a in held:
        used[a.slot, a.device] = used.get((a.slot, a.device), 0) + q(a.amount)
    out: dict[str, Any] = {}
    for name, entry in sorted(raw.items()):
        if not isinstance(entry, dict):
            continue
        slots: dict[str, dict[str, float]] = {}
        totals: dict[str, list[int]] = {}
        for unit in entry.get("units") or ():
            try:
                slot, device, cap = str(unit["slot"]), str(unit["device"]), q(unit["capacity"])
            except (KeyError, TypeError, ValueError):
                continue
            total = totals.setdefault(slot, [0, 0])
            total[0] += cap
            total[1] += max(0, cap - used.get((slot, device), 0))
        for slot, (cap, free) in sorted(totals.items()):
            slots[slot] = {"capacity": cap / SCALE, "free": free / SCALE}
        out[name] = {
            "status": entry.get("status"),
            "devices": list(entry.get("devices") or ()),
            "slots": slots,
        }
    return out


def node_accelerators(daemon: Daemon) -> dict[str, Any] | None:
    """This node's accelerators as :func:`accelerators_json` shows them (``vfd status``);
    None when no accelerator plugin is loaded."""
    raw = daemon.plugins.agent_accelerators()
    if raw is None:
        return None
    node = node_name(daemon.config)
    with daemon.session() as session:
        held = capacity.held_devices(session, node).get(node, [])
    return accelerators_json(raw, held)


def agent_json(
    agent: Agent,
    held: tuple[float, int, int],
    interval: float,
    allotments: list[Allotment] | None = None,
) -> dict[str, Any]:
    now = utcnow()
    used_cpu, used_memory, sessions = held
    return {
        "id": agent.id,
        "group": agent.group,
        "address": agent.address,
        "cpu": agent.cpu,
        "memory": agent.memory,
        "used_cpu": used_cpu,
        "used_memory": used_memory,
        "sessions": sessions,
        "version": agent.version,
        "started_at": aware(agent.started_at).isoformat(),
        "heartbeat_at": aware(agent.heartbeat_at).isoformat(),
        "heartbeat_age": max(0.0, (now - aware(agent.heartbeat_at)).total_seconds()),
        "alive": is_alive(agent, interval, now),
        "accelerators": accelerators_json(agent.accelerators, allotments or []),
    }


def list_nodes(daemon: Daemon, caller: Caller) -> dict[str, Any]:
    """``GET /v1/admin/nodes``: every registered node with its capacity, use and liveness."""
    caller.require_admin()
    interval = daemon.config.sessions.heartbeat_interval
    with daemon.session() as session:
        held = _held(session)
        allocations = capacity.held_devices(session)
        rows = session.exec(select(Agent).order_by(col(Agent.id))).all()
        return {
            "nodes": [
                agent_json(a, held.get(a.id, (0.0, 0, 0)), interval, allocations.get(a.id))
                for a in rows
            ]
        }


def set_group(daemon: Daemon, caller: Caller, node: str, group: str) -> dict[str, Any]:
    """``PATCH /v1/admin/nodes/{node}``: move ``node`` to resource group ``group``. Its
    running sessions stay; what it takes next comes from the new group's queue."""
    caller.require_admin()
    interval = daemon.config.sessions.heartbeat_interval
    with daemon.session() as session:
        row = session.get(Agent, node)
        if row is None:
            raise VfdError(
                ErrorCode.NODE_NOT_FOUND,
                f"no node {node!r} has registered (`vfd admin node list` shows those that have)",
                node=node,
            )
        find_group(session, group)
        old = row.group
        row.group = group
        session.add(row)
        audit.record(session, caller, "node.set_group", node, group=group, was=old)
        session.flush()
        return agent_json(
            row,
            _held(session).get(node, (0.0, 0, 0)),
            interval,
            capacity.held_devices(session, node).get(node),
        )
