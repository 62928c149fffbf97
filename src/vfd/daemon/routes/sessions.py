"""``/v1/sessions``: create, list, show, destroy compute sessions (docs/api.md "Sessions").

The session's output, exec and shell routes live in ``routes/session_io.py``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from vfd.daemon.routes.deps import JSON, Body, CallerDep, DaemonDep, Int64, run
from vfd.daemon.services import sessions
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


@router.post("", status_code=201)
async def create(body: SessionCreate, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await sessions.create(daemon, caller, sessions.SessionAsk(**body.model_dump()))


@router.get("")
async def list_sessions(daemon: DaemonDep, caller: CallerDep, all: bool = False) -> JSON:
    return await run(sessions.list_sessions, daemon, caller, include_ended=all)


@router.get("/{ref}")
async def info(ref: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(sessions.info, daemon, caller, ref)


@router.delete("/{ref}")
async def destroy(ref: str, daemon: DaemonDep, caller: CallerDep, force: bool = False) -> JSON:
    return await sessions.destroy(daemon, caller, ref, force=force)
