"""``vfd admin``: users, projects, resource policies, storage hosts and API tokens; nodes,
resource groups and session presets (``vfd.cli.resources_admin``).

Every command needs an administrator (root on the node, or a member of ``vfd-admin``); the
daemon answers ``admin_required`` otherwise.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vfd.cli import resources_admin, runflow
from vfd.cli.client import segment
from vfd.cli.context import JsonOption, use
from vfd.cli.durations import duration_option, format_duration
from vfd.cli.output import cell_text, table
from vfd.cli.sizes import format_limit, format_size, size_option
from vfd.enums import UserRole, UserStatus

app = typer.Typer(
    help="Administration: users, projects, policies, hosts, tokens.", no_args_is_help=True
)
user_app = typer.Typer(help="vfd users: who may use folders, with which uid/gid and policy.")
project_app = typer.Typer(help="Projects: groups of users sharing project folders.")
policy_app = typer.Typer(
    help="Resource policies: folder count, quota size, allowed hosts; session limits."
)
host_app = typer.Typer(help="Storage hosts of this node.")
token_app = typer.Typer(help="API tokens for clients on TCP.")
for _sub, _name in (
    (user_app, "user"),
    (project_app, "project"),
    (policy_app, "policy"),
    (host_app, "host"),
    (token_app, "token"),
):
    _sub.info.no_args_is_help = True
    app.add_typer(_sub, name=_name)
resources_admin.register(app)


EmailArg = Annotated[str, typer.Argument(help="The user's email.", show_default=False)]
ProjectArg = Annotated[str, typer.Argument(help="The project's name.", show_default=False)]
PolicyArg = Annotated[str, typer.Argument(help="The policy's name.", show_default=False)]
UsernameOpt = Annotated[str | None, typer.Option("--username", help="Display/login name.")]
UidOpt = Annotated[int | None, typer.Option("--uid", min=0, help="uid owning the user's files.")]
GidOpt = Annotated[int | None, typer.Option("--gid", min=0, help="gid of the user's files.")]
RoleOpt = Annotated[UserRole | None, typer.Option("--role", help="admin or user.")]
PolicyOpt = Annotated[
    str | None, typer.Option("--policy", metavar="NAME", help="Resource policy to apply.")
]
MaxCountOpt = Annotated[
    int | None,
    typer.Option("--max-vfolder-count", min=0, metavar="N", help="Most own folders; 0 = no limit."),
]
MaxSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--max-quota-scope-size",
        parser=size_option,
        metavar="SIZE",
        help="Quota of each of the user's scopes (10G, 512M, 1.5T, bytes); 0 = no limit.",
    ),
]
HostsOpt = Annotated[
    str | None,
    typer.Option(
        "--allowed-hosts",
        metavar="a,b",
        help="Comma-separated hosts where folders may be created; empty = every host.",
    ),
]


MaxSessionsOpt = Annotated[
    int | None,
    typer.Option("--max-sessions", min=0, metavar="N", help="Most live sessions; 0 = no limit."),
]
MaxStorageOpt = Annotated[
    int | None,
    typer.Option(
        "--max-storage-sessions",
        min=0,
        metavar="N",
        help="Most live storage-only sessions (SFTP, file manager); 0 = no limit.",
    ),
]
MaxSlotOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--max-slot",
        metavar="NAME=AMOUNT",
        help="Most of an accelerator slot for all the user's sessions together "
        "(cuda.device=2, cuda.shares=1.5); repeatable; on update the given ones replace the "
        "policy's; NAME=0 = no limit of it.",
        show_default=False,
    ),
]
MaxCpuOpt = Annotated[
    float | None,
    typer.Option(
        "--max-cpu",
        parser=resources_admin.cpu_option,
        metavar="N",
        help="Most cpu of all the user's live sessions together; 0 = no limit.",
    ),
]
MaxMemOpt = Annotated[
    int | None,
    typer.Option(
        "--max-mem",
        parser=size_option,
        metavar="SIZE",
        help="Most memory of all the user's live sessions together (8g, 512m); 0 = no limit.",
    ),
]
IdleOpt = Annotated[
    float | None,
    typer.Option(
        "--idle-timeout",
        parser=duration_option,
        metavar="DURATION",
        help="End a running session idle this long (no exec, shell or app connection, "
        "cpu below [sessions] idle_cpu): 90s, 30m, 2h; 0 = never.",
    ),
]
LifetimeOpt = Annotated[
    float | None,
    typer.Option(
        "--max-lifetime",
        parser=duration_option,
        metavar="DURATION",
        help="End a session this long after it started (12h, 7d); 0 = no limit.",
    ),
]
ImagesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-image",
        metavar="PATTERN",
        help="Images sessions may use (shell pattern, e.g. 'vfd-test/*'); repeatable; none "
        "given = any image.",
    ),
]
GroupsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-group",
        metavar="NAME",
        help="Resource groups sessions may use; repeatable; none given = any group.",
    ),
]


def _given(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _hosts(text: str) -> list[str]:
    return [h.strip() for h in text.split(",") if h.strip()]


def _user_line(user: dict[str, Any]) -> str:
    policy = cell_text(user.get("resource_policy"))
    return (
        f"{user.get('email')} (uid {user.get('uid')}, gid {user.get('gid')}, "
        f"{user.get('role')}, {user.get('status')}, policy {policy})"
    )


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    email: EmailArg,
    username: UsernameOpt = None,
    uid: UidOpt = None,
    gid: GidOpt = None,
    role: RoleOpt = None,
    policy: PolicyOpt = None,
    json_output: JsonOption = False,
) -> None:
    """Create a user (uid/gid default to the config's default_uid/default_gid)."""
    cli = use(ctx, json_output)
    body = _given(
        email=email,
        username=username,
        uid=uid,
        gid=gid,
        role=role.value if role else None,
        resource_policy=policy,
    )
    user = cli.client().post("/v1/admin/users", body)
    cli.emit(user, lambda: f"Created user {_user_line(user)}")


@user_app.command("list")
def user_list(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List users."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/admin/users")
    columns = ("email", "username", "uid", "gid", "role", "status", "policy", "host account")
    rows = [
        [
            u.get("email"),
            u.get("username"),
            u.get("uid"),
            u.get("gid"),
            u.get("role"),
            u.get("status"),
            u.get("resource_policy"),
            u.get("host_account"),
        ]
        for u in result.get("users", [])
    ]
    cli.emit(result, lambda: table(cli.console, columns, rows, empty="no users"))


@user_app.command("update")
def user_update(
    ctx: typer.Context,
    email: EmailArg,
    username: UsernameOpt = None,
    uid: UidOpt = None,
    gid: GidOpt = None,
    role: RoleOpt = None,
    policy: PolicyOpt = None,
    status: Annotated[
        UserStatus | None, typer.Option("--status", help="active or inactive.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Change a user's name, uid/gid, role, policy or status."""
    body = _given(
        username=username,
        uid=uid,
        gid=gid,
        role=role.value if role else None,
        resource_policy=policy,
        status=status.value if status else None,
    )
    if not body:
        raise typer.BadParameter("nothing to change: give at least one option")
    cli = use(ctx, json_output)
    user = cli.client().patch(f"/v1/admin/users/{segment(email)}", body)
    cli.emit(user, lambda: f"Updated user {_user_line(user)}")


@user_app.command("deactivate")
def user_deactivate(ctx: typer.Context, email: EmailArg, json_output: JsonOption = False) -> None:
    """Deactivate a user: every later call of theirs is refused (their data stays)."""
    cli = use(ctx, json_output)
    user = cli.client().post(f"/v1/admin/users/{segment(email)}/deactivate")
    cli.emit(user, lambda: f"Deactivated user {user.get('email')}")


def _project_line(project: dict[str, Any]) -> str:
    members = ", ".join(project.get("members") or []) or "no members"
    return f"{project.get('name')} (gid {project.get('gid')}; {members})"


@project_app.command("create")
def project_create(
    ctx: typer.Context,
    name: ProjectArg,
    description: Annotated[
        str | None, typer.Option("--description", help="What the project is.")
    ] = None,
    gid: Annotated[
        int | None,
        typer.Option(
            "--gid",
            min=0,
            help="gid owning the project's folders (default: the lowest free one of "
            "project_gid_range; a host group's gid only if the group has the project's name).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a project."""
    cli = use(ctx, json_output)
    body = _given(name=name, description=description, gid=gid)
    project = cli.client().post("/v1/admin/projects", body)
    cli.emit(project, lambda: f"Created project {_project_line(project)}")


@project_app.command("list")
def project_list(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List projects and their members."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/admin/projects")
    rows = [
        [p.get("name"), p.get("description"), p.get("gid"), p.get("members")]
        for p in result.get("projects", [])
    ]
    columns = ("name", "description", "gid", "members")
    cli.emit(result, lambda: table(cli.console, columns, rows, empty="no projects"))


@project_app.command("add-member")
def project_add_member(
    ctx: typer.Context, name: ProjectArg, email: EmailArg, json_output: JsonOption = False
) -> None:
    """Add a user to a project: they get access to its folders."""
    cli = use(ctx, json_output)
    project = cli.client().post(f"/v1/admin/projects/{segment(name)}/members", {"email": email})
    cli.emit(project, lambda: f"Added {email} to project {_project_line(project)}")


@project_app.command("remove-member")
def project_remove_member(
    ctx: typer.Context, name: ProjectArg, email: EmailArg, json_output: JsonOption = False
) -> None:
    """Remove a user from a project."""
    cli = use(ctx, json_output)
    path = f"/v1/admin/projects/{segment(name)}/members/{segment(email)}"
    project = cli.client().delete(path)
    cli.emit(project, lambda: f"Removed {email} from project {_project_line(project)}")


def _policy_line(policy: dict[str, Any]) -> str:
    count = policy.get("max_vfolder_count") or "unlimited"
    hosts = ", ".join(policy.get("allowed_hosts") or []) or "every host"
    size = format_limit(policy.get("max_quota_scope_size"))
    return (
        f"{policy.get('name')} (folders: {count}, quota: {size}, hosts: {hosts}; "
        f"{_session_limits(policy)})"
    )


def _session_limits(policy: dict[str, Any]) -> str:
    """The session part of a policy for people."""
    cpu = policy.get("max_session_cpu") or 0
    return ", ".join(
        (
            f"sessions: {policy.get('max_sessions') or 'unlimited'}",
            f"storage sessions: {policy.get('max_storage_sessions') or 'unlimited'}",
            f"cpu: {f'{cpu:g}' if cpu else 'unlimited'}",
            f"memory: {format_limit(policy.get('max_session_memory'))}",
            f"idle timeout: {format_duration(policy.get('idle_timeout'))}",
            f"lifetime: {format_duration(policy.get('max_lifetime'), zero='unlimited')}",
            f"images: {', '.join(policy.get('allowed_images') or []) or 'any'}",
            f"groups: {', '.join(policy.get('allowed_groups') or []) or 'any'}",
            *(
                f"{name}: {amount:g}"
                for name, amount in sorted((policy.get("max_slots") or {}).items())
            ),
        )
    )


def _session_fields(
    max_sessions: int | None,
    max_cpu: float | None,
    max_mem: int | None,
    idle_timeout: float | None,
    max_lifetime: float | None,
    images: list[str] | None,
    groups: list[str] | None,
) -> dict[str, Any]:
    return _given(
        max_sessions=max_sessions,
        max_session_cpu=max_cpu,
        max_session_memory=max_mem,
        idle_timeout=idle_timeout,
        max_lifetime=max_lifetime,
        allowed_images=list(images) if images else None,
        allowed_groups=list(groups) if groups else None,
    )


@policy_app.command("create")
def policy_create(
    ctx: typer.Context,
    name: PolicyArg,
    max_vfolder_count: MaxCountOpt = None,
    max_quota_scope_size: MaxSizeOpt = None,
    allowed_hosts: HostsOpt = None,
    max_sessions: MaxSessionsOpt = None,
    max_cpu: MaxCpuOpt = None,
    max_mem: MaxMemOpt = None,
    idle_timeout: IdleOpt = None,
    max_lifetime: LifetimeOpt = None,
    allow_image: ImagesOpt = None,
    allow_group: GroupsOpt = None,
    max_storage_sessions: MaxStorageOpt = None,
    max_slot: MaxSlotOpt = None,
    json_output: JsonOption = False,
) -> None:
    """Create a resource policy; unset limits mean no limit (storage sessions: 2)."""
    cli = use(ctx, json_output)
    body = {
        "name": name,
        "max_vfolder_count": max_vfolder_count or 0,
        "max_quota_scope_size": max_quota_scope_size or 0,
        "allowed_hosts": _hosts(allowed_hosts or ""),
        **_session_fields(
            max_sessions, max_cpu, max_mem, idle_timeout, max_lifetime, allow_image, allow_group
        ),
    }
    if max_storage_sessions is not None:
        body["max_storage_sessions"] = max_storage_sessions
    if max_slot:
        body["max_slots"] = runflow.parse_slots(max_slot)
    policy = cli.client().post("/v1/admin/policies", body)
    cli.emit(policy, lambda: f"Created policy {_policy_line(policy)}")


@policy_app.command("update")
def policy_update(
    ctx: typer.Context,
    name: PolicyArg,
    max_vfolder_count: MaxCountOpt = None,
    max_quota_scope_size: MaxSizeOpt = None,
    allowed_hosts: HostsOpt = None,
    max_sessions: MaxSessionsOpt = None,
    max_cpu: MaxCpuOpt = None,
    max_mem: MaxMemOpt = None,
    idle_timeout: IdleOpt = None,
    max_lifetime: LifetimeOpt = None,
    allow_image: ImagesOpt = None,
    allow_group: GroupsOpt = None,
    max_storage_sessions: MaxStorageOpt = None,
    max_slot: MaxSlotOpt = None,
    any_image: Annotated[
        bool, typer.Option("--any-image", help="Allow every image again.")
    ] = False,
    any_group: Annotated[
        bool, typer.Option("--any-group", help="Allow every resource group again.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Change a resource policy's limits (--allow-image/--allow-group replace the lists)."""
    if any_image and allow_image:
        raise typer.BadParameter("--any-image and --allow-image contradict each other")
    if any_group and allow_group:
        raise typer.BadParameter("--any-group and --allow-group contradict each other")
    body = _given(
        max_vfolder_count=max_vfolder_count,
        max_quota_scope_size=max_quota_scope_size,
        allowed_hosts=None if allowed_hosts is None else _hosts(allowed_hosts),
        **_session_fields(
            max_sessions, max_cpu, max_mem, idle_timeout, max_lifetime, allow_image, allow_group
        ),
    )
    if max_storage_sessions is not None:
        body["max_storage_sessions"] = max_storage_sessions
    if max_slot:
        body["max_slots"] = runflow.parse_slots(max_slot)
    if any_image:
        body["allowed_images"] = []
    if any_group:
        body["allowed_groups"] = []
    if not body:
        raise typer.BadParameter("nothing to change: give at least one option")
    cli = use(ctx, json_output)
    policy = cli.client().patch(f"/v1/admin/policies/{segment(name)}", body)
    cli.emit(policy, lambda: f"Updated policy {_policy_line(policy)}")


@policy_app.command("assign")
def policy_assign(
    ctx: typer.Context, name: PolicyArg, email: EmailArg, json_output: JsonOption = False
) -> None:
    """Apply a resource policy to a user."""
    cli = use(ctx, json_output)
    user = cli.client().post(f"/v1/admin/policies/{segment(name)}/assign", {"email": email})
    cli.emit(user, lambda: f"Assigned policy {name} to {user.get('email', email)}")


@policy_app.command("list")
def policy_list(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List resource policies."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/admin/policies")
    rows = []
    for p in result.get("policies", []):
        cpu = p.get("max_session_cpu") or 0
        rows.append(
            [
                p.get("name"),
                p.get("max_vfolder_count") or "unlimited",
                format_limit(p.get("max_quota_scope_size")),
                ", ".join(p.get("allowed_hosts") or []) or "all",
                p.get("max_sessions") or "unlimited",
                f"{cpu:g}" if cpu else "unlimited",
                format_limit(p.get("max_session_memory")),
                format_duration(p.get("idle_timeout")),
                format_duration(p.get("max_lifetime"), zero="unlimited"),
                ", ".join(p.get("allowed_images") or []) or "any",
                ", ".join(p.get("allowed_groups") or []) or "any",
            ]
        )
    columns = (
        "name",
        "max folders",
        "max quota scope size",
        "allowed hosts",
        "max sessions",
        "max cpu",
        "max mem",
        "idle timeout",
        "max lifetime",
        "images",
        "groups",
    )
    cli.emit(result, lambda: table(cli.console, columns, rows, empty="no policies"))


@policy_app.command("info")
def policy_info(ctx: typer.Context, name: PolicyArg, json_output: JsonOption = False) -> None:
    """Show one resource policy with its session limits."""
    cli = use(ctx, json_output)
    policy = cli.client().get(f"/v1/admin/policies/{segment(name)}")
    cli.emit(policy, lambda: f"Policy {_policy_line(policy)}")


@host_app.command("list")
def host_list(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List storage hosts with their backing path and capacity."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/admin/hosts")
    rows = []
    for host in result.get("hosts", []):
        capacity = host.get("capacity") or {}
        rows.append(
            [
                host.get("name"),
                host.get("path"),
                format_size(capacity.get("total_bytes")),
                format_size(capacity.get("used_bytes")),
                format_size(capacity.get("free_bytes")),
            ]
        )
    columns = ("name", "path", "size", "used", "free")
    cli.emit(result, lambda: table(cli.console, columns, rows, empty="no storage hosts"))


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    email: EmailArg,
    name: Annotated[str, typer.Option("--name", help="What the token is for.", show_default=False)],
    json_output: JsonOption = False,
) -> None:
    """Create an API token for a user (for TCP clients); it is shown only once."""
    cli = use(ctx, json_output)
    result = cli.client().post("/v1/admin/tokens", {"email": email, "name": name})
    cli.emit(
        result,
        lambda: (
            f"Created token {result.get('name')} (id {result.get('id')}) for {email}; "
            f"it is shown only this once:\n{result.get('token')}"
        ),
    )
