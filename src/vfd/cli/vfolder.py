"""``vfd vfolder``: create, list, inspect, rename, trash, restore and purge folders.

Sharing (invitations, leaving, per-member permissions) lives in :mod:`vfd.cli.sharing` and is
registered on the same command group. Every command is one API call (see ``docs/api.md``);
the daemon checks names, permissions and limits, the CLI only words the result.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vfd.cli import clone, sharing
from vfd.cli.client import folder_path
from vfd.cli.context import JsonOption, use
from vfd.cli.output import key_values, short_id, table
from vfd.cli.sizes import format_limit, format_size
from vfd.enums import Permission, UsageMode

app = typer.Typer(
    help="Virtual folders: create, list, share, trash and purge them.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The folder's name.", show_default=False)]


def _folder_type(folder: dict[str, Any]) -> str:
    return str(folder.get("ownership", "user"))


def folder_rows(folders: list[dict[str, Any]]) -> list[list[object]]:
    """Rows of the folder table (``vfd vfolder list``)."""
    return [
        [
            short_id(f.get("id")),
            f.get("name"),
            f.get("host"),
            _folder_type(f),
            f.get("usage_mode"),
            f.get("permission"),
            f.get("status"),
            f.get("owner"),
        ]
        for f in folders
    ]


FOLDER_COLUMNS = ("id", "name", "host", "type", "usage mode", "permission", "status", "owner")


@app.command("create")
def create(
    ctx: typer.Context,
    name: NameArg,
    host: Annotated[
        str | None,
        typer.Argument(help="Storage host to create it on (default: the config's default_host)."),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(
            "--project", metavar="P", help="Create a project folder of project P (admins only)."
        ),
    ] = None,
    usage_mode: Annotated[
        UsageMode, typer.Option("--usage-mode", help="What the folder is for.")
    ] = UsageMode.GENERAL,
    permission: Annotated[
        Permission,
        typer.Option(
            "--permission", help="Default permission of project members (project folders)."
        ),
    ] = Permission.RW,
    cloneable: Annotated[
        bool, typer.Option("--cloneable", help="Allow others with access to clone the folder.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Create a folder; a name starting with a dot makes an automount folder."""
    cli = use(ctx, json_output)
    body: dict[str, Any] = {
        "name": name,
        "usage_mode": usage_mode.value,
        "permission": permission.value,
        "cloneable": cloneable,
    }
    if host is not None:
        body["host"] = host
    if project is not None:
        body["project"] = project
    folder = cli.client().post("/v1/vfolders", body)
    where = f"project {project}" if project else "you"
    cli.emit(
        folder,
        lambda: (
            f"Created folder {folder['name']} on {folder['host']} for {where} (id {folder['id']})"
        ),
    )


