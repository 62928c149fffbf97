"""``/v1/sessions``: create, list, show, destroy sessions (docs/api.md "Sessions"); storage
sessions and the SFTP app's key (docs/apps.md).

The session's output, exec and shell routes live in ``routes/session_io.py``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from vfd.daemon.routes.deps import JSON, Body, CallerDep, DaemonDep, Int64, run
from vfd.daemon.services import sessions, sftp_app, storage_sessions
from vfd.errors import ErrorCode

router = APIRouter(prefix="/v1/sessions")

Cpu = Annotated[float, Field(allow_inf_nan=False, description="CPUs (at least 0.01)")]


class SessionCreate(Body):
    """``POST /v1/sessions``."""

    text_codes = {"name": ErrorCode.INVALID_NAME}

    image: str = Field(description="a local image (`GET /v1/images`)")
    command: list[str] = Field(default_factory=list, description="empty: the image's default")
    name: str | None = Field(default=None, description="default: <image basename>-<4 hex>")
    mounts: list[str] = Field(default_factory=list, description="NAME[:TARGET][:ro] each")
    cpu: Cpu | None = Field(default=None, description="default: the preset's, else 1")
    memory: Int64 | None = Field(
        default=None, description="bytes; 0 = no memory limit; default: the preset's, else 0"
    )
    env: dict[str, str] = Field(default_factory=dict)
    auto_remove: bool = Field(default=False, description="remove the container when it ends")
    group: str | None = Field(default=None, description="resource group; default [sessions] group")
    preset: str | None = Field(default=None, description="a session preset's name")
    lifetime: float | None = Field(
        default=None, allow_inf_nan=False, description="seconds it may run (policy: at most)"
    )
    slots: dict[str, float] = Field(
        default_factory=dict,
        description='accelerator slots ({"cuda.shares": 0.5}, {"cuda.device": 2}); empty: the '
        "preset's, else none",
    )


@router.post("", status_code=201)
async def create(body: SessionCreate, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await sessions.create(daemon, caller, sessions.SessionAsk(**body.model_dump()))


class StorageCreate(Body):
    """``POST /v1/sessions/storage``."""

    text_codes = {"name": ErrorCode.INVALID_NAME}

    mounts: list[str] = Field(description="NAME[:TARGET][:ro] each; at least one")
    app: str = Field(default="sftp", description="the app serving them: sftp")
    name: str | None = Field(default=None, description="default: <app>-<4 hex>")
    port: int | None = Field(
        default=None,
        ge=1024,
        le=65535,
        description="the app's port, when free; default: a port of [apps] ports",
    )


@router.post("/storage", status_code=201)
async def create_storage(body: StorageCreate, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await storage_sessions.create(
        daemon, caller, storage_sessions.StorageAsk(**body.model_dump())
    )


@router.get("/{ref}/sftp-key")
async def sftp_key(ref: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(sftp_app.key_info, daemon, caller, ref)


@router.get("")
async def list_sessions(daemon: DaemonDep, caller: CallerDep, all: bool = False) -> JSON:
    return await run(sessions.list_sessions, daemon, caller, include_ended=all)


@router.get("/{ref}")
async def info(ref: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(sessions.info, daemon, caller, ref)


@router.delete("/{ref}")
async def destroy(ref: str, daemon: DaemonDep, caller: CallerDep, force: bool = False) -> JSON:
    return await sessions.destroy(daemon, caller, ref, force=force)
