"""Nodes, resource groups and session presets (docs/api.md "Nodes, resource groups and
presets"): ``/v1/admin/nodes``, ``/v1/admin/resource-groups``, ``/v1/admin/presets`` for
administrators, and ``GET /v1/presets`` for everyone."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from vfd.daemon.routes.deps import JSON, Body, CallerDep, DaemonDep, Int64, run
from vfd.daemon.services import agents, presets, resource_groups
from vfd.errors import ErrorCode

router = APIRouter(prefix="/v1")

Cpu = Annotated[float, Field(allow_inf_nan=False, description="CPUs (at least 0.01)")]


class NodePatch(Body):
    group: str = Field(description="the resource group the node joins")


class GroupCreate(Body):
    text_codes = {"name": ErrorCode.INVALID_NAME}

    name: str
    scheduler: str = Field(default="fifo", description="an installed scheduler's name")
    description: str = ""
    allowed_users: list[str] = Field(default_factory=list, description="emails; [] = everyone")
    allowed_projects: list[str] = Field(default_factory=list, description="project names")


class GroupPatch(Body):
    scheduler: str | None = None
    description: str | None = None
    allowed_users: list[str] | None = Field(default=None, description="replaces the user rows")
    allowed_projects: list[str] | None = Field(
        default=None, description="replaces the project rows"
    )


class PresetCreate(Body):
    text_codes = {"name": ErrorCode.INVALID_NAME}

    name: str
    cpu: Cpu
    memory: Int64 = Field(default=0, description="bytes; 0 = no memory limit")
    slots: dict[str, float] = Field(
        default_factory=dict, description='accelerator slots ({"cuda.device": 1}); {} = none'
    )


@router.get("/admin/nodes")
async def list_nodes(daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(agents.list_nodes, daemon, caller)


@router.patch("/admin/nodes/{node}")
async def patch_node(node: str, body: NodePatch, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(agents.set_group, daemon, caller, node, body.group)


@router.post("/admin/resource-groups", status_code=201)
async def create_group(body: GroupCreate, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(resource_groups.create_group, daemon, caller, **body.model_dump())


@router.get("/admin/resource-groups")
async def list_groups(daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(resource_groups.list_groups, daemon, caller)


@router.get("/admin/resource-groups/{name}")
async def group_info(name: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(resource_groups.group_info, daemon, caller, name)


@router.patch("/admin/resource-groups/{name}")
async def patch_group(name: str, body: GroupPatch, daemon: DaemonDep, caller: CallerDep) -> JSON:
    changes = body.model_dump(exclude_unset=True)
    return await run(resource_groups.patch_group, daemon, caller, name, changes)


@router.delete("/admin/resource-groups/{name}")
async def delete_group(name: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(resource_groups.delete_group, daemon, caller, name)


@router.post("/admin/presets", status_code=201)
async def create_preset(body: PresetCreate, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(presets.create_preset, daemon, caller, **body.model_dump())


@router.get("/presets")
async def list_presets(daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(presets.list_presets, daemon, caller)


@router.delete("/admin/presets/{name}")
async def delete_preset(name: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(presets.delete_preset, daemon, caller, name)
