"""``vfd admin node|resource-group|preset``: the nodes registered in the store, the resource
groups that gather them, and the session presets users run with (docs/resource-groups.md)."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from vfd.cli import runflow
from vfd.cli.client import segment
from vfd.cli.context import JsonOption, use
from vfd.cli.durations import format_duration
from vfd.cli.output import table
from vfd.cli.session import slots_text
from vfd.cli.sizes import format_limit, format_size, size_option

node_app = typer.Typer(help="Nodes: every daemon's capacity, use and heartbeat.")
group_app = typer.Typer(help="Resource groups: nodes sharing a queue and a scheduler.")
preset_app = typer.Typer(help="Session presets: named sizes for `vfd run --preset`.")


def register(admin: typer.Typer) -> None:
    """Add the three command groups to ``vfd admin``."""
    for sub, name in ((node_app, "node"), (group_app, "resource-group"), (preset_app, "preset")):
        sub.info.no_args_is_help = True
        admin.add_typer(sub, name=name)


NodeArg = Annotated[str, typer.Argument(help="The node's name.", show_default=False)]
GroupArg = Annotated[str, typer.Argument(help="The resource group's name.", show_default=False)]
PresetArg = Annotated[str, typer.Argument(help="The preset's name.", show_default=False)]


def _scheduler(group: dict[str, Any]) -> str:
    """A group's scheduler as people read it (none named: the leader's configured one)."""
    return str(group.get("scheduler") or "[sessions] scheduler")


SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        metavar="NAME",
        help="The scheduler of the group's queue (fifo, lifo, drf, or one a plugin adds; "
        '`vfd plugins` lists them); "": the scheduling leader\'s [sessions] scheduler '
        "(the default).",
    ),
]
DescriptionOpt = Annotated[
    str | None, typer.Option("--description", metavar="TEXT", help="What the group is for.")
]
AllowUserOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-user",
        metavar="EMAIL",
        help="A user who may use the group; repeatable. With no --allow-user nor "
        "--allow-project the group is open to everyone.",
    ),
]
AllowProjectOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-project",
        metavar="NAME",
        help="A project whose members may use the group; repeatable.",
    ),
]


def cpu_option(text: str) -> float:
    """Typer ``parser=`` for cpu counts: a finite number, not negative (the daemon judges the
    rest)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise typer.BadParameter(f"{text!r} is not a number of cpus, e.g. 1, 0.5 or 4")
    return value


def _cpu(used: Any, total: Any) -> str:
    return f"{float(used or 0):g}/{float(total or 0):g}"


def _memory(used: Any, total: Any) -> str:
    return f"{format_size(used or 0)}/{format_size(total or 0)}"


def accelerators_text(accelerators: object) -> str:
    """A node's accelerators: each one's free/total of each slot and device count
    (``cuda: 1.5/2 cuda.shares free on 2 devices``), or its status when it offers none."""
    if not isinstance(accelerators, dict) or not accelerators:
        return "-"
    parts = []
    for name, entry in sorted(accelerators.items()):
        entry = entry if isinstance(entry, dict) else {}
        slots = entry.get("slots") or {}
        devices = len(entry.get("devices") or [])
        if not slots:
            parts.append(f"{name}: {entry.get('status') or 'no devices'}")
            continue
        held = ", ".join(
            f"{float(v.get('free') or 0):g}/{float(v.get('capacity') or 0):g} {slot} free"
            for slot, v in sorted(slots.items())
            if isinstance(v, dict)
        )
        parts.append(f"{name}: {held} on {devices} device{'s' if devices != 1 else ''}")
    return "; ".join(parts)


@node_app.command("list")
def node_list(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List the nodes: group, cpu and memory used/total, accelerator slots free/total (when
    some node has accelerators), sessions, heartbeat, alive."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/admin/nodes")
    rows = [
        [
            n.get("id"),
            n.get("group"),
            n.get("address"),
            _cpu(n.get("used_cpu"), n.get("cpu")),
            _memory(n.get("used_memory"), n.get("memory")),
            n.get("sessions"),
            f"{format_duration(n.get('heartbeat_age'), zero='0s')} ago",
            "yes" if n.get("alive") else "no",
        ]
        for n in result.get("nodes", [])
    ]
    columns: tuple[str, ...] = (
        "node",
        "group",
        "address",
        "cpu",
        "memory",
        "sessions",
        "heartbeat",
        "alive",
    )
    nodes = result.get("nodes", [])
    if any(n.get("accelerators") for n in nodes):
        at = columns.index("memory") + 1
        columns = (*columns[:at], "accelerators", *columns[at:])
        for row, n in zip(rows, nodes, strict=True):
            row.insert(at, accelerators_text(n.get("accelerators")))
    cli.emit(result, lambda: table(cli.console, columns, rows, empty="no nodes"))


@node_app.command("set-group")
def node_set_group(
    ctx: typer.Context, node: NodeArg, group: GroupArg, json_output: JsonOption = False
) -> None:
    """Move a node to another resource group (its running sessions stay)."""
    cli = use(ctx, json_output)
    out = cli.client().patch(f"/v1/admin/nodes/{segment(node)}", {"group": group})
    cli.emit(out, lambda: f"Node {out.get('id')} is in resource group {out.get('group')}")


def _group_line(group: dict[str, Any]) -> str:
    users = group.get("allowed_users") or []
    projects = [f"project {p}" for p in group.get("allowed_projects") or []]
    who = ", ".join([*users, *projects]) or "everyone"
    nodes = ", ".join(group.get("nodes") or []) or "no nodes"
    return (
        f"{group.get('name')} (scheduler {_scheduler(group)}; for {who}; {nodes}; "
        f"{group.get('live_sessions', 0)} live sessions)"
    )


