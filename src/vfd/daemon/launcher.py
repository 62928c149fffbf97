"""Starting and stopping a session's container: :func:`launch`, :func:`stop`, :func:`remove_kept`.

``launch`` takes a ``scheduled`` session through ``preparing`` (work directory, dotfiles,
plugin contributions, the veto of ``vfd_session_before_start``, container made and started)
to ``running``; then its watcher (:func:`watch`) follows the container until it exits and
ends the session. Whatever fails while preparing ends the session ``error`` with the reason,
leaving no container and no work directory behind.

The store is the truth about a session's status: every step that moves it checks, in the same
transaction, that the session is still where the step expects it. So a session destroyed while
it prepares (:func:`stop` moves it to ``cancelled`` at once) makes the launch in flight clean up
instead of starting its container — or, if the container started meanwhile, remove it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from dataclasses import dataclass

import anyio

from vfd.daemon import containers, runtime, workdir
from vfd.daemon.containers import Bind
from vfd.daemon.output import save_output
from vfd.daemon.runtime import Pool
from vfd.daemon.services import dotfiles, session_apps, session_groups, session_state
from vfd.daemon.services.context import Daemon
from vfd.daemon.services.dotfiles import DotfileEntry
from vfd.daemon.spec import build_spec
from vfd.enums import SessionStatus as S
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.manager import Vetoed
from vfd.plugins.types import SessionView
from vfd.store.models import ComputeSession, User

log = logging.getLogger(__name__)

MOVE_TRIES = 4
"""How many times a destroy reads and moves a session that other writers keep moving."""
POLL_MIN = 0.05
POLL_MAX = 1.0
"""The watcher looks at its container at most this many seconds apart (sooner when woken)."""


@dataclass
class _Prepared:
    view: SessionView
    uid: int
    gid: int
    binds: list[Bind]
    groups: list[int]
    dotfiles: list[DotfileEntry]


_wakers: dict[uuid.UUID, anyio.Event] = {}
"""The watcher of each session followed by this daemon, woken when the session is stopped."""
_launching: set[uuid.UUID] = set()
"""Sessions this daemon is preparing now."""
_moves: dict[uuid.UUID, anyio.Event] = {}
"""Set when this daemon moves the session on (see :func:`moved`); made by the first waiter."""
_waiters: dict[uuid.UUID, int] = {}


def _moved_on(session_id: uuid.UUID) -> None:
    """Wake whoever waits in :func:`moved` for ``session_id`` (called after the store
    committed the move)."""
    event = _moves.pop(session_id, None)
    if event is not None:
        event.set()


async def moved(session_id: uuid.UUID, within: float) -> None:
    """Wait at most ``within`` seconds for this daemon to move ``session_id`` on: its
    container running, its launch failed or cancelled, or the session ended and cleaned up
    (output saved, a ``--rm`` container removed). A move made elsewhere (another node, a
    destroy) is not signalled: the caller looks at the store after ``within`` anyway."""
    event = _moves.setdefault(session_id, anyio.Event())
    _waiters[session_id] = _waiters.get(session_id, 0) + 1
    try:
        with anyio.move_on_after(within):
            await event.wait()
    finally:
        left = _waiters.pop(session_id) - 1
        if left:
            _waiters[session_id] = left
        elif _moves.get(session_id) is event:
            del _moves[session_id]


def followed(session_id: uuid.UUID) -> bool:
    """Whether this daemon prepares or watches ``session_id`` already (adoption skips it)."""
    return session_id in _launching or session_id in _wakers


def _url(daemon: Daemon) -> str:
    return daemon.config.sessions.docker_url


async def launch(daemon: Daemon, session_id: uuid.UUID) -> None:
    """Prepare and start ``session_id`` (``scheduled``); a no-op for a session that is not.

    Never raises for a session-level failure: the session ends ``error`` or ``cancelled``."""
    _launching.add(session_id)
    try:
        await _launch(daemon, session_id)
    finally:
        _launching.discard(session_id)


async def _launch(daemon: Daemon, session_id: uuid.UUID) -> None:
    live = runtime.current()
    if not await live.run(Pool.STORE, _begin, daemon, session_id):
        return
    container_id: str | None = None
    try:
        prepared = await live.run(Pool.STORE, _gather, daemon, session_id)
        spec = await build_spec(daemon, prepared.view, prepared.binds, prepared.groups)
        fd = await _make_home(daemon, session_id, prepared)
        try:
            await live.run(Pool.FILES, _write_dotfiles, fd, prepared)
        finally:
            await live.run(Pool.FILES, _close, fd)
        try:
            await daemon.plugins.before_start(prepared.view)
        except Vetoed as vetoed:
            await _cleanup(daemon, session_id, None)
            await live.run(
                Pool.STORE,
                _end_preparing,
                daemon,
                session_id,
                S.CANCELLED,
                vetoed.reason,
                vetoed.plugin,
            )
            _moved_on(session_id)
            return
        container_id = await live.run(Pool.DOCKER, containers.create, _url(daemon), spec)
        if not await live.run(Pool.STORE, _set_container, daemon, session_id, container_id):
            raise _Withdrawn()
        await live.run(Pool.DOCKER, containers.start, _url(daemon), container_id)
        view = await live.run(Pool.STORE, _to_running, daemon, session_id)
        if view is None:
            raise _Withdrawn()
        _moved_on(session_id)
    except _Withdrawn:
        log.info("session %s was destroyed while it prepared; not started", session_id)
        await _cleanup(daemon, session_id, container_id)
        _moved_on(session_id)
        return
    except Exception as exc:
        reason = exc.message if isinstance(exc, VfdError) else f"{exc.__class__.__name__}: {exc}"
        plugin = exc.details.get("plugin") if isinstance(exc, VfdError) else None
        if not isinstance(exc, VfdError):
            log.exception("session %s failed to start", session_id)
        else:
            log.warning("session %s failed to start: %s", session_id, reason)
        await _cleanup(daemon, session_id, container_id)
        failed = await live.run(
            Pool.STORE,
            _end_preparing,
            daemon,
            session_id,
            S.ERROR,
            f"could not start: {reason}",
            plugin if isinstance(plugin, str) else None,
        )
        _moved_on(session_id)
        if failed is not None:
            await daemon.plugins.notify("vfd_session_failed", session=failed, reason=reason)
        _wake_scheduler()
        return
    await daemon.plugins.notify("vfd_session_started", session=view)
    _wakers.setdefault(session_id, anyio.Event())
    _launching.discard(session_id)
    await watch(daemon, session_id, container_id)


async def _make_home(daemon: Daemon, session_id: uuid.UUID, prepared: _Prepared) -> int:
    """The session's fresh ``/home/work`` on the host (a directory fd), or a plain reason."""
    try:
        return await runtime.current().run(
            Pool.FILES, workdir.make_work, daemon.config, session_id, prepared.uid, prepared.gid
        )
    except OSError as exc:
        where = exc.filename or workdir.scratch_root(daemon.config)
        raise VfdError(
            ErrorCode.INTERNAL,
            f"cannot make its home directory ({where}: {exc.strerror or exc}); "
            "check [sessions] scratch_dir",
            path=str(where),
        ) from None


