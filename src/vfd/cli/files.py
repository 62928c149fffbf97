"""File commands inside folders (``vfd vfolder ls|mkdir|upload|download|mv|rm|usage``) and
bind mounts on the node (``vfd mount``, ``vfd umount``).

Everything goes through the daemon, which works on the folder's view in the mount with the
caller's identity: the caller's permission, quota and Unix permissions apply.

File names are bytes: an argument that is not UTF-8 (``$'name\xff.txt'`` in a shell) is sent
in the ``_b64`` form of :mod:`vfd.wirenames`, and such names are shown escaped, as ``ls -b``
shows them (``name\xff.txt``; a backslash shows as ``\\``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from vfd import wirenames
from vfd.cli import transferview
from vfd.cli.client import folder_path
from vfd.cli.context import JsonOption, use
from vfd.cli.output import key_values, table
from vfd.cli.sizes import format_limit, format_size

NameArg = Annotated[str, typer.Argument(help="The folder's name.", show_default=False)]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def ls(
    ctx: typer.Context,
    name: NameArg,
    path: Annotated[str, typer.Argument(help="A path inside the folder.")] = "",
    json_output: JsonOption = False,
) -> None:
    """List a directory inside a folder (symbolic links are shown, not followed)."""
    cli = use(ctx, json_output)
    result = cli.client().get(
        f"{folder_path(name)}/files", params=wirenames.request_fields("path", path)
    )

    def rows() -> list[list[object]]:
        out: list[list[object]] = []
        for e in result["entries"]:
            shown = wirenames.escaped(wirenames.from_answer(e, "name"))
            if e.get("target") is not None:
                shown += " -> " + wirenames.escaped(wirenames.from_answer(e, "target"))
            if e["type"] == "dir":
                shown += "/"
            out.append(
                [e["mode"], e["uid"], e["gid"], format_size(e["size"]), _when(e["mtime"]), shown]
            )
        return out

    cli.emit(
        result,
        lambda: table(
            cli.console,
            ["mode", "uid", "gid", "size", "modified", "name"],
            rows(),
            empty="empty directory",
        ),
    )


def mkdir(
    ctx: typer.Context,
    name: NameArg,
    path: Annotated[str, typer.Argument(help="The directory to make, inside the folder.")],
    parents: Annotated[
        bool, typer.Option("--parents", "-p", help="Make missing parents; no error if it exists.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Make a directory inside a folder."""
    cli = use(ctx, json_output)
    body = {**wirenames.request_fields("path", path), "parents": parents}
    result = cli.client().post(f"{folder_path(name)}/mkdir", body)
    cli.emit(result, lambda: f"Made {wirenames.escaped(path)} in {name}")


def upload(
    ctx: typer.Context,
    name: NameArg,
    sources: Annotated[list[Path], typer.Argument(help="Files and directories to upload.")],
    dest: Annotated[
        str, typer.Option("--dest", "-d", help="Directory inside the folder to upload into.")
    ] = "",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace files that already exist.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Upload files and whole directories (streamed, resumable: run it again to go on).

    Each file is written under a temporary name and renamed when complete, so no partial file
    is ever visible; an upload past the quota fails and leaves nothing behind. A file that
    exists already refuses the upload (without --overwrite) before anything is sent.
    """
    transferview.upload(use(ctx, json_output), name, sources, dest, overwrite)


def download(
    ctx: typer.Context,
    name: NameArg,
    paths: Annotated[list[str], typer.Argument(help="Files or directories inside the folder.")],
    dest: Annotated[
        Path,
        typer.Option("--dest", "-d", help="Local directory to download into (made when missing)."),
    ] = Path("."),
    json_output: JsonOption = False,
) -> None:
    """Download files (resumable) and directories (as an archive, unpacked) from a folder.

    An interrupted file download goes on where it stopped when run again, unless the file
    changed on the daemon meanwhile: then it starts over. A directory appears in DEST only
    once it is complete (a failure leaves nothing) and never merges into one that exists;
    symbolic links in it are made only when they point inside it: others are skipped and
    listed at the end.
    """
    transferview.download(use(ctx, json_output), name, paths, dest)


def mv(
    ctx: typer.Context,
    name: NameArg,
    src: Annotated[str, typer.Argument(help="Path to move.")],
    dst: Annotated[str, typer.Argument(help="New path (or an existing directory to move into).")],
    json_output: JsonOption = False,
) -> None:
    """Move or rename a file or directory inside a folder."""
    cli = use(ctx, json_output)
    body = {**wirenames.request_fields("src", src), **wirenames.request_fields("dst", dst)}
    result = cli.client().post(f"{folder_path(name)}/move", body)
    shown_src, shown_dst = wirenames.escaped(src), wirenames.escaped(dst)
    cli.emit(result, lambda: f"Moved {shown_src} to {shown_dst} in {name}")


def rm(
    ctx: typer.Context,
    name: NameArg,
    paths: Annotated[list[str], typer.Argument(help="Paths to remove.")],
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Remove directories and their contents.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Remove files (and with -r, directories) inside a folder."""
    cli = use(ctx, json_output)
    body = {**wirenames.request_list_fields("paths", paths), "recursive": recursive}
    result = cli.client().post(f"{folder_path(name)}/remove", body)
    cli.emit(result, lambda: f"Removed {len(result['removed'])} path(s) from {name}")


def usage(ctx: typer.Context, name: NameArg, json_output: JsonOption = False) -> None:
    """Show the quota use and limits of the scope a folder belongs to."""
    cli = use(ctx, json_output)
    result = cli.client().get(f"{folder_path(name)}/usage")
    cli.emit(result, lambda: key_values(cli.console, scope_pairs(result)))


def scope_pairs(r: dict[str, Any]) -> list[tuple[str, object]]:
    return [
        ("scope", f"{r['scope']} on {r['host']}"),
        ("bytes", f"{format_size(r['used_bytes'])} of {format_limit(r['max_bytes'])}"),
        ("files", f"{r['used_files']} of {r['max_files'] or 'unlimited'}"),
        ("live", "yes" if r.get("live") else "no (mountd not answering; last stored figures)"),
    ]


def mount(
    ctx: typer.Context,
    name: NameArg,
    target: Annotated[Path, typer.Argument(help="An existing empty directory you own.")],
    ro: Annotated[bool, typer.Option("--ro", help="Mount the read-only view.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Bind-mount a folder's view on this node (read-only with --ro or ro permission)."""
    cli = use(ctx, json_output)
    result = cli.client().post(
        f"{folder_path(name)}/mount", {"target": str(target.absolute()), "ro": ro}
    )
    cli.emit(result, lambda: f"Mounted {name} ({result['view']}) on {result['target']}")


def umount(
    ctx: typer.Context,
    target: Annotated[Path, typer.Argument(help="Where a folder is mounted.")],
    json_output: JsonOption = False,
) -> None:
    """Remove a bind mount made by `vfd mount`."""
    cli = use(ctx, json_output)
    result = cli.client().post("/v1/umount", {"target": str(target.absolute())})
    cli.emit(result, lambda: f"Unmounted {result['target']}")


def register(vfolder_app: typer.Typer, root_app: typer.Typer) -> None:
    for fn, cmd in (
        (ls, "ls"),
        (mkdir, "mkdir"),
        (upload, "upload"),
        (download, "download"),
        (mv, "mv"),
        (rm, "rm"),
        (usage, "usage"),
    ):
        vfolder_app.command(cmd)(fn)
    root_app.command("mount")(mount)
    root_app.command("umount")(umount)