@app.command("list")
def list_(
    ctx: typer.Context,
    trash: Annotated[bool, typer.Option("--trash", help="List only folders in the trash.")] = False,
    automount: Annotated[
        bool, typer.Option("--automount", help="List only automount (dot) folders.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """List the folders you can access: your own, your projects', and shared with you."""
    cli = use(ctx, json_output)
    params = {"trash": str(trash).lower(), "automount": str(automount).lower()}
    result = cli.client().get("/v1/vfolders", params=params)
    empty = "the trash is empty" if trash else "no folders"
    cli.emit(
        result,
        lambda: table(
            cli.console, FOLDER_COLUMNS, folder_rows(result.get("vfolders", [])), empty=empty
        ),
    )


@app.command("info")
def info(ctx: typer.Context, name: NameArg, json_output: JsonOption = False) -> None:
    """Show one folder: owner, permissions, status, quota scope and mount views."""
    cli = use(ctx, json_output)
    folder = cli.client().get(folder_path(name))
    views = folder.get("views") or {}
    shown = [(f"{view} view", views[view]) for view in ("rw", "ro") if view in views]
    cli.emit(
        folder,
        lambda: key_values(
            cli.console,
            [
                ("name", folder.get("name")),
                ("id", folder.get("id")),
                ("host", folder.get("host")),
                ("type", _folder_type(folder)),
                ("owner", folder.get("owner")),
                ("usage mode", folder.get("usage_mode")),
                ("permission", folder.get("permission")),
                ("default permission", folder.get("default_permission")),
                ("cloneable", folder.get("cloneable")),
                ("automount", folder.get("automount")),
                ("status", folder.get("status")),
                *_clone_rows(folder),
                ("created", folder.get("created_at")),
                ("status changed", folder.get("status_changed_at")),
                ("quota scope", folder.get("scope")),
                *(shown or [("views", "(none: mountd not running)")]),
            ],
        ),
    )


def _clone_rows(folder: dict[str, Any]) -> list[tuple[str, object]]:
    """``vfd vfolder info`` lines of a folder made by a clone, and why it failed."""
    rows: list[tuple[str, object]] = []
    progress = clone.clone_progress(folder)
    if progress is not None:
        rows.append(("cloned from", (folder.get("clone") or {}).get("source_id")))
        rows.append(("clone progress", progress))
    if folder.get("status_reason"):
        rows.append(("status reason", folder.get("status_reason")))
    return rows


@app.command("list-hosts")
def list_hosts(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List storage hosts with their capacity and your quota use on each."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/hosts")

    def rows() -> list[list[object]]:
        out: list[list[object]] = []
        for host in result.get("hosts", []):
            capacity = host.get("capacity") or {}
            quota = host.get("quota") or {}
            out.append(
                [
                    host.get("name"),
                    host.get("allowed"),
                    format_size(capacity.get("total_bytes")),
                    format_size(capacity.get("used_bytes")),
                    format_size(capacity.get("free_bytes")),
                    format_size(quota.get("used_bytes")),
                    format_limit(quota.get("max_bytes")),
                    quota.get("used_files"),
                ]
            )
        return out

    columns = ("host", "allowed", "size", "used", "free", "your use", "your quota", "your files")
    cli.emit(result, lambda: table(cli.console, columns, rows(), empty="no storage hosts"))


@app.command("storage-status")
def storage_status(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Show how many folders you have created against your limit, and shared folders."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/storage-status")
    limit = result.get("limit") or 0
    cli.emit(
        result,
        lambda: key_values(
            cli.console,
            [
                ("folders created", f"{result.get('created')} / {limit or 'unlimited'}"),
                ("project folders", result.get("project_folders")),
                ("invited folders", result.get("invited_folders")),
            ],
        ),
    )


@app.command("rename")
def rename(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(help="The folder's current name.", show_default=False)],
    new: Annotated[str, typer.Argument(help="Its new name.", show_default=False)],
    json_output: JsonOption = False,
) -> None:
    """Rename a folder (needs the wd permission)."""
    cli = use(ctx, json_output)
    folder = cli.client().patch(folder_path(old), {"name": new})
    cli.emit(folder, lambda: f"Renamed folder {old} to {folder['name']}")


@app.command("update")
def update(
    ctx: typer.Context,
    name: NameArg,
    permission: Annotated[
        Permission | None,
        typer.Option("--permission", help="New default permission of project members."),
    ] = None,
    cloneable: Annotated[
        bool | None,
        typer.Option("--cloneable/--no-cloneable", help="Allow or forbid cloning the folder."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Change a folder's default permission or whether it may be cloned (owner only)."""
    body: dict[str, Any] = {}
    if permission is not None:
        body["permission"] = permission.value
    if cloneable is not None:
        body["cloneable"] = cloneable
    if not body:
        raise typer.BadParameter("nothing to change: give --permission or --[no-]cloneable")
    cli = use(ctx, json_output)
    folder = cli.client().patch(folder_path(name), body)
    changes = ", ".join(f"{key} = {value}" for key, value in body.items())
    cli.emit(folder, lambda: f"Updated folder {folder['name']}: {changes}")


@app.command("delete")
def delete(ctx: typer.Context, name: NameArg, json_output: JsonOption = False) -> None:
    """Move a folder to the trash (restore it, or purge it for good)."""
    cli = use(ctx, json_output)
    folder = cli.client().delete(folder_path(name))
    cli.emit(
        folder,
        lambda: (
            f"Moved folder {folder['name']} to the trash; `vfd vfolder restore "
            f"{folder['name']}` brings it back, `vfd vfolder purge {folder['name']} --confirm "
            f"{folder['name']}` deletes it for good"
        ),
    )


@app.command("restore")
def restore(ctx: typer.Context, name: NameArg, json_output: JsonOption = False) -> None:
    """Bring a folder back from the trash."""
    cli = use(ctx, json_output)
    folder = cli.client().post(f"{folder_path(name)}/restore")
    cli.emit(folder, lambda: f"Restored folder {folder['name']} from the trash")


@app.command("purge")
def purge(
    ctx: typer.Context,
    name: NameArg,
    confirm: Annotated[
        str,
        typer.Option(
            "--confirm",
            metavar="NAME",
            help="The folder's name again, to confirm that its data is deleted for good.",
            show_default=False,
        ),
    ],
    json_output: JsonOption = False,
) -> None:
    """Delete a trashed folder and its data for good; its name becomes free again."""
    cli = use(ctx, json_output)
    result = cli.client().post(f"{folder_path(name)}/purge", {"confirm": confirm})
    folder = result.get("purged") or {}
    cli.emit(
        result,
        lambda: (
            f"Purged folder {folder.get('name', name)} (id {folder.get('id')}); "
            "its data is gone and the name is free"
        ),
    )


sharing.register(app)
clone.register(app)