class _Withdrawn(Exception):
    """The session left ``preparing`` (destroyed) while its launch was under way."""


def _begin(daemon: Daemon, session_id: uuid.UUID) -> bool:
    """``scheduled`` on this node -> ``preparing``; False for a session that is not (any
    more). The move is a compare-and-set on the status, and the row is locked from the read
    (on PostgreSQL), so of several launches — on this node or others — one alone begins."""
    node = session_state.node_name(daemon.config)
    with daemon.session() as session:
        row = session.get(ComputeSession, session_id, with_for_update=True)
        if row is None or row.status is not S.SCHEDULED or row.node != node:
            return False
        try:
            session_state.transition(session, row, S.PREPARING, "preparing its container")
        except VfdError as exc:
            if exc.code is ErrorCode.INVALID_STATUS:
                return False
            raise
        return True


def _gather(daemon: Daemon, session_id: uuid.UUID) -> _Prepared:
    """What preparing needs of the store: the view, binds, groups, dotfiles."""
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        user = session.get(User, row.user_id)
        if user is None:
            raise VfdError(ErrorCode.USER_NOT_FOUND, "the session's user is gone")
        mounts = list(session_state.mounts_of(session, row.id))
        root = daemon.config.mount_point
        binds = [
            Bind(
                source=str(root / m.permission.value / m.vfolder_id.hex),
                target=m.target,
                read_only=m.permission.value != "rw",
            )
            for m in mounts
        ]
        groups = session_groups.groups_for(session, user, mounts)
        entries = dotfiles.for_session(session, user, mount_targets=[m.target for m in mounts])
        view = session_state.view_of(session, row)
        return _Prepared(
            view=view,
            uid=row.uid,
            gid=row.gid,
            binds=binds,
            groups=groups,
            dotfiles=list(entries),
        )


def _write_dotfiles(fd: int, prepared: _Prepared) -> None:
    targets = [bind.target for bind in prepared.binds]
    dotfiles.make_mount_parents(fd, targets, prepared.uid, prepared.gid)
    if prepared.dotfiles:
        dotfiles.write_into(fd, prepared.dotfiles, prepared.uid, prepared.gid)