@group_app.command("create")
def group_create(
    ctx: typer.Context,
    name: GroupArg,
    scheduler: SchedulerOpt = None,
    description: DescriptionOpt = None,
    allow_user: AllowUserOpt = None,
    allow_project: AllowProjectOpt = None,
    json_output: JsonOption = False,
) -> None:
    """Create a resource group."""
    cli = use(ctx, json_output)
    body: dict[str, Any] = {
        "name": name,
        "allowed_users": list(allow_user or []),
        "allowed_projects": list(allow_project or []),
    }
    if scheduler is not None:
        body["scheduler"] = scheduler
    if description is not None:
        body["description"] = description
    group = cli.client().post("/v1/admin/resource-groups", body)
    cli.emit(group, lambda: f"Created resource group {_group_line(group)}")


@group_app.command("list")
def group_list(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List resource groups with their scheduler, who may use them, and their nodes."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/admin/resource-groups")
    rows = [
        [
            g.get("name"),
            _scheduler(g),
            ", ".join([*(g.get("allowed_users") or []), *(g.get("allowed_projects") or [])])
            or "everyone",
            ", ".join(g.get("nodes") or []) or "-",
            g.get("live_sessions"),
            g.get("description"),
        ]
        for g in result.get("groups", [])
    ]
    columns = ("name", "scheduler", "for", "nodes", "live sessions", "description")
    cli.emit(result, lambda: table(cli.console, columns, rows, empty="no resource groups"))


@group_app.command("update")
def group_update(
    ctx: typer.Context,
    name: GroupArg,
    scheduler: SchedulerOpt = None,
    description: DescriptionOpt = None,
    allow_user: AllowUserOpt = None,
    allow_project: AllowProjectOpt = None,
    open_: Annotated[
        bool, typer.Option("--open", help="Open the group to everyone (drop every allow).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Change a group's scheduler, description or users (--allow-user/--allow-project
    replace those given before)."""
    if open_ and (allow_user or allow_project):
        raise typer.BadParameter("--open and --allow-user/--allow-project contradict each other")
    body: dict[str, Any] = {}
    if scheduler is not None:
        body["scheduler"] = scheduler
    if description is not None:
        body["description"] = description
    if allow_user:
        body["allowed_users"] = list(allow_user)
    if allow_project:
        body["allowed_projects"] = list(allow_project)
    if open_:
        body.update(allowed_users=[], allowed_projects=[])
    if not body:
        raise typer.BadParameter("nothing to change: give at least one option")
    cli = use(ctx, json_output)
    group = cli.client().patch(f"/v1/admin/resource-groups/{segment(name)}", body)
    cli.emit(group, lambda: f"Updated resource group {_group_line(group)}")


@group_app.command("delete")
def group_delete(ctx: typer.Context, name: GroupArg, json_output: JsonOption = False) -> None:
    """Delete a resource group that has no nodes and no live sessions."""
    cli = use(ctx, json_output)
    group = cli.client().delete(f"/v1/admin/resource-groups/{segment(name)}")
    cli.emit(group, lambda: f"Deleted resource group {group.get('name', name)}")


@preset_app.command("create")
def preset_create(
    ctx: typer.Context,
    name: PresetArg,
    cpu: Annotated[
        float,
        typer.Option("--cpu", metavar="N", parser=cpu_option, help="CPUs.", show_default=False),
    ],
    memory: Annotated[
        int | None,
        typer.Option(
            "--mem",
            "--memory",
            metavar="SIZE",
            parser=size_option,
            help="Memory limit (512m, 2g); default: no limit.",
        ),
    ] = None,
    gpu: Annotated[
        float | None,
        typer.Option(
            "--gpu",
            metavar="N",
            parser=runflow.amount_option,
            help="Whole GPUs (cuda.device).",
            show_default=False,
        ),
    ] = None,
    fgpu: Annotated[
        float | None,
        typer.Option(
            "--fgpu",
            metavar="F",
            parser=runflow.amount_option,
            help="GPU shares in steps of 0.1 (cuda.shares).",
            show_default=False,
        ),
    ] = None,
    slot: Annotated[
        list[str] | None,
        typer.Option(
            "--slot",
            metavar="NAME=AMOUNT",
            help="An accelerator slot (cuda.shares=0.5). Repeatable.",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a session preset."""
    cli = use(ctx, json_output)
    body: dict[str, Any] = {"name": name, "cpu": cpu, "memory": memory or 0}
    slots = runflow.parse_slots(slot, gpu=gpu, fgpu=fgpu)
    if slots:
        body["slots"] = slots
    preset = cli.client().post("/v1/admin/presets", body)
    cli.emit(
        preset,
        lambda: (
            f"Created preset {preset.get('name')} ({preset.get('cpu'):g} cpu, "
            f"memory {format_limit(preset.get('memory'))}"
            + (f", {slots_text(preset.get('slots'))}" if preset.get("slots") else "")
            + ")"
        ),
    )


@preset_app.command("list")
def preset_list(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List session presets."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/presets")
    rows = [
        [
            p.get("name"),
            f"{float(p.get('cpu') or 0):g}",
            format_limit(p.get("memory")),
            slots_text(p.get("slots")),
        ]
        for p in result.get("presets", [])
    ]
    columns = ("name", "cpu", "memory", "slots")
    cli.emit(result, lambda: table(cli.console, columns, rows, empty="none"))


@preset_app.command("delete")
def preset_delete(ctx: typer.Context, name: PresetArg, json_output: JsonOption = False) -> None:
    """Delete a session preset (sessions made with it keep their size)."""
    cli = use(ctx, json_output)
    preset = cli.client().delete(f"/v1/admin/presets/{segment(name)}")
    cli.emit(preset, lambda: f"Deleted preset {preset.get('name', name)}")
