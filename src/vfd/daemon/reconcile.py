"""Adoption at daemon start: the sessions this node had live when its daemon stopped, matched
with the containers docker still has.

Containers outlive the daemon (they are docker's children, not vfd's), so a restarted daemon
picks up where the last one left:

- a session ``running`` or ``terminating`` whose container still runs is adopted: its watcher
  starts again (a ``terminating`` one is asked to stop again);
- one whose container exited meanwhile ends ``terminated`` with the exit code and the reason
  "exited while the daemon was down";
- one whose container is gone ends ``error`` ("its container vanished while the daemon was
  down");
- an adopted session's ``allocation`` (the accelerator devices it holds) is set again from its
  container's ``vfd.allocation`` label when the store's differs or is missing: the container
  is what holds the devices, and the scheduler, which starts placing only after this pass,
  must not give them to another session;
- a session caught ``preparing`` is adopted when its container was started, else ends
  ``error`` (its launch was cut short) and what the launch made is removed;
- a container labelled with this node whose session is final with ``auto_remove`` is removed;
  one whose session this store does not know is left alone and logged (another vfd sharing
  the node name and the docker engine may own it: removing it would end someone's work).

It runs once, as a task of the daemon's task group; :func:`wait_adopted` lets the scheduler
start new sessions only after it.

A second task, :func:`watch_mountd`, notices mountd restarts: the FUSE connection behind the
folder binds of running containers is then gone for good (they read ``ENOTCONN``,
"Transport endpoint is not connected"; docker cannot re-bind a running container), so each
running session of this node that mounts folders and started before mountd gets an event
saying so — ``vfd session info`` shows it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
from anyio.lowlevel import RunVar
from sqlmodel import col, select

from vfd.daemon import containers, launcher, runtime
from vfd.daemon.runtime import Pool
from vfd.daemon.services import session_state
from vfd.daemon.services.context import Daemon
from vfd.daemon.spec import ALLOCATION_LABEL as LABEL
from vfd.enums import SessionStatus as S
from vfd.errors import VfdError
from vfd.scheduling.slots import allotments_from_json, allotments_json
from vfd.store.models import ComputeSession, SessionEvent, SessionKind, SessionMount, utcnow

log = logging.getLogger(__name__)

DOWN = "while the daemon was down"
_done: RunVar[anyio.Event] = RunVar("vfd_adopted")


def _event() -> anyio.Event:
    try:
        return _done.get()
    except LookupError:
        event = anyio.Event()
        _done.set(event)
        return event


async def wait_adopted() -> None:
    """Return once this daemon's adoption pass has run (or found sessions off)."""
    await _event().wait()


@dataclass(frozen=True)
class _Live:
    id: uuid.UUID
    status: S
    container_id: str | None


def _live_sessions(daemon: Daemon) -> list[_Live]:
    node = session_state.node_name(daemon.config)
    statuses = [S.PREPARING, S.RUNNING, S.TERMINATING]
    with daemon.session() as session:
        rows = session.exec(
            select(ComputeSession)
            .where(ComputeSession.node == node)
            .where(col(ComputeSession.status).in_(statuses))
            .where(col(ComputeSession.kind) == SessionKind.COMPUTE)
        ).all()
        return [_Live(r.id, r.status, r.container_id) for r in rows]


def _removable(daemon: Daemon, session_ids: list[str]) -> set[str]:
    """Of these ``vfd.session`` label values: those whose session is final with
    ``auto_remove``. Unknown ones are logged and kept."""
    out: set[str] = set()
    with daemon.session() as session:
        for raw in session_ids:
            try:
                row = session.get(ComputeSession, uuid.UUID(raw))
            except ValueError:
                row = None
            if row is None:
                log.warning(
                    "a container labelled vfd.session=%s on this node belongs to no session of "
                    "this store; left alone (`docker rm -f` it if it is a leftover)",
                    raw[:64],
                )
            elif row.auto_remove and row.status in (S.TERMINATED, S.CANCELLED, S.ERROR):
                out.add(raw)
    return out


def _restore_allocation(daemon: Daemon, session_id: uuid.UUID, label: str | None) -> bool:
    """Set ``session_id``'s allocation from its container's ``vfd.allocation`` label when
    the row's differs; whether it changed. A label that is no allocation is logged and left."""
    if label is None:
        return False
    try:
        raw = json.loads(label)
    except ValueError:
        raw = None
    held = allotments_from_json(raw)
    if not isinstance(raw, list) or len(held) != len(raw):
        log.warning("session %s: its container's %s label is no allocation", session_id, label)
        return False
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if allotments_from_json(row.allocation) == held:
            return False
        row.allocation = allotments_json(held)
        session.add(row)
    log.info("session %s: its allocation set again from its container: %s", session_id, label)
    return True


def _adopt_preparing(daemon: Daemon, session_id: uuid.UUID) -> bool:
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if row.status is not S.PREPARING:
            return False
        session_state.transition(session, row, S.RUNNING, f"its container started {DOWN}")
        return True


async def adopt(daemon: Daemon) -> None:
    """The adoption pass (see the module's docstring). Never raises: a failure is logged."""
    try:
        await _adopt(daemon)
    except Exception:
        log.exception("adopting this node's sessions failed")
    finally:
        _event().set()