def _close(fd: int) -> None:
    os.close(fd)


def _set_container(daemon: Daemon, session_id: uuid.UUID, container_id: str) -> bool:
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if row.status is not S.PREPARING:
            return False
        row.container_id = container_id
        session.add(row)
        return True


def _to_running(daemon: Daemon, session_id: uuid.UUID) -> SessionView | None:
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if row.status is not S.PREPARING:
            return None
        session_state.transition(session, row, S.RUNNING, "its container started")
        session.flush()
        return session_state.view_of(session, row)


def _end_preparing(
    daemon: Daemon,
    session_id: uuid.UUID,
    status: S,
    reason: str,
    plugin: str | None,
) -> SessionView | None:
    """Move a still-preparing session to ``status``; None when it had left preparing."""
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if row.status is not S.PREPARING:
            return None
        session_state.transition(session, row, status, reason[:1024], plugin=plugin)
        session.flush()
        return session_state.view_of(session, row)


async def _cleanup(daemon: Daemon, session_id: uuid.UUID, container_id: str | None) -> None:
    """Remove what a launch made: its container and its work directory."""
    live = runtime.current()
    if container_id is not None:
        with contextlib.suppress(VfdError):
            await live.run(Pool.DOCKER, containers.remove, _url(daemon), container_id)
    await remove_home(daemon, session_id)


async def remove_home(daemon: Daemon, session_id: uuid.UUID) -> None:
    """Remove the session's home directory on the host; a failure is logged, never raised
    (it must not keep a session from ending)."""
    try:
        await runtime.current().run(Pool.FILES, workdir.remove_work, daemon.config, session_id)
    except Exception:
        log.exception("cannot remove the home directory of session %s", session_id)


# -- following a running container --------------------------------------------------------


async def watch(daemon: Daemon, session_id: uuid.UUID, container_id: str) -> None:
    """Follow the container of a running (or terminating) session until it exits, then end
    the session: output saved, exit code and reason recorded, hooks told, container removed
    when ``auto_remove``, work directory removed, the scheduler woken."""
    live = runtime.current()
    waker = _wakers.setdefault(session_id, anyio.Event())
    delay = POLL_MIN
    try:
        while True:
            try:
                seen = await live.run(Pool.DOCKER, containers.state, _url(daemon), container_id)
            except VfdError as exc:  # docker down: keep looking, slower
                log.warning("cannot see the container of session %s: %s", session_id, exc)
                delay = POLL_MAX
            else:
                if seen is None:
                    await vanished(daemon, session_id, "its container vanished")
                    return
                if not seen.running:
                    await ended(daemon, session_id, container_id, seen)
                    return
            with anyio.move_on_after(delay):
                await waker.wait()
            if waker.is_set():
                waker = _wakers[session_id] = anyio.Event()
                delay = POLL_MIN
            else:
                delay = min(POLL_MAX, delay * 2)
    finally:
        _wakers.pop(session_id, None)


def wake_watcher(session_id: uuid.UUID) -> None:
    """Make the watcher of ``session_id`` look at its container now."""
    waker = _wakers.get(session_id)
    if waker is not None:
        waker.set()


async def ended(
    daemon: Daemon,
    session_id: uuid.UUID,
    container_id: str,
    seen: containers.ContainerState,
    reason: str | None = None,
) -> None:
    """End a session whose container ``seen`` has exited (``reason``: instead of the usual
    one)."""
    live = runtime.current()
    # its apps end first: once a session is final, none of its apps runs
    await session_apps.stop_session_apps(daemon, session_id, "its session ended")
    done = await live.run(Pool.STORE, _record_exit, daemon, session_id, seen, reason)
    _wake_scheduler()
    # the output is saved before the container can go: until then, logs read it from docker
    await save_output(daemon, session_id, container_id)
    if done is not None:
        await daemon.plugins.notify("vfd_session_stopped", session=done[0])
        if done[1]:
            with contextlib.suppress(VfdError):
                await live.run(Pool.DOCKER, containers.remove, _url(daemon), container_id)
    await remove_home(daemon, session_id)
    _moved_on(session_id)


def exit_reason(row: ComputeSession, seen: containers.ContainerState) -> str:
    if row.status is S.TERMINATING:
        why = row.status_reason or "destroyed"
        return f"stopped ({why}); exit code {seen.exit_code}"
    if seen.oom_killed:
        return f"killed for using more than its memory limit (exit code {seen.exit_code})"
    return f"exited with code {seen.exit_code}"


