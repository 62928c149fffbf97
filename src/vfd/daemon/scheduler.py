"""The scheduler loop: the leader places the pending sessions of every resource group through
the group's scheduler plugin, and every node launches the sessions placed on it.

One pass every ``[sessions] schedule_interval`` seconds, or at once when :func:`wake` is
called (a session was created, destroyed, or ended). A pass:

1. asks :class:`~vfd.daemon.leader.Leadership` whether this daemon leads (always on SQLite;
   on PostgreSQL, the holder of an advisory lock);
2. when it leads: reads the store once (:func:`read_queue`: a handful of queries for every
   group together), builds a :class:`~vfd.plugins.types.Snapshot` per resource group with
   pending sessions — its pending sessions oldest first, its agents (nodes: capacity, what
   their sessions hold, alive when their heartbeat is fresh), each user's allocation in the
   group, live-session counts and policy limits, the scheduler's last memo — and asks the
   group's scheduler (``resourcegroup.scheduler``; ``[sessions] scheduler`` for a group with
   no row) for a :class:`~vfd.plugins.types.Decision`. In one transaction it moves each
   placed session ``pending`` -> ``scheduled`` with ``node`` = the agent chosen and, for a
   session asking accelerator slots, ``allocation`` = the devices
   :func:`vfd.scheduling.slots.allot_all` gives it there (a compare-and-set on the status),
   stores the verdicts that changed (``scheduler_verdicts``,
   and ``scheduler_verdict`` = the first failing one's reason), and puts back in the queue
   (``allocation`` cleared) the sessions left ``scheduled`` on a node whose heartbeat
   stopped;
3. launches the sessions ``scheduled`` on this node that it is not launching yet (placed by
   this daemon: at once; by another node's: found here within one interval).

A session starts at most once however many nodes try: ``scheduled`` -> ``preparing`` is a
compare-and-set in the store (``vfd.daemon.launcher``), and only the node a session is placed
on makes that move. A pass that fails is logged and the next one runs at the next interval:
the loop ends only with the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, null, update
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from vfd.daemon import capacity, containers, runtime
from vfd.daemon.leader import Leadership
from vfd.daemon.runtime import Pool
from vfd.daemon.services import agents as agent_rows
from vfd.daemon.services import policies, session_state
from vfd.daemon.services.context import Daemon
from vfd.errors import VfdError
from vfd.plugins.types import (
    CPU_SLACK,
    NO_SLOTS,
    Agent,
    Allotment,
    Decision,
    PendingSession,
    Resources,
    Scheduler,
    SlotUnit,
    Snapshot,
    UserLimits,
    Verdict,
)
from vfd.scheduling import slots as slot_math
from vfd.sessions.lifecycle import check_transition
from vfd.store.models import (
    Agent as AgentRow,
)
from vfd.store.models import (
    ComputeSession,
    ResourceGroup,
    ResourcePolicy,
    SessionEvent,
    SessionMount,
    SessionStatus,
    StorageHost,
    User,
    VFolder,
    utcnow,
)

log = logging.getLogger(__name__)

VERDICT_MAX = 1024
"""The longest verdict stored (the column's size)."""


class _Wakers:
    """The running loops' wake-up events; :func:`wake` may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def add(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        with self._lock:
            self._events.append((loop, event))

    def remove(self, event: asyncio.Event) -> None:
        with self._lock:
            self._events = [(lp, ev) for lp, ev in self._events if ev is not event]

    def set_all(self) -> None:
        with self._lock:
            events = list(self._events)
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, event in events:
            if loop is here:
                event.set()
            else:
                with contextlib.suppress(RuntimeError):  # that loop has just closed
                    loop.call_soon_threadsafe(event.set)


_wakers = _Wakers()


def wake() -> None:
    """Run a scheduler pass now rather than at the next interval. Cheap; callable from the
    event loop or a worker thread; a no-op when no scheduler loop runs."""
    _wakers.set_all()


async def serve(daemon: Daemon) -> None:
    """The scheduler loop of ``daemon`` (a background task of its runtime): never returns,
    ends when cancelled (giving the leadership up)."""
    event = asyncio.Event()
    _wakers.add(asyncio.get_running_loop(), event)
    loop = _Loop(daemon)
    try:
        while True:
            event.clear()
            await loop.run_pass()
            try:
                async with asyncio.timeout(daemon.config.sessions.schedule_interval):
                    await event.wait()
            except TimeoutError:
                pass
    finally:
        _wakers.remove(event)
        loop.leadership.close()


# -- what a pass reads ---------------------------------------------------------------------


@dataclass
class GroupQueue:
    """One resource group as a pass reads it."""

    name: str
    scheduler: str
    pending: list[PendingSession] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)


@dataclass
class Queue:
    """What one pass reads of the store, for every group with pending sessions."""

    groups: dict[str, GroupQueue]
    verdicts: dict[uuid.UUID, list[dict[str, Any]]]
    """The verdicts stored now on each pending session."""
    allocations: dict[tuple[uuid.UUID, str], Resources]
    running: dict[uuid.UUID, int]
    limits: dict[uuid.UUID, UserLimits]
    stranded: list[tuple[uuid.UUID, str]]
    """(session, node) of the sessions ``scheduled`` on a node whose heartbeat stopped."""
    now: datetime


def read_queue(session: Session, daemon: Daemon, *, own_alive: bool = True) -> Queue:
    """The store as the leader's pass sees it: eight or nine queries, whatever the number of
    pending sessions, nodes or groups (two when nothing is pending). ``own_alive``: whether
    this node may take sessions (its container runtime answers)."""
    config = daemon.config
    node = session_state.node_name(config)
    now = utcnow()
    pending_rows = session.execute(
        select_columns(
            col(ComputeSession.id),
            col(ComputeSession.user_id),
            col(ComputeSession.name),
            col(ComputeSession.created_at),
            col(ComputeSession.cpu),
            col(ComputeSession.memory),
            col(ComputeSession.group),
            col(ComputeSession.image),
            col(ComputeSession.lifetime),
            col(ComputeSession.scheduler_verdicts),
            col(ComputeSession.slots),
        )
        .where(col(ComputeSession.status) == SessionStatus.PENDING)
        .order_by(col(ComputeSession.created_at), col(ComputeSession.id))
    ).all()
    if not pending_rows:
        return _idle(session, daemon, now, own_alive)
    hosts: dict[uuid.UUID, set[str]] = {}
    for session_id, host in session.exec(
        select(SessionMount.session_id, VFolder.host)
        .join(VFolder, col(VFolder.id) == col(SessionMount.vfolder_id))
        .join(ComputeSession, col(ComputeSession.id) == col(SessionMount.session_id))
        .where(ComputeSession.status == SessionStatus.PENDING)
    ).all():
        hosts.setdefault(session_id, set()).add(host)
    schedulers = dict(session.exec(select(ResourceGroup.name, ResourceGroup.scheduler)).all())
    groups: dict[str, GroupQueue] = {}
    verdicts: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for (
        sid,
        user_id,
        name,
        created,
        cpu,
        memory,
        group,
        image,
        lifetime,
        said,
        asked,
    ) in pending_rows:
        queue = groups.get(group)
        if queue is None:
            scheduler = schedulers.get(group) or config.sessions.scheduler
            queue = groups[group] = GroupQueue(group, scheduler)
        queue.pending.append(
            PendingSession(
                id=sid,
                user_id=user_id,
                name=name,
                created_at=agent_rows.aware(created),
                cpu=cpu,
                memory=memory,
                group=group,
                image=image,
                lifetime=lifetime,
                storage_hosts=tuple(sorted(hosts.get(sid, ()))),
                slots=_slots(asked),
            )
        )
        verdicts[sid] = list(said or [])
    held = capacity.held(session)
    local_hosts = dict(session.exec(select(StorageHost.name, StorageHost.node)).all())
    rows = {row.id: row for row in session.exec(select(AgentRow)).all()}
    interval = config.sessions.heartbeat_interval
    dead: list[str] = []
    for row in rows.values():
        alive = agent_rows.is_alive(row, interval, now)
        if row.id == node:
            alive = own_alive
        if not alive:
            dead.append(row.id)
        queue = groups.get(row.group)
        if queue is not None:
            queue.agents.append(_agent(row, held, local_hosts, alive))
    if node not in rows:  # not registered yet (its heartbeat task starts with this loop)
        me = AgentRow(
            id=node,
            group=config.sessions.group,
            cpu=capacity.total_cpu(config),
            memory=capacity.total_memory(config),
            started_at=now,
            heartbeat_at=now,
            accelerators=daemon.plugins.agent_accelerators(),
        )
        queue = groups.get(me.group)
        if queue is not None:
            queue.agents.append(_agent(me, held, local_hosts, own_alive))
    stranded = _stranded(session, dead)
    limits: dict[uuid.UUID, UserLimits] = {}
    waiting_users = (
        select(ComputeSession.user_id).where(ComputeSession.status == SessionStatus.PENDING)
    ).distinct()
    for user_id, policy in session.exec(
        select(User.id, ResourcePolicy)
        .join(ResourcePolicy, col(ResourcePolicy.name) == col(User.resource_policy))
        .where(col(User.id).in_(waiting_users))
    ).all():
        limits[user_id] = policies.scheduler_limits(policy)
    return Queue(
        groups=groups,
        verdicts=verdicts,
        allocations=dict(held.by_user),
        running=dict(held.count),
        limits=limits,
        stranded=stranded,
        now=now,
    )


def _idle(session: Session, daemon: Daemon, now: datetime, own_alive: bool) -> Queue:
    """The queue when nothing is pending: only the sessions stranded on dead nodes."""
    node = session_state.node_name(daemon.config)
    interval = daemon.config.sessions.heartbeat_interval
    dead = [
        row.id
        for row in session.exec(select(AgentRow)).all()
        if not (own_alive if row.id == node else agent_rows.is_alive(row, interval, now))
    ]
    return Queue({}, {}, {}, {}, {}, _stranded(session, dead), now)


def _stranded(session: Session, dead: list[str]) -> list[tuple[uuid.UUID, str]]:
    """(session, node) of the sessions ``scheduled`` on the ``dead`` nodes."""
    if not dead:
        return []
    return [
        (sid, where)
        for sid, where in session.exec(
            select(ComputeSession.id, ComputeSession.node)
            .where(ComputeSession.status == SessionStatus.SCHEDULED)
            .where(col(ComputeSession.node).in_(dead))
        ).all()
    ]


def _slots(raw: object) -> Mapping[str, float]:
    """A session row's ``slots`` (None or {} = none)."""
    if not isinstance(raw, dict) or not raw:
        return NO_SLOTS
    return {str(k): float(v) for k, v in raw.items()}


def _agent(
    row: AgentRow, held: capacity.Held, local_hosts: Mapping[str, str | None], alive: bool
) -> Agent:
    used = held.by_node.get(row.id, Resources())
    reach: frozenset[str] | None = None
    if any(owner is not None for owner in local_hosts.values()):
        reach = frozenset(h for h, owner in local_hosts.items() if owner in (None, row.id))
    return Agent(
        id=row.id,
        group=row.group,
        cpu=row.cpu,
        memory=row.memory,
        used_cpu=used.cpu,
        used_memory=used.memory,
        alive=alive,
        storage_hosts=reach,
        units=held.units(row.id, slot_math.units_from_json(row.accelerators)),
    )


def snapshot(queue: Queue, group: GroupQueue, memo: Mapping[str, Any]) -> Snapshot:
    """The scheduler's view of ``group``."""
    return Snapshot(
        group=group.name,
        pending=tuple(group.pending),
        agents=tuple(sorted(group.agents, key=lambda a: a.id)),
        allocations={
            user: amount
            for (user, where), amount in queue.allocations.items()
            if where == group.name
        },
        running=queue.running,
        limits=queue.limits,
        memo=memo,
        now=queue.now,
    )


# -- what a pass writes --------------------------------------------------------------------


@dataclass
class Outcome:
    """What a pass writes: placements (session -> node, with the reason recorded) and the
    verdicts of the sessions left waiting."""

    place: dict[uuid.UUID, tuple[str, str]] = field(default_factory=dict)
    verdicts: dict[uuid.UUID, list[dict[str, Any]]] = field(default_factory=dict)
    allocation: dict[uuid.UUID, tuple[Allotment, ...]] = field(default_factory=dict)
    """The devices of each placed session asking slots."""


def checked_placements(
    decision: Decision, group: GroupQueue, scheduler: str, outcome: Outcome
) -> None:
    """Add ``decision``'s placements and verdicts to ``outcome``. A placement of a session
    that is not pending in the group, onto an agent that is not an alive one of the group, or
    past an agent's free capacity or devices (a faulty scheduler) is dropped and logged; the
    session waits, told why. The devices of a session asking slots are chosen here, in the
    order of the placements (:func:`vfd.scheduling.slots.allot_all`, as the scheduler's
    round did)."""
    pending = {p.id: p for p in group.pending}
    free = {a.id: a.free for a in group.agents if a.alive}
    units: dict[str, tuple[SlotUnit, ...]] = {a.id: a.units for a in group.agents if a.alive}
    placed: set[uuid.UUID] = set()
    dropped: dict[uuid.UUID, str] = {}
    for placement in decision.place:
        session = pending.get(placement.session_id)
        if session is None or session.id in placed:
            log.warning(
                "scheduler %s placed session %s, which is not pending in group %s (dropped)",
                scheduler,
                placement.session_id,
                group.name,
            )
            continue
        room = free.get(placement.agent)
        request = session.request
        allotments: tuple[Allotment, ...] | None = ()
        if room is not None and session.slots:
            allotments = slot_math.allot_all(session.slots, units[placement.agent])
        if (
            room is None
            or allotments is None
            or not (request.cpu <= room.cpu + CPU_SLACK and request.memory <= room.memory)
        ):
            why = (
                f"scheduler {scheduler} placed it on {placement.agent}, which is no alive node "
                f"of group {group.name} with room for it; it waits"
            )
            log.warning("session %s: %s", session.id, why)
            dropped[session.id] = why
            continue
        free[placement.agent] = room - request
        if allotments:
            units[placement.agent] = slot_math.take(units[placement.agent], allotments)
            outcome.allocation[session.id] = allotments
        placed.add(session.id)
        outcome.place[session.id] = (
            placement.agent,
            f"placed on {placement.agent} by scheduler {scheduler}",
        )
    for session in group.pending:
        if session.id in placed:
            continue
        said = list(decision.waiting.get(session.id, ()))
        if session.id in dropped:
            said.insert(0, Verdict("scheduler", False, dropped[session.id]))
        if not said:
            said = [Verdict("scheduler", False, f"not placed by scheduler {scheduler}")]
        outcome.verdicts[session.id] = [
            {"name": v.name, "ok": v.ok, "reason": v.reason[:VERDICT_MAX]} for v in said
        ]


def all_wait(group: GroupQueue, why: str, outcome: Outcome) -> None:
    """Every pending session of ``group`` waits, for ``why``."""
    for session in group.pending:
        outcome.verdicts[session.id] = [{"name": "scheduler", "ok": False, "reason": why}]


def first_failing(verdicts: Sequence[Mapping[str, Any]]) -> str | None:
    """The ``scheduler_verdict`` of a session told ``verdicts``: the first failing one's
    reason (else the first one's)."""
    for verdict in verdicts:
        if not verdict.get("ok"):
            return str(verdict.get("reason", ""))[:VERDICT_MAX]
    return str(verdicts[0].get("reason", ""))[:VERDICT_MAX] if verdicts else None


def move_many(
    session: Session,
    moves: Iterable[tuple[uuid.UUID, str, str]],
    old: SessionStatus,
    new: SessionStatus,
    *,
    where_node: bool = False,
    allocation: Mapping[uuid.UUID, tuple[Allotment, ...]] | None = None,
) -> list[uuid.UUID]:
    """Move the sessions of ``moves`` (session, node, reason) that are still ``old`` to
    ``new``, with ``node`` set (or, with ``where_node``, only those still on ``node``),
    each move recorded as an event — a few statements for any number of sessions (and one
    more for each session of ``allocation``, whose ``allocation`` column is set to its
    allotments in the same statement). Back to ``pending``, a session's ``allocation`` is
    cleared. The ids moved.

    As :func:`vfd.daemon.services.session_state.transition`, each move is a compare-and-set
    on the stored status: a session another writer moved meanwhile is left alone.
    """
    check_transition(old, new)
    by_key: dict[tuple[str, str, uuid.UUID | None], list[uuid.UUID]] = {}
    for session_id, node, reason in moves:
        own = session_id if allocation and session_id in allocation else None
        by_key.setdefault((node, reason, own), []).append(session_id)
    now = utcnow()
    moved: list[uuid.UUID] = []
    for (node, reason, own), ids in by_key.items():
        statement = (
            update(ComputeSession)
            .where(col(ComputeSession.id).in_(ids))
            .where(col(ComputeSession.status) == old)
        )
        values: dict[str, Any] = {
            "status": new,
            "status_changed_at": now,
            "status_reason": reason,
            "status_plugin": None,
        }
        if where_node:
            statement = statement.where(col(ComputeSession.node) == node)
        else:
            values["node"] = node
        if own is not None and allocation is not None:
            values["allocation"] = slot_math.allotments_json(allocation[own])
        elif new == SessionStatus.PENDING:
            values["allocation"] = null()
        done = session.execute(
            statement.values(**values)
            .returning(col(ComputeSession.id))
            .execution_options(synchronize_session=False)
        )
        got = [row[0] for row in done]
        if got:
            session.execute(
                insert(SessionEvent),
                [{"session_id": i, "at": now, "status": new, "reason": reason} for i in got],
            )
        moved += got
    return moved


def write(
    daemon: Daemon, leadership: Leadership, queue: Queue, outcome: Outcome
) -> list[tuple[uuid.UUID, str]]:
    """Write ``outcome`` and put the stranded sessions back in the queue, in one transaction
    that first checks this daemon still leads; the (session, node) pairs placed."""
    changed = [
        {"b_id": i, "b_verdict": first_failing(v), "b_verdicts": v}
        for i, v in outcome.verdicts.items()
        if queue.verdicts.get(i) != v
    ]
    if not outcome.place and not changed and not queue.stranded:
        return []
    # serialised with destroy (which may cancel a pending session meanwhile)
    with daemon.naming() as session:
        if not leadership.still_held(session):
            log.warning("the scheduling leadership was lost in the middle of a pass; not placing")
            return []
        if queue.stranded:
            back = move_many(
                session,
                (
                    (i, node, f"back in the queue: node {node} stopped before starting it")
                    for i, node in queue.stranded
                ),
                SessionStatus.SCHEDULED,
                SessionStatus.PENDING,
                where_node=True,
            )
            if back:
                log.warning("%d session(s) of stopped nodes put back in the queue", len(back))
        placed = move_many(
            session,
            ((i, node, reason) for i, (node, reason) in outcome.place.items()),
            SessionStatus.PENDING,
            SessionStatus.SCHEDULED,
            allocation=outcome.allocation,
        )
        if changed:
            session.connection().execute(
                update(ComputeSession)
                .where(col(ComputeSession.id) == bindparam("b_id"))
                .where(col(ComputeSession.status) == SessionStatus.PENDING)
                .values(
                    scheduler_verdict=bindparam("b_verdict"),
                    scheduler_verdicts=bindparam("b_verdicts"),
                ),
                changed,
            )
    return [(i, outcome.place[i][0]) for i in placed]


# -- the loop ------------------------------------------------------------------------------


class _Loop:
    """One daemon's scheduler state: its leadership, the scheduler objects and their memos,
    the launches it spawned, and the last failure logged."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.node = session_state.node_name(daemon.config)
        self.leadership = Leadership(daemon.engine, daemon.config.sessions.leader_lock, self.node)
        self._schedulers: dict[str, Scheduler] = {}
        self._memos: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._spawned: set[uuid.UUID] = set()
        self._failing: str | None = None
        self._led = False

    def _interval(self) -> float:
        return self.daemon.config.sessions.schedule_interval

    async def run_pass(self) -> None:
        """One pass: place (when leading), then launch this node's sessions, each step
        whatever the other did. A failure is logged (once while it repeats)."""
        failed: Exception | None = None
        for step in (self.lead, self.launch_mine):
            try:
                await step()
            except Exception as exc:
                failed = failed or exc
        if failed is not None:
            what = f"{type(failed).__name__}: {failed}"
            if what != self._failing:
                log.error(
                    "scheduler pass failed (retried every %ss)", self._interval(), exc_info=failed
                )
            self._failing = what
        elif self._failing is not None:
            log.info("scheduler passes work again")
            self._failing = None

    async def lead(self) -> None:
        """Place the pending sessions when this daemon leads."""
        leading = await runtime.current().run(Pool.STORE, self.leadership.check)
        if leading and not self._led:
            self._memos.clear()  # another leader's rounds came between
        self._led = leading
        if leading:
            await self.place()

    async def place(self) -> None:
        live = runtime.current()
        own_alive = await containers.available(self.daemon) is None
        queue = await live.run(Pool.STORE, self._read, own_alive)
        outcome = Outcome()
        failed: Exception | None = None
        for group in queue.groups.values():
            try:
                decision = self._decide(queue, group)
            except Exception as exc:
                told = exc.message if isinstance(exc, VfdError) else f"{type(exc).__name__}: {exc}"
                why = (
                    f"scheduler {group.scheduler} of group {group.name} failed: {told} "
                    f"(tried again every {self._interval():g} s)"
                )
                all_wait(group, why, outcome)
                failed = failed or exc
                continue
            checked_placements(decision, group, group.scheduler, outcome)
        placed = await live.run(Pool.STORE, write, self.daemon, self.leadership, queue, outcome)
        for session_id, node in placed:
            if node == self.node:
                self._launch(session_id)
        if failed is not None:
            raise failed

    def _read(self, own_alive: bool) -> Queue:
        with self.daemon.session() as session:
            return read_queue(session, self.daemon, own_alive=own_alive)

    def _decide(self, queue: Queue, group: GroupQueue) -> Decision:
        scheduler = self._schedulers.get(group.scheduler)
        if scheduler is None:
            scheduler = self.daemon.plugins.scheduler(group.scheduler)
            self._schedulers[group.scheduler] = scheduler
        key = (group.name, group.scheduler)
        decision = scheduler.decide(snapshot(queue, group, self._memos.get(key, {})))
        self._memos[key] = dict(decision.memo)
        return decision

    async def launch_mine(self) -> None:
        """Launch the sessions scheduled on this node that no launch of this daemon holds."""

        def scheduled() -> Sequence[uuid.UUID]:
            with self.daemon.session() as session:
                return session.exec(
                    select(ComputeSession.id)
                    .where(ComputeSession.node == self.node)
                    .where(ComputeSession.status == SessionStatus.SCHEDULED)
                    .order_by(col(ComputeSession.created_at), col(ComputeSession.id))
                ).all()

        from vfd.daemon import launcher

        for session_id in await runtime.current().run(Pool.STORE, scheduled):
            if session_id not in self._spawned and not launcher.followed(session_id):
                log.info("launching session %s (scheduled on %s)", session_id.hex[:8], self.node)
                self._launch(session_id)

    def _launch(self, session_id: uuid.UUID) -> None:
        from vfd.daemon import launcher

        if session_id in self._spawned:
            return
        self._spawned.add(session_id)

        async def launching() -> None:
            try:
                await launcher.launch(self.daemon, session_id)
            finally:
                self._spawned.discard(session_id)

        runtime.current().spawn(f"launch {session_id.hex[:8]}", launching)