async def _adopt(daemon: Daemon) -> None:
    if daemon.config.sessions.enabled == "off":
        return
    why = await containers.available(daemon)
    if why is not None:
        log.warning("not adopting sessions: %s", why)
        return
    live = runtime.current()
    url = daemon.config.sessions.docker_url
    node = session_state.node_name(daemon.config)
    sessions = await live.run(Pool.STORE, _live_sessions, daemon)
    adopted = 0
    for item in sessions:
        if launcher.followed(item.id):
            continue  # placed and started by this daemon meanwhile
        seen = None
        if item.container_id is not None:
            seen = await live.run(Pool.DOCKER, containers.state, url, item.container_id)
        if item.status is S.PREPARING:
            if (
                seen is not None
                and seen.running
                and await live.run(Pool.STORE, _adopt_preparing, daemon, item.id)
            ):
                await live.run(
                    Pool.STORE, _restore_allocation, daemon, item.id, seen.labels.get(LABEL)
                )
                _follow(daemon, item.id, seen.id)
                adopted += 1
                continue
            if item.container_id is not None:
                with contextlib.suppress(VfdError):
                    await live.run(Pool.DOCKER, containers.remove, url, item.container_id)
            await launcher.vanished(daemon, item.id, f"its start was cut short {DOWN}")
            continue
        if seen is None:
            await launcher.vanished(daemon, item.id, f"its container vanished {DOWN}")
        elif seen.running:
            await live.run(Pool.STORE, _restore_allocation, daemon, item.id, seen.labels.get(LABEL))
            _follow(daemon, item.id, seen.id)
            if item.status is S.TERMINATING:
                timeout = daemon.config.sessions.stop_timeout
                live.spawn(
                    f"stop {item.id}",
                    functools.partial(
                        live.run, Pool.DOCKER, containers.stop, url, seen.id, timeout
                    ),
                )
            adopted += 1
        else:
            await launcher.ended(
                daemon,
                item.id,
                seen.id,
                seen,
                reason=f"exited {DOWN} (exit code {seen.exit_code})",
            )
    known = {str(item.id) for item in sessions}
    found = await live.run(Pool.DOCKER, containers.node_containers, url, node)
    strays = [c for c in found if c.labels.get("vfd.session") not in known]
    removable = await live.run(
        Pool.STORE, _removable, daemon, [c.labels.get("vfd.session", "") for c in strays]
    )
    for stray in strays:
        if stray.labels.get("vfd.session", "") in removable:
            log.info("removing container %s: no live session of this node", stray.id[:12])
            with contextlib.suppress(VfdError):
                await live.run(Pool.DOCKER, containers.remove, url, stray.id)
            raw = stray.labels.get("vfd.session", "")
            with contextlib.suppress(ValueError):
                await launcher.remove_home(daemon, uuid.UUID(raw))
    if sessions or strays:
        log.info(
            "adopted %d running session(s) of node %s; %d ended %s",
            adopted,
            node,
            len(sessions) - adopted,
            DOWN,
        )


def _follow(daemon: Daemon, session_id: uuid.UUID, container_id: str) -> None:
    runtime.current().spawn(
        f"watch {session_id}", functools.partial(launcher.watch, daemon, session_id, container_id)
    )


# -- mountd restarts ----------------------------------------------------------------------

MOUNTD_POLL = 2.0
"""Seconds between looks at mountd's pid."""
STALE = "its folder mounts are stale since mountd restarted at"


def process_start(pid: int) -> datetime | None:
    """When process ``pid`` of this host started (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    ticks = int(fields[19])  # field 22 of stat(5), counted after "pid (comm)"
    return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)


def _mark_stale(daemon: Daemon, since: datetime) -> int:
    """Record the stale-mounts event on this node's running sessions with folder mounts that
    started before ``since`` (once per session); how many were marked."""
    node = session_state.node_name(daemon.config)
    reason = f"{STALE} {since.isoformat(timespec='seconds')}; destroy it and run it again"
    marked = 0
    with daemon.session() as session:
        rows = session.exec(
            select(ComputeSession)
            .where(ComputeSession.node == node)
            .where(col(ComputeSession.status).in_([S.RUNNING, S.TERMINATING]))
        ).all()
        for row in rows:
            started = row.started_at
            if started is None:
                continue
            if started.tzinfo is None:
                started = started.replace(tzinfo=UTC)
            if started >= since:
                continue
            if (
                session.exec(select(SessionMount).where(SessionMount.session_id == row.id)).first()
                is None
            ):
                continue
            seen = session.exec(
                select(SessionEvent)
                .where(SessionEvent.session_id == row.id)
                .where(col(SessionEvent.reason).startswith(STALE))
            ).first()
            if seen is not None:
                continue
            session.add(
                SessionEvent(session_id=row.id, at=utcnow(), status=row.status, reason=reason)
            )
            marked += 1
    return marked


async def watch_mountd(daemon: Daemon) -> None:
    """Each time mountd's pid changes (and once at start), mark the running sessions whose
    folder binds predate it (see the module's docstring). Runs until the daemon stops."""
    if daemon.config.sessions.enabled == "off":
        return
    live = runtime.current()
    last: int | None = None
    while True:
        health = await live.run(Pool.MOUNTD, daemon.mountd.health)
        pid = (health or {}).get("pid")
        if isinstance(pid, int) and pid != last:
            since = await live.run(Pool.FILES, process_start, pid)
            if since is not None:
                try:
                    marked = await live.run(Pool.STORE, _mark_stale, daemon, since)
                except Exception:
                    log.exception("marking sessions with stale folder mounts failed")
                else:
                    last = pid
                    if marked:
                        log.warning(
                            "mountd restarted at %s: %d running session(s) have stale folder "
                            "mounts",
                            since.isoformat(timespec="seconds"),
                            marked,
                        )
        await anyio.sleep(MOUNTD_POLL)
