"""Service apps: the ports a session's image declares, served through the daemon's proxy.

``vfd session apps ID`` lists what a session may run (:func:`list_apps`): the services its
image declares (:mod:`vfd.apps.service_ports`) and the apps plugins register, with those that
run.
``vfd session app ID NAME`` starts one (:func:`start`): a service is started in the container
when its image says how and nothing answers on its port yet, then served by an
:class:`~vfd.apps.proxy.AppProxy` on a port of ``[apps] ports``, which connects inside the
container's network namespace and lets through only the holders of the app's random token;
the answer carries the URL with the token. A registered app (vfd's own ``sftp``, ``filebrowser``,
or a plugin's: :mod:`vfd.daemon.services.app_registry`) is launched by
:mod:`vfd.daemon.services.session_apps`.

A service app is a ``sessionapp`` row of kind ``service`` (its token kept in ``secret`` while
it runs, for its user, and never shown elsewhere), with the same hooks as every app:
``vfd_app_before_launch`` (may veto), ``vfd_app_launched``, ``vfd_app_stopped``. A task of
the daemon follows each one: it stops when asked (:func:`stop`), when its session leaves
``running`` (destroyed, or its container exited) or when the daemon stops; then its listener
and every connection through it are closed and the namespace descriptor released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from vfd.apps import netns, process, service_ports
from vfd.apps.proxy import TOKEN_PARAM, AppProxy, ProxyLimits
from vfd.apps.service_ports import ServicePort
from vfd.daemon import activity, containers, launcher, runtime
from vfd.daemon.runtime import Pool
from vfd.daemon.services import app_registry, session_apps, session_state
from vfd.daemon.services.context import Caller, Daemon
from vfd.enums import AppStatus, SessionKind
from vfd.enums import SessionStatus as S
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.types import AppView, SessionView
from vfd.store.models import ComputeSession, SessionApp, utcnow

log = logging.getLogger(__name__)

KIND = "service"
LOOPBACK = "127.0.0.1"
"""Where a service is reached, inside its container's network namespace."""
FOLLOW_POLL = 1.0
"""Seconds between looks at the session of a running service app."""
READY_POLL = 0.1
ACTIVITY_EVERY = 30.0
"""Seconds between stamps of a session's last activity by the use of its service apps."""
HOME = "/home/work"
SESSION_ENDED = "its session ended"
"""Why a service app stops when its session leaves ``running`` (destroyed, or its container
exited)."""


@dataclass
class _Served:
    """A service app this daemon serves."""

    app_id: uuid.UUID
    session_id: uuid.UUID
    name: str
    proxy: AppProxy
    namespace: int
    exec_id: str | None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)


_served: dict[uuid.UUID, _Served] = {}
_locks: dict[tuple[uuid.UUID, str], tuple[asyncio.Lock, int]] = {}
"""The lock of each service being started, with how many starts hold or wait for it."""


@dataclass(frozen=True)
class _Seen:
    """What starting or listing needs of a session, read in one store call."""

    view: SessionView
    status: S
    kind: SessionKind
    container_id: str | None
    node: str
    uid: int
    gid: int
    apps: tuple[dict[str, Any], ...]
    live: dict[str, tuple[uuid.UUID, str, str | None]]
    """Live apps by name: (id, kind, secret)."""


def _find(daemon: Daemon, caller: Caller, ref: str) -> _Seen:
    with daemon.session() as session:
        row = session_state.find(session, caller.user, ref)
        rows = session_apps.apps_of(session, row.id)
        return _Seen(
            view=session_state.view_of(session, row),
            status=row.status,
            kind=row.kind,
            container_id=row.container_id,
            node=row.node or "",
            uid=row.uid,
            gid=row.gid,
            apps=tuple(session_apps.app_json(a) for a in rows),
            live={
                a.name: (a.id, a.kind, a.secret) for a in rows if a.status in session_apps.LIVE_APP
            },
        )


def _docker(daemon: Daemon) -> str:
    return daemon.config.sessions.docker_url


def url_of(endpoint: str | None, token: str | None) -> str | None:
    """The URL a user opens: the endpoint with the token."""
    if endpoint is None or token is None:
        return None
    return f"{endpoint}?{TOKEN_PARAM}={token}"


def endpoint_of(daemon: Daemon, port: int) -> str:
    host = session_apps.public_host(daemon)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


