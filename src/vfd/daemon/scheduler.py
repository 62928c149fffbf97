"""The scheduler loop: places this node's pending sessions, through the configured scheduler
plugin, and starts the launch of each one placed.

One pass every ``[sessions] schedule_interval`` seconds, or at once when :func:`wake` is
called (a session was created, destroyed, or ended, so capacity or the queue changed). A pass
reads the pending sessions of this node (oldest first) and the node's capacity, asks the
scheduler (``[sessions] scheduler``, a :class:`~vfd.plugins.types.Scheduler` some plugin
registers) for a :class:`~vfd.plugins.types.Decision`, moves each placed session to
``scheduled`` and spawns its launch, and stores why each other one waits (its
``scheduler_verdict``, shown by ``vfd session info``). A pass that fails is logged and the next
one runs at the next interval: the loop ends only with the daemon.

At start, the sessions this node had placed but not begun to prepare (``scheduled``, left by
a daemon that stopped) are launched again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import col, select

from vfd.daemon import capacity, containers, runtime
from vfd.daemon.runtime import Pool
from vfd.daemon.services import session_state
from vfd.daemon.services.context import Daemon
from vfd.errors import VfdError
from vfd.plugins.types import Capacity, Decision, PendingSession, Scheduler
from vfd.store.models import ComputeSession, SessionStatus

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
    ends when cancelled."""
    event = asyncio.Event()
    _wakers.add(asyncio.get_running_loop(), event)
    loop = _Loop(daemon)
    try:
        try:
            await loop.relaunch()
        except Exception:
            log.exception("relaunching the sessions left scheduled failed")
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


@dataclass
class _Queue:
    """What one pass reads of the store."""

    pending: list[PendingSession]
    verdicts: dict[uuid.UUID, str | None]
    capacity: Capacity


def _all_wait(queue: _Queue, why: str) -> Decision:
    return Decision(waiting={p.id: why for p in queue.pending})


class _Loop:
    """One daemon's scheduler state: the scheduler object and the last failure logged."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.node = session_state.node_name(daemon.config)
        self.name = daemon.config.sessions.scheduler
        self._scheduler: Scheduler | None = None
        self._failing: str | None = None

    async def run_pass(self) -> None:
        """One pass; a failure is logged (once while it repeats) and goes no further."""
        try:
            await self.place()
        except Exception as exc:
            what = f"{type(exc).__name__}: {exc}"
            if what != self._failing:
                log.exception("scheduler pass failed (retried every %ss)", self._interval())
            self._failing = what
        else:
            if self._failing is not None:
                log.info("scheduler passes work again")
            self._failing = None

    def _interval(self) -> float:
        return self.daemon.config.sessions.schedule_interval

    async def place(self) -> None:
        live = runtime.current()
        queue = await live.run(Pool.STORE, self._read)
        if not queue.pending:
            return
        reason = await containers.available(self.daemon)
        if reason is not None:
            why = f"sessions cannot start on node {self.node}: {reason}"
            await live.run(Pool.STORE, self._write, _all_wait(queue, why), queue)
            return
        try:
            if self._scheduler is None:
                self._scheduler = self.daemon.plugins.scheduler(self.name)
            decision = self._scheduler.decide(list(queue.pending), queue.capacity)
        except Exception as exc:
            told = exc.message if isinstance(exc, VfdError) else f"{type(exc).__name__}: {exc}"
            why = f"scheduler {self.name} failed: {told} (tried again every {self._interval():g} s)"
            await live.run(Pool.STORE, self._write, _all_wait(queue, why), queue)
            raise
        placed = await live.run(Pool.STORE, self._write, decision, queue)
        for session_id in placed:
            self._launch(session_id)

    def _read(self) -> _Queue:
        with self.daemon.session() as session:
            rows = session.exec(
                select(ComputeSession)
                .where(ComputeSession.node == self.node)
                .where(ComputeSession.status == SessionStatus.PENDING)
                .order_by(col(ComputeSession.created_at), col(ComputeSession.id))
            ).all()
            pending = [
                PendingSession(
                    id=row.id,
                    user_id=row.user_id,
                    name=row.name,
                    created_at=row.created_at,
                    cpu=row.cpu,
                    memory=row.memory,
                )
                for row in rows
            ]
            verdicts = {row.id: row.scheduler_verdict for row in rows}
            return _Queue(pending, verdicts, capacity.of_node(session, self.daemon.config))

    def _write(self, decision: Decision, queue: _Queue) -> list[uuid.UUID]:
        """Move the placed sessions (still pending) to ``scheduled`` and store the verdicts
        that changed; the ids of those placed, in the decision's order."""
        known = {p.id for p in queue.pending}
        placed: list[uuid.UUID] = []
        unknown = [i for i in decision.place if i not in known]
        if unknown:
            log.warning("scheduler %s placed sessions that are not pending: %s", self.name, unknown)
        verdicts: dict[uuid.UUID, str] = {}
        for session_id in known - set(decision.place):
            said = decision.waiting.get(session_id) or f"not placed by scheduler {self.name}"
            verdicts[session_id] = said[:VERDICT_MAX]
        changed = {i: v for i, v in verdicts.items() if queue.verdicts.get(i) != v}
        to_place = [i for i in dict.fromkeys(decision.place) if i in known]
        if not to_place and not changed:
            return placed
        # serialised with destroy (which may cancel a pending session meanwhile)
        with self.daemon.naming() as session:
            for session_id in to_place:
                row = session.get(ComputeSession, session_id)
                if row is None or row.status is not SessionStatus.PENDING:
                    continue
                session_state.transition(
                    session,
                    row,
                    SessionStatus.SCHEDULED,
                    f"placed on {self.node} by scheduler {self.name}",
                )
                placed.append(session_id)
            for session_id, verdict in changed.items():
                row = session.get(ComputeSession, session_id)
                if row is None or row.status is not SessionStatus.PENDING:
                    continue
                row.scheduler_verdict = verdict
                session.add(row)
        return placed

    async def relaunch(self) -> None:
        """Launch again the sessions this node placed but had not begun to prepare."""

        def scheduled() -> Sequence[uuid.UUID]:
            with self.daemon.session() as session:
                return session.exec(
                    select(ComputeSession.id)
                    .where(ComputeSession.node == self.node)
                    .where(ComputeSession.status == SessionStatus.SCHEDULED)
                    .order_by(col(ComputeSession.created_at))
                ).all()

        for session_id in await runtime.current().run(Pool.STORE, scheduled):
            log.info("launching session %s again (left scheduled)", session_id.hex[:8])
            self._launch(session_id)

    def _launch(self, session_id: uuid.UUID) -> None:
        from vfd.daemon import launcher

        runtime.current().spawn(
            f"launch {session_id.hex[:8]}",
            functools.partial(launcher.launch, self.daemon, session_id),
        )
