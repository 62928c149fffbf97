"""The FastAPI application: routers, error translation, and the daemon state they share."""

from __future__ import annotations

from fastapi import FastAPI

import vfd
from vfd.daemon import errors
from vfd.daemon.routes import admin, files, hosts, mounts, quota, sharing, status, vfolders
from vfd.daemon.services.context import Daemon


def create_app(daemon: Daemon) -> FastAPI:
    """An app serving ``daemon``; built per call, never at import."""
    app = FastAPI(
        title="vfd",
        version=vfd.__version__,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.daemon = daemon
    errors.install(app)
    for module in (status, vfolders, sharing, files, mounts, quota, hosts, admin):
        app.include_router(module.router)
    return app
