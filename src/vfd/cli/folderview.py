"""What ``vfd vfolder list`` and ``vfd vfolder info`` do, without typer: the one
implementation that both the typer commands (:mod:`vfd.cli.vfolder`) and the console script's
fast path (:mod:`vfd.cli.quickcmds`) run, so the two print the same."""

from __future__ import annotations

from typing import Any

from vfd.cli.client import folder_path
from vfd.cli.output import key_values, short_id, table
from vfd.cli.state import CliState

FOLDER_COLUMNS = ("id", "name", "host", "type", "usage mode", "permission", "status", "owner")


def folder_type(folder: dict[str, Any]) -> str:
    return str(folder.get("ownership", "user"))


def folder_rows(folders: list[dict[str, Any]]) -> list[list[object]]:
    """Rows of the folder table (``vfd vfolder list``)."""
    return [
        [
            short_id(f.get("id")),
            f.get("name"),
            f.get("host"),
            folder_type(f),
            f.get("usage_mode"),
            f.get("permission"),
            f.get("status"),
            f.get("owner"),
        ]
        for f in folders
    ]


def list_folders(cli: CliState, *, trash: bool, automount: bool) -> None:
    """``vfd vfolder list [--trash] [--automount]``."""
    params = {"trash": str(trash).lower(), "automount": str(automount).lower()}
    result = cli.client().get("/v1/vfolders", params=params)
    empty = "the trash is empty" if trash else "no folders"
    cli.emit(
        result,
        lambda: table(
            cli.console, FOLDER_COLUMNS, folder_rows(result.get("vfolders", [])), empty=empty
        ),
    )


def show_folder(cli: CliState, name: str) -> None:
    """``vfd vfolder info NAME``."""
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
                ("type", folder_type(folder)),
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
    if folder.get("clone"):  # (the clone commands' module, with typer, only for such a folder)
        from vfd.cli import clone

        progress = clone.clone_progress(folder)
        if progress is not None:
            rows.append(("cloned from", (folder.get("clone") or {}).get("source_id")))
            rows.append(("clone progress", progress))
    if folder.get("status_reason"):
        rows.append(("status reason", folder.get("status_reason")))
    return rows
