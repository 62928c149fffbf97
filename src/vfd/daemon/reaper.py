"""The idle and lifetime reaper: ends this node's running sessions that ran too long or sat idle.

Every ``[sessions] reap_interval`` seconds it reads this node's running sessions and their
users' resource policies (``vfd.daemon.services.policies``):

- **lifetime**: a session that has run (since it became ``running``) for its limit — the
  smaller of its own ``lifetime`` (``vfd run --lifetime``) and the policy's ``max_lifetime``
  — is stopped, by ``vfd (lifetime Ns reached)``.
- **idle**: under a policy with an ``idle_timeout``, the reaper samples the container's cpu
  time (docker's one-shot stats) each pass. A session that used at least ``[sessions]
  idle_cpu`` of one cpu since the previous sample counts as active: its ``last_activity_at``
  is stamped, as an exec or a shell stamps it when it opens and when it closes
  (:mod:`vfd.daemon.activity`). A session with an exec or a shell open is never idle. A
  session whose last activity (or start) is ``idle_timeout`` ago, and whose cpu stayed below
  the threshold over the last interval, is stopped, by ``vfd (idle for Ns)``. A session is
  never judged idle before one interval of cpu was seen.

Stopping goes through the launcher (``launcher.stop``: SIGTERM, then SIGKILL after
``[sessions] stop_timeout``), so the reason shows in ``vfd session info`` like any destroy. A
pass that fails is logged and the next runs at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from vfd.daemon import activity, containers, runtime
from vfd.daemon.runtime import Pool
from vfd.daemon.services import session_state
from vfd.daemon.services.agents import aware
from vfd.daemon.services.context import Daemon
from vfd.daemon.services.policies import SessionLimits, session_limits
from vfd.store.models import ComputeSession, SessionKind, SessionStatus, User, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Running:
    """What the reaper needs of one running session."""

    id: uuid.UUID
    container_id: str | None
    started_at: datetime
    last_activity_at: datetime | None
    lifetime: float | None
    limits: SessionLimits

    @property
    def lifetime_limit(self) -> float | None:
        """The session's effective lifetime: the smaller of its own and the policy's."""
        limits = [x for x in (self.lifetime, self.limits.max_lifetime) if x]
        return min(limits) if limits else None


@dataclass(frozen=True)
class Sample:
    """A container's cpu time at a moment (``time.monotonic`` seconds)."""

    cpu: float
    at: float


def _running(daemon: Daemon) -> list[Running]:
    """This node's running sessions with their users' session limits."""
    node = session_state.node_name(daemon.config)
    out = []
    with daemon.session() as session:
        rows = session.exec(
            select(ComputeSession)
            .where(ComputeSession.node == node)
            .where(col(ComputeSession.status) == SessionStatus.RUNNING)
            .where(col(ComputeSession.kind) == SessionKind.COMPUTE)
        ).all()
        limits: dict[uuid.UUID, SessionLimits] = {}
        for row in rows:
            if row.user_id not in limits:
                user = session.get(User, row.user_id)
                limits[row.user_id] = (
                    session_limits(session, user) if user is not None else SessionLimits()
                )
            out.append(
                Running(
                    id=row.id,
                    container_id=row.container_id,
                    started_at=aware(row.started_at or row.status_changed_at),
                    last_activity_at=(
                        aware(row.last_activity_at) if row.last_activity_at is not None else None
                    ),
                    lifetime=row.lifetime,
                    limits=limits[row.user_id],
                )
            )
    return out


class Reaper:
    """One daemon's reaper: the last cpu sample of each session it watches for idleness."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.samples: dict[uuid.UUID, Sample] = {}

    async def run_pass(self) -> list[tuple[uuid.UUID, str]]:
        """One pass: the sessions stopped, each with who stopped it (the reason)."""
        live = runtime.current()
        loop = asyncio.get_running_loop()
        running = await live.run(Pool.STORE, _running, self.daemon)
        self.samples = {r.id: s for r, s in self._kept(running)}
        now = utcnow()
        ended = []
        for r in running:
            by = self._lifetime_over(r, now)
            if activity.connected(r.id):  # an exec or a shell is open: not idle
                self.samples.pop(r.id, None)
            elif by is None and r.limits.idle_timeout and r.container_id is not None:
                url = self.daemon.config.sessions.docker_url
                cpu = await live.run(Pool.DOCKER, containers.cpu_seconds, url, r.container_id)
                by = await self._idle(r, cpu, loop.time(), now)
            if by is not None:
                await self._stop(r.id, by)
                ended.append((r.id, by))
        return ended

    def _kept(self, running: list[Running]) -> list[tuple[Running, Sample]]:
        return [(r, self.samples[r.id]) for r in running if r.id in self.samples]

    @staticmethod
    def _lifetime_over(r: Running, now: datetime) -> str | None:
        limit = r.lifetime_limit
        if limit is None or (now - r.started_at).total_seconds() < limit:
            return None
        return f"vfd (lifetime {limit:g}s reached)"

    async def _idle(self, r: Running, cpu: float | None, at: float, now: datetime) -> str | None:
        """Whether ``r`` is idle past its timeout, given its cpu time ``cpu`` now."""
        if cpu is None:
            self.samples.pop(r.id, None)
            return None
        before = self.samples.get(r.id)
        self.samples[r.id] = Sample(cpu, at)
        if before is None or at <= before.at:
            return None  # no interval of cpu seen yet
        if (cpu - before.cpu) / (at - before.at) >= self.daemon.config.sessions.idle_cpu:
            await runtime.current().run(Pool.STORE, activity.touch, self.daemon, r.id)
            return None
        since = max(r.started_at, r.last_activity_at or r.started_at)
        idle = (now - since).total_seconds()
        if idle < r.limits.idle_timeout:
            return None
        return f"vfd (idle for {round(idle)}s)"

    async def _stop(self, session_id: uuid.UUID, by: str) -> None:
        from vfd.daemon import launcher

        self.samples.pop(session_id, None)
        log.info("stopping session %s: %s", session_id, by)
        await launcher.stop(self.daemon, session_id, force=False, by=by)


async def serve(daemon: Daemon) -> None:
    """The reaper of ``daemon`` (a background task of its runtime): never returns, ends when
    cancelled."""
    reaper = Reaper(daemon)
    failing = False
    while True:
        await asyncio.sleep(daemon.config.sessions.reap_interval)
        try:
            await reaper.run_pass()
            failing = False
        except Exception:
            if not failing:
                log.exception("a pass of the idle and lifetime reaper failed")
            failing = True