async def _services(daemon: Daemon, seen: _Seen) -> list[ServicePort]:
    """The services the session's container (else its image) declares by label, else those
    ``[apps.service_ports]`` gives its image."""
    live = runtime.current()
    configured = daemon.config.apps.service_ports
    if seen.container_id is not None and seen.status in (S.RUNNING, S.TERMINATING):
        state = await live.run(Pool.DOCKER, containers.state, _docker(daemon), seen.container_id)
        if state is not None:
            return service_ports.from_labels(state.labels, configured, seen.view.image)
    if seen.kind is not SessionKind.COMPUTE:
        return []
    labels = await live.run(Pool.DOCKER, containers.image_labels, _docker(daemon), seen.view.image)
    return service_ports.from_labels(labels, configured, seen.view.image)


# -- listing ------------------------------------------------------------------------------


async def list_apps(daemon: Daemon, caller: Caller, ref: str) -> dict[str, Any]:
    """``GET /v1/sessions/{ref}/apps``: what the session may run and what runs."""
    live = runtime.current()
    seen = await live.run(Pool.STORE, _find, daemon, caller, ref)
    problem: str | None = None
    services: list[ServicePort] = []
    try:
        services = await _services(daemon, seen)
    except VfdError as exc:
        if exc.code not in (ErrorCode.INVALID_ARGUMENT, ErrorCode.IMAGE_NOT_FOUND):
            raise
        problem = exc.message
    running = {a["name"]: a for a in seen.apps if a["status"] in ("starting", "running")}
    idle = "available" if seen.status is S.RUNNING else "unavailable"
    out: list[dict[str, Any]] = []
    for service in services:
        app = running.pop(service.name, None)
        secret = seen.live.get(service.name, (None, "", None))[2]
        out.append(
            {
                "name": service.name,
                "kind": KIND,
                "protocol": service.protocol,
                "container_port": service.port,
                "startable": service.proxied,
                "starts_with": list(service.command) or None,
                "status": app["status"] if app else idle,
                "app": app,
                "url": url_of(app["endpoint"], secret) if app else None,
            }
        )
    for name in app_registry.names(daemon):
        app = running.pop(name, None)
        secret = seen.live.get(name, (None, "", None))[2]
        out.append(
            {
                "name": name,
                "kind": "process",
                "protocol": None,
                "container_port": None,
                "startable": True,
                "starts_with": None,
                "status": app["status"] if app else idle,
                "app": app,
                "url": (
                    url_of(app["endpoint"], secret)
                    if app and app_registry.linked(daemon, name)
                    else None
                ),
            }
        )
    for name, app in sorted(running.items()):  # a live app no longer declared
        out.append(
            {
                "name": name,
                "kind": app["kind"],
                "protocol": None,
                "container_port": None,
                "startable": False,
                "starts_with": None,
                "status": app["status"],
                "app": app,
                "url": None,
            }
        )
    return {
        "session": str(seen.view.id),
        "status": seen.status.value,
        "apps": out,
        "services_error": problem,
    }


# -- starting -----------------------------------------------------------------------------


async def start(daemon: Daemon, caller: Caller, ref: str, name: str) -> dict[str, Any]:
    """``POST /v1/sessions/{ref}/apps/{name}``: start app ``name`` of the session; its App
    JSON, with ``url`` (the token in it) for a service. A service that runs already answers
    as it is (the same URL)."""
    live = runtime.current()
    seen = await live.run(Pool.STORE, _find, daemon, caller, ref)
    if name in daemon.plugins.apps:
        launched = await session_apps.launch(daemon, seen.view.id, name)
        if app_registry.linked(daemon, name):
            secret = await live.run(Pool.STORE, _secret, daemon, uuid.UUID(launched["id"]))
            launched = {**launched, "url": url_of(launched["endpoint"], secret)}
        return launched
    key = (seen.view.id, name)
    lock, users = _locks.get(key) or (asyncio.Lock(), 0)
    _locks[key] = (lock, users + 1)
    try:
        async with lock:  # one start of a service at a time: a second finds it running
            return await _start(daemon, caller, ref, name)
    finally:
        lock, users = _locks[key]
        if users > 1:
            _locks[key] = (lock, users - 1)
        else:
            del _locks[key]


