"""``vfd vfolder clone`` and ``vfd vfolder clone-cancel``: copy a folder into a new one.

The daemon answers a clone at once with the new folder in status ``cloning``; mountd copies in
the background. ``--wait`` follows the copy with a progress bar until the folder is ready, and
fails (exit 1, the clone's error) when it ends in ``clone-error``. Registered on the
``vfd vfolder`` group by :func:`register`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vfd.cli.client import folder_path
from vfd.cli.context import JsonOption, use
from vfd.cli.sizes import format_size
from vfd.enums import Permission, UsageMode, VFolderStatus
from vfd.errors import ErrorCode, VfdError

if TYPE_CHECKING:
    from rich.progress import Progress

    from vfd.cli.client import VfdClient

POLL_INTERVAL = 0.3
"""Seconds between looks at a clone's progress with ``--wait``."""
DAEMON_GRACE = 60.0
"""Seconds ``--wait`` keeps asking a daemon that went away (restarting) before giving up; the
copy itself runs in mountd and goes on either way."""


def clone_progress(folder: dict[str, Any]) -> str | None:
    """``12.0 MiB of 200.0 MiB, 3 of 10 files`` for a folder made by a clone, else None."""
    clone = folder.get("clone")
    if not clone:
        return None
    return (
        f"{format_size(clone.get('done_bytes'))} of {format_size(clone.get('total_bytes'))}, "
        f"{clone.get('done_files')} of {clone.get('total_files')} files"
    )


def clone_failure(folder: dict[str, Any], source: str) -> VfdError:
    """The error of a clone that ended in ``clone-error``, with the code it failed with."""
    clone = folder.get("clone") or {}
    code = ErrorCode.from_wire(str(clone.get("error") or "internal"))
    reason = folder.get("status_reason") or "no reason recorded"
    return VfdError(
        code,
        f"cloning {source} into {folder.get('name')} failed: {reason}",
        name=folder.get("name"),
    )


def wait_for_clone(
    client: VfdClient, folder: dict[str, Any], *, progress: Progress | None
) -> dict[str, Any]:
    """Poll the new folder until it leaves ``cloning``; its last state."""
    task = None
    if progress is not None:
        clone = folder.get("clone") or {}
        task = progress.add_task(
            f"cloning into {folder['name']}", total=clone.get("total_bytes") or None
        )
    away_since: float | None = None
    while folder.get("status") == VFolderStatus.CLONING.value:
        time.sleep(POLL_INTERVAL)
        try:
            folder = client.get(folder_path(str(folder["name"])))
        except VfdError as exc:
            if exc.code is not ErrorCode.DAEMON_UNAVAILABLE:
                raise
            away_since = away_since or time.monotonic()
            if time.monotonic() - away_since > DAEMON_GRACE:
                raise
            continue
        away_since = None
        if progress is not None and task is not None:
            clone = folder.get("clone") or {}
            progress.update(
                task,
                completed=clone.get("done_bytes") or 0,
                total=clone.get("total_bytes") or None,
            )
    if progress is not None and task is not None and folder.get("status") == "ready":
        total = (folder.get("clone") or {}).get("total_bytes") or 0
        progress.update(task, completed=total, total=total or None)
    return folder


def register(app: typer.Typer) -> None:
    """Add the clone commands to the ``vfd vfolder`` group."""

    @app.command("clone")
    def clone(
        ctx: typer.Context,
        source: Annotated[str, typer.Argument(help="The folder to copy.", show_default=False)],
        name: Annotated[str, typer.Argument(help="The new folder's name.", show_default=False)],
        host: Annotated[
            str | None,
            typer.Option(
                "--host",
                metavar="H",
                help="Storage host of the new folder (default: the source's).",
            ),
        ] = None,
        usage_mode: Annotated[
            UsageMode | None,
            typer.Option(
                "--usage-mode", help="What the new folder is for (default: the source's)."
            ),
        ] = None,
        permission: Annotated[
            Permission,
            typer.Option("--permission", help="The new folder's default permission."),
        ] = Permission.RW,
        wait: Annotated[
            bool,
            typer.Option(
                "--wait",
                help="Show the copy's progress and return when it is done; exit 1 if it "
                "failed. Ctrl-C stops waiting, not the copy.",
            ),
        ] = False,
        json_output: JsonOption = False,
    ) -> None:
        """Copy a folder you may read (cloneable, or your own) into a new folder of yours.

        The new folder appears at once with status cloning and becomes ready when the copy is
        complete; `vfd vfolder info NEW` shows the progress.
        """
        cli = use(ctx, json_output)
        body: dict[str, Any] = {"target_name": name, "permission": permission.value}
        if host is not None:
            body["target_host"] = host
        if usage_mode is not None:
            body["usage_mode"] = usage_mode.value
        client = cli.client()
        folder = client.post(f"{folder_path(source)}/clone", body)
        started = (
            f"Cloning folder {source} into {folder['name']} (id {folder['id']}); "
            f"`vfd vfolder info {folder['name']}` shows the progress"
        )
        if wait:
            if cli.json:
                folder = wait_for_clone(client, folder, progress=None)
            else:
                cli.console.print(started, highlight=False, markup=False, soft_wrap=True)
                from rich.progress import (
                    BarColumn,
                    DownloadColumn,
                    Progress,
                    TaskProgressColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )

                with Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    TaskProgressColumn(),
                    DownloadColumn(binary_units=True),
                    TimeElapsedColumn(),
                    console=cli.console,
                ) as progress:
                    folder = wait_for_clone(client, folder, progress=progress)
            if folder.get("status") != VFolderStatus.READY.value:
                raise clone_failure(folder, source)
            cli.emit(
                folder,
                lambda: f"Cloned folder {source} into {folder['name']} ({clone_progress(folder)})",
            )
            return
        cli.emit(folder, lambda: started)

    @app.command("clone-cancel")
    def clone_cancel(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help="The folder being cloned.", show_default=False)],
        json_output: JsonOption = False,
    ) -> None:
        """Stop copying into a folder being cloned; it is left in status clone-error (purge it
        with `vfd vfolder purge NAME --confirm NAME`)."""
        cli = use(ctx, json_output)
        folder = cli.client().post(f"{folder_path(name)}/clone-cancel")
        if folder.get("status") == VFolderStatus.READY.value:
            cli.emit(folder, lambda: f"The copy into {name} had completed; the folder is ready")
            return
        cli.emit(
            folder,
            lambda: (
                f"Cancelled the clone into {name} ({clone_progress(folder)} copied); "
                f"`vfd vfolder purge {name} --confirm {name}` removes it"
            ),
        )
