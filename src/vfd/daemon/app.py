"""The FastAPI application: routers, error translation, and the lifespan that owns the daemon's
worker pools and background tasks."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Iterable

from fastapi import FastAPI

import vfd
from vfd.console import routes as console
from vfd.daemon import errors, reaper, reconcile, runtime, scheduler
from vfd.daemon.routes import (
    admin,
    apps,
    clones,
    dotfiles,
    filebrowser,
    files,
    hosts,
    images,
    mounts,
    plugins,
    quota,
    resources,
    session_io,
    sessions,
    sharing,
    status,
    vfolders,
)
from vfd.daemon.runtime import BackgroundTask, Runtime
from vfd.daemon.services import agents, session_apps
from vfd.daemon.services.clones import supervise
from vfd.daemon.services.context import Daemon


def create_app(daemon: Daemon, tasks: Iterable[tuple[str, BackgroundTask]] = ()) -> FastAPI:
    """An app serving ``daemon``; built per call, never at import.

    Its lifespan installs the daemon's :class:`~vfd.daemon.runtime.Runtime` (worker pools sized
    by ``[workers]``) and runs ``tasks`` in the runtime's task group until the app stops,
    with the follower of folder clones (``vfd.daemon.services.clones``), the adoption of the
    sessions a previous daemon left running (``vfd.daemon.reconcile``) and the scheduler loop
    (``vfd.daemon.scheduler``).
    """
    tasks = [
        *tasks,
        ("clones", functools.partial(supervise, daemon)),
        ("adopt", functools.partial(reconcile.adopt, daemon)),
        ("mountd-watch", functools.partial(reconcile.watch_mountd, daemon)),
        ("scheduler", functools.partial(scheduler.serve, daemon)),
        ("heartbeat", functools.partial(agents.serve, daemon)),
        ("reaper", functools.partial(reaper.serve, daemon)),
        ("apps", functools.partial(session_apps.serve, daemon)),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        live = Runtime(daemon.config.workers)
        runtime.install(live)
        await daemon.plugins.start()
        async with live.running(tasks):
            yield

    app = FastAPI(
        title="vfd",
        version=vfd.__version__,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # a path with a trailing slash (an empty name: /v1/vfolders/) is an unknown route
        # answered in the error shape, not an empty-bodied 307 to another path
        redirect_slashes=False,
    )
    app.state.daemon = daemon
    errors.install(app)
    for module in (
        status,
        vfolders,
        clones,
        sharing,
        files,
        mounts,
        quota,
        hosts,
        admin,
        resources,
        sessions,
        session_io,
        images,
        plugins,
        dotfiles,
        apps,
        filebrowser,
        console,
    ):
        app.include_router(module.router)
    return app
