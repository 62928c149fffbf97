"""``vfd vfolder``: create, list, inspect, rename, trash, restore and purge folders.

Sharing (invitations, leaving, per-member permissions) lives in :mod:`vfd.cli.sharing` and is
registered on the same command group. Every command is one API call (see ``docs/api.md``);
the daemon checks names, permissions and limits, the CLI only words the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from vfd.cli import clone, folderview, sftp, sharing, web
from vfd.cli.client import folder_path
from vfd.cli.context import CliState, JsonOption, use
from vfd.enums import Permission, UsageMode
from vfd.errors import ErrorCode, VfdError

app = typer.Typer(
    help="Virtual folders: create, list, share, trash and purge them.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The folder's name.", show_default=False)]


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
    folderview.list_folders(use(ctx, json_output), trash=trash, automount=automount)


@app.command("info")
def info(ctx: typer.Context, name: NameArg, json_output: JsonOption = False) -> None:
    """Show one folder: owner, permissions, status, quota scope and mount views."""
    folderview.show_folder(use(ctx, json_output), name)


@app.command("list-hosts")
def list_hosts(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List storage hosts with their capacity and your quota use on each."""
    folderview.list_hosts(use(ctx, json_output))


@app.command("storage-status")
def storage_status(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Show how many folders you have created against your limit, and shared folders."""
    folderview.storage_status(use(ctx, json_output))


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


OUTCOME_WAIT = 60.0
"""Seconds ``delete`` and ``purge`` follow a folder whose change may still complete (the
daemon stopped waiting for mountd, or we stopped waiting for the daemon)."""
OUTCOME_POLL = 0.5

_TRASHED = {"delete-pending", "delete-ongoing", "delete-error"}


def _follow(
    cli: CliState,
    name: str,
    exc: VfdError,
    settled: Callable[[dict[str, Any] | None], bool | None],
) -> tuple[dict[str, Any] | None, bool]:
    """After ``exc`` said that a change of folder ``name`` may still complete, poll the folder
    (``None`` once it is gone) until ``settled`` says it succeeded (True) or failed (False);
    the folder and the verdict. Raises, saying so, when it is still pending after
    :data:`OUTCOME_WAIT` seconds."""
    typer.echo(
        f"note: {exc.message}; following folder {name} for up to {OUTCOME_WAIT:g}s", err=True
    )
    deadline = time.monotonic() + OUTCOME_WAIT
    while True:
        try:
            folder: dict[str, Any] | None = cli.client().get(folder_path(name))
        except VfdError as err:
            # gone (purged), or no answer now ({}: unknown)
            folder = None if err.code is ErrorCode.VFOLDER_NOT_FOUND else {}
        verdict = settled(folder) if folder != {} else None
        if verdict is not None:
            return folder, verdict
        if time.monotonic() >= deadline:
            status = (folder or {}).get("status", "unknown")
            raise VfdError(
                exc.code,
                f"{exc.message}; still pending after {OUTCOME_WAIT:g}s (folder {name} is "
                f"{status}): check `vfd vfolder info {name}`",
                **{**exc.details, "status": status},
            )
        time.sleep(OUTCOME_POLL)


@app.command("delete")
def delete(ctx: typer.Context, name: NameArg, json_output: JsonOption = False) -> None:
    """Move a folder to the trash (restore it, or purge it for good).

    When the daemon cannot tell whether it happened (mountd or the daemon did not answer in
    time), follows the folder for a while and says how it ended.
    """
    cli = use(ctx, json_output)
    after = ""
    try:
        folder = cli.client().delete(folder_path(name))
    except VfdError as exc:
        if not exc.details.get("may_complete"):
            raise

        def trashed(folder: dict[str, Any] | None) -> bool | None:
            return True if folder and folder.get("status") in _TRASHED else None

        found, _ = _follow(cli, name, exc, trashed)
        assert found is not None
        folder, after = found, " after all"
    cli.emit(
        folder,
        lambda: (
            f"Moved folder {folder['name']} to the trash{after}; `vfd vfolder restore "
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
    """Delete a trashed folder and its data for good; its name becomes free again.

    When the daemon cannot tell whether it happened (mountd or the daemon did not answer in
    time), follows the folder for a while and says how it ended.
    """
    cli = use(ctx, json_output)
    after = ""
    try:
        result = cli.client().post(f"{folder_path(name)}/purge", {"confirm": confirm})
    except VfdError as exc:
        if not exc.details.get("may_complete"):
            raise
        found, purged = _follow(cli, name, exc, _purge_settled)
        if not purged:
            raise VfdError(
                exc.code,
                f"the purge of folder {name} did not complete after all: it is delete-error "
                "(the daemon's log says why); purge it again once mountd answers",
                name=name,
                status="delete-error",
            ) from None
        result, after = {"purged": found or {"name": name}}, " after all"
    folder = result.get("purged") or {}
    ident = f" (id {folder['id']})" if folder.get("id") else ""
    cli.emit(
        result,
        lambda: (
            f"Purged folder {folder.get('name', name)}{ident}{after}; "
            "its data is gone and the name is free"
        ),
    )


def _purge_settled(folder: dict[str, Any] | None) -> bool | None:
    """A purge succeeded once the folder is gone (or ``delete-complete``), failed at
    ``delete-error``, and is under way before."""
    if folder is None or folder.get("status") == "delete-complete":
        return True
    return False if folder.get("status") == "delete-error" else None


sharing.register(app)
clone.register(app)
app.command("sftp")(sftp.sftp)
app.command("web")(web.web)