def _record_exit(
    daemon: Daemon, session_id: uuid.UUID, seen: containers.ContainerState, reason: str | None
) -> tuple[SessionView, bool] | None:
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if row.status not in (S.RUNNING, S.TERMINATING):
            return None
        row.exit_code = seen.exit_code
        session_state.transition(session, row, S.TERMINATED, reason or exit_reason(row, seen))
        session.flush()
        return session_state.view_of(session, row), row.auto_remove


async def vanished(daemon: Daemon, session_id: uuid.UUID, reason: str) -> None:
    """End a live session ``error`` with ``reason`` (its container is gone)."""
    live = runtime.current()
    await session_apps.stop_session_apps(daemon, session_id, "its session ended")
    failed = await live.run(Pool.STORE, fail_live, daemon, session_id, reason)
    if failed is not None:
        await daemon.plugins.notify("vfd_session_failed", session=failed, reason=reason)
    await remove_home(daemon, session_id)
    _moved_on(session_id)
    _wake_scheduler()


def fail_live(daemon: Daemon, session_id: uuid.UUID, reason: str) -> SessionView | None:
    """Move a live session to ``error``; None when it was final already."""
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if row.status in (S.TERMINATED, S.CANCELLED, S.ERROR):
            return None
        session_state.transition(session, row, S.ERROR, reason)
        session.flush()
        return session_state.view_of(session, row)


def _wake_scheduler() -> None:
    try:
        from vfd.daemon import scheduler
    except ImportError:
        return
    scheduler.wake()


# -- stopping -----------------------------------------------------------------------------


async def stop(
    daemon: Daemon, session_id: uuid.UUID, *, force: bool, by: str | None = None
) -> None:
    """Stop a ``preparing``, ``running`` or ``terminating`` session.

    ``preparing`` ends ``cancelled`` at once (the launch in flight cleans up); ``running``
    becomes ``terminating`` and its container is stopped in the background — SIGTERM, then
    SIGKILL after ``[sessions] stop_timeout``; ``force``: SIGKILL at once — and its watcher
    ends the session. ``by`` names who asked (default: the session's user)."""
    live = runtime.current()
    moved = await live.run(Pool.STORE, _to_terminating, daemon, session_id, by)
    if moved is None:
        return
    view, container_id, was_running = moved
    if was_running:
        await daemon.plugins.notify("vfd_session_before_stop", session=view)
    if container_id is None:
        return

    async def stopping() -> None:
        url = _url(daemon)
        if force:
            await live.run(Pool.DOCKER, containers.kill, url, container_id)
        else:
            timeout = daemon.config.sessions.stop_timeout
            await live.run(Pool.DOCKER, containers.stop, url, container_id, timeout)
        wake_watcher(session_id)

    live.spawn(f"stop {session_id}", stopping)


def _to_terminating(
    daemon: Daemon, session_id: uuid.UUID, by: str | None
) -> tuple[SessionView, str | None, bool] | None:
    """Move the session towards its end; look again when another writer (a concurrent
    destroy, the launcher, the watcher) moved it between the read and the move."""
    for _ in range(MOVE_TRIES - 1):
        try:
            return _to_terminating_once(daemon, session_id, by)
        except VfdError as exc:
            if exc.code is not ErrorCode.INVALID_STATUS:
                raise
    return _to_terminating_once(daemon, session_id, by)


def _to_terminating_once(
    daemon: Daemon, session_id: uuid.UUID, by: str | None
) -> tuple[SessionView, str | None, bool] | None:
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if by is None:
            user = session.get(User, row.user_id)
            by = user.email if user is not None else "its user"
        if row.status is S.PREPARING:
            session_state.transition(session, row, S.CANCELLED, f"destroyed by {by}")
            return None
        if row.status is S.RUNNING:
            session_state.transition(session, row, S.TERMINATING, f"destroyed by {by}")
            session.flush()
            return session_state.view_of(session, row), row.container_id, True
        if row.status is S.TERMINATING:  # again: stop (or kill) once more
            return session_state.view_of(session, row), row.container_id, False
        return None


async def remove_kept(daemon: Daemon, session_id: uuid.UUID) -> None:
    """Remove the container a final session kept (it ran without ``auto_remove``);
    idempotent. Its saved output stays, so its logs still read."""
    live = runtime.current()
    container_id = await live.run(Pool.STORE, _kept_container, daemon, session_id)
    if container_id is not None:
        await live.run(Pool.DOCKER, containers.remove, _url(daemon), container_id)


def _kept_container(daemon: Daemon, session_id: uuid.UUID) -> str | None:
    with daemon.session() as session:
        row = session_state.load(session, session_id)
        if row.status not in (S.TERMINATED, S.CANCELLED, S.ERROR):
            return None
        return row.container_id