async def _start(daemon: Daemon, caller: Caller, ref: str, name: str) -> dict[str, Any]:
    live = runtime.current()
    seen = await live.run(Pool.STORE, _find, daemon, caller, ref)
    if seen.status is not S.RUNNING or seen.container_id is None:
        raise VfdError(
            ErrorCode.SESSION_NOT_RUNNING,
            f"session {seen.view.name!r} is {seen.status.value}: its services start while it runs",
            status=seen.status.value,
        )
    session_apps.refuse_other_node(daemon, seen.view.name, seen.node)
    service = service_ports.find(await _services(daemon, seen), name)
    if not service.proxied:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"service {name!r} speaks {service.protocol}; only "
            f"{', '.join(sorted(service_ports.PROXIED))} services are served",
            app=name,
        )
    running = seen.live.get(name)
    if running is not None:
        app_id, _, secret = running
        if app_id in _served:
            answer = await live.run(Pool.STORE, _app_json, daemon, app_id)
            return {**answer, "url": url_of(answer["endpoint"], secret)}
        raise VfdError(
            ErrorCode.INVALID_STATUS,
            f"session {seen.view.name!r} has app {name!r} {running[1]} already",
            app=name,
        )
    app_id = uuid.uuid4()
    await daemon.plugins.before_app_launch(
        seen.view,
        AppView(id=app_id, session_id=seen.view.id, name=name, kind=KIND, status="starting"),
    )
    token = secrets.token_urlsafe(32)
    await live.run(Pool.STORE, _insert, daemon, app_id, seen.view.id, name, token)
    namespace: int | None = None
    exec_id: str | None = None
    proxy: AppProxy | None = None
    try:
        namespace = await live.run(Pool.DOCKER, _open_namespace, daemon, seen.container_id)
        if not await _answers(namespace, service.port) and service.command:
            exec_id = await live.run(
                Pool.DOCKER,
                containers.exec_detached,
                _docker(daemon),
                seen.container_id,
                service.command,
                user=f"{seen.uid}:{seen.gid}",
                env={"HOME": HOME},
                workdir=HOME,
            )
        await _wait_ready(daemon, namespace, service, exec_id)
        options = daemon.config.apps
        listener = process.bind(options.listen, options.ports)
        proxy = AppProxy(
            listener=listener,
            token=token,
            key=app_id.hex[:12],
            connect=_connector(namespace, service.port),
            limits=_limits(daemon),
            describe=f"service {name} (port {service.port} of session {seen.view.name})",
            touched=_toucher(daemon, seen.view.id),
        )
        await proxy.start()
        endpoint = endpoint_of(daemon, proxy.port)
        view = await live.run(Pool.STORE, _running, daemon, app_id, proxy.port, endpoint)
    except BaseException as exc:
        reason = exc.message if isinstance(exc, VfdError) else "its start was interrupted"
        if proxy is not None:
            await proxy.close()
        if namespace is not None:
            os.close(namespace)
        if exec_id is not None:
            await _kill_exec(daemon, exec_id)
        await asyncio.shield(live.run(Pool.STORE, _ended, daemon, app_id, AppStatus.FAILED, reason))
        raise
    served = _Served(app_id, seen.view.id, name, proxy, namespace, exec_id)
    _served[app_id] = served
    live.spawn(f"service app {name} {app_id}", lambda: _follow(daemon, served))
    await daemon.plugins.notify("vfd_app_launched", session=seen.view, app=view)
    answer = await live.run(Pool.STORE, _app_json, daemon, app_id)
    return {**answer, "url": url_of(endpoint, token)}


def _open_namespace(daemon: Daemon, container_id: str) -> int:
    path = containers.network_namespace(_docker(daemon), container_id)
    try:
        return netns.open_namespace(path)
    except OSError as exc:
        raise VfdError(
            ErrorCode.APP_FAILED,
            f"cannot enter the network of container {container_id[:12]} ({path}: "
            f"{exc.strerror or exc})",
        ) from None


def _connector(namespace: int, port: int) -> Any:
    async def connect() -> Any:
        return await netns.connect(namespace, LOOPBACK, port)

    return connect


def _toucher(daemon: Daemon, session_id: uuid.UUID) -> Callable[[], None]:
    """What the proxy calls when the app is used: the session's last activity stamped (at
    most every :data:`ACTIVITY_EVERY` seconds), so the idle reaper counts a session served
    through its app as used, whatever its cpu."""
    last = -ACTIVITY_EVERY

    def touched() -> None:
        nonlocal last
        live = runtime.current()
        now = asyncio.get_running_loop().time()
        if now - last < ACTIVITY_EVERY:
            return
        last = now

        async def stamp() -> None:
            await live.run(Pool.STORE, activity.touch, daemon, session_id)

        live.spawn(f"activity of {session_id}", stamp)

    return touched


