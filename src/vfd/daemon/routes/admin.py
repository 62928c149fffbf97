"""``/v1/admin/*``: users, tokens, projects, resource policies, hosts, abandoned uploads
(administrators only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from vfd.daemon.routes.deps import (
    INT32_MAX,
    INT64_MAX,
    JSON,
    Body,
    CallerDep,
    Choice,
    DaemonDep,
    Int32,
    Int64,
    run,
    run_files,
)
from vfd.daemon.services import hosts, policies, projects, session_slots, uploads, users
from vfd.daemon.services.context import Daemon
from vfd.store.models import UserRole, UserStatus

router = APIRouter(prefix="/v1/admin")

MAX_ID = 2**32 - 2
"""The largest uid or gid (``(uid_t) -1`` means "none" to the kernel)."""


class UserCreate(Body):
    email: str
    username: str | None = None
    uid: int | None = Field(default=None, ge=0, le=MAX_ID)
    gid: int | None = Field(default=None, ge=0, le=MAX_ID)
    role: Choice[UserRole] = UserRole.USER
    resource_policy: str | None = None


class UserPatch(Body):
    username: str | None = None
    uid: int | None = Field(default=None, ge=0, le=MAX_ID)
    gid: int | None = Field(default=None, ge=0, le=MAX_ID)
    role: Choice[UserRole] | None = None
    resource_policy: str | None = None
    status: Choice[UserStatus] | None = None


class TokenCreate(Body):
    email: str
    name: str


class ProjectCreate(Body):
    name: str
    description: str = ""
    gid: int | None = Field(default=None, ge=0, le=MAX_ID)


class MemberAdd(Body):
    email: str


Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False, description="seconds; 0 = never")]


class PolicyCreate(Body):
    name: str
    max_vfolder_count: Int32 = Field(default=0, description="0 = unlimited")
    max_quota_scope_size: Int64 = Field(default=0, description="bytes; 0 = unlimited")
    allowed_hosts: list[str] = Field(default_factory=list)
    max_sessions: Int32 = Field(default=0, description="live sessions at once; 0 = unlimited")
    max_session_cpu: float = Field(
        default=0.0, ge=0, allow_inf_nan=False, description="cpu of all live sessions; 0 = any"
    )
    max_session_memory: Int64 = Field(default=0, description="bytes of all live sessions")
    idle_timeout: Seconds = 0.0
    max_lifetime: Seconds = 0.0
    allowed_images: list[str] = Field(default_factory=list, description="fnmatch patterns")
    allowed_groups: list[str] = Field(default_factory=list, description="resource groups")
    max_storage_sessions: Int32 = Field(
        default=2, description="live storage-only sessions at once; 0 = unlimited"
    )
    max_slots: dict[str, float] | None = Field(
        default=None,
        description='accelerator slots of all live sessions by slot ({"cuda.device": 2}); a '
        "missing slot (or 0) = unlimited",
    )


class PolicyPatch(Body):
    max_vfolder_count: int | None = Field(default=None, ge=0, le=INT32_MAX)
    max_quota_scope_size: int | None = Field(default=None, ge=0, le=INT64_MAX)
    allowed_hosts: list[str] | None = None
    max_sessions: int | None = Field(default=None, ge=0, le=INT32_MAX)
    max_session_cpu: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_session_memory: int | None = Field(default=None, ge=0, le=INT64_MAX)
    idle_timeout: Seconds | None = None
    max_lifetime: Seconds | None = None
    allowed_images: list[str] | None = None
    allowed_groups: list[str] | None = None
    max_storage_sessions: int | None = Field(default=None, ge=0, le=INT32_MAX)
    max_slots: dict[str, float] | None = Field(
        default=None, description="replaces the slot limits; {} = none"
    )


class PolicyAssign(Body):
    email: str


@router.post("/users", status_code=201)
async def create_user(body: UserCreate, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(users.create_user, daemon, caller, **body.model_dump())


@router.get("/users")
async def list_users(daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(users.list_users, daemon, caller)


@router.patch("/users/{email}")
async def patch_user(email: str, body: UserPatch, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(users.patch_user, daemon, caller, email, body.model_dump(exclude_unset=True))


@router.post("/users/{email}/deactivate")
async def deactivate_user(email: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(users.deactivate_user, daemon, caller, email)


@router.post("/tokens", status_code=201)
async def create_token(body: TokenCreate, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(users.create_token, daemon, caller, email=body.email, name=body.name)


@router.post("/projects", status_code=201)
async def create_project(body: ProjectCreate, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(projects.create_project, daemon, caller, **body.model_dump())


@router.get("/projects")
async def list_projects(daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(projects.list_projects, daemon, caller)


@router.post("/projects/{name}/members")
async def add_member(name: str, body: MemberAdd, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(projects.add_member, daemon, caller, name, email=body.email)


@router.delete("/projects/{name}/members/{email}")
async def remove_member(name: str, email: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(projects.remove_member, daemon, caller, name, email)


@router.post("/policies", status_code=201)
async def create_policy(body: PolicyCreate, daemon: DaemonDep, caller: CallerDep) -> JSON:
    fields = body.model_dump(exclude_none=True)
    if "max_slots" in fields:
        fields["max_slots"] = _max_slots(daemon, fields["max_slots"])
    return await run(policies.create_policy, daemon, caller, **fields)


def _max_slots(daemon: Daemon, raw: dict[str, float]) -> dict[str, float]:
    """A policy's ``max_slots`` checked as requests are (0 = no limit of that slot)."""
    return session_slots.check(raw, session_slots.known(daemon), field="max_slots", allow_zero=True)


@router.get("/policies")
async def list_policies(daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(policies.list_policies, daemon, caller)


@router.get("/policies/{name}")
async def policy_info(name: str, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(policies.policy_info, daemon, caller, name)


@router.patch("/policies/{name}")
async def patch_policy(name: str, body: PolicyPatch, daemon: DaemonDep, caller: CallerDep) -> JSON:
    changes = body.model_dump(exclude_unset=True)
    if changes.get("max_slots") is not None:
        changes["max_slots"] = _max_slots(daemon, changes["max_slots"])
    return await run(policies.patch_policy, daemon, caller, name, changes)


@router.post("/policies/{name}/assign")
async def assign_policy(
    name: str, body: PolicyAssign, daemon: DaemonDep, caller: CallerDep
) -> JSON:
    return await run(policies.assign_policy, daemon, caller, name, email=body.email)


@router.get("/hosts")
async def admin_hosts(daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(hosts.admin_hosts, daemon, caller)


class PruneUploads(Body):
    older_than: Int64 = Field(default=uploads.DEFAULT_AGE, description="seconds unwritten")
    dry_run: bool = False


@router.post("/uploads/prune")
async def prune_uploads(body: PruneUploads, daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run_files(
        uploads.prune_parts, daemon, caller, older_than=body.older_than, dry_run=body.dry_run
    )
