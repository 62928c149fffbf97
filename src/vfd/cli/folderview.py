"""What the read-only folder commands (``vfd vfolder list``, ``info``, ``list-hosts``,
``storage-status``) do, without typer: the one implementation that both the typer commands
(:mod:`vfd.cli.vfolder`) and the console script's fast path (:mod:`vfd.cli.quickcmds`) run,
so the two print the same."""

from __future__ import annotations

from typing import Any

from vfd.cli.client import folder_path
from vfd.cli.output import key_values, short_id, table
from vfd.cli.sizes import format_limit, format_size
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


def list_hosts(cli: CliState) -> None:
    """``vfd vfolder list-hosts``."""
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


def storage_status(cli: CliState) -> None:
    """``vfd vfolder storage-status``."""
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