def _limits(daemon: Daemon) -> ProxyLimits:
    limits = daemon.config.limits
    return ProxyLimits(
        header_timeout=limits.header_timeout,
        body_timeout=limits.body_timeout,
        keepalive_timeout=float(limits.keepalive_timeout),
        peer_connections=limits.peer_connections,
    )


async def _answers(namespace: int, port: int) -> bool:
    """Whether something accepts connections on the service's port."""
    try:
        sock = await asyncio.wait_for(netns.connect(namespace, LOOPBACK, port), 2.0)
    except (OSError, TimeoutError):
        return False
    sock.close()
    return True


async def _wait_ready(
    daemon: Daemon, namespace: int, service: ServicePort, exec_id: str | None
) -> None:
    """Wait until the service accepts connections (``[apps] start_timeout``); fail early
    when the command that was to start it (``exec_id``) has exited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + daemon.config.apps.start_timeout
    command = " ".join(service.command)
    while not await _answers(namespace, service.port):
        if exec_id is not None:
            running, code, _ = await runtime.current().run(
                Pool.DOCKER, containers.exec_state, _docker(daemon), exec_id
            )
            if not running and code is not None and not await _answers(namespace, service.port):
                raise VfdError(
                    ErrorCode.APP_FAILED,
                    f"service {service.name}: its command {command!r} exited with code {code} "
                    f"before anything answered on port {service.port} of the session",
                    app=service.name,
                    exit_code=code,
                )
        if loop.time() > deadline:
            how = (
                f"its command {command!r} was started"
                if exec_id is not None
                else "nothing in the session starts it (its image gives no command: "
                f"{service_ports.COMMAND_LABEL.format(name=service.name)})"
            )
            raise VfdError(
                ErrorCode.APP_FAILED,
                f"service {service.name} does not answer on port {service.port} of the session "
                f"after {daemon.config.apps.start_timeout:g} s; {how}",
                app=service.name,
            )
        await asyncio.sleep(READY_POLL)


def _insert(
    daemon: Daemon, app_id: uuid.UUID, session_id: uuid.UUID, name: str, token: str
) -> None:
    with daemon.session() as session:
        session.add(
            SessionApp(
                id=app_id,
                session_id=session_id,
                name=name,
                kind=KIND,
                status=AppStatus.STARTING,
                secret=token,
            )
        )


def _running(daemon: Daemon, app_id: uuid.UUID, port: int, endpoint: str) -> AppView:
    with daemon.session() as session:
        row = session.get(SessionApp, app_id)
        if row is None or row.status is not AppStatus.STARTING:
            raise VfdError(ErrorCode.APP_FAILED, "the app was stopped while it started")
        row.status, row.port, row.endpoint = AppStatus.RUNNING, port, endpoint
        session.add(row)
        return session_apps.app_view(row)


def _ended(daemon: Daemon, app_id: uuid.UUID, status: AppStatus, reason: str) -> AppView | None:
    """Record the app ended, once: a compare-and-set on its live status, so that of two
    enders (its follower, the end of its session) one alone records it and calls the hook;
    None for the other."""
    with daemon.session() as session:
        moved = session.execute(
            update(SessionApp)
            .where(col(SessionApp.id) == app_id)
            .where(col(SessionApp.status).in_(list(session_apps.LIVE_APP)))
            .values(status=status, status_reason=reason[:1024], ended_at=utcnow(), secret=None)
            .execution_options(synchronize_session=False)
        )
        if getattr(moved, "rowcount", 1) != 1:
            return None
        row = session.get(SessionApp, app_id)
        if row is None:
            return None
        session.refresh(row)
        return session_apps.app_view(row)


def _app_json(daemon: Daemon, app_id: uuid.UUID) -> dict[str, Any]:
    with daemon.session() as session:
        row = session.get(SessionApp, app_id)
        if row is None:
            raise VfdError(ErrorCode.APP_NOT_FOUND, f"no app {app_id}")
        return session_apps.app_json(row)


def _secret(daemon: Daemon, app_id: uuid.UUID) -> str | None:
    with daemon.session() as session:
        row = session.get(SessionApp, app_id)
        return row.secret if row is not None else None


def _view(daemon: Daemon, session_id: uuid.UUID) -> SessionView:
    with daemon.session() as session:
        return session_state.view_of(session, session_state.load(session, session_id))


# -- following and stopping ---------------------------------------------------------------


def _still_live(daemon: Daemon, app_id: uuid.UUID, session_id: uuid.UUID) -> str | None:
    """None while the app and its session run; else why the app ends."""
    with daemon.session() as session:
        app = session.get(SessionApp, app_id)
        if app is None or app.status not in session_apps.LIVE_APP:
            return (app.status_reason if app is not None else None) or "stopped"
        row = session.get(ComputeSession, session_id)
        if row is None or row.status is not S.RUNNING:
            return SESSION_ENDED
        return None


async def _follow(daemon: Daemon, served: _Served) -> None:
    """Serve until the app is stopped, its session leaves ``running`` or the daemon
    stops; then close everything it holds and record it ended."""
    live = runtime.current()
    reason = "the daemon stopped"
    asked = asyncio.ensure_future(served.stopping.wait())
    try:
        while True:
            moved = asyncio.ensure_future(launcher.moved(served.session_id, FOLLOW_POLL))
            await asyncio.wait({asked, moved}, return_when=asyncio.FIRST_COMPLETED)
            moved.cancel()
            if asked.done():
                reason = served.reason
                break
            why = await live.run(Pool.STORE, _still_live, daemon, served.app_id, served.session_id)
            if why is not None:
                reason = why
                break
    finally:
        asked.cancel()
        await asyncio.shield(_finish(daemon, served, reason))


async def _finish(daemon: Daemon, served: _Served, reason: str) -> None:
    live = runtime.current()
    try:
        await served.proxy.close()
        os.close(served.namespace)
        if served.exec_id is not None and served.stopping.is_set():
            await _kill_exec(daemon, served.exec_id)
        ended = await live.run(Pool.STORE, _ended, daemon, served.app_id, AppStatus.STOPPED, reason)
        if ended is not None:
            view = await live.run(Pool.STORE, _view, daemon, served.session_id)
            await daemon.plugins.notify("vfd_app_stopped", session=view, app=ended)
    finally:
        _served.pop(served.app_id, None)
        served.done.set()


async def _kill_exec(daemon: Daemon, exec_id: str) -> None:
    """End the server a service app started in its container (when it still runs)."""
    with contextlib.suppress(VfdError):
        running, _, pid = await runtime.current().run(
            Pool.DOCKER, containers.exec_state, _docker(daemon), exec_id
        )
        if running and pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


async def stop(daemon: Daemon, caller: Caller, ref: str, name: str) -> dict[str, Any]:
    """``DELETE /v1/sessions/{ref}/apps/{name}``: stop the session's app ``name``; its App
    JSON once it has ended."""
    live = runtime.current()
    seen = await live.run(Pool.STORE, _find, daemon, caller, ref)
    running = seen.live.get(name)
    if running is None:
        raise VfdError(
            ErrorCode.APP_NOT_FOUND,
            f"session {seen.view.name!r} runs no app {name!r}",
            app=name,
        )
    app_id = running[0]
    why = f"stopped by {caller.actor.email}"
    served = _served.get(app_id)
    proc = process.running(app_id)
    if served is not None:
        if not served.stopping.is_set():
            served.reason = why
            served.stopping.set()
        await served.done.wait()
    elif proc is not None:
        await proc.stop(why, daemon.config.apps.stop_timeout)
        await _wait_recorded(daemon, app_id)
    else:  # nothing runs it here (a previous daemon's): recorded ended
        ended = await live.run(Pool.STORE, _ended, daemon, app_id, AppStatus.STOPPED, why)
        if ended is not None:
            await daemon.plugins.notify("vfd_app_stopped", session=seen.view, app=ended)
    return await live.run(Pool.STORE, _app_json, daemon, app_id)


async def _wait_recorded(daemon: Daemon, app_id: uuid.UUID) -> None:
    """Wait (a few seconds at most) for an app process's follower to record its end."""
    live = runtime.current()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while loop.time() < deadline:
        if not await live.run(Pool.STORE, _is_live, daemon, app_id):
            return
        await asyncio.sleep(0.02)


def _is_live(daemon: Daemon, app_id: uuid.UUID) -> bool:
    with daemon.session() as session:
        found = session.exec(
            select(SessionApp.id)
            .where(SessionApp.id == app_id)
            .where(col(SessionApp.status).in_(list(session_apps.LIVE_APP)))
        ).first()
        return found is not None
